//! Every option of `trainer train`, and how a preset, a TOML config file and a resumed run's
//! stored config turn into the same options: each becomes command-line arguments placed
//! before the user's own, so flags given on the command line win.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, CommandFactory};
use serde::{Deserialize, Serialize};

use super::loss::LossKind;
use super::optim::OptimizerKind;
use super::schedule::ScheduleKind;
use crate::backend::Backend;
use crate::cli::{Cli, ModelArgs};
use crate::data::augment::Augment;

/// The presets: each reproduces one seed's headline experiment (see `trainer/presets/`).
pub const PRESETS: [(&str, &str); 10] = [
    (
        "seed001-mlp",
        include_str!("../../presets/seed001-mlp.toml"),
    ),
    (
        "seed004-tiny-cnn",
        include_str!("../../presets/seed004-tiny-cnn.toml"),
    ),
    (
        "seed002-basic-cnn",
        include_str!("../../presets/seed002-basic-cnn.toml"),
    ),
    (
        "seed002-improved-cnn",
        include_str!("../../presets/seed002-improved-cnn.toml"),
    ),
    (
        "seed002-residual-cnn",
        include_str!("../../presets/seed002-residual-cnn.toml"),
    ),
    (
        "seed002-vgg-a",
        include_str!("../../presets/seed002-vgg-a.toml"),
    ),
    (
        "seed002-vgg-a-bn",
        include_str!("../../presets/seed002-vgg-a-bn.toml"),
    ),
    (
        "seed003-resnet18",
        include_str!("../../presets/seed003-resnet18.toml"),
    ),
    (
        "seed003-wrn-28-10",
        include_str!("../../presets/seed003-wrn-28-10.toml"),
    ),
    ("fast", include_str!("../../presets/fast.toml")),
];

/// Options of `trainer train`. Every one can also be set in a TOML file (`--config`) or come
/// from a `--preset`, under the same name (`batch-size = 256` or `batch_size = 256`).
#[derive(Args, Serialize, Deserialize, Clone, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,

    /// Passes over the training split.
    #[arg(short, long, default_value_t = 10)]
    pub epochs: usize,
    /// Images per mini-batch.
    #[arg(short, long, default_value_t = 128)]
    pub batch_size: usize,
    /// Base (peak) learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Momentum (sgd, rmsprop, custom; 0 turns it off).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Nesterov momentum (sgd, custom).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub nesterov: bool,
    /// Weight decay: L2 added to the gradient (sgd, adam, rmsprop, custom), decoupled (adamw).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// A second optimizer for the classifier (the fully connected head); the rest of the
    /// network keeps --optimizer.
    #[arg(long, value_enum)]
    pub classifier_optimizer: Option<OptimizerKind>,
    /// Learning rate of the classifier's optimizer, scaled by the schedule like --lr
    /// [default: --lr].
    #[arg(long)]
    pub classifier_lr: Option<f64>,
    /// Learning-rate schedule.
    #[arg(long, value_enum, default_value_t = ScheduleKind::Constant)]
    pub schedule: ScheduleKind,
    /// Epochs between decays (step schedule).
    #[arg(long, default_value_t = 30)]
    pub step_size: usize,
    /// Decay factor (step and exponential schedules).
    #[arg(long, default_value_t = 0.1)]
    pub gamma: f64,
    /// Final learning rate of the cosine schedule.
    #[arg(long, default_value_t = 0.0)]
    pub eta_min: f64,
    /// Epochs of linear learning-rate warm-up (fractions allowed).
    #[arg(long, default_value_t = 0.0)]
    pub warmup_epochs: f64,
    /// Clip the gradients so that their global L2 norm is at most this.
    #[arg(long)]
    pub clip_norm: Option<f64>,

    /// Loss function.
    #[arg(long, value_enum, default_value_t = LossKind::CrossEntropy)]
    pub loss: LossKind,
    /// Label smoothing ε (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Focal loss α.
    #[arg(long, default_value_t = 1.0)]
    pub focal_alpha: f64,
    /// Focal loss γ.
    #[arg(long, default_value_t = 2.0)]
    pub focal_gamma: f64,
    /// L1 penalty on conv/linear weights.
    #[arg(long, default_value_t = 0.0)]
    pub l1: f64,
    /// L2 penalty on conv/linear weights, added to the loss.
    #[arg(long, default_value_t = 0.0)]
    pub l2: f64,

    #[command(flatten)]
    #[serde(flatten)]
    pub augment: Augment,

    /// Stop when validation accuracy has not improved by --min-delta for this many epochs.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Smallest validation-accuracy gain (0–1) that counts as an improvement.
    #[arg(long, default_value_t = 0.0)]
    pub min_delta: f64,
    /// Stop after epoch --cut-after when validation accuracy (0–1) is below this: drops
    /// hopeless runs early (hyperparameter searches).
    #[arg(long)]
    pub cut_below: Option<f64>,
    /// The epoch --cut-below looks at.
    #[arg(long, default_value_t = 1)]
    pub cut_after: usize,

    /// Fraction of the training images held out for validation (0 disables validation;
    /// the best checkpoint is then chosen by training accuracy).
    #[arg(long, default_value_t = 0.1)]
    pub val_ratio: f64,
    /// Seed of the weight initialisation, the split, the shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Use only the first N training images (quick experiments).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Compute backend: auto picks wgpu when a hardware GPU adapter exists, Flex otherwise.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Folder of the CIFAR-10 binary batches [default: $CIFAR10_DIR, then
    /// data/cifar-10-batches-bin, downloaded there when missing].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where run folders are created.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Name of the run folder [default: <model>-<n>, the first free n].
    #[arg(long)]
    pub name: Option<String>,

    /// Start from a preset: seed001-mlp, seed004-tiny-cnn, seed002-basic-cnn,
    /// seed002-improved-cnn, seed002-residual-cnn, seed002-vgg-a, seed002-vgg-a-bn,
    /// seed003-resnet18, seed003-wrn-28-10, fast. A config file and flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub preset: Option<String>,
    /// Read options from a TOML file (keys are the option names); flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its last completed epoch (after Ctrl-C or a
    /// crash), with its stored options; flags such as --epochs override them.
    #[arg(long)]
    #[serde(skip)]
    pub resume: Option<PathBuf>,
}

