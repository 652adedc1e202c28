//! `trainer train`'s options as one typed configuration, [`TrainConfig`], and the one place
//! where its sources are merged: the defaults, then a `--preset`, then a `--config` file, then
//! a resumed run's stored `config.toml`, then the flags given on the command line.
//!
//! The configuration has sections (`[model]`, `[optim]`, `[schedule]`, `[loss]`, `[augment]`,
//! `[stop]`, `[data]`, `[run]`) whose keys are the long flag names. A TOML file may write a
//! key in its section or at the top level (`lr = 0.1` is `[optim] lr = 0.1`); an unknown key
//! is an error naming the file. A run folder's `config.toml` is the merged configuration,
//! written in sections, so it resumes and reproduces the run as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::builder::PossibleValuesParser;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, FromArgMatches};
use model::ModelOptions;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use super::loss::{LossKind, Objective};
use super::optim::OptimizerKind;
use super::schedule::{Schedule, ScheduleKind};
use crate::args::{BackendArg, DataArg};
use crate::data::augment::Augment;
use crate::eval::Tta;

/// The presets: each reproduces one seed's headline experiment (see `trainer/presets/`).
pub const PRESETS: [(&str, &str); 12] = [
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
    ("airbench94", include_str!("../../presets/airbench94.toml")),
    ("airbench93", include_str!("../../presets/airbench93.toml")),
];

/// Everything a training run is made from. Its defaults are the flags' defaults.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub optim: OptimConfig,
    #[command(flatten)]
    pub schedule: ScheduleConfig,
    #[command(flatten)]
    pub loss: LossConfig,
    #[command(flatten)]
    pub augment: Augment,
    #[command(flatten)]
    pub stop: StopConfig,
    #[command(flatten)]
    pub data: DataConfig,
    #[command(flatten)]
    pub run: RunConfig,
}

/// `[model]`: which network, and the options the seeds made selectable (declared once, in
/// [`ModelOptions`]).
#[derive(Args, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "kebab-case")]
#[command(next_help_heading = "Model")]
pub struct ModelArgs {
    /// Model name (see `trainer models`); also resnet<6n+2> and wrn-<depth>-<width>.
    #[arg(short, long, default_value = "basic-cnn")]
    pub model: String,
    /// The model's options. Unknown keys are refused by the configuration's merge, which
    /// checks every key against the flags (serde cannot deny them beside a flattened struct).
    #[command(flatten)]
    #[serde(flatten)]
    pub options: ModelOptions,
}

/// `[optim]`: epochs, batch and the optimizer.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(next_help_heading = "Optimisation")]
pub struct OptimConfig {
    /// Passes over the training split; a fraction stops the last pass early (airbench94
    /// trains 9.9: ⌈steps per epoch × 9.9⌉ steps in all).
    #[arg(short, long, default_value_t = 10.0)]
    pub epochs: f64,
    /// Images per mini-batch.
    #[arg(short, long, default_value_t = 128)]
    pub batch_size: usize,
    /// Drop the last, incomplete batch of every epoch (airbench's loader); otherwise it
    /// trains when it has at least 2 images.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub drop_last: bool,
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
    /// Clip the gradients so that their global L2 norm is at most this.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Learning-rate factor for the batch-norm shifts (β); their weight decay is divided by
    /// as much, so its pull per step is unchanged (airbench's bias scaler, 64).
    #[arg(long, default_value_t = 1.0)]
    pub norm_bias_lr_scale: f64,
    /// Lookahead: every this many steps, an average of the weights and batch-norm statistics
    /// moves towards the network and is copied back into it, and the network is set to it
    /// after the last step (airbench's, every 5 steps). Off when unset.
    #[arg(long)]
    pub lookahead_every: Option<usize>,
    /// The first epoch (1-based) of --lookahead-every: its first update starts the average.
    #[arg(long, default_value_t = 1)]
    pub lookahead_from: usize,
    /// With --lookahead-every, also set the network to the average after every epoch's last
    /// step (the airbench library's training loop, which airbench93 uses).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub lookahead_epoch_end: bool,
    /// Epochs the whitening layer's bias trains before it freezes (airbench: 3); it trains
    /// throughout when unset. Only for networks with a whitening layer (airbench93/94).
    #[arg(long)]
    pub whiten_bias_epochs: Option<usize>,
}

