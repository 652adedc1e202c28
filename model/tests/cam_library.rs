//! Every class activation map method agrees with pytorch-grad-cam on the shipped networks: the
//! maps at the layer's resolution, for the images and classes of a fixture the library made
//! through the networks' PyTorch twins (`export/cam_fixture.py`). Eigen-CAM agrees up to the
//! sign of its singular vector, which the library leaves to the SVD and this crate chooses.

use burn::tensor::Device;
use model::cam::{CamMethod, cam_inputs};
use model::{Checkpoint, IMAGE_VALUES};
use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn fixture() -> Value {
    let path = format!("{ROOT}/model/tests/fixtures/cam_library.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Record `index` of the committed sample's test batch, its pixels only.
fn sample_pixels(index: usize) -> Vec<u8> {
    let bytes = std::fs::read(format!("{ROOT}/data/sample/test_batch.bin")).unwrap();
    let record = &bytes[index * (1 + IMAGE_VALUES)..][..1 + IMAGE_VALUES];
    record[1..].to_vec()
}

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

/// The largest difference between `ours` and `theirs`, relative to `theirs`' largest value.
fn relative_error(ours: &[f32], theirs: &[f32]) -> f32 {
    assert_eq!(ours.len(), theirs.len());
    let scale = theirs.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(theirs)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    worst / scale
}

#[test]
fn every_method_computes_the_maps_pytorch_grad_cam_computes() {
    let fixture = fixture();
    let device = Device::flex();
    let models = fixture["models"].as_object().unwrap();
    assert!(models.len() >= 2, "{}", fixture["library"]);
    for (name, entry) in models {
        let bytes = std::fs::read(format!("{ROOT}/weights/{name}.safetensors")).unwrap();
        let checkpoint = Checkpoint::from_bytes(&bytes, &device).unwrap();
        let layer = entry["layer"].as_str().unwrap();
        for explained in entry["explained"].as_array().unwrap() {
            let index = explained["image"].as_u64().unwrap() as usize;
            let class = explained["class"].as_u64().unwrap() as usize;
            let image = checkpoint
                .info
                .normalization
                .tensor(&sample_pixels(index), &device);
            let inputs =
                cam_inputs(&checkpoint.model, image.clone(), Some(class), Some(layer)).unwrap();
            let predicted = model::cam::argmax(&inputs.probabilities);
            assert_eq!(predicted, class, "{name}, image {index}: the same network");
            for method in CamMethod::ALL {
                let theirs = floats(&explained["maps"][method.name()]);
                let ours = match method {
                    CamMethod::ScoreCam => {
                        let logits = inputs
                            .score_cam_logits(&checkpoint.model, image.clone())
                            .unwrap()
                            .into_data()
                            .try_to_vec::<f32>()
                            .unwrap();
                        inputs.score_cam_map(&logits).unwrap()
                    }
                    _ => inputs.maps.map(method).unwrap(),
                };
                let what = format!("{name}, image {index}, {}", method.title());
                if method == CamMethod::EigenCam {
                    // The library's projection before its ReLU, either sign.
                    let relu = |sign: f32| -> Vec<f32> {
                        theirs.iter().map(|v| (sign * v).max(0.0)).collect()
                    };
                    let error =
                        relative_error(&ours, &relu(1.0)).min(relative_error(&ours, &relu(-1.0)));
                    assert!(error < 1e-4, "{what}: off by {error}");
                } else {
                    let error = relative_error(&ours, &theirs);
                    assert!(error < 1e-4, "{what}: off by {error}");
                }
            }
        }
    }
}
