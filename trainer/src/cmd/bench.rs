//! `trainer bench`: training-step, inference and data-pipeline throughput per model on one
//! backend, printed as a table and written as CSV in the format of
//! `bench/pytorch_reference.py`, so that `bench/compare` can put the two side by side.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Args;
use clap::builder::PossibleValuesParser;
use model::{IMAGE_SIZE, ModelConfig, ModelOptions, Normalization};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::args::{BackendArg, DataArg};
use crate::backend::Backend;
use crate::data::CifarSet;
use crate::data::augment::Augment;
use crate::data::batcher::{Batch, BatchPlan, batches};
use crate::option_name::option_name;
use crate::train::optim::OptimizerKind;
use crate::train::{StepPlan, TrainConfig, Trainer, config, init_model};

/// Options of `trainer bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Models to time, comma-separated (any name of `trainer models`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "tiny-cnn,basic-cnn,resnet20,resnet9"
    )]
    pub models: Vec<String>,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Images per training step.
    #[arg(short, long, default_value_t = 128)]
    pub batch_size: usize,
    /// Images per inference batch.
    #[arg(long, default_value_t = 256)]
    pub infer_batch: usize,
    /// CPU threads for Flex and the data pipeline [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed steps per model and phase.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Untimed steps before them (kernel compilation, allocator warm-up).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Optimizer of the training step: SGD (lr 0.01, momentum 0.9, Nesterov, weight decay
    /// 5e-4) or Adam (lr 1e-3), as in `bench/pytorch_reference.py`.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// Time the training step of this preset instead (its optimizer, loss, lookahead, …;
    /// the models and batch size still come from --models and --batch-size).
    #[arg(long, value_parser = PossibleValuesParser::new(config::preset_names()))]
    pub preset: Option<String>,
    #[command(flatten)]
    pub data: DataArg,
    /// Where the results go as CSV.
    #[arg(long, default_value = "bench.csv")]
    pub csv: PathBuf,
    /// What to time: `train` (forward, loss, backward, optimizer step), `infer` (forward
    /// without gradients), `data` (the batcher with crop + flip, no model).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "train,infer,data"
    )]
    pub phases: Vec<Phase>,
    /// Flex's kernels for convolution, batch norm, max pooling and ReLU: this project's
    /// NCHW kernels, Flex's generic route, or both one after the other (rows `flex` and `flex-generic`).
    #[arg(long, value_enum, default_value_t = FlexKernels::Nchw)]
    pub flex_kernels: FlexKernels,
}

/// Which kernels Flex runs convolutions, batch norms, max pools and ReLUs with (see
/// `patches/README.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FlexKernels {
    /// Per-image GEMM convolutions and two-pass batch norm on NCHW data (the default).
    Nchw,
    /// Flex's own route (NHWC tiled im2col, Burn's default backward passes).
    Generic,
    /// Both, generic first.
    Both,
}

impl FlexKernels {
    /// The settings to run, as (NCHW kernels on, backend-name suffix).
    fn settings(self) -> Vec<(bool, &'static str)> {
        match self {
            Self::Nchw => vec![(true, "")],
            Self::Generic => vec![(false, "-generic")],
            Self::Both => vec![(false, "-generic"), (true, "")],
        }
    }
}

/// What is timed.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Forward, loss, backward and optimizer step.
    Train,
    /// Forward pass without gradients.
    Infer,
    /// Batches from the records: shuffle, crop + flip, normalisation (no model).
    Data,
}

/// One row of the results: a model and phase, timed over several steps.
#[derive(Serialize, Clone, Debug)]
pub struct BenchRow {
    /// `trainer` (the PyTorch script writes `pytorch`).
    #[serde(rename = "impl")]
    pub implementation: String,
    /// Backend short name (`flex`, `wgpu`).
    pub backend: String,
    /// Model name (`data` for the data pipeline).
    pub model: String,
    /// Trainable parameters, counted as PyTorch counts them.
    pub params: usize,
    /// What was timed.
    pub phase: Phase,
    /// Images per step.
    pub batch: usize,
    /// CPU threads.
    pub threads: usize,
    /// Timed steps.
    pub steps: usize,
    /// Images per second at the median step time.
    pub img_per_s: f64,
    /// Median step time, ms.
    pub ms_median: f64,
    /// Fastest step, ms.
    pub ms_min: f64,
    /// Slowest step, ms.
    pub ms_max: f64,
    /// Peak resident memory of the process during this row, MB (10⁶ bytes); 0 where the
    /// system does not say.
    pub peak_mb: f64,
    /// The first (untimed) step, ms: on a GPU it includes compiling and autotuning kernels.
    pub ms_first: f64,
}

