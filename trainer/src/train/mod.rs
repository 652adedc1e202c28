//! `trainer train`: a run from its configuration to its tested weights, written as the
//! recipe's named steps; the step itself is [`Trainer`]'s.

pub mod clip;
pub mod config;
pub mod distill;
pub mod lookahead;
pub mod loss;
pub mod optim;
pub mod run_dir;
pub mod schedule;
pub mod splits;
mod state;
pub mod stop;
pub mod summary;
pub mod trainer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use model::{Checkpoint, CheckpointInfo, Model, ModelConfig, Normalization};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;

pub use self::config::{TrainArgs, TrainConfig, TrainJob};
use self::distill::Teacher;
use self::run_dir::{EpochMetrics, RunDir};
use self::splits::Splits;
use self::state::TrainState;
pub use self::stop::StopReason;
use self::summary::{Summary, TestedWeights, throughput};
pub(crate) use self::trainer::init_model;
pub use self::trainer::{Diverged, EpochTotals, StepPlan, Trainer};
use crate::backend::Selected;
use crate::data::CifarSet;
use crate::data::augment::FlipPhase;
use crate::data::batcher::{Batch, BatchPlan, batches};
use crate::eval::{Evaluation, evaluate, evaluate_with};

/// Training images whose 2 × 2 patches set a whitening layer (airbench's 5,000).
const WHITENING_IMAGES: usize = 5000;

/// Images per evaluation batch.
const EVAL_BATCH: usize = 256;

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Metrics of every epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Why training ended before the last epoch, if it did.
    pub stopped_early: Option<StopReason>,
    /// Test-set evaluation of the tested weights (see [`Summary::tested_weights`]).
    pub test: Evaluation,
    /// `summary.json`.
    pub summary: Summary,
}

