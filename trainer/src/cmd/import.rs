//! `trainer import --pytorch FILE --model NAME`: a checkpoint from a PyTorch `state_dict` of
//! the twin of one of this project's networks (SafeTensors; the names and layouts of
//! `export/torch_models.py`, as `trainer export --format pytorch` writes them).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use model::{Checkpoint, CheckpointInfo, ModelConfig, Normalization};

use crate::train::config::ModelArgs;
use crate::train::run_dir::write_atomic;

/// Options of `trainer import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The PyTorch state dict, as SafeTensors.
    #[arg(long)]
    pub pytorch: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Per-channel mean of the inputs on the 0–1 scale, `r,g,b` [default: the file's metadata,
    /// else `<file>.json`'s "normalization"].
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviation, `r,g,b` (with --mean).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    pub std: Option<Vec<f32>>,
    /// The checkpoint to write.
    #[arg(short, long)]
    pub out: PathBuf,
}

/// Writes the checkpoint and returns it.
pub fn run(args: &ImportArgs) -> Result<Checkpoint> {
    let state = std::fs::read(&args.pytorch)
        .with_context(|| format!("cannot read {}", args.pytorch.display()))?;
    let config = ModelConfig::from_name(&args.model.model, &args.model.options())?;
    let normalization = normalization(args, &state)?;
    let cpu = Device::flex();
    let template = Checkpoint {
        model: config.init(&cpu)?,
        info: CheckpointInfo::cifar10(normalization),
    }
    .to_bytes()?;
    let bytes = model::pytorch::from_state_dict(&state, &template).with_context(|| {
        format!(
            "{} is not a state dict of `{}`",
            args.pytorch.display(),
            config.name
        )
    })?;
    let checkpoint = Checkpoint::from_bytes(&bytes, &cpu)?;
    write_atomic(&args.out, &bytes)?;
    Ok(checkpoint)
}

/// The normalisation from the flags, the file's metadata, or a JSON file beside it.
fn normalization(args: &ImportArgs, state: &[u8]) -> Result<Normalization> {
    if let (Some(mean), Some(std)) = (&args.mean, &args.std) {
        return Ok(Normalization {
            mean: [mean[0], mean[1], mean[2]],
            std: [std[0], std[1], std[2]],
        });
    }
    if args.mean.is_some() || args.std.is_some() {
        bail!("--mean and --std go together");
    }
    if let Some(recorded) = model::pytorch::recorded_normalization(state) {
        return Ok(recorded);
    }
    let beside = args.pytorch.with_extension("json");
    if let Ok(text) = std::fs::read_to_string(&beside) {
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}", beside.display()))?;
        return serde_json::from_value(value["normalization"].clone()).with_context(|| {
            format!(
                "{} has no `normalization` {{\"mean\": [r, g, b], \"std\": [r, g, b]}}",
                beside.display()
            )
        });
    }
    bail!(
        "the input normalisation is unknown: give --mean r,g,b --std r,g,b (0–1 scale), or put \
         {{\"normalization\": {{\"mean\": [...], \"std\": [...]}}}} in {}",
        beside.display()
    )
}