/// The long names of `train`'s options.
fn option_names() -> Vec<String> {
    let command = Cli::command();
    let train = command.find_subcommand("train").expect("train exists");
    train
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect()
}

/// Turns a TOML document into `--key value` arguments; `origin` names it in errors.
pub fn toml_to_args(text: &str, origin: &str) -> Result<Vec<String>> {
    let table: toml::Table =
        toml::from_str(text).with_context(|| format!("{origin} is not valid TOML"))?;
    let known = option_names();
    let mut args = Vec::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        if !known.contains(&name) || ["config", "preset", "resume", "help"].contains(&name.as_str())
        {
            bail!(
                "unknown option `{key}` in {origin}; see `trainer train --help` for the option names"
            );
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!(
                "option `{key}` in {origin} must be a string, number or boolean, not {}",
                other.type_str()
            ),
        };
        args.push(format!("--{name}"));
        args.push(value);
    }
    Ok(args)
}

/// The value of `--name value` or `--name=value` in `args`, if present.
fn find_value(args: &[String], name: &str) -> Option<String> {
    let flag = format!("--{name}");
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == flag {
            args.get(i + 1).cloned()
        } else {
            a.strip_prefix(&format!("{flag}=")).map(str::to_string)
        }
    })
}

/// The TOML text of a preset.
pub fn preset(name: &str) -> Result<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
            anyhow::anyhow!("unknown preset `{name}`; presets: {}", names.join(", "))
        })
}

/// The stored options of a run folder, for `--resume`.
pub fn resumed_config(run: &Path) -> Result<String> {
    let path = run.join("config.toml");
    std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot resume {}: {} is missing",
            run.display(),
            path.display()
        )
    })
}

/// Puts the arguments of `--resume`, `--preset` and `--config` in front of the user's own
/// arguments to `train`, so that later (user) arguments override them.
pub fn expand(argv: Vec<String>) -> Result<Vec<String>> {
    let Some(at) = argv.iter().position(|a| a == "train") else {
        return Ok(argv);
    };
    let user = &argv[at + 1..];
    let mut front = Vec::new();
    if let Some(run) = find_value(user, "resume") {
        front.extend(toml_to_args(
            &resumed_config(Path::new(&run))?,
            &format!("{run}/config.toml"),
        )?);
    }
    if let Some(name) = find_value(user, "preset") {
        front.extend(toml_to_args(preset(&name)?, &format!("preset {name}"))?);
    }
    if let Some(file) = find_value(user, "config") {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read config file {file}"))?;
        front.extend(toml_to_args(&text, &file)?);
    }
    let mut out = argv[..=at].to_vec();
    out.extend(front);
    out.extend_from_slice(user);
    Ok(out)
}

impl TrainArgs {
    /// The options as TOML, as stored in the run folder (`config.toml`).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }
}