/// Trains as `job` says and writes (or, with `--resume`, continues) the run folder.
pub fn run(job: &TrainJob) -> Result<TrainOutcome> {
    let config = &job.config;
    check(config)?;
    // The network's name is checked before the data is read: a typo fails at once.
    let named = ModelConfig::from_name(&config.model.model, &config.model.options)?;
    let data = Splits::load(&config.data, config.run.seed)?;
    check_rules(config, &data)?;
    let net = named.with_classes(data.classes.len())?;
    let selected = config.run.backend.select()?;
    println!("Backend: {}", selected.description());
    println!("Data: {}", data.describe());

    let (run, mut state, mut trainer) = start_or_resume(job, &net, &data, &selected)?;
    record_configuration(&run, config, &net, &data, &selected)?;
    let steps = trainer.steps();
    for epoch in state.epoch + 1..=steps.epochs() {
        if state.stopped_early.is_some() {
            break;
        }
        let bar = progress_bar(steps, epoch);
        trainer.seed(epoch_seed(config.run.seed, epoch, 1));
        let totals = trainer
            .epoch(epoch_batches(&data, config, epoch), &bar)
            .map_err(|e| diverged(e, &run, &state))?;
        bar.finish_and_clear();
        let metrics = measure_epoch(epoch, totals, trainer.model(), &data, config, &selected)?;
        let best = save_epoch(&run, &mut state, trainer.model(), &metrics, &data, config)?;
        println!("{}", epoch_line(&metrics, steps.epochs(), best));
        if let Some(val) = metrics.val {
            state.stopped_early = state.progress.stop(&config.stop, epoch, val.1);
        }
        if let Some(reason) = &state.stopped_early {
            println!("{reason}");
        }
        state.epoch = epoch;
        state.history.push(metrics);
        state.config = Some(config.clone());
        run.rewrite_metrics(&state.history)?;
        run.write("curves.png", &crate::plot::curves(&state.history)?)?;
        state.save(&run, &trainer.snapshot()?)?;
    }

    let (weights, tested) = tested_weights(&run, &data, trainer.model(), &selected.device)?;
    let test = evaluate_with(
        &weights,
        &data.test,
        data.normalization,
        &selected.device,
        EVAL_BATCH,
        config.run.tta,
    )?;
    let summary = summarise(&net, &selected, &state, tested, &test, config, &trainer);
    run.write("summary.txt", summary.text(&test).as_bytes())?;
    run.write(
        "summary.json",
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    print!("{}", summary.text(&test));
    Ok(TrainOutcome {
        run_dir: run.path,
        epochs: state.history,
        stopped_early: state.stopped_early,
        test,
        summary,
    })
}

/// Fails on option values no run can train with.
fn check(config: &TrainConfig) -> Result<()> {
    let o = &config.optim;
    ensure!(
        o.epochs > 0.0 && o.epochs.is_finite(),
        "--epochs must be a positive number"
    );
    ensure!(
        o.batch_size > 1,
        "--batch-size must be at least 2 (batch norm needs two samples)"
    );
    ensure!(
        o.lr > 0.0 && o.lr.is_finite(),
        "--lr must be a positive number"
    );
    ensure!(
        (0.0..1.0).contains(&config.loss.label_smoothing),
        "--label-smoothing must be in [0, 1)"
    );
    ensure!(config.augment.mixup >= 0.0, "--mixup must be ≥ 0");
    ensure!(
        o.clip_norm.is_none_or(|c| c > 0.0),
        "--clip-norm must be positive"
    );
    ensure!(
        o.norm_bias_lr_scale > 0.0 && o.norm_bias_lr_scale.is_finite(),
        "--norm-bias-lr-scale must be a positive number"
    );
    ensure!(
        o.lookahead_every != Some(0),
        "--lookahead-every must be at least 1"
    );
    ensure!(
        (0.0..=1.0).contains(&config.loss.distill_weight),
        "--distill-weight is a weight in 0–1"
    );
    ensure!(
        config.loss.distill_temperature > 0.0 && config.loss.distill_temperature.is_finite(),
        "--distill-temperature must be a positive number"
    );
    ensure!(
        o.classifier_lr.is_none() || o.classifier_optimizer.is_some(),
        "--classifier-lr needs --classifier-optimizer"
    );
    ensure!(
        config
            .stop
            .cut_below
            .is_none_or(|c| (0.0..=1.0).contains(&c)),
        "--cut-below is an accuracy in 0–1"
    );
    Ok(())
}

/// Fails on options that need what the data or the network lacks.
fn check_rules(config: &TrainConfig, data: &Splits) -> Result<()> {
    let needs_validation = [
        ("--patience", config.stop.patience.is_some()),
        ("--cut-below", config.stop.cut_below.is_some()),
    ];
    for (flag, set) in needs_validation {
        ensure!(
            !set || data.validates(),
            "{flag} watches validation accuracy, but this run has no validation split \
             (--val-ratio is 0)"
        );
    }
    Ok(())
}

/// The run folder, its saved state and the trainer: new ones, or the ones `--resume` names.
fn start_or_resume(
    job: &TrainJob,
    net: &ModelConfig,
    data: &Splits,
    selected: &Selected,
) -> Result<(RunDir, TrainState, Trainer)> {
    let config = &job.config;
    let device = selected.device.clone().autodiff();
    let mut model = init_model(net, &device, config.run.seed)?;
    ensure!(
        config.optim.whiten_bias_epochs.is_none() || model.has_whitening(),
        "--whiten-bias-epochs: {} has no whitening layer",
        net.name
    );
    if model.has_whitening() && job.resume.is_none() {
        model = whiten(model, &data.train, data.normalization, &device)?;
    }
    println!(
        "Model: {} ({} parameters)",
        net.name,
        model.parameter_count()
    );
    let teacher = load_teacher(config, data, &selected.device)?;
    let steps = StepPlan::new(
        data.train.len(),
        config.optim.batch_size,
        config.optim.epochs,
        config.optim.drop_last,
    );
    ensure!(
        steps.per_epoch > 0,
        "the training split has {} images, fewer than one batch of {} (--drop-last)",
        data.train.len(),
        config.optim.batch_size
    );
    let trainer = Trainer::new(model, config, steps, teacher, &device);
    Ok(match &job.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let state = TrainState::load(&run)?;
            let trainer = trainer.restore(state.snapshot(&run)?, state.epoch)?;
            run.rewrite_metrics(&state.history)?;
            println!(
                "Resuming {} after epoch {}",
                run.path.display(),
                state.epoch
            );
            (run, state, trainer)
        }
        None => {
            let run = RunDir::create(&config.run.runs_dir, config.run.name.as_deref(), &net.name)?;
            (run, TrainState::default(), trainer)
        }
    })
}

