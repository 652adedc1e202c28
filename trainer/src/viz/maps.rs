//! Pictures of what the network computes on images: feature maps per stage, saliency (the
//! gradient of the class score with respect to the input pixels) and Grad-CAM.

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use image::RgbImage;
use model::cam::{CamMethod, argmax, explain, heat_color, overlay};
use model::preprocess::{channel_major, rgb_picture};
use model::{IMAGE_SIZE, Model, Normalization};

use super::tiles::{gray_tile, to_bytes};
use crate::plot::image_grid;

/// Feature maps shown per layer.
const CHANNELS: usize = 5;

fn read(tensor: Tensor<4>) -> Result<Vec<f32>> {
    Ok(tensor.into_data().convert::<f32>().try_to_vec::<f32>()?)
}

/// A captioned grid of owned tiles.
fn grid(tiles: &[(Vec<u8>, String)], title: &str) -> Result<Vec<u8>> {
    let refs: Vec<(&[u8], String)> = tiles
        .iter()
        .map(|(t, c)| (t.as_slice(), c.clone()))
        .collect();
    image_grid(&refs, title)
}

/// The first feature maps after every stage (conv blocks, pools, residual stages) for one
/// image (channel-major CIFAR pixels): a row per layer, the image first.
pub fn feature_maps(
    model: &Model,
    normalization: Normalization,
    pixels: &[u8],
    device: &Device,
) -> Result<Vec<u8>> {
    let model = model.valid();
    let layers = model.layer_names();
    ensure!(!layers.is_empty(), "the model has no convolutional layer");
    let input = normalization.tensor(pixels, device);
    let mut tiles: Vec<(Vec<u8>, String)> = Vec::new();
    for (layer, maps) in model.all_activations(input) {
        let [_, channels, h, w] = maps.dims();
        let values = read(maps)?;
        tiles.push((pixels.to_vec(), format!("{layer}: {channels}×{h}×{w}")));
        for c in 0..channels.min(CHANNELS) {
            let map = &values[c * h * w..(c + 1) * h * w];
            let constant = map.iter().all(|&v| v == map[0]);
            let caption = if constant {
                format!("{layer} #{c} (all {:.2})", map[0])
            } else {
                format!("{layer} #{c}")
            };
            tiles.push((gray_tile(&to_bytes(map), h.min(w)), caption));
        }
    }
    grid(
        &tiles,
        "Feature maps after each stage (first channels; white = high)",
    )
}

/// The gradient of the predicted class score with respect to the normalised input of one
/// image (channel-major CIFAR pixels): `(predicted class, 3 × 32 × 32 gradient)`.
pub fn input_gradient(
    model: &Model,
    normalization: Normalization,
    pixels: &[u8],
    device: &Device,
) -> Result<(usize, Vec<f32>)> {
    let model = model.valid();
    let input = normalization
        .tensor(pixels, device)
        .autodiff()
        .require_grad();
    let logits = model.forward(input.clone());
    let scores = read(
        logits
            .clone()
            .detach()
            .reshape([1, 1, 1, model.config().classes()]),
    )?;
    let class = argmax(&scores);
    let grads = logits.slice([0..1, class..class + 1]).sum().backward();
    let gradient = input
        .grad(&grads)
        .ok_or_else(|| anyhow::anyhow!("no gradient reached the input"))?;
    Ok((class, read(gradient)?))
}

/// For each image (pixels and label, named by `classes`): the image and its saliency map (largest absolute input gradient of the
/// predicted class score over the three colour channels, seed 000's figure), as tile pairs.
pub fn saliency_grid(
    model: &Model,
    normalization: Normalization,
    classes: &[String],
    images: &[(&[u8], usize)],
    device: &Device,
) -> Result<Vec<u8>> {
    let mut tiles: Vec<(Vec<u8>, String)> = Vec::new();
    for &(pixels, label) in images {
        let (class, gradient) = input_gradient(model, normalization, pixels, device)?;
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        let saliency: Vec<f32> = (0..plane)
            .map(|i| {
                (0..3)
                    .map(|c| gradient[c * plane + i].abs())
                    .fold(0.0, f32::max)
            })
            .collect();
        let heat: Vec<f32> = to_bytes(&saliency)
            .iter()
            .map(|&v| v as f32 / 255.0)
            .collect();
        tiles.push((pixels.to_vec(), format!("{} (true)", classes[label])));
        tiles.push((
            channel_major(&heat_image(&heat)),
            format!("→ {}", classes[class]),
        ));
    }
    grid(
        &tiles,
        "Saliency: |∂ score / ∂ pixel| of the predicted class (red = most sensitive)",
    )
}

fn heat_image(heat: &[f32]) -> RgbImage {
    let side = IMAGE_SIZE as u32;
    RgbImage::from_fn(side, side, |x, y| {
        image::Rgb(heat_color(heat[(y * side + x) as usize]))
    })
}

/// For each image (pixels and label, named by `classes`): the image and its Grad-CAM (predicted class, the model's default layer)
/// blended over it, as pairs of tiles.
pub fn gradcam_grid(
    model: &Model,
    normalization: Normalization,
    classes: &[String],
    images: &[(&[u8], usize)],
    device: &Device,
) -> Result<Vec<u8>> {
    let mut tiles: Vec<(Vec<u8>, String)> = Vec::new();
    for &(pixels, label) in images {
        let input = normalization.tensor(pixels, device);
        let cam = explain(model, input, CamMethod::GradCam, None, None)?;
        let blended = overlay(&rgb_picture(pixels), &cam.heat, 0.5);
        tiles.push((pixels.to_vec(), format!("{} (true)", classes[label])));
        tiles.push((
            channel_major(&blended),
            format!(
                "→ {} {:.0}%",
                classes[cam.class],
                100.0 * cam.probabilities[cam.class]
            ),
        ));
    }
    grid(
        &tiles,
        "Grad-CAM of the predicted class at the last convolutional stage (red = strongest evidence)",
    )
}
