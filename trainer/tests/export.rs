//! `trainer export --format pytorch` and `trainer import --pytorch` on the shipped weights: the files load into the PyTorch
//! twins with `strict=True` and give the same logits. The fixture was made by PyTorch from
//! these exports (`export/pytorch_fixture.py`): the state dict's names and shapes, and the
//! twin's logits on the first images of the committed sample.

mod common;
mod pytorch_logits;
mod shipped;

use std::path::Path;

use burn::tensor::{Device, Tensor};
use common::{sample, temp};
use model::{Checkpoint, IMAGE_VALUES};
use pytorch_logits::assert_pytorchs_logits;
use serde_json::Value;
use shipped::shipped_models;
use trainer::args::CheckpointArg;
use trainer::cmd::export::{ExportArgs, ExportFormat, run};
use trainer::cmd::import::{self, ImportArgs};
use trainer::data::CifarSet;
use trainer::train::config::ModelArgs;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Names and shapes of a SafeTensors file's tensors, and its metadata.
fn header(path: &Path) -> (Vec<(String, Vec<u64>)>, Value) {
    let bytes = std::fs::read(path).unwrap();
    let length = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + length]).unwrap();
    let metadata = header.remove("__metadata__").unwrap_or(Value::Null);
    let mut tensors: Vec<(String, Vec<u64>)> = header
        .into_iter()
        .map(|(name, entry)| {
            let shape = entry["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            (name, shape)
        })
        .collect();
    tensors.sort();
    (tensors, metadata)
}

#[test]
fn shipped_weights_export_to_the_pytorch_twins() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("trainer/tests/fixtures/pytorch_export.json"))
            .unwrap(),
    )
    .unwrap();
    let images = fixture["images"].as_u64().unwrap() as usize;
    let test = CifarSet::test(&sample()).unwrap();
    let pixels = &test.pixels[..images * IMAGE_VALUES];
    let dir = temp("export");
    for (name, weights) in shipped_models() {
        let expected = &fixture[&name];
        assert!(
            expected.is_object(),
            "{name} is shipped but not in the fixture: rerun export/pytorch_fixture.py"
        );
        let out = run(&ExportArgs {
            checkpoint: CheckpointArg {
                checkpoint: weights.clone(),
            },
            format: ExportFormat::Pytorch,
            out: Some(dir.join(format!("{name}.safetensors"))),
        })
        .unwrap();
        let (tensors, metadata) = header(&out);
        let names: Vec<(String, Vec<u64>)> = expected["tensors"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, s)| {
                let shape = s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap());
                (n.clone(), shape.collect())
            })
            .collect();
        assert_eq!(tensors, names, "{name}: not the twin's state dict");
        let device = Device::flex();
        let checkpoint =
            Checkpoint::from_bytes(&std::fs::read(&weights).unwrap(), &device).unwrap();
        // The twin is chosen by the network's name, which a shipped name may extend.
        assert_eq!(metadata["model"], checkpoint.model.config().name, "{name}");

        // The twin's logits (float64) against Burn's from the original checkpoint.
        assert_pytorchs_logits(&checkpoint, pixels, &expected["logits"], &name);
    }
    let err = format!(
        "{:#}",
        run(&ExportArgs {
            checkpoint: CheckpointArg {
                checkpoint: root().join("data/sample/test_batch.bin"),
            },
            format: ExportFormat::Pytorch,
            out: Some(dir.join("x.safetensors")),
        })
        .unwrap_err()
    );
    assert!(err.contains("not a SafeTensors file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exported_state_dicts_import_back_and_wrong_ones_are_refused_with_the_list() {
    let dir = temp("import");
    for name in ["tiny-cnn", "resnet20"] {
        let weights = root().join("weights").join(format!("{name}.safetensors"));
        let exported = run(&ExportArgs {
            checkpoint: CheckpointArg {
                checkpoint: weights.clone(),
            },
            format: ExportFormat::Pytorch,
            out: Some(dir.join(format!("{name}.pt.safetensors"))),
        })
        .unwrap();
        let out = dir.join(format!("{name}.safetensors"));
        let imported = import::run(&ImportArgs {
            pytorch: exported,
            model: model_args(name),
            mean: None,
            std: None,
            classes: None,
            out: out.clone(),
        })
        .unwrap();
        // The same network, weights and normalisation as the original checkpoint.
        let device = Device::flex();
        let original = Checkpoint::from_bytes(&std::fs::read(&weights).unwrap(), &device).unwrap();
        assert_eq!(imported.info.normalization, original.info.normalization);
        let test = CifarSet::test(&sample()).unwrap();
        let pixels = &test.pixels[..8 * IMAGE_VALUES];
        let logits = |c: &Checkpoint| -> Vec<f32> {
            let input = c.info.normalization.tensor(pixels, &device);
            let out: Tensor<2> = c.model.forward(input);
            out.into_data().try_into_vec().unwrap()
        };
        let reread = Checkpoint::from_bytes(&std::fs::read(&out).unwrap(), &device).unwrap();
        assert_eq!(logits(&reread), logits(&original), "{name}");
    }
    // basic-cnn's state dict is not resnet20's: every difference is named.
    let basic = run(&ExportArgs {
        checkpoint: CheckpointArg {
            checkpoint: root().join("weights/basic-cnn.safetensors"),
        },
        format: ExportFormat::Pytorch,
        out: Some(dir.join("basic.pt.safetensors")),
    })
    .unwrap();
    let err = format!(
        "{:#}",
        import::run(&ImportArgs {
            pytorch: basic,
            model: model_args("resnet20"),
            mean: None,
            std: None,
            classes: None,
            out: dir.join("wrong.safetensors"),
        })
        .unwrap_err()
    );
    assert!(
        err.contains("0 of 107 tensors mapped")
            && err.contains("missing: fc.bias [10], fc.weight [10, 64]")
            && err.contains("unexpected: hidden.0.linear.bias, hidden.0.linear.weight"),
        "{err}"
    );
    assert!(!dir.join("wrong.safetensors").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn model_args(name: &str) -> ModelArgs {
    ModelArgs {
        model: name.into(),
        ..Default::default()
    }
}