/// `model` with its whitening layer set from the first [`WHITENING_IMAGES`] of `train`.
fn whiten(
    model: Model,
    train: &CifarSet,
    normalization: Normalization,
    device: &Device,
) -> Result<Model> {
    let count = WHITENING_IMAGES.min(train.len());
    let pixels = &train.pixels[..count * model::IMAGE_VALUES];
    let model = model.whiten(normalization.tensor(pixels, device))?;
    println!("Whitening layer set from the 2 × 2 patches of {count} training images");
    Ok(model)
}

/// The `--teacher` (or ensemble of them) to distil from, on the device without autodiff.
fn load_teacher(config: &TrainConfig, data: &Splits, device: &Device) -> Result<Option<Teacher>> {
    if config.loss.teacher.is_empty() {
        return Ok(None);
    }
    let teacher = Teacher::load(
        &config.loss.teacher,
        device,
        data.normalization,
        &data.classes,
        config.loss.distill_weight,
        config.loss.distill_temperature,
        config.loss.teacher_tta,
    )?;
    println!("Teacher: {}", teacher.describe());
    Ok(Some(teacher))
}

/// Writes `config.toml` (what resumes and reproduces the run) and `config.json` (with what
/// the run resolved: the network, the input statistics, the backend and the data).
fn record_configuration(
    run: &RunDir,
    config: &TrainConfig,
    net: &ModelConfig,
    data: &Splits,
    selected: &Selected,
) -> Result<()> {
    run.write("config.toml", config.to_toml()?.as_bytes())?;
    let resolved = json!({
        "train": config,
        "model_config": net,
        "normalization": data.normalization,
        "backend": selected.description(),
        "data_dir": data.dir,
        "train_images": data.train.len(),
        "val_images": data.val.len(),
        "test_images": data.test.len(),
    });
    run.write(
        "config.json",
        serde_json::to_string_pretty(&resolved)?.as_bytes(),
    )?;
    println!("Run folder: {}", run.path.display());
    Ok(())
}

/// A seed for epoch `epoch` of stream `stream`, the same whether or not the run was resumed.
fn epoch_seed(seed: u64, epoch: usize, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((epoch as u64) << 8) ^ stream
}

/// Epoch `epoch`'s training batches: the split shuffled, augmented and cut as the
/// configuration says, each from seeds of its own.
fn epoch_batches(data: &Splits, config: &TrainConfig, epoch: usize) -> Receiver<Batch> {
    let seed = config.run.seed;
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(seed, epoch, 2)));
    let augment = &config.augment;
    let plan = BatchPlan {
        batch_size: config.optim.batch_size,
        min_last: StepPlan::min_last(config.optim.batch_size, config.optim.drop_last),
        normalization: data.normalization,
        augment: augment
            .any()
            .then(|| (augment.clone(), epoch_seed(seed, epoch, 3))),
        flip_phase: (augment.flip && augment.alternating_flip).then_some(FlipPhase { seed, epoch }),
    };
    batches(data.train.clone(), order, plan)
}

/// Epoch `epoch`'s metrics: its training totals, and the network's validation (and, with
/// `--test-each-epoch`, test) loss and accuracy after it.
fn measure_epoch(
    epoch: usize,
    totals: EpochTotals,
    model: &Model,
    data: &Splits,
    config: &TrainConfig,
    selected: &Selected,
) -> Result<EpochMetrics> {
    let on = |set: &Arc<CifarSet>| -> Result<(f64, f64)> {
        let e = evaluate(model, set, data.normalization, &selected.device, EVAL_BATCH)?;
        Ok((e.loss, e.accuracy()))
    };
    Ok(EpochMetrics {
        epoch,
        train_loss: totals.loss(),
        train_accuracy: totals.accuracy(),
        val: if data.validates() {
            Some(on(&data.val)?)
        } else {
            None
        },
        test: if config.run.test_each_epoch {
            Some(on(&data.test)?)
        } else {
            None
        },
        lr: totals.lr,
        seconds: totals.seconds,
        images_per_sec: totals.images as f64 / totals.seconds,
    })
}

