//! `trainer export --format onnx`: the exported file runs in ONNX Runtime (through
//! `export/onnx_run.py`) and gives the logits Burn gives, for the shipped weights and for a
//! small network of every family and block kind with every weight, batch-norm statistic
//! included, moved off its initial value.

mod common;
mod shipped;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Tensor};
use common::{sample, temp};
use model::registry::NetConfig;
use model::{Activation, Checkpoint, CheckpointInfo, IMAGE_VALUES, ModelConfig, Normalization};
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;
use serde_json::Value;
use shipped::shipped_models;
use trainer::args::CheckpointArg;
use trainer::cmd::export::{ExportArgs, ExportFormat, run};
use trainer::data::CifarSet;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The checkpoint with every tensor `t` replaced by `t · (0.5 + u) + (v − ½) / 5` for
/// pseudo-random `u, v` in `[0, 1)`: weights keep their scale, batch-norm variances stay
/// positive, and no value is the one it was initialised to.
fn scrambled(bytes: &[u8]) -> Vec<u8> {
    let (_, metadata) = SafeTensors::read_metadata(bytes).unwrap();
    let tensors = SafeTensors::deserialize(bytes).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    let t = f32::from_le_bytes(b.try_into().unwrap());
                    (t * (0.5 + uniform()) + (uniform() - 0.5) / 5.0).to_le_bytes()
                })
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views = owned.iter().map(|(name, shape, data)| {
        let view = TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
        (name.as_str(), view)
    });
    safetensors::serialize(views, metadata.metadata().clone()).unwrap()
}

/// A checkpoint file of `net` with scrambled weights, in `dir`.
fn random_checkpoint(dir: &Path, name: &str, net: &str) -> PathBuf {
    let config = ModelConfig {
        name: name.into(),
        net: serde_json::from_str::<NetConfig>(net).unwrap(),
    };
    let checkpoint = Checkpoint {
        model: config.init(&Device::flex()).unwrap(),
        info: CheckpointInfo::cifar10(Normalization {
            mean: [0.49, 0.48, 0.45],
            std: [0.25, 0.24, 0.26],
        }),
    };
    let path = dir.join(format!("{name}.safetensors"));
    std::fs::write(&path, scrambled(&checkpoint.to_bytes().unwrap())).unwrap();
    path
}

/// ONNX Runtime's answer for `model` on `pixels` (`[n, 3, 32, 32]` in `[0, 1]`).
fn onnx_runtime(model: &Path, pixels: &[f32], dir: &Path) -> Value {
    let input = dir.join("pixels.f32");
    let bytes: Vec<u8> = pixels.iter().flat_map(|p| p.to_le_bytes()).collect();
    std::fs::write(&input, bytes).unwrap();
    let python = std::env::var("ONNX_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(root().join("export/onnx_run.py"))
        .arg(model)
        .arg(&input)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e} (set ONNX_PYTHON)"));
    assert!(
        out.status.success(),
        "ONNX Runtime failed on {}: {}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs onnxruntime (PyPI) in $ONNX_PYTHON or python3: run ./check"]
fn exported_models_run_in_onnx_runtime_with_burns_logits() {
    let dir = temp("onnx");
    let test = CifarSet::test(&sample()).unwrap();
    let count = 6;
    let bytes = &test.pixels[..count * IMAGE_VALUES];
    let pixels: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();

    let mut checkpoints: Vec<PathBuf> =
        shipped_models().into_iter().map(|(_, file)| file).collect();
    let mut nets: Vec<(String, String)> = [
        (
            "mlp",
            r#"{"kind":"mlp","hidden":24,"activation":"relu","dropout":0.1}"#,
        ),
        (
            "cnn-bn",
            r#"{"kind":"cnn","layers":[{"conv":6},"pool",{"dropout":0.2},{"conv":8},"pool"],
               "batch_norm":true,"activation":"relu","classifier":[16],
               "classifier_batch_norm":true,"classifier_dropout":0.3}"#,
        ),
        (
            "bottleneck",
            r#"{"kind":"resnet","widths":[4,8],"blocks":[1,2],"bottleneck":true}"#,
        ),
        (
            "wrn",
            r#"{"kind":"wide-resnet","depth":10,"widen":1,"dropout":0.3}"#,
        ),
        (
            "resnet9",
            r#"{"kind":"resnet9","width":4,"logit_scale":0.125}"#,
        ),
        (
            "airbench",
            r#"{"kind":"airbench","widths":[4,8,8],"logit_scale":0.125}"#,
        ),
    ]
    .map(|(n, j)| (n.to_string(), j.to_string()))
    .to_vec();
    // Every activation, in a convolution block and in a hidden fully connected layer.
    nets.extend(Activation::ALL.map(|a| {
        let net = format!(
            r#"{{"kind":"cnn","layers":[{{"conv":4}},"pool"],"batch_norm":false,
                "activation":"{a}","classifier":[8],"classifier_batch_norm":false,
                "classifier_dropout":0.0}}"#
        );
        (format!("cnn-{a}"), net)
    }));
    for (name, net) in &nets {
        checkpoints.push(random_checkpoint(&dir, name, net));
    }

    let device = Device::flex();
    for path in &checkpoints {
        let out = run(&ExportArgs {
            checkpoint: CheckpointArg {
                checkpoint: path.clone(),
            },
            format: ExportFormat::Onnx,
            out: Some(dir.join("model.onnx")),
        })
        .unwrap();
        let answer = onnx_runtime(&out, &pixels, &dir);

        let checkpoint = Checkpoint::from_bytes(&std::fs::read(path).unwrap(), &device).unwrap();
        let name = checkpoint.model.config().name.clone();
        let logits: Tensor<2> = checkpoint
            .model
            .forward(checkpoint.info.normalization.tensor(bytes, &device));
        let ours: Vec<f32> = logits.into_data().try_into_vec().unwrap();
        let theirs: Vec<f64> = answer["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        let scale = theirs.iter().fold(1f64, |m, v| m.max(v.abs()));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-4 * scale,
                "{name}: logit {a} in Burn, {b} in ONNX Runtime"
            );
        }
        for row in answer["probabilities"].as_array().unwrap() {
            let sum: f64 = row
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_f64().unwrap())
                .sum();
            assert!(
                (sum - 1.0).abs() < 1e-5,
                "{name}: probabilities sum to {sum}"
            );
        }

        // What a user of the file reads from it: the shapes, the classes, the normalisation.
        assert_eq!(
            answer["inputs"]["image"],
            serde_json::json!(["batch", 3, 32, 32])
        );
        assert_eq!(
            answer["outputs"]["logits"],
            serde_json::json!(["batch", 10])
        );
        let meta = &answer["metadata"];
        assert_eq!(meta["model"], name.as_str());
        let classes: Vec<String> = serde_json::from_str(meta["classes"].as_str().unwrap()).unwrap();
        assert_eq!(classes, checkpoint.info.classes, "{name}");
        let normalization: Normalization =
            serde_json::from_str(meta["normalization"].as_str().unwrap()).unwrap();
        assert_eq!(normalization, checkpoint.info.normalization, "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
