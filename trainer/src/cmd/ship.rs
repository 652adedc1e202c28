//! `trainer ship`: copies a checkpoint into `weights/` and records it in `manifest.json` with
//! its test accuracy (measured here, on the full test set), size, gzip size and SHA-256, so
//! the web page and users can pick it; writes its model card (`weights/<name>.md`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use clap::Args;
use flate2::{Compression, write::GzEncoder};
use model::Checkpoint;
use model::checkpoint::Precision;
use model::manifest::{Manifest, ShippedModel};
use sha2::{Digest, Sha256};

use super::card::model_card;
use crate::args::{BackendArg, CheckpointArg, DataArg};
use crate::data::CifarSet;
use crate::eval::{check_classes, evaluate};
use crate::io::write_atomic;

/// The most test accuracy, in points, that `--f16` may cost.
const MAX_F16_LOSS_POINTS: f64 = 0.1;

/// Options of `trainer ship`.
#[derive(Args, Debug)]
pub struct ShipArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// Name of the shipped model (letters, digits, `-`, `_`); the file becomes `<name>.safetensors`.
    #[arg(long)]
    pub name: String,
    /// How the model was trained, for the manifest (command, epochs, machine, time).
    #[arg(long)]
    pub trained: String,
    /// Store convolution and linear weights in half precision (f16): half the download. The
    /// f16 file is evaluated too and refused if it loses more than 0.1 point of accuracy.
    #[arg(long)]
    pub f16: bool,
    /// Make it the model the web page loads first.
    #[arg(long)]
    pub default: bool,
    /// The weights folder holding manifest.json.
    #[arg(long, default_value = "weights")]
    pub weights_dir: PathBuf,
    #[command(flatten)]
    pub data: DataArg,
    #[command(flatten)]
    pub backend: BackendArg,
}

/// Evaluates, copies and records the checkpoint; returns the manifest entry.
pub fn run(args: &ShipArgs) -> Result<ShippedModel> {
    ensure!(
        !args.name.is_empty()
            && args
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "--name may hold only letters, digits, `-` and `_`, got `{}`",
        args.name
    );
    let source = args.checkpoint.path();
    let (checkpoint, device) = args.checkpoint.load(args.backend)?;
    let test = Arc::new(CifarSet::test(&args.data.locate()?)?);
    check_classes(&checkpoint.info.classes, &test)?;
    let measure =
        |model: &model::Model| evaluate(model, &test, checkpoint.info.normalization, &device, 256);
    let mut result = measure(&checkpoint.model)?;
    let (precision, bytes, f32_test_accuracy) = if args.f16 {
        let bytes = checkpoint.to_bytes_as(Precision::F16)?;
        let half = Checkpoint::from_bytes(&bytes, &device)
            .context("the f16 checkpoint does not read back")?;
        let full = result.accuracy();
        result = measure(&half.model)?;
        let loss = 100.0 * (full - result.accuracy());
        ensure!(
            loss <= MAX_F16_LOSS_POINTS,
            "in f16 the test accuracy drops by {loss:.2} points ({:.2}% → {:.2}%), more than \
             {MAX_F16_LOSS_POINTS}: ship it in f32 (without --f16)",
            100.0 * full,
            100.0 * result.accuracy()
        );
        (Precision::F16, bytes, Some(full))
    } else {
        let bytes =
            std::fs::read(&source).with_context(|| format!("cannot read {}", source.display()))?;
        (Precision::F32, bytes, None)
    };

    let manifest_path = args.weights_dir.join("manifest.json");
    let mut manifest = if manifest_path.exists() {
        read_manifest(&manifest_path)?
    } else {
        Manifest::default()
    };
    let file = format!("{}.safetensors", args.name);
    let entry = ShippedModel {
        name: args.name.clone(),
        file: file.clone(),
        config: checkpoint.model.config().clone(),
        parameters: checkpoint.model.parameter_count(),
        precision,
        test_accuracy: result.accuracy(),
        f32_test_accuracy,
        top5_accuracy: result.top_k_accuracy(5),
        test_images: result.total(),
        bytes: bytes.len() as u64,
        gzip_bytes: gzip_len(&bytes)?,
        sha256: format!("{:x}", Sha256::digest(&bytes)),
        trained: args.trained.clone(),
        explanation: None,
    };
    std::fs::create_dir_all(&args.weights_dir)?;
    write_atomic(&args.weights_dir.join(&file), &bytes)?;
    let card = model_card(&entry, &checkpoint.info, &result);
    write_atomic(
        &args.weights_dir.join(format!("{}.md", args.name)),
        card.as_bytes(),
    )?;
    manifest.upsert(entry.clone());
    if args.default || manifest.default.is_empty() {
        manifest.default = args.name.clone();
    }
    write_manifest(&manifest_path, &manifest)?;
    Ok(entry)
}

/// Reads `weights/manifest.json`.
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid manifest", path.display()))
}

/// Writes the manifest atomically, pretty-printed (its numbers read back exactly).
pub fn write_manifest(path: &Path, manifest: &Manifest) -> Result<()> {
    write_atomic(path, (manifest.to_json() + "\n").as_bytes())
}

/// Size of `bytes` after gzip at the default level.
pub fn gzip_len(bytes: &[u8]) -> Result<u64> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len() as u64)
}

/// The entry as the CLI prints it.
pub fn report(entry: &ShippedModel, weights_dir: &std::path::Path) -> String {
    let precision = match entry.f32_test_accuracy {
        Some(full) => format!(" in f16 (f32: {:.2}%)", 100.0 * full),
        None => String::new(),
    };
    format!(
        "Shipped {} ({}, {} parameters) to {}: test accuracy {:.2}%{precision} on {} images, \
         top-5 {:.2}%, {:.2} MB ({:.2} MB gzip), sha256 {}\n",
        entry.name,
        entry.config.name,
        entry.parameters,
        weights_dir.join(&entry.file).display(),
        100.0 * entry.test_accuracy,
        entry.test_images,
        100.0 * entry.top5_accuracy,
        entry.bytes as f64 / 1e6,
        entry.gzip_bytes as f64 / 1e6,
        entry.sha256
    )
}