impl BenchRow {
    fn new(common: &Common, model: &str, params: usize, phase: Phase, batch: usize) -> Self {
        Self {
            implementation: "trainer".into(),
            backend: common.backend.clone(),
            model: model.into(),
            params,
            phase,
            batch,
            threads: common.threads,
            steps: 0,
            img_per_s: 0.0,
            ms_median: 0.0,
            ms_min: 0.0,
            ms_max: 0.0,
            peak_mb: 0.0,
            ms_first: 0.0,
        }
    }

    /// Fills the timing columns from the durations in seconds of every step, the first
    /// `warmup` of them untimed but for the very first.
    fn timed(mut self, all: Vec<f64>, warmup: usize, peak_mb: f64) -> Self {
        self.ms_first = 1e3 * all[0];
        let mut seconds = all[warmup..].to_vec();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        self.steps = seconds.len();
        self.img_per_s = self.batch as f64 / median;
        self.ms_median = 1e3 * median;
        self.ms_min = 1e3 * seconds[0];
        self.ms_max = 1e3 * seconds[seconds.len() - 1];
        self.peak_mb = peak_mb;
        self
    }
}

/// What every row shares.
struct Common {
    backend: String,
    threads: usize,
    warmup: usize,
    steps: usize,
}

/// Runs the benchmark, printing each row as it is measured, writes the CSV and returns the rows.
pub fn run(args: &BenchArgs) -> Result<Vec<BenchRow>> {
    ensure!(args.steps > 0, "--steps must be at least 1");
    ensure!(
        args.batch_size > 1 && args.infer_batch > 0,
        "--batch-size must be at least 2 and --infer-batch at least 1"
    );
    if let Some(threads) = args.threads {
        ensure!(threads > 0, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot size the thread pool (it was already started)")?;
    }
    let configs = args
        .models
        .iter()
        .map(|name| ModelConfig::from_name(name, &ModelOptions::default()))
        .collect::<Result<Vec<_>, _>>()?;

    let data_dir = args.data.locate()?;
    let read_start = Instant::now();
    let train = Arc::new(CifarSet::train(&data_dir)?);
    let read_seconds = read_start.elapsed().as_secs_f64();
    ensure!(
        train.len() >= args.batch_size,
        "{} has {} training images, fewer than one batch of {}",
        data_dir.display(),
        train.len(),
        args.batch_size
    );
    let normalization = Normalization::measure(&train.pixels);
    let selected = args.backend.select()?;
    let mut common = Common {
        backend: selected.backend.to_string(),
        threads: rayon::current_num_threads(),
        warmup: args.warmup,
        steps: args.steps,
    };
    print!(
        "trainer {} (Burn 0.22.1) on {} ({} threads), batch {} train / {} inference, {} steps after {} warm-up\n\
         data: {} train images read from {} in {:.2} s\n{}\n",
        env!("CARGO_PKG_VERSION"),
        selected.description(),
        common.threads,
        args.batch_size,
        args.infer_batch,
        args.steps,
        args.warmup,
        train.len(),
        data_dir.display(),
        read_seconds,
        header(),
    );

    let mut rows = Vec::new();
    let mut emit = |row: BenchRow| {
        println!("{}", format_row(&row));
        rows.push(row);
    };
    let feed = Feed::new(
        train.clone(),
        normalization,
        args.batch_size,
        args.infer_batch,
        args.warmup + args.steps,
    );
    let settings = if selected.backend == Backend::Flex {
        args.flex_kernels.settings()
    } else {
        vec![(true, "")]
    };
    for (nchw, suffix) in settings {
        burn_flex::set_nchw_kernels(nchw);
        common.backend = format!("{}{suffix}", selected.backend);
        for config in &configs {
            if args.phases.contains(&Phase::Train) {
                emit(train_row(config, args, &common, &feed, &selected.device)?);
            }
            if args.phases.contains(&Phase::Infer) {
                emit(infer_row(config, args, &common, &feed, &selected.device)?);
            }
        }
    }
    burn_flex::set_nchw_kernels(true);
    common.backend = selected.backend.to_string();
    if args.phases.contains(&Phase::Data) {
        emit(data_row(&train, normalization, args, &common));
    }

    let mut writer = csv::Writer::from_path(&args.csv)
        .with_context(|| format!("cannot write {}", args.csv.display()))?;
    for row in &rows {
        writer.serialize(row)?;
    }
    writer.flush()?;
    Ok(rows)
}

/// The table's column titles (the same as `bench/pytorch_reference.py` prints, plus the
/// backend, which tells Flex's two kernel routes apart).
fn header() -> String {
    format!(
        "{:<11} {:<5} {:>7} {:>9}   {:<27} {:>9} {:>7}  {}",
        "model",
        "phase",
        "batch",
        "img/s",
        "ms/step median (min–max)",
        "1st ms",
        "peak MB",
        "backend"
    )
}

fn format_row(r: &BenchRow) -> String {
    let phase = match r.phase {
        Phase::Train => "train",
        Phase::Infer => "infer",
        Phase::Data => "data",
    };
    let ms = format!("{:9.1} ({:.1}–{:.1})", r.ms_median, r.ms_min, r.ms_max);
    format!(
        "{:<11} {:<5} {:>7} {:>9.1}   {:<27} {:>9.1} {:>7.0}  {}",
        r.model, phase, r.batch, r.img_per_s, ms, r.ms_first, r.peak_mb, r.backend
    )
}

/// Host batches made before timing, so that the timed steps measure the model alone.
struct Feed {
    train: Vec<Batch>,
    infer: Vec<Batch>,
}

impl Feed {
    fn new(
        set: Arc<CifarSet>,
        normalization: Normalization,
        train_batch: usize,
        infer_batch: usize,
        count: usize,
    ) -> Self {
        let take = |batch_size: usize| -> Vec<Batch> {
            // Enough shuffled indices for `count` batches, wrapping around small sets.
            let mut rng = StdRng::seed_from_u64(7);
            let mut order = Vec::with_capacity(batch_size * count);
            while order.len() < batch_size * count {
                let mut pass: Vec<usize> = (0..set.len()).collect();
                pass.shuffle(&mut rng);
                order.extend(pass);
            }
            order.truncate(batch_size * count);
            let plan = BatchPlan {
                batch_size,
                min_last: batch_size,
                normalization,
                augment: None,
                flip_phase: None,
            };
            batches(set.clone(), order, plan).into_iter().collect()
        };
        Self {
            train: take(train_batch),
            infer: take(infer_batch),
        }
    }
}

/// The training configuration of a model's row: `--preset`'s, or the reference script's
/// SGD or Adam step, at `--batch-size`.
fn train_config(name: &str, args: &BenchArgs) -> Result<TrainConfig> {
    let mut layers = Vec::new();
    if let Some(preset) = &args.preset {
        layers.push(config::preset_layer(preset)?);
    } else {
        let step = match args.optimizer {
            OptimizerKind::Adam => "optimizer = \"adam\"\nlr = 1e-3\n".to_string(),
            other => format!(
                "optimizer = \"{}\"\nlr = 1e-2\nmomentum = 0.9\nnesterov = {}\n\
                 weight-decay = {}\n",
                option_name(&other),
                other == OptimizerKind::Sgd,
                if other == OptimizerKind::Sgd {
                    5e-4
                } else {
                    0.0
                }
            ),
        };
        layers.push(("the benchmark's step".to_string(), toml::from_str(&step)?));
    }
    let own = format!("model = \"{name}\"\nbatch-size = {}\n", args.batch_size);
    layers.push((
        "--models and --batch-size".to_string(),
        toml::from_str(&own)?,
    ));
    TrainConfig::layered(&layers)
}

fn train_row(
    config: &ModelConfig,
    args: &BenchArgs,
    common: &Common,
    feed: &Feed,
    device: &Device,
) -> Result<BenchRow> {
    let ad_device = device.clone().autodiff();
    let train = train_config(&config.name, args)?;
    let model = init_model(config, &ad_device, 42)?;
    let params = model.parameter_count();
    let steps = StepPlan {
        per_epoch: feed.train.len(),
        total: feed.train.len(),
    };
    let mut trainer = Trainer::new(model, &train, steps, None, &ad_device);
    reset_peak_memory();
    let times = time_steps(&feed.train, |batch| {
        trainer.step(batch.clone());
        Ok(ad_device.sync()?)
    })?;
    Ok(
        BenchRow::new(common, &config.name, params, Phase::Train, args.batch_size).timed(
            times,
            common.warmup,
            peak_memory_mb(),
        ),
    )
}

fn infer_row(
    config: &ModelConfig,
    args: &BenchArgs,
    common: &Common,
    feed: &Feed,
    device: &Device,
) -> Result<BenchRow> {
    let model = init_model(config, device, 42)?;
    let params = model.parameter_count();
    reset_peak_memory();
    let times = time_steps(&feed.infer, |batch| {
        let n = batch.len();
        let images = Tensor::<4>::from_data(
            TensorData::new(batch.images.clone(), [n, 3, IMAGE_SIZE, IMAGE_SIZE]),
            device,
        );
        model
            .forward(images)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("cannot read the logits back: {e:?}"))?;
        Ok(())
    })?;
    Ok(
        BenchRow::new(common, &config.name, params, Phase::Infer, args.infer_batch).timed(
            times,
            common.warmup,
            peak_memory_mb(),
        ),
    )
}

