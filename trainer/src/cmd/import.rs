//! `trainer import --pytorch FILE --model NAME`: a checkpoint from a PyTorch `state_dict` of
//! the twin of one of this project's networks: SafeTensors (as `trainer export --format
//! pytorch` writes them) or a `torch.save` file (`.pt`/`.pth`, any of PyTorch's formats, the
//! state dict at the top or nested in a training checkpoint), with the names and layouts of
//! `export/torch_models.py` or the other names `model::pytorch::from_state_dict` maps
//! (torchvision-style ResNets, the seed projects' CNNs).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use half::{bf16, f16};
use model::{Checkpoint, CheckpointInfo, ModelConfig, Normalization, cifar10_class_names};
use pytorch_reader::{DType, PytorchReader};
use safetensors::tensor::{Dtype, TensorView};

use crate::io::write_atomic;
use crate::train::config::ModelArgs;

/// Options of `trainer import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The PyTorch state dict: SafeTensors, or a `torch.save` file (.pt/.pth).
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
    /// Class names in label order, comma-separated [default: the file's metadata, else
    /// `<file>.json`'s "classes", else CIFAR-10's ten]; the network gets that many outputs.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// The checkpoint to write.
    #[arg(short, long)]
    pub out: PathBuf,
}

/// Writes the checkpoint and returns it.
pub fn run(args: &ImportArgs) -> Result<Checkpoint> {
    let state = read_state_dict(&args.pytorch)?;
    let classes = class_names(args, &state)?;
    let config = ModelConfig::from_name(&args.model.model, &args.model.options)?
        .with_classes(classes.len())?;
    let normalization = normalization(args, &state)?;
    let cpu = Device::flex();
    let template = Checkpoint {
        model: config.init(&cpu)?,
        info: CheckpointInfo::new(normalization, classes),
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

/// `<file>.json` beside the state dict, and its contents when it exists.
fn beside_json(args: &ImportArgs) -> Result<(PathBuf, Option<serde_json::Value>)> {
    let beside = args.pytorch.with_extension("json");
    let value = match std::fs::read_to_string(&beside) {
        Ok(text) => {
            Some(serde_json::from_str(&text).with_context(|| format!("{}", beside.display()))?)
        }
        Err(_) => None,
    };
    Ok((beside, value))
}

/// The class names from `--classes`, the file's metadata, a JSON file beside it, or
/// CIFAR-10's.
fn class_names(args: &ImportArgs, state: &[u8]) -> Result<Vec<String>> {
    if let Some(classes) = &args.classes {
        return Ok(classes.clone());
    }
    if let Some(recorded) = model::pytorch::recorded_classes(state) {
        return Ok(recorded);
    }
    let (beside, value) = beside_json(args)?;
    if let Some(classes) = value.as_ref().and_then(|v| v.get("classes")) {
        return serde_json::from_value(classes.clone())
            .with_context(|| format!("{}: `classes` must be a list of names", beside.display()));
    }
    Ok(cifar10_class_names())
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
    let (beside, value) = beside_json(args)?;
    if let Some(value) = value {
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

/// The state dict in `path` as SafeTensors bytes: the file itself when it is SafeTensors,
/// else a `torch.save` file read with `pytorch-reader` (floating-point tensors as float32).
fn read_state_dict(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // SafeTensors: an 8-byte header length, then the JSON header.
    if bytes.get(8) == Some(&b'{') {
        return Ok(bytes);
    }
    let reader = PytorchReader::new(path).with_context(|| {
        format!(
            "{} is neither SafeTensors nor a PyTorch checkpoint",
            path.display()
        )
    })?;
    let mut tensors = Vec::new();
    for (name, tensor) in reader.tensors() {
        let data = tensor
            .read()
            .with_context(|| format!("cannot read tensor `{name}` of {}", path.display()))?;
        let (dtype, data) = match tensor.dtype() {
            DType::F32 => (Dtype::F32, data),
            DType::F64 => (Dtype::F32, floats(&data, |b| f64::from_le_bytes(b) as f32)),
            DType::F16 => (
                Dtype::F32,
                floats(&data, |b| f16::from_le_bytes(b).to_f32()),
            ),
            DType::BF16 => (
                Dtype::F32,
                floats(&data, |b| bf16::from_le_bytes(b).to_f32()),
            ),
            DType::I64 => (Dtype::I64, data),
            other => bail!(
                "tensor `{name}` of {} holds {other:?} values, which no weight of these \
                 networks has",
                path.display()
            ),
        };
        tensors.push((name.clone(), dtype, tensor.shape().to_vec(), data));
    }
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(safetensors::serialize(views, None)?)
}

/// Little-endian values of `N` bytes each, converted to float32 bytes.
fn floats<const N: usize>(data: &[u8], convert: impl Fn([u8; N]) -> f32) -> Vec<u8> {
    data.chunks_exact(N)
        .flat_map(|chunk| convert(chunk.try_into().expect("chunks of N bytes")).to_le_bytes())
        .collect()
}
