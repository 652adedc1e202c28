//! Grad-CAM on the shipped, trained basic-cnn: the explanation depends on the class, and an
//! object placed in one corner of a blank canvas draws the heat to that corner.

use burn::tensor::Device;
use image::{DynamicImage, RgbImage};
use model::cam::{GradCam, grad_cam};
use model::preprocess::to_cifar_pixels;
use model::{Checkpoint, IMAGE_SIZE, IMAGE_VALUES};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn trained(device: &Device) -> Checkpoint {
    let bytes = std::fs::read(format!("{ROOT}/weights/basic-cnn.safetensors")).unwrap();
    Checkpoint::from_bytes(&bytes, device).unwrap()
}

/// The committed sample's test records (CIFAR-10 test images 500–699): label and RGB image.
fn sample_images() -> Vec<(usize, RgbImage)> {
    let bytes = std::fs::read(format!("{ROOT}/data/sample/test_batch.bin")).unwrap();
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    bytes
        .chunks_exact(1 + IMAGE_VALUES)
        .map(|r| {
            let px = &r[1..];
            let side = IMAGE_SIZE as u32;
            let image = RgbImage::from_fn(side, side, |x, y| {
                let i = (y * side + x) as usize;
                image::Rgb([px[i], px[plane + i], px[2 * plane + i]])
            });
            (r[0] as usize, image)
        })
        .collect()
}

fn explain(
    checkpoint: &Checkpoint,
    image: &RgbImage,
    class: Option<usize>,
    device: &Device,
) -> GradCam {
    let pixels = to_cifar_pixels(&DynamicImage::ImageRgb8(image.clone()));
    let input = checkpoint.info.normalization.tensor(&pixels, device);
    grad_cam(&checkpoint.model, input, class, None).unwrap()
}

/// Mean heat of each 16 × 16 quadrant: top-left, top-right, bottom-left, bottom-right.
fn quadrant_means(heat: &[f32]) -> [f32; 4] {
    let half = IMAGE_SIZE / 2;
    let mut sums = [0f32; 4];
    for (i, &v) in heat.iter().enumerate() {
        let (r, c) = (i / IMAGE_SIZE, i % IMAGE_SIZE);
        sums[(r / half) * 2 + c / half] += v;
    }
    sums.map(|s| s / (half * half) as f32)
}

#[test]
fn the_explanation_depends_on_the_class() {
    let device = Device::flex();
    let checkpoint = trained(&device);
    let mut differing = 0;
    let images = sample_images();
    for (_, image) in images.iter().take(20) {
        let predicted = explain(&checkpoint, image, None, &device);
        let other = (predicted.class + 1 + predicted.heat.len() % 9) % 10;
        let other_cam = explain(&checkpoint, image, Some(other), &device);
        assert_eq!(other_cam.class, other);
        assert_eq!(other_cam.probabilities, predicted.probabilities);
        let diff: f32 = predicted
            .heat
            .iter()
            .zip(&other_cam.heat)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / predicted.heat.len() as f32;
        if diff > 0.05 {
            differing += 1;
        }
    }
    assert!(
        differing >= 18,
        "only {differing}/20 maps differ from another class's"
    );
}

#[test]
fn an_object_in_a_corner_draws_the_heat_there() {
    let device = Device::flex();
    let checkpoint = trained(&device);
    let mut hottest = 0;
    let mut share_sum = 0.0;
    let mut report = String::new();
    let cases = 40;
    for (n, (label, object)) in sample_images().into_iter().take(cases).enumerate() {
        let corner = n % 4;
        // A 64 × 64 white canvas with the 32 × 32 test image in one corner: after the resize
        // to 32 × 32 the object fills exactly that 16 × 16 quadrant.
        let mut canvas = RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]));
        let (x0, y0) = ((corner % 2) as i64 * 32, (corner / 2) as i64 * 32);
        image::imageops::overlay(&mut canvas, &object, x0, y0);
        let cam = explain(&checkpoint, &canvas, Some(label), &device);
        let means = quadrant_means(&cam.heat);
        if means.iter().all(|&m| m <= means[corner]) {
            hottest += 1;
        }
        share_sum += means[corner] / means.iter().sum::<f32>().max(1e-9);
        report.push_str(&format!("{n}: corner {corner} {means:.2?}\n"));
    }
    let share = share_sum / cases as f32;
    eprintln!("object's quadrant hottest in {hottest}/{cases}, mean share of the heat {share:.2}");
    // By chance a quadrant would be the hottest 1 time in 4 and hold a quarter of the heat.
    assert!(
        hottest >= 34 && share >= 0.5,
        "object's quadrant hottest {hottest}/{cases}, mean share of heat {share:.2}:\n{report}"
    );
}