/// `[schedule]`: the learning rate over the epochs.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(next_help_heading = "Learning-rate schedule")]
pub struct ScheduleConfig {
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
}

/// `[loss]`: the objective.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(next_help_heading = "Loss")]
pub struct LossConfig {
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
    /// Knowledge distillation from this trained network (a checkpoint file or a run folder):
    /// the student also learns the teacher's softened predictions (Hinton et al. 2015).
    /// Given more than once, the teachers form an ensemble whose logits are averaged.
    #[arg(long)]
    #[serde(default, deserialize_with = "one_or_many")]
    pub teacher: Vec<PathBuf>,
    /// The teacher answers with its logits averaged over these views of each image (as
    /// `--tta`): a better teacher, for one forward pass of it per view.
    #[arg(long, value_enum, default_value_t = Tta::None)]
    pub teacher_tta: Tta,
    /// Weight α of the distillation term; the data loss (with its L1/L2 penalties) gets 1 − α.
    #[arg(long, default_value_t = 0.9)]
    pub distill_weight: f64,
    /// Temperature T softening both networks' predictions (the term is scaled by T²).
    #[arg(long, default_value_t = 4.0)]
    pub distill_temperature: f64,
}

/// A list of paths written as a list or, as before ensembles, as one path.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(path) => vec![path],
        OneOrMany::Many(paths) => paths,
    })
}

/// `[stop]`: ending a run before its last epoch.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(next_help_heading = "Stopping early")]
pub struct StopConfig {
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
}