/// Runs `step` on every batch and returns the duration of each, in seconds.
fn time_steps(batches: &[Batch], mut step: impl FnMut(&Batch) -> Result<()>) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(batches.len());
    for batch in batches {
        let start = Instant::now();
        step(batch)?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(times)
}

/// The data pipeline alone, with the training augmentation (crop with padding 4, flip).
fn data_row(
    train: &Arc<CifarSet>,
    normalization: Normalization,
    args: &BenchArgs,
    common: &Common,
) -> BenchRow {
    let count = common.warmup + common.steps;
    let mut order = Vec::with_capacity(args.batch_size * count);
    while order.len() < args.batch_size * count {
        order.extend(0..train.len());
    }
    order.truncate(args.batch_size * count);
    let augment = Augment {
        crop_padding: 4,
        flip: true,
        ..Augment::default()
    };
    let plan = BatchPlan {
        batch_size: args.batch_size,
        min_last: args.batch_size,
        normalization,
        augment: Some((augment, 1)),
        flip_phase: None,
    };
    reset_peak_memory();
    let mut times = Vec::with_capacity(count);
    let mut last = Instant::now();
    for _batch in batches(train.clone(), order, plan) {
        let now = Instant::now();
        times.push((now - last).as_secs_f64());
        last = now;
    }
    BenchRow::new(common, "data", 0, Phase::Data, args.batch_size).timed(
        times,
        common.warmup,
        peak_memory_mb(),
    )
}

/// Resets the process's peak resident memory (Linux: `/proc/self/clear_refs`); elsewhere a
/// no-op, and the peak is then that of the whole run so far.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory since the last reset, in MB; 0 where `/proc` does not say.
fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb * 1024.0 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_step_is_reported_apart_and_warm_up_steps_are_not_timed() {
        let common = Common {
            backend: "flex".into(),
            threads: 2,
            warmup: 2,
            steps: 3,
        };
        let row = BenchRow::new(&common, "m", 1, Phase::Train, 10).timed(
            vec![5.0, 1.0, 0.2, 0.1, 0.3],
            common.warmup,
            7.0,
        );
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(row.ms_first, 5000.0));
        assert_eq!(row.steps, 3);
        assert!(close(row.ms_min, 100.0) && close(row.ms_median, 200.0));
        assert!(close(row.ms_max, 300.0) && close(row.img_per_s, 50.0));
    }
}
