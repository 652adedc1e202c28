//! Class activation maps on the shipped, trained basic-cnn: the explanation depends on the
//! class, and an object placed in one corner of a white canvas draws the heat of every
//! gradient-based method to that corner.

use burn::tensor::Device;
use image::{DynamicImage, RgbImage};
use model::cam::{Cam, CamMethod};
use model::preprocess::{Framing, to_cifar_pixels};
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
    methods: &[CamMethod],
    class: Option<usize>,
    device: &Device,
) -> Vec<Cam> {
    let pixels = to_cifar_pixels(&DynamicImage::ImageRgb8(image.clone()), Framing::Crop);
    let input = checkpoint.info.normalization.tensor(&pixels, device);
    model::cam::explain_each(&checkpoint.model, input, methods, class, None).unwrap()
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
        let grad_cam = [CamMethod::GradCam];
        let predicted = explain(&checkpoint, image, &grad_cam, None, &device).remove(0);
        let other = (predicted.class + 1 + predicted.heat.len() % 9) % 10;
        let other_cam = explain(&checkpoint, image, &grad_cam, Some(other), &device).remove(0);
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
fn an_object_in_a_corner_draws_the_gradient_methods_heat_there() {
    let device = Device::flex();
    let checkpoint = trained(&device);
    // Eigen-CAM (no class: the activations' main component) and Score-CAM (channels weighed
    // by masked images' scores) follow where the activations are strongest, and a white
    // canvas activates this network more than most objects do, so on this picture they point
    // at the canvas (measured: the object's quadrant hottest in 10 and 17 of 40). How well
    // each method explains real test images is `trainer cam-eval`'s to measure.
    let methods = [
        CamMethod::GradCam,
        CamMethod::HiResCam,
        CamMethod::GradCamPlusPlus,
        CamMethod::XGradCam,
        CamMethod::LayerCam,
    ];
    let mut hottest = [0usize; 5];
    let mut share_sum = [0f32; 5];
    let mut report = String::new();
    let cases = 40;
    for (n, (label, object)) in sample_images().into_iter().take(cases).enumerate() {
        let corner = n % 4;
        // A 64 × 64 white canvas with the 32 × 32 test image in one corner: after the resize
        // to 32 × 32 the object fills exactly that 16 × 16 quadrant.
        let mut canvas = RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]));
        let (x0, y0) = ((corner % 2) as i64 * 32, (corner / 2) as i64 * 32);
        image::imageops::overlay(&mut canvas, &object, x0, y0);
        let cams = explain(&checkpoint, &canvas, &methods, Some(label), &device);
        for (m, cam) in cams.iter().enumerate() {
            let means = quadrant_means(&cam.heat);
            if means.iter().all(|&v| v <= means[corner]) {
                hottest[m] += 1;
            }
            share_sum[m] += means[corner] / means.iter().sum::<f32>().max(1e-9);
            report.push_str(&format!(
                "{n} {}: corner {corner} {means:.2?}\n",
                cam.method
            ));
        }
    }
    let mut failures = Vec::new();
    for (m, method) in methods.iter().enumerate() {
        let share = share_sum[m] / cases as f32;
        eprintln!(
            "{:>10}: object's quadrant hottest in {:>2}/{cases}, mean share of the heat {share:.2}",
            method.title(),
            hottest[m]
        );
        // By chance a quadrant would be the hottest 1 time in 4 and hold a quarter of the heat.
        if hottest[m] < 32 || share < 0.45 {
            failures.push(method.title());
        }
    }
    assert!(
        failures.is_empty(),
        "{failures:?} miss the object:\n{report}"
    );
}