/// `[data]`: where the images come from and how they are split.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(next_help_heading = "Data")]
pub struct DataConfig {
    #[command(flatten)]
    #[serde(default)]
    pub data_dir: DataArg,
    /// Fraction of the training images held out for validation; the run's test evaluation
    /// uses the checkpoint with the best validation accuracy. 0 disables validation: the
    /// final weights are tested. An image folder with a `val/` folder is validated on that
    /// instead.
    #[arg(long, default_value_t = 0.1)]
    pub val_ratio: f64,
    /// Use only the first N training images (quick experiments).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// `[run]`: seed, backend and the run folder.
#[derive(Args, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[command(next_help_heading = "Run")]
pub struct RunConfig {
    /// Seed of the weight initialisation, the split, the shuffling, augmentation and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Where run folders are created.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Name of the run folder [default: <model>-<n>, the first free n].
    #[arg(long)]
    pub name: Option<String>,
    /// Test-time augmentation of the final test evaluation (validation is without).
    #[arg(long, value_enum, default_value_t = Tta::None)]
    pub tta: Tta,
    /// Also evaluate the test set after every epoch (without test-time augmentation), for
    /// learning curves and time to accuracy; it never chooses the weights.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub test_each_epoch: bool,
}

// The parts of a run, built from its configuration.

impl From<&TrainConfig> for Objective {
    fn from(config: &super::TrainConfig) -> Self {
        let loss = &config.loss;
        Self {
            kind: loss.loss,
            label_smoothing: loss.label_smoothing,
            focal_alpha: loss.focal_alpha,
            focal_gamma: loss.focal_gamma,
            l1: loss.l1,
            l2: loss.l2,
        }
    }
}

impl From<&TrainConfig> for Schedule {
    fn from(config: &super::TrainConfig) -> Self {
        let schedule = &config.schedule;
        Self {
            kind: schedule.schedule,
            lr: config.optim.lr,
            epochs: config.optim.epochs,
            step_size: schedule.step_size,
            gamma: schedule.gamma,
            eta_min: schedule.eta_min,
            warmup_epochs: schedule.warmup_epochs,
        }
    }
}

/// The sections, by name, with the ids of their options (clap's ids: the field names).
fn sections() -> Vec<(&'static str, Vec<String>)> {
    fn ids<T: Args>(name: &'static str) -> (&'static str, Vec<String>) {
        let command = T::augment_args(Command::new(name));
        let ids = command
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        (name, ids)
    }
    vec![
        ids::<ModelArgs>("model"),
        ids::<OptimConfig>("optim"),
        ids::<ScheduleConfig>("schedule"),
        ids::<LossConfig>("loss"),
        ids::<Augment>("augment"),
        ids::<StopConfig>("stop"),
        ids::<DataConfig>("data"),
        ids::<RunConfig>("run"),
    ]
}

/// A key as written in the configuration: the long flag name.
fn key_of(id: &str) -> String {
    id.replace('_', "-")
}

impl Default for TrainConfig {
    /// The flags' defaults.
    fn default() -> Self {
        let matches = Self::augment_args(Command::new("train"))
            .try_get_matches_from(["train"])
            .expect("the defaults parse");
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }
}

impl TrainConfig {
    /// The configuration as TOML, in sections (a run folder's `config.toml`).
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(self)?)
    }

    /// The configuration as a TOML table.
    fn table(&self) -> Table {
        Table::try_from(self).expect("a configuration is a TOML table")
    }

    /// The defaults, overridden by each layer in turn; `layers` are `(origin, TOML table)`,
    /// where `origin` names the source in errors.
    pub fn layered(layers: &[(String, Table)]) -> Result<Self> {
        let mut merged = Self::default().table();
        for (origin, layer) in layers {
            let layer = sectioned(layer, origin)?;
            let mut candidate = merged.clone();
            merge(&mut candidate, layer);
            // Checked one layer at a time so that a wrong value names its source.
            Self::deserialize(candidate.clone())
                .map_err(|e| anyhow!("{origin}: {}", e.message()))?;
            merged = candidate;
        }
        Ok(Self::deserialize(merged)?)
    }

    /// The options given on the command line in `matches` (which parsed `self`), as a table
    /// in sections.
    fn explicit(&self, matches: &ArgMatches) -> Table {
        let all = self.table();
        let mut out = Table::new();
        for (section, ids) in sections() {
            for id in ids {
                if matches.value_source(&id) != Some(ValueSource::CommandLine) {
                    continue;
                }
                let key = key_of(&id);
                if let Some(value) = all.get(section).and_then(|s| s.get(&key)) {
                    out.entry(section)
                        .or_insert_with(|| Value::Table(Table::new()))
                        .as_table_mut()
                        .expect("a section is a table")
                        .insert(key, value.clone());
                }
            }
        }
        out
    }
}

/// `layer` with every key in its section: top-level keys that name an option move into the
/// option's section (`lr = 0.1` becomes `[optim] lr = 0.1`), `_` in keys reads as `-`.
/// Unknown sections and keys are errors that name `origin`.
fn sectioned(layer: &Table, origin: &str) -> Result<Table> {
    let sections = sections();
    let section_of = |key: &str| {
        sections
            .iter()
            .find(|(_, ids)| ids.iter().any(|id| key_of(id) == key))
            .map(|(name, _)| *name)
    };
    let mut out = Table::new();
    let mut put = |section: &str, key: String, value: Value| {
        out.entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("a section is a table")
            .insert(key, value);
    };
    for (written, value) in layer {
        let key = written.replace('_', "-");
        match (value, sections.iter().find(|(name, _)| *name == key)) {
            // `[model]`, `[optim]`, …: a section (`model`, `schedule`, `loss` are also keys,
            // but then not tables).
            (Value::Table(table), Some((name, ids))) => {
                for (inner, value) in table {
                    let key = inner.replace('_', "-");
                    if !ids.iter().any(|id| key_of(id) == key) {
                        let known: Vec<_> = ids.iter().map(|id| key_of(id)).collect();
                        bail!(
                            "unknown option `{inner}` in section [{name}] of {origin}; \
                             options there: {}",
                            known.join(", ")
                        );
                    }
                    put(name, key, value.clone());
                }
            }
            _ => match section_of(&key) {
                Some(section) => put(section, key, value.clone()),
                None => bail!(
                    "unknown option `{written}` in {origin}; see `trainer train --help` for the \
                     option names (sections: {})",
                    sections
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        }
    }
    Ok(out)
}

/// Copies every key of `layer` into `base`, section by section.
fn merge(base: &mut Table, layer: Table) {
    for (section, values) in layer {
        let Value::Table(values) = values else {
            continue;
        };
        let target = base
            .entry(section)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("a section is a table");
        target.extend(values);
    }
}

/// The presets' names, in [`PRESETS`]' order.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(name, _)| *name).collect()
}

/// The TOML text of a preset.
pub fn preset(name: &str) -> Result<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
            anyhow!("unknown preset `{name}`; presets: {}", names.join(", "))
        })
}