/// Writes `last.safetensors`, and `best.safetensors` when the epoch has the best validation
/// accuracy so far; returns whether it has.
fn save_epoch(
    run: &RunDir,
    state: &mut TrainState,
    model: &Model,
    metrics: &EpochMetrics,
    data: &Splits,
    config: &TrainConfig,
) -> Result<bool> {
    let mut info = CheckpointInfo::new(data.normalization, data.classes.clone());
    info.training = json!({
        "run": run.path,
        "epoch": metrics.epoch,
        "train_accuracy": metrics.train_accuracy,
        "val_accuracy": metrics.val.map(|v| v.1),
    });
    let bytes = Checkpoint {
        model: model.valid(),
        info,
    }
    .to_bytes()?;
    run.write("last.safetensors", &bytes)?;
    let Some((_, accuracy)) = metrics.val else {
        return Ok(false);
    };
    let best = state
        .progress
        .record(metrics.epoch, accuracy, config.stop.min_delta);
    if best {
        run.write("best.safetensors", &bytes)?;
    }
    Ok(best)
}

/// The weights the run's test evaluation uses: the best validation checkpoint, or the final
/// weights when the run has no validation split.
fn tested_weights(
    run: &RunDir,
    data: &Splits,
    last: &Model,
    device: &Device,
) -> Result<(Model, TestedWeights)> {
    if data.validates() {
        let bytes = std::fs::read(run.file("best.safetensors"))?;
        let best = Checkpoint::from_bytes(&bytes, device)?.model;
        Ok((best, TestedWeights::BestValidation))
    } else {
        Ok((last.valid(), TestedWeights::Final))
    }
}

/// `summary.json` of a finished run.
fn summarise(
    net: &ModelConfig,
    selected: &Selected,
    state: &TrainState,
    tested: TestedWeights,
    test: &Evaluation,
    config: &TrainConfig,
    trainer: &Trainer,
) -> Summary {
    let (mean, seconds) = throughput(&state.history);
    let validated = state.progress.best_accuracy.is_some();
    Summary {
        model: net.name.clone(),
        parameters: trainer.model().parameter_count(),
        backend: selected.name.clone(),
        epochs: state.history.len(),
        steps: trainer.steps_done(),
        stopped_early: state.stopped_early.clone(),
        best_val_accuracy: state.progress.best_accuracy,
        best_epoch: validated.then_some(state.progress.best_epoch),
        final_train_accuracy: state.history.last().map_or(0.0, |m| m.train_accuracy),
        tested_weights: tested,
        test_accuracy: test.accuracy(),
        test_tta: config.run.tta,
        test_loss: test.loss,
        train_images_per_sec_mean: mean,
        total_train_seconds: seconds,
    }
}

/// The error of a diverged run, saying what is saved and how to go on.
fn diverged(e: Diverged, run: &RunDir, state: &TrainState) -> anyhow::Error {
    let saved = if state.epoch > 0 {
        format!(
            "the last good checkpoint is {} (epoch {}); `--resume {}` continues from it",
            run.file("last.safetensors").display(),
            state.epoch,
            run.path.display()
        )
    } else {
        "no checkpoint was saved yet".to_string()
    };
    anyhow::anyhow!("training diverged: {e}; {saved}. Try a lower --lr or --clip-norm.")
}

/// The bar of epoch `epoch`'s steps.
fn progress_bar(steps: StepPlan, epoch: usize) -> ProgressBar {
    let left = steps.total - (epoch - 1) * steps.per_epoch;
    let bar = ProgressBar::new(left.min(steps.per_epoch) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("epoch {epoch}/{}", steps.epochs()));
    bar
}

/// The line printed after an epoch.
fn epoch_line(m: &EpochMetrics, epochs: usize, best: bool) -> String {
    let split = |name: &str, v: Option<(f64, f64)>| match v {
        Some((l, a)) => format!("  {name} loss {l:.4} acc {:5.2}%", 100.0 * a),
        None => String::new(),
    };
    format!(
        "epoch {}/{epochs}  train loss {:.4} acc {:5.2}%{}{}  lr {:.2e}  {:.0} img/s  {:.1} s{}",
        m.epoch,
        m.train_loss,
        100.0 * m.train_accuracy,
        split("val", m.val),
        split("test", m.test),
        m.lr,
        m.images_per_sec,
        m.seconds,
        if best { "  * best" } else { "" }
    )
}
