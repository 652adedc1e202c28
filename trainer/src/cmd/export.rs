//! `trainer export`: a checkpoint in another framework's format. `pytorch` writes a PyTorch
//! `state_dict` (SafeTensors) that the twins of `export/torch_models.py` load with
//! `strict=True` (see `model::pytorch`); `onnx` writes an ONNX model that takes plain pixels
//! (see `model::Checkpoint::to_onnx`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::Device;
use clap::{Args, ValueEnum};
use model::Checkpoint;

use crate::args::CheckpointArg;
use crate::io::write_atomic;

/// Options of `trainer export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArg,
    /// What to write.
    #[arg(long, value_enum, default_value_t = ExportFormat::Pytorch)]
    pub format: ExportFormat,
    /// Output file [default: beside the checkpoint, `<name>.pytorch.safetensors` or
    /// `<name>.onnx`].
    #[arg(short, long)]
    pub out: Option<PathBuf>,
}

/// Export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// A PyTorch state dict in SafeTensors form, with the twins' names and layouts.
    Pytorch,
    /// An ONNX model (opset 17): RGB pixels in [0, 1] in, logits and probabilities out.
    Onnx,
}

/// Writes the export and returns its path.
pub fn run(args: &ExportArgs) -> Result<PathBuf> {
    let checkpoint = args.checkpoint.path();
    let bytes = std::fs::read(&checkpoint)
        .with_context(|| format!("cannot read checkpoint {}", checkpoint.display()))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out(&checkpoint, args.format));
    let cannot = || format!("cannot export {}", checkpoint.display());
    let exported = match args.format {
        ExportFormat::Pytorch => model::pytorch::state_dict(&bytes).with_context(cannot)?,
        ExportFormat::Onnx => {
            let loaded = Checkpoint::from_bytes(&bytes, &Device::flex()).with_context(cannot)?;
            loaded.to_onnx().with_context(cannot)?
        }
    };
    write_atomic(&out, &exported)?;
    Ok(out)
}

fn default_out(checkpoint: &Path, format: ExportFormat) -> PathBuf {
    let stem = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    checkpoint.with_file_name(match format {
        ExportFormat::Pytorch => format!("{stem}.pytorch.safetensors"),
        ExportFormat::Onnx => format!("{stem}.onnx"),
    })
}