/// A preset as a configuration layer: `(origin, table)`.
pub fn preset_layer(name: &str) -> Result<(String, Table)> {
    let origin = format!("preset {name}");
    let table = parse_table(preset(name)?, &origin)?;
    Ok((origin, table))
}

/// Parses TOML text; `origin` names it in errors.
fn parse_table(text: &str, origin: &str) -> Result<Table> {
    toml::from_str(text).with_context(|| format!("{origin} is not valid TOML"))
}

/// Options of `trainer train`: the configuration's flags and where else it comes from.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub options: TrainConfig,
    /// Start from a preset (each reproduces a seed's or airbench's recipe; `trainer/presets/`);
    /// a config file and flags override it.
    #[arg(long, value_parser = PossibleValuesParser::new(preset_names()))]
    pub preset: Option<String>,
    /// Read options from a TOML file (keys are the option names, at the top level or in
    /// their sections); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in this folder from its last completed epoch (after Ctrl-C or a
    /// crash), with its stored options; flags such as --epochs override them.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Print the merged configuration (TOML) and exit without training.
    #[arg(long)]
    pub print_config: bool,
}

/// What `trainer train` runs: the merged configuration, and the run folder it continues.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainJob {
    /// The configuration.
    pub config: TrainConfig,
    /// The run folder to continue (`--resume`).
    pub resume: Option<PathBuf>,
}

impl TrainArgs {
    /// Merges preset → config file → resumed run → the flags given in `matches` (the
    /// matches of `train` that parsed `self`).
    pub fn job(&self, matches: &ArgMatches) -> Result<TrainJob> {
        let mut layers = Vec::new();
        if let Some(name) = &self.preset {
            layers.push(preset_layer(name)?);
        }
        if let Some(file) = &self.config {
            let origin = file.display().to_string();
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read config file {origin}"))?;
            layers.push((origin.clone(), parse_table(&text, &origin)?));
        }
        if let Some(run) = &self.resume {
            layers.push(resumed_layer(run)?);
        }
        layers.push(("the command line".into(), self.options.explicit(matches)));
        Ok(TrainJob {
            config: TrainConfig::layered(&layers)?,
            resume: self.resume.clone(),
        })
    }

    /// Parses the arguments of `trainer train` (without the program and subcommand names)
    /// into its job, as the command line does.
    pub fn parse_job<S: AsRef<str>>(args: &[S]) -> Result<TrainJob> {
        // As in `Cli`: a flag given twice takes its last value.
        let command = Self::augment_args(Command::new("train").args_override_self(true));
        let argv = std::iter::once("train").chain(args.iter().map(AsRef::as_ref));
        let matches = command.try_get_matches_from(argv)?;
        Self::from_arg_matches(&matches)?.job(&matches)
    }
}

