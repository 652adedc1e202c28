//! Grad-CAM (Selvaraju et al.): where a convolutional network looked. The gradient of one
//! class score with respect to a layer's activations gives each channel a weight (the spatial
//! mean of its gradient); the ReLU of the weighted sum of the channels, upsampled to the input
//! size and scaled to 0–1, is the heat map. Works on every device that has autodiff.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::{IMAGE_SIZE, Model, ModelError};

/// A Grad-CAM heat map and the prediction it explains.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCam {
    /// The class explained.
    pub class: usize,
    /// The layer whose activations were weighted.
    pub layer: String,
    /// `32 × 32` values in 0–1, row-major (1 where the class evidence is strongest).
    pub heat: Vec<f32>,
    /// The model's class probabilities for the image.
    pub probabilities: Vec<f32>,
}

/// Grad-CAM of one normalised image `[1, 3, 32, 32]` for `class` (default: the predicted one)
/// at `layer` (default: the model's last convolutional stage). The model runs in inference
/// mode; the image's device must support autodiff (every Burn device does).
pub fn grad_cam(
    model: &Model,
    image: Tensor<4>,
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<GradCam, ModelError> {
    let layer = match layer {
        Some(l) => l.to_string(),
        None => model.cam_layer().ok_or_else(|| {
            ModelError::BadOption(format!(
                "`{}` has no convolutional layer to explain",
                model.config().name
            ))
        })?,
    };
    // Inference mode without autodiff up to the layer; from there the activations are the one
    // tracked tensor, so the gradient reaches them with the parameters as constants.
    let model = model.valid();
    let activations = model
        .activations(image, &layer)?
        .detach()
        .autodiff()
        .require_grad();
    let logits = model.forward_from(activations.clone(), &layer)?;
    let probabilities = softmax(logits.clone().detach(), 1)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ModelError::BadOption(format!("cannot read the probabilities: {e:?}")))?;
    let classes = probabilities.len();
    let class = class.unwrap_or_else(|| {
        (0..classes).fold(0, |b, c| {
            if probabilities[c] > probabilities[b] {
                c
            } else {
                b
            }
        })
    });
    if class >= classes {
        return Err(ModelError::BadOption(format!(
            "class {class} does not exist (0–{})",
            classes - 1
        )));
    }
    let grads = logits.slice([0..1, class..class + 1]).sum().backward();
    let gradient = activations
        .grad(&grads)
        .ok_or_else(|| ModelError::BadOption(format!("no gradient reached layer `{layer}`")))?;
    let weights = gradient.mean_dim(3).mean_dim(2);
    let cam = (activations.inner() * weights).sum_dim(1).clamp_min(0.0);
    let [_, _, h, w] = cam.dims();
    let values = cam
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ModelError::BadOption(format!("cannot read the heat map: {e:?}")))?;
    Ok(GradCam {
        class,
        layer,
        heat: normalise(upsample(&values, h, w)),
        probabilities,
    })
}

/// Bilinear upsampling of an `h × w` map to `32 × 32` (pixel centres aligned).
fn upsample(values: &[f32], h: usize, w: usize) -> Vec<f32> {
    let sample = |y: f32, x: f32| {
        let (y, x) = (y.clamp(0.0, (h - 1) as f32), x.clamp(0.0, (w - 1) as f32));
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let at = |r: usize, c: usize| values[r * w + c];
        (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
            + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1))
    };
    let scale_y = h as f32 / IMAGE_SIZE as f32;
    let scale_x = w as f32 / IMAGE_SIZE as f32;
    (0..IMAGE_SIZE * IMAGE_SIZE)
        .map(|i| {
            let (r, c) = ((i / IMAGE_SIZE) as f32, (i % IMAGE_SIZE) as f32);
            sample((r + 0.5) * scale_y - 0.5, (c + 0.5) * scale_x - 0.5)
        })
        .collect()
}

/// Scales to 0–1 by the maximum (an all-zero map stays zero).
fn normalise(mut heat: Vec<f32>) -> Vec<f32> {
    let max = heat.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        heat.iter_mut().for_each(|v| *v /= max);
    }
    heat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_constants_and_orders_corners() {
        assert!(
            upsample(&[2.0; 16], 4, 4)
                .iter()
                .all(|&v| (v - 2.0).abs() < 1e-6)
        );
        // A 2 × 2 map with one hot corner: the top-left of the result is hottest.
        let up = upsample(&[1.0, 0.0, 0.0, 0.0], 2, 2);
        assert_eq!(up.len(), IMAGE_SIZE * IMAGE_SIZE);
        assert_eq!(up[0], 1.0);
        assert!(up[IMAGE_SIZE * IMAGE_SIZE - 1] < 1e-6);
        assert_eq!(normalise(vec![0.0, 2.0, 1.0]), vec![0.0, 1.0, 0.5]);
    }
}
