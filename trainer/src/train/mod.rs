//! `trainer train`: the training loop, its options and its run folder.

pub mod optim;
pub mod run_dir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use model::{Checkpoint, CheckpointInfo, Model, ModelConfig, Normalization};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;

use self::optim::OptimizerKind;
use self::run_dir::{EpochMetrics, RunDir};
use crate::backend::{self, Backend};
use crate::cli::ModelArgs;
use crate::data::batcher::batches;
use crate::data::{CifarSet, locate};
use crate::eval::{Evaluation, evaluate};

/// Read the loss and accuracy back from the device every this many steps.
const READ_EVERY: usize = 10;

/// Options of `trainer train`.
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
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Momentum of SGD (0 turns it off).
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// L2 weight decay added to the gradients (0 turns it off).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Fraction of the training images held out for validation (0 disables validation;
    /// the best checkpoint is then chosen by training accuracy).
    #[arg(long, default_value_t = 0.1)]
    pub val_ratio: f64,
    /// Seed of the weight initialisation, the split, the shuffling and dropout.
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
}

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Metrics of every epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Test-set evaluation of the best checkpoint.
    pub test: Evaluation,
}

/// Initialises the network on the CPU with `seed`, so that every backend starts from the
/// same weights, then moves it to `device`.
fn init_model(config: &ModelConfig, device: &Device, seed: u64) -> Result<Model> {
    let cpu = Device::flex();
    cpu.seed(seed);
    let record = config.init(&cpu)?.into_record();
    Ok(config.init(device)?.try_load_record(record)?)
}

/// Trains as `args` says and writes the run folder.
pub fn run(args: &TrainArgs) -> Result<TrainOutcome> {
    ensure!(args.epochs > 0, "--epochs must be at least 1");
    ensure!(
        args.batch_size > 1,
        "--batch-size must be at least 2 (batch norm needs two samples)"
    );
    ensure!(
        args.lr > 0.0 && args.lr.is_finite(),
        "--lr must be a positive number"
    );
    let config = ModelConfig::from_name(&args.model.model, &args.model.options())?;

    let data_dir = locate::find(args.data_dir.as_deref())?;
    let mut full = CifarSet::train(&data_dir)?;
    if let Some(limit) = args.limit {
        full = full.subset(&(0..limit.min(full.len())).collect::<Vec<_>>());
    }
    let test = Arc::new(CifarSet::test(&data_dir)?);
    let (train, val) = full.split(args.val_ratio, args.seed)?;
    ensure!(
        train.len() >= 2,
        "the training split has {} images; need at least 2",
        train.len()
    );
    let normalization = Normalization::measure(&train.pixels);
    let (train, val) = (Arc::new(train), Arc::new(val));

    let selected = backend::select(args.backend)?;
    let device = selected.device.clone();
    println!("Backend: {}", selected.description());
    println!(
        "Data: {} ({} train, {} validation, {} test images)",
        data_dir.display(),
        train.len(),
        val.len(),
        test.len()
    );
    let ad_device = device.clone().autodiff();
    device.seed(args.seed);
    ad_device.seed(args.seed);
    let mut model = init_model(&config, &ad_device, args.seed)?;
    println!(
        "Model: {} ({} parameters)",
        config.name,
        model.parameter_count()
    );

    let run = RunDir::create(&args.runs_dir, args.name.as_deref(), &config.name)?;
    let resolved = json!({
        "train": args,
        "model_config": config,
        "normalization": normalization,
        "backend": selected.description(),
        "data_dir": data_dir,
        "train_images": train.len(),
        "val_images": val.len(),
        "test_images": test.len(),
    });
    run.write(
        "config.json",
        serde_json::to_string_pretty(&resolved)?.as_bytes(),
    )?;
    println!("Run folder: {}", run.path.display());

    let mut optimizer = optim::build(args.optimizer, args.momentum, args.weight_decay);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad_device);
    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut best: Option<f64> = None;
    let steps_per_epoch =
        train.len() / args.batch_size + usize::from(train.len() % args.batch_size >= 2);

    for epoch in 1..=args.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            args.seed.wrapping_add(epoch as u64),
        ));
        let bar = progress_bar(steps_per_epoch as u64, epoch, args.epochs);
        let start = Instant::now();
        let (mut seen, mut loss_sum, mut correct) = (0usize, 0f64, 0usize);
        let mut pending: Option<(Tensor<1>, Tensor<1, Int>)> = None;
        let mut pending_from = 1;
        for (step, batch) in batches(train.clone(), order, args.batch_size, 2, normalization)
            .into_iter()
            .enumerate()
        {
            let n = batch.len();
            let (images, labels) = batch.to_device(&ad_device);
            let logits = model.forward(images);
            let loss = loss_fn.forward(logits.clone(), labels.clone());
            let hits = logits.argmax(1).reshape([n]).equal(labels).int().sum();
            let batch_loss = loss.clone().detach() * n as f64;
            pending = Some(match pending.take() {
                Some((l, c)) => (l + batch_loss, c + hits),
                None => (batch_loss, hits),
            });
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(args.lr, model, grads);
            seen += n;
            if (step + 1) % READ_EVERY == 0 || step + 1 == steps_per_epoch {
                let (l, c) = pending.take().expect("accumulated since the last read");
                let l = l.into_scalar::<f32>() as f64;
                if !l.is_finite() {
                    bar.abandon();
                    bail!(diverged(epoch, pending_from, step + 1, &run, &history));
                }
                loss_sum += l;
                correct += c.into_scalar::<i64>() as usize;
                pending_from = step + 2;
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} acc {:5.2}% {rate:.0} img/s",
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = start.elapsed().as_secs_f64();

        let val_eval = if val.is_empty() {
            None
        } else {
            Some(evaluate(&model, &val, normalization, &device, 256)?)
        };
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            val: val_eval.as_ref().map(|e| (e.loss, e.accuracy())),
            lr: args.lr,
            seconds,
            images_per_sec: seen as f64 / seconds,
        };
        let score = metrics.val.map(|v| v.1).unwrap_or(metrics.train_accuracy);
        let improved = best.is_none_or(|b| score > b);
        let info = checkpoint_info(normalization, &metrics, &run);
        let bytes = Checkpoint {
            model: model.valid(),
            info,
        }
        .to_bytes()?;
        run.write("last.safetensors", &bytes)?;
        if improved {
            best = Some(score);
            run.write("best.safetensors", &bytes)?;
        }
        run.append_metrics(&metrics)?;
        println!("{}", epoch_line(&metrics, args.epochs, improved));
        history.push(metrics);
    }

    let best_bytes = std::fs::read(run.file("best.safetensors"))?;
    let best_model = Checkpoint::from_bytes(&best_bytes, &device)?.model;
    let test_eval = evaluate(&best_model, &test, normalization, &device, 256)?;
    let summary = summary(&config, &selected.name, &history, &test_eval);
    run.write("summary.txt", summary.as_bytes())?;
    run.write(
        "summary.json",
        serde_json::to_string_pretty(&json!({
            "model": config.name,
            "parameters": model.parameter_count(),
            "backend": selected.name,
            "epochs": history.len(),
            "best_val_accuracy": best,
            "test_accuracy": test_eval.accuracy(),
            "test_loss": test_eval.loss,
            "train_images_per_sec_mean": history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len() as f64,
            "total_train_seconds": history.iter().map(|m| m.seconds).sum::<f64>(),
        }))?
        .as_bytes(),
    )?;
    print!("{summary}");
    Ok(TrainOutcome {
        run_dir: run.path,
        epochs: history,
        test: test_eval,
    })
}

