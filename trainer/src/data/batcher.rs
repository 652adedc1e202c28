//! Turns raw records into normalised (and, for training, augmented) mini-batches on a
//! background thread, so that the next batch is ready while the model works on this one.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use burn::tensor::{Device, Int, Tensor, TensorData};
use model::{IMAGE_SIZE, IMAGE_VALUES, Normalization};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::CifarSet;
use super::augment::{Augment, FlipPhase};

/// Batches prepared ahead of the one in use.
const PREFETCH: usize = 3;

/// One mini-batch on the host.
#[derive(Clone)]
pub struct Batch {
    /// `len × 3072` normalised values, channel-major per image.
    pub images: Vec<f32>,
    /// One label per image (for MixUp: the label of the image itself, not its partner).
    pub labels: Vec<i64>,
    /// `len × classes` target distribution (one-hot, or blended by MixUp).
    pub targets: Vec<f32>,
    /// Number of classes of the data set.
    pub classes: usize,
}

/// Tensors of one batch on a device.
pub struct DeviceBatch {
    /// `[n, 3, 32, 32]`.
    pub images: Tensor<4>,
    /// `[n]`.
    pub labels: Tensor<1, Int>,
    /// `[n, classes]`.
    pub targets: Tensor<2>,
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

    /// Moves the batch to `device`.
    pub fn to_device(self, device: &Device) -> DeviceBatch {
        let n = self.len();
        DeviceBatch {
            images: Tensor::from_data(
                TensorData::new(self.images, [n, 3, IMAGE_SIZE, IMAGE_SIZE]),
                device,
            ),
            labels: Tensor::from_data(TensorData::new(self.labels, [n]), device),
            targets: Tensor::from_data(TensorData::new(self.targets, [n, self.classes]), device),
        }
    }
}

/// How to cut and prepare batches.
#[derive(Clone)]
pub struct BatchPlan {
    /// Images per batch.
    pub batch_size: usize,
    /// A last batch with fewer images is dropped (batch norm needs two samples to train).
    pub min_last: usize,
    /// Input statistics.
    pub normalization: Normalization,
    /// Augmentation and the seed of its generator (training split only).
    pub augment: Option<(Augment, u64)>,
    /// The epoch of `--alternating-flip`, which then decides the flips.
    pub flip_phase: Option<FlipPhase>,
}

/// Batches of `set` in the given `order`, prepared on a background thread.
pub fn batches(set: Arc<CifarSet>, order: Vec<usize>, plan: BatchPlan) -> Receiver<Batch> {
    let (sender, receiver) = sync_channel(PREFETCH);
    std::thread::spawn(move || {
        let mut rng = StdRng::seed_from_u64(plan.augment.as_ref().map_or(0, |a| a.1));
        let mut scratch = vec![0u8; IMAGE_VALUES];
        let classes = set.classes.len();
        for chunk in order.chunks(plan.batch_size.max(1)) {
            if chunk.len() < plan.min_last {
                break;
            }
            let mut images = vec![0f32; chunk.len() * IMAGE_VALUES];
            let mut targets = vec![0f32; chunk.len() * classes];
            for (k, (&i, out)) in chunk
                .iter()
                .zip(images.chunks_exact_mut(IMAGE_VALUES))
                .enumerate()
            {
                match &plan.augment {
                    Some((augment, _)) => {
                        let flip = plan.flip_phase.map(|phase| phase.flips(i));
                        augment.crop_flip(set.image(i), &mut scratch, flip, &mut rng);
                        plan.normalization.normalize_into(&scratch, out);
                        augment.cutout(out, &mut rng);
                    }
                    None => plan.normalization.normalize_into(set.image(i), out),
                }
                targets[k * classes + set.labels[i] as usize] = 1.0;
            }
            if let Some((augment, _)) = &plan.augment {
                augment.mixup(&mut images, &mut targets, classes, &mut rng);
            }
            let labels = chunk.iter().map(|&i| set.labels[i] as i64).collect();
            if sender
                .send(Batch {
                    images,
                    labels,
                    targets,
                    classes,
                })
                .is_err()
            {
                break; // the consumer stopped early
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Arc<CifarSet> {
        let mut set = CifarSet {
            classes: model::cifar10_class_names(),
            ..CifarSet::default()
        };
        for i in 0..5u8 {
            set.pixels.extend(std::iter::repeat_n(i * 50, IMAGE_VALUES));
            set.labels.push(i);
        }
        Arc::new(set)
    }

    fn plan(augment: Option<(Augment, u64)>) -> BatchPlan {
        let normalization = Normalization {
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        BatchPlan {
            batch_size: 2,
            min_last: 2,
            normalization,
            augment,
            flip_phase: None,
        }
    }

    #[test]
    fn batches_cover_the_order_and_normalise() {
        let got: Vec<Batch> = batches(set(), vec![4, 0, 2, 1, 3], plan(None))
            .into_iter()
            .collect();
        assert_eq!(got.len(), 2, "the last single image is dropped");
        assert_eq!(got[0].labels, vec![4, 0]);
        assert_eq!(got[1].labels, vec![2, 1]);
        assert!((got[0].images[0] - 200.0 / 255.0).abs() < 1e-6);
        assert_eq!(got[0].images[IMAGE_VALUES], 0.0);
        assert_eq!(got[0].targets[4], 1.0);
        assert_eq!(got[0].targets.iter().sum::<f32>(), 2.0);
    }

    #[test]
    fn augmentation_is_seeded_and_applied() {
        let aug = Augment {
            crop_padding: 4,
            flip: true,
            cutout: 8,
            ..Augment::default()
        };
        let run = |seed| -> Vec<f32> {
            batches(set(), vec![0, 1, 2, 3], plan(Some((aug.clone(), seed))))
                .into_iter()
                .flat_map(|b| b.images)
                .collect()
        };
        let plain: Vec<f32> = batches(set(), vec![0, 1, 2, 3], plan(None))
            .into_iter()
            .flat_map(|b| b.images)
            .collect();
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert_ne!(run(5), plain);
    }
}
