//! Grad-CAM (Selvaraju et al.): where a convolutional network looked. The gradient of one
//! class score with respect to a layer's activations gives each channel a weight (the spatial
//! mean of its gradient); the ReLU of the weighted sum of the channels, upsampled to the input
//! size and scaled to 0–1, is the heat map. Works on every device that has autodiff.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use image::imageops::FilterType;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

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
/// mode; the image's device must support autodiff (every Burn device does). Reads the results
/// back synchronously; in a browser on WebGPU use [`grad_cam_tensors`] and read them async.
pub fn grad_cam(
    model: &Model,
    image: Tensor<4>,
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<GradCam, ModelError> {
    let pending = grad_cam_tensors(model, image, class, layer)?;
    let probabilities = read(pending.probabilities.clone(), "probabilities")?;
    let cam = read(pending.cam.clone(), "heat map")?;
    pending.finish(&probabilities, &cam)
}

/// The device tensors of a Grad-CAM, computed but not yet read back to the host: read
/// [`probabilities`](Self::probabilities) and [`cam`](Self::cam) (with `into_data`, or
/// `into_data_async` where reads must not block) and hand the values to [`finish`](Self::finish).
#[derive(Debug)]
pub struct PendingCam {
    /// Class probabilities `[1, classes]`.
    pub probabilities: Tensor<2>,
    /// The un-normalised map at the layer's resolution `[1, 1, h, w]`.
    pub cam: Tensor<4>,
    class: Option<usize>,
    layer: String,
}

/// Runs the forward and backward passes of [`grad_cam`] without reading anything back.
pub fn grad_cam_tensors(
    model: &Model,
    image: Tensor<4>,
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<PendingCam, ModelError> {
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
    let [_, classes] = logits.dims();
    let scores = logits.clone().detach();
    let probabilities = softmax(scores.clone(), 1).inner();
    let target = match class {
        Some(c) if c >= classes => {
            return Err(ModelError::BadOption(format!(
                "class {c} does not exist (0–{})",
                classes - 1
            )));
        }
        Some(c) => logits.slice([0..1, c..c + 1]).sum(),
        // The top score, picked on the device so nothing is read back before the backward pass.
        None => {
            let top = scores.clone().max_dim(1).repeat_dim(1, classes);
            (logits * scores.equal(top).float()).sum()
        }
    };
    let grads = target.backward();
    let gradient = activations
        .grad(&grads)
        .ok_or_else(|| ModelError::BadOption(format!("no gradient reached layer `{layer}`")))?;
    let weights = gradient.mean_dim(3).mean_dim(2);
    let cam = (activations.inner() * weights).sum_dim(1).clamp_min(0.0);
    Ok(PendingCam {
        probabilities,
        cam,
        class,
        layer,
    })
}

impl PendingCam {
    /// The heat map from the values read back: `probabilities` of [`Self::probabilities`] and
    /// `cam` of [`Self::cam`], both row-major.
    pub fn finish(self, probabilities: &[f32], cam: &[f32]) -> Result<GradCam, ModelError> {
        let [_, _, h, w] = self.cam.dims();
        if cam.len() != h * w || probabilities.is_empty() {
            return Err(ModelError::BadOption(format!(
                "expected {} heat values and some probabilities, got {} and {}",
                h * w,
                cam.len(),
                probabilities.len()
            )));
        }
        let class = self.class.unwrap_or_else(|| argmax(probabilities));
        Ok(GradCam {
            class,
            layer: self.layer,
            heat: normalise(upsample(cam, h, w)),
            probabilities: probabilities.to_vec(),
        })
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    (0..values.len()).fold(0, |b, c| if values[c] > values[b] { c } else { b })
}

fn read<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<Vec<f32>, ModelError> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ModelError::BadOption(format!("cannot read the {what}: {e:?}")))
}

/// The "jet" colour of a heat value in 0–1: blue (cold) through green and yellow to red (hot).
pub fn heat_color(value: f32) -> [u8; 3] {
    let v = value.clamp(0.0, 1.0) * 4.0;
    let channel = |centre: f32| ((1.5 - (v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// Blends a heat map (any square side, row-major 0–1, e.g. [`GradCam::heat`]) over `base`,
/// stretched to its size with bilinear filtering: `opacity` 0 keeps the image, 1 shows only heat.
pub fn overlay(base: &RgbImage, heat: &[f32], opacity: f32) -> RgbImage {
    let side = (heat.len() as f64).sqrt() as u32;
    let map: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(side, side, heat.to_vec()).expect("a square heat map");
    let (w, h) = base.dimensions();
    let stretched = image::imageops::resize(&map, w, h, FilterType::Triangle);
    let a = opacity.clamp(0.0, 1.0);
    RgbImage::from_fn(w, h, |x, y| {
        let colour = heat_color(stretched.get_pixel(x, y)[0]);
        let p = base.get_pixel(x, y);
        Rgb([0, 1, 2].map(|c| ((1.0 - a) * p[c] as f32 + a * colour[c] as f32).round() as u8))
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

    #[test]
    fn colours_run_from_blue_to_red_and_overlay_blends() {
        assert_eq!(heat_color(0.0), [0, 0, 128]);
        assert_eq!(heat_color(0.5), [128, 255, 128]);
        assert_eq!(heat_color(1.0), [128, 0, 0]);
        assert_eq!(heat_color(7.0), heat_color(1.0), "values are clamped");
        let base = RgbImage::from_pixel(8, 8, Rgb([200, 200, 200]));
        // Hot left column, cold elsewhere, in a 2 × 2 map.
        let heat = [1.0, 0.0, 1.0, 0.0];
        assert_eq!(overlay(&base, &heat, 0.0), base);
        let full = overlay(&base, &heat, 1.0);
        assert_eq!(full.get_pixel(0, 4).0, heat_color(1.0));
        assert_eq!(full.get_pixel(7, 4).0, heat_color(0.0));
        let half = overlay(&base, &heat, 0.5);
        assert_eq!(half.get_pixel(7, 0).0, [100, 100, 164]);
    }
}
