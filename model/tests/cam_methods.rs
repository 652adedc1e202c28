//! The class activation map methods on a whole network: the identities that must hold for a
//! global-average-pool + linear head (Zhou et al.'s CAM), and what each method depends on.

use burn::tensor::{Device, Distribution, Tensor};
use model::cam::{CamMethod, explain, explain_each, upsample};
use model::{Checkpoint, CheckpointInfo, ModelConfig, ModelOptions, Normalization};
use safetensors::SafeTensors;
use std::sync::Mutex;

/// Flex's random generator is one for the process and the tests run in parallel: each seeded
/// draw holds this lock, so every test sees the same weights and images on every run.
static RANDOM: Mutex<()> = Mutex::new(());

/// `f` with Flex's generator seeded with `seed`, no other test drawing in between.
fn seeded<T>(seed: u64, f: impl FnOnce(&Device) -> T) -> T {
    let _lock = RANDOM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let device = Device::flex();
    device.seed(seed);
    f(&device)
}

fn resnet8() -> model::Model {
    seeded(0, |device| {
        let model = ModelConfig::from_name("resnet8", &ModelOptions::default())
            .unwrap()
            .init(device)
            .unwrap();
        // Burn draws a parameter's values lazily, on its first use: one forward pass draws
        // them all here, under the lock, not later between another test's draws.
        model.forward(Tensor::zeros([1, 3, 32, 32], device));
        model
    })
}

fn image(seed: u64) -> Tensor<4> {
    seeded(seed, |device| {
        Tensor::random([1, 3, 32, 32], Distribution::Normal(0.0, 1.0), device)
    })
}

/// The classifier's weights `W[class][channel]` (Burn stores linear weights `[in, out]`).
fn head_weights(model: &model::Model) -> Vec<Vec<f32>> {
    let info = CheckpointInfo::cifar10(Normalization {
        mean: [0.0; 3],
        std: [1.0; 3],
    });
    let bytes = Checkpoint {
        model: model.clone(),
        info,
    }
    .to_bytes()
    .unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let fc = tensors.tensor("net.ResNet.fc.weight").unwrap();
    let [inputs, classes] = [fc.shape()[0], fc.shape()[1]];
    let values: Vec<f32> = fc
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (0..classes)
        .map(|c| (0..inputs).map(|k| values[k * classes + c]).collect())
        .collect()
}

/// `ReLU(Σₖ weights[k] Aᵏ)` at the default layer, from its activations, upsampled to 32 × 32.
fn layer_map(model: &model::Model, image: Tensor<4>, weights: &[f32]) -> Vec<f32> {
    let layer = model.cam_layer().unwrap();
    let activations = model.activations(image, &layer).unwrap();
    let [_, channels, h, w] = activations.dims();
    let a: Vec<f32> = activations.into_data().try_into_vec().unwrap();
    let mut map = vec![0f32; h * w];
    for k in 0..channels {
        for p in 0..h * w {
            map[p] += weights[k] * a[k * h * w + p];
        }
    }
    let map: Vec<f32> = map.iter().map(|v| v.max(0.0)).collect();
    upsample(&map, h, w)
}

/// Maximum absolute difference after scaling both by their maximum.
fn scaled_difference(a: &[f32], b: &[f32]) -> f32 {
    let scale = |v: &[f32]| {
        let max = v.iter().copied().fold(0.0f32, f32::max).max(1e-12);
        v.iter().map(|x| x / max).collect::<Vec<_>>()
    };
    let (a, b) = (scale(a), scale(b));
    a.iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn with_a_global_average_pool_head_the_gradient_maps_are_zhous_cam() {
    let model = resnet8();
    let weights = head_weights(&model);
    for seed in [1, 2, 3] {
        for class in [0, 3, 7] {
            let image = image(seed);
            let cams = explain_each(
                &model,
                image.clone(),
                &[
                    CamMethod::GradCam,
                    CamMethod::HiResCam,
                    CamMethod::XGradCam,
                    CamMethod::LayerCam,
                ],
                Some(class),
                None,
            )
            .unwrap();
            // Zhou et al.: the class's classifier weights on the last feature maps.
            let cam = layer_map(&model, image.clone(), &weights[class]);
            for gradient_map in &cams[..3] {
                let d = scaled_difference(&gradient_map.heat, &cam);
                assert!(d < 1e-4, "{} ≠ CAM by {d}", gradient_map.method);
            }
            // LayerCAM keeps the positive weights only.
            let positive: Vec<f32> = weights[class].iter().map(|w| w.max(0.0)).collect();
            let layer_cam = layer_map(&model, image, &positive);
            let d = scaled_difference(&cams[3].heat, &layer_cam);
            assert!(d < 1e-4, "LayerCAM ≠ positive-weight CAM by {d}");
        }
    }
}

#[test]
fn every_method_gives_a_map_and_only_eigen_cam_ignores_the_class() {
    let model = resnet8();
    let image = image(4);
    let first = explain_each(&model, image.clone(), &CamMethod::ALL, Some(1), None).unwrap();
    let second = explain_each(&model, image.clone(), &CamMethod::ALL, Some(6), None).unwrap();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.heat.len(), 32 * 32);
        assert!(
            a.heat.iter().all(|v| (0.0..=1.0).contains(v)),
            "{}",
            a.method
        );
        assert!(a.heat.contains(&1.0), "{}: an empty map", a.method);
        assert_eq!((a.class, b.class), (1, 6));
        if a.method.is_class_specific() {
            assert_ne!(a.heat, b.heat, "{} ignores the class", a.method);
        } else {
            assert_eq!(a.heat, b.heat, "{} depends on the class", a.method);
        }
    }
    // One method at a time gives the same maps as several from one pass.
    for (method, cam) in CamMethod::ALL.into_iter().zip(&first) {
        let alone = explain(&model, image.clone(), method, Some(1), None).unwrap();
        assert_eq!(&alone, cam);
    }
}