/// The configuration a run folder continues with: the one in `state.json` (what its saved
/// epoch was trained with), else `config.toml` (a run of an older build).
fn resumed_layer(run: &Path) -> Result<(String, Table)> {
    let state = run.join("state.json");
    if let Ok(text) = std::fs::read_to_string(&state) {
        let origin = state.display().to_string();
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{origin} is damaged"))?;
        if let Some(config) = value.get("config") {
            let config: TrainConfig = serde_json::from_value(config.clone())
                .with_context(|| format!("the configuration in {origin} is damaged"))?;
            return Ok((origin, config.table()));
        }
    }
    let path = run.join("config.toml");
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot resume {}: {origin} is missing", run.display()))?;
    Ok((origin.clone(), parse_table(&text, &origin)?))
}

/// The stored configuration of a run folder.
pub fn stored(run: &Path) -> Result<TrainConfig> {
    let path = run.join("config.toml");
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {origin}"))?;
    TrainConfig::layered(&[(origin.clone(), parse_table(&text, &origin)?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_the_fields_of_the_configuration() {
        let table = TrainConfig::default().table();
        let names: Vec<_> = sections().iter().map(|(n, _)| n.to_string()).collect();
        let mut keys: Vec<_> = table.keys().cloned().collect();
        keys.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn flat_and_sectioned_keys_mean_the_same() {
        let flat: Table = toml::from_str("lr = 0.5\nbatch_size = 64\nflip = true").unwrap();
        let nested: Table =
            toml::from_str("[optim]\nlr = 0.5\nbatch-size = 64\n[augment]\nflip = true").unwrap();
        let a = TrainConfig::layered(&[("flat".into(), flat)]).unwrap();
        let b = TrainConfig::layered(&[("nested".into(), nested)]).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (a.optim.lr, a.optim.batch_size, a.augment.flip),
            (0.5, 64, true)
        );
    }

    #[test]
    fn later_layers_win_and_errors_name_their_source() {
        let first: Table = toml::from_str("lr = 0.5\nepochs = 3").unwrap();
        let second: Table = toml::from_str("[optim]\nlr = 0.25").unwrap();
        let config = TrainConfig::layered(&[("a".into(), first), ("b".into(), second)]).unwrap();
        assert_eq!((config.optim.lr, config.optim.epochs), (0.25, 3.0));

        let wrong: Table = toml::from_str("[optim]\nlearning-rate = 1").unwrap();
        let err = TrainConfig::layered(&[("s.toml".into(), wrong)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("learning-rate") && err.contains("[optim]"),
            "{err}"
        );
        let typed: Table = toml::from_str("epochs = \"many\"").unwrap();
        let err = TrainConfig::layered(&[("t.toml".into(), typed)])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("t.toml"), "{err}");
    }

    #[test]
    fn teachers_come_as_one_path_a_list_or_repeated_flags() {
        let paths = |names: &[&str]| names.iter().map(PathBuf::from).collect::<Vec<_>>();
        let one: Table = toml::from_str("teacher = \"a.safetensors\"").unwrap();
        let config = TrainConfig::layered(&[("one".into(), one)]).unwrap();
        assert_eq!(config.loss.teacher, paths(&["a.safetensors"]));
        let list: Table = toml::from_str("[loss]\nteacher = [\"a\", \"b\"]").unwrap();
        let config = TrainConfig::layered(&[("list".into(), list)]).unwrap();
        assert_eq!(config.loss.teacher, paths(&["a", "b"]));
        assert!(TrainConfig::default().loss.teacher.is_empty());

        let job = TrainArgs::parse_job(&["--teacher", "a", "--teacher", "b"]).unwrap();
        assert_eq!(job.config.loss.teacher, paths(&["a", "b"]));
        // What a run folder stores reads back as it was.
        let stored: Table = toml::from_str(&job.config.to_toml().unwrap()).unwrap();
        let back = TrainConfig::layered(&[("stored".into(), stored)]).unwrap();
        assert_eq!(back, job.config);
    }
}
