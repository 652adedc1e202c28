//! `trainer import --pytorch FILE.pth`: checkpoints that PyTorch saved (`export/pth_fixture.py`,
//! random weights and batch-norm statistics) import and give PyTorch's logits: a plain
//! `torch.save(state_dict)` of the tiny-cnn twin, and a resnet8 with torchvision's layer names
//! behind DataParallel's `module.`, nested in a training checkpoint, in the legacy format.

mod common;
mod pytorch_logits;

use std::path::{Path, PathBuf};

use common::{sample, temp};
use model::IMAGE_VALUES;
use pytorch_logits::assert_pytorchs_logits;
use serde_json::Value;
use trainer::cmd::import::{ImportArgs, run};
use trainer::data::CifarSet;
use trainer::train::config::ModelArgs;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn import(file: &str, model: &str, out: PathBuf) -> anyhow::Result<model::Checkpoint> {
    run(&ImportArgs {
        pytorch: fixture(file),
        model: ModelArgs {
            model: model.into(),
            ..Default::default()
        },
        mean: None,
        std: None,
        classes: None,
        out,
    })
}

#[test]
fn pytorch_saved_checkpoints_import_with_pytorchs_logits() {
    let dir = temp("import-pth");
    let test = CifarSet::test(&sample()).unwrap();
    for (file, model) in [
        ("tiny-cnn.pth", "tiny-cnn"),
        ("resnet8-torchvision.pth", "resnet8"),
    ] {
        let out = dir.join(format!("{model}.safetensors"));
        let checkpoint = import(file, model, out.clone()).unwrap();
        assert!(out.exists());
        // The normalisation came from the JSON beside the file.
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(file).with_extension("json")).unwrap(),
        )
        .unwrap();
        let mean = &checkpoint.info.normalization.mean;
        assert_eq!(
            expected["normalization"]["mean"][0].as_f64().unwrap() as f32,
            mean[0]
        );

        let images = expected["images"].as_u64().unwrap() as usize;
        let pixels = &test.pixels[..images * IMAGE_VALUES];
        assert_pytorchs_logits(&checkpoint, pixels, &expected["logits"], file);
    }

    // A network the file is not for: refused with what is missing, nothing written.
    let wrong = dir.join("wrong.safetensors");
    let err = format!(
        "{:#}",
        import("resnet8-torchvision.pth", "resnet20", wrong.clone()).unwrap_err()
    );
    assert!(err.contains("missing: stages.0.1.bn1.bias"), "{err}");
    assert!(!wrong.exists());
    // Not a checkpoint at all.
    let err = format!(
        "{:#}",
        import("tiny-cnn.json", "tiny-cnn", dir.join("x.safetensors")).unwrap_err()
    );
    assert!(
        err.contains("neither SafeTensors nor a PyTorch checkpoint"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