fn checkpoint_info(normalization: Normalization, m: &EpochMetrics, run: &RunDir) -> CheckpointInfo {
    let mut info = CheckpointInfo::cifar10(normalization);
    info.training = json!({
        "run": run.path,
        "epoch": m.epoch,
        "train_accuracy": m.train_accuracy,
        "val_accuracy": m.val.map(|v| v.1),
    });
    info
}

fn diverged(
    epoch: usize,
    from: usize,
    to: usize,
    run: &RunDir,
    history: &[EpochMetrics],
) -> String {
    let saved = match history.last() {
        Some(m) => format!(
            "the last good checkpoint is {} (epoch {})",
            run.file("last.safetensors").display(),
            m.epoch
        ),
        None => "no checkpoint was saved yet".to_string(),
    };
    format!(
        "training diverged: the loss became NaN or infinite in epoch {epoch}, steps {from}–{to}; \
         {saved}. Try a lower --lr."
    )
}

fn progress_bar(steps: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

fn epoch_line(m: &EpochMetrics, epochs: usize, improved: bool) -> String {
    let val = match m.val {
        Some((l, a)) => format!("  val loss {l:.4} acc {:5.2}%", 100.0 * a),
        None => String::new(),
    };
    format!(
        "epoch {}/{epochs}  train loss {:.4} acc {:5.2}%{val}  {:.0} img/s  {:.1} s{}",
        m.epoch,
        m.train_loss,
        100.0 * m.train_accuracy,
        m.images_per_sec,
        m.seconds,
        if improved { "  * best" } else { "" }
    )
}

fn summary(
    config: &ModelConfig,
    backend: &str,
    history: &[EpochMetrics],
    test: &Evaluation,
) -> String {
    let train_secs: f64 = history.iter().map(|m| m.seconds).sum();
    let mut s = format!(
        "\n{} trained {} epochs on {backend} in {train_secs:.0} s ({:.0} img/s mean)\n\
         Test accuracy (best checkpoint): {:.2}% ({}/{}), test loss {:.4}\n",
        config.name,
        history.len(),
        history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len() as f64,
        100.0 * test.accuracy(),
        test.correct,
        test.total,
        test.loss
    );
    s.push_str(&crate::cmd::eval::per_class_table(test));
    s
}
