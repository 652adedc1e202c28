//! Turns raw records into normalised mini-batches on a background thread, so that the next
//! batch is ready while the model works on the current one.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use burn::tensor::{Device, Int, Tensor, TensorData};
use model::{IMAGE_SIZE, IMAGE_VALUES, Normalization};

use super::CifarSet;

/// Batches prepared ahead of the one in use.
const PREFETCH: usize = 3;

/// One mini-batch on the host: normalised pixels and labels.
pub struct Batch {
    /// `len × 3072` normalised values, channel-major per image.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<i64>,
}

impl Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Moves the batch to `device` as `([n, 3, 32, 32], [n])` tensors.
    pub fn to_device(self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let n = self.len();
        let images = Tensor::from_data(
            TensorData::new(self.images, [n, 3, IMAGE_SIZE, IMAGE_SIZE]),
            device,
        );
        let labels = Tensor::from_data(TensorData::new(self.labels, [n]), device);
        (images, labels)
    }
}

/// Batches of `set` in the given `order`, `batch_size` images each; a last batch with fewer
/// than `min_last` images is dropped (batch norm needs at least two samples to train).
pub fn batches(
    set: Arc<CifarSet>,
    order: Vec<usize>,
    batch_size: usize,
    min_last: usize,
    normalization: Normalization,
) -> Receiver<Batch> {
    let (sender, receiver) = sync_channel(PREFETCH);
    std::thread::spawn(move || {
        for chunk in order.chunks(batch_size.max(1)) {
            if chunk.len() < min_last {
                break;
            }
            let mut images = vec![0f32; chunk.len() * IMAGE_VALUES];
            for (&i, out) in chunk.iter().zip(images.chunks_exact_mut(IMAGE_VALUES)) {
                normalization.normalize_into(set.image(i), out);
            }
            let labels = chunk.iter().map(|&i| set.labels[i] as i64).collect();
            if sender.send(Batch { images, labels }).is_err() {
                break; // the consumer stopped early
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_order_and_normalise() {
        let mut set = CifarSet::default();
        for i in 0..5u8 {
            set.pixels.extend(std::iter::repeat_n(i * 50, IMAGE_VALUES));
            set.labels.push(i);
        }
        let norm = Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let got: Vec<Batch> = batches(Arc::new(set), vec![4, 0, 2, 1, 3], 2, 2, norm)
            .into_iter()
            .collect();
        assert_eq!(got.len(), 2, "the last single image is dropped");
        assert_eq!(got[0].labels, vec![4, 0]);
        assert_eq!(got[1].labels, vec![2, 1]);
        assert!((got[0].images[0] - 200.0 / 255.0).abs() < 1e-6);
        assert_eq!(got[0].images[IMAGE_VALUES], 0.0);
    }
}
