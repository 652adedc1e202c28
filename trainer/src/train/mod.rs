//! `trainer train`: the training loop, its options, its run folder and resuming.

pub mod clip;
pub mod config;
pub mod distill;
pub mod lookahead;
pub mod loss;
pub mod optim;
pub mod run_dir;
pub mod schedule;
mod state;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail, ensure};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use model::{Checkpoint, CheckpointInfo, Model, ModelConfig, Normalization};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde_json::json;

pub use self::config::{TrainArgs, TrainConfig, TrainJob};
use self::distill::Teacher;
use self::lookahead::Lookahead;
use self::loss::Objective;
use self::optim::OptimizerSpec;
use self::run_dir::{EpochMetrics, RunDir};
use self::schedule::Schedule;
use self::state::TrainState;
use crate::data::CifarSet;
use crate::data::augment::FlipPhase;
use crate::data::batcher::{BatchPlan, batches};
use crate::eval::{Evaluation, Tta, evaluate, evaluate_with};

/// Training images whose 2 × 2 patches set a whitening layer (airbench94's 5,000).
const WHITENING_IMAGES: usize = 5000;

/// Read the loss and accuracy back from the device every this many steps.
const READ_EVERY: usize = 10;

/// What a finished run reports.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Metrics of every epoch.
    pub epochs: Vec<EpochMetrics>,
    /// Why training ended before the last epoch, if it did.
    pub stopped_early: Option<String>,
    /// Test-set evaluation of the best checkpoint.
    pub test: Evaluation,
}

/// Initialises the network on the CPU with `seed`, so that every backend starts from the
/// same weights, then moves it to `device`.
pub(crate) fn init_model(config: &ModelConfig, device: &Device, seed: u64) -> Result<Model> {
    let cpu = Device::flex();
    cpu.seed(seed);
    let record = config.init(&cpu)?.into_record();
    Ok(config.init(device)?.try_load_record(record)?)
}

/// A seed for epoch `epoch` of stream `stream`, the same whether or not the run was resumed.
fn epoch_seed(seed: u64, epoch: usize, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((epoch as u64) << 8) ^ stream
}

fn check(config: &TrainConfig) -> Result<()> {
    ensure!(config.optim.epochs > 0, "--epochs must be at least 1");
    ensure!(
        config.optim.batch_size > 1,
        "--batch-size must be at least 2 (batch norm needs two samples)"
    );
    ensure!(
        config.optim.lr > 0.0 && config.optim.lr.is_finite(),
        "--lr must be a positive number"
    );
    ensure!(
        (0.0..1.0).contains(&config.loss.label_smoothing),
        "--label-smoothing must be in [0, 1)"
    );
    ensure!(config.augment.mixup >= 0.0, "--mixup must be ≥ 0");
    ensure!(
        config.optim.clip_norm.is_none_or(|c| c > 0.0),
        "--clip-norm must be positive"
    );
    ensure!(
        config.optim.norm_bias_lr_scale > 0.0 && config.optim.norm_bias_lr_scale.is_finite(),
        "--norm-bias-lr-scale must be a positive number"
    );
    ensure!(
        config.optim.lookahead_every != Some(0),
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
        config.optim.classifier_lr.is_none() || config.optim.classifier_optimizer.is_some(),
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

/// Trains as `job` says and writes (or, with `--resume`, continues) the run folder.
pub fn run(job: &TrainJob) -> Result<TrainOutcome> {
    let config = &job.config;
    check(config)?;
    let net = ModelConfig::from_name(&config.model.model, &config.model.options)?;

    let data_dir = config.data.data_dir.locate()?;
    let mut full = CifarSet::train(&data_dir)?;
    if let Some(limit) = config.data.limit {
        full = full.subset(&(0..limit.min(full.len())).collect::<Vec<_>>());
    }
    let test = Arc::new(CifarSet::test(&data_dir)?);
    // An image folder's own `val/` set, or a share of the training images.
    let (train, val) = match CifarSet::val(&data_dir)? {
        Some(val) => (full, val),
        None => full.split(config.data.val_ratio, config.run.seed)?,
    };
    ensure!(
        train.len() >= 2,
        "the training split has {} images; need at least 2",
        train.len()
    );
    let normalization = Normalization::measure(&train.pixels);
    // The network predicts the data's classes (CIFAR-10's ten, or an image folder's).
    let classes = train.classes.clone();
    let net = net.with_classes(classes.len())?;
    let (train, val) = (Arc::new(train), Arc::new(val));

    let selected = config.run.backend.select()?;
    let device = selected.device.clone();
    let ad_device = device.clone().autodiff();
    println!("Backend: {}", selected.description());
    println!(
        "Data: {} ({} train, {} validation, {} test images)",
        data_dir.display(),
        train.len(),
        val.len(),
        test.len()
    );

    let mut model = init_model(&net, &ad_device, config.run.seed)?;
    if model.has_whitening() && job.resume.is_none() {
        model = whiten(model, &train, normalization, &ad_device)?;
    }
    let main = OptimizerSpec {
        kind: config.optim.optimizer,
        momentum: config.optim.momentum,
        nesterov: config.optim.nesterov,
        weight_decay: config.optim.weight_decay,
    };
    let classifier = config.optim.classifier_optimizer.map(|kind| OptimizerSpec {
        kind,
        ..main.clone()
    });
    let classifier_factor = config.optim.classifier_lr.unwrap_or(config.optim.lr) / config.optim.lr;
    let mut optimizer: ModuleOptimizer = optim::build(
        &model,
        &main,
        classifier.as_ref().map(|c| (c, classifier_factor)),
        config.optim.norm_bias_lr_scale,
    );

    let (run, mut state) = match &job.resume {
        Some(dir) => {
            let run = RunDir::open(dir)?;
            let state = TrainState::load(&run)?;
            (model, optimizer) = state.restore(&run, model, optimizer, &ad_device)?;
            run.rewrite_metrics(&state.history)?;
            println!(
                "Resuming {} after epoch {}",
                run.path.display(),
                state.epoch
            );
            (run, state)
        }
        None => (
            RunDir::create(&config.run.runs_dir, config.run.name.as_deref(), &net.name)?,
            TrainState::default(),
        ),
    };
    println!(
        "Model: {} ({} parameters)",
        net.name,
        model.parameter_count()
    );
    run.write("config.toml", config.to_toml()?.as_bytes())?;
    let resolved = json!({
        "train": config,
        "model_config": net,
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

    let teacher = match &config.loss.teacher {
        Some(path) => {
            let teacher = Teacher::load(
                path,
                &device,
                normalization,
                &classes,
                config.loss.distill_weight,
                config.loss.distill_temperature,
            )?;
            println!("Teacher: {}", teacher.describe());
            Some(teacher)
        }
        None => None,
    };
    let objective = Objective {
        kind: config.loss.loss,
        label_smoothing: config.loss.label_smoothing,
        focal_alpha: config.loss.focal_alpha,
        focal_gamma: config.loss.focal_gamma,
        l1: config.loss.l1,
        l2: config.loss.l2,
    };
    let schedule = Schedule {
        kind: config.schedule.schedule,
        lr: config.optim.lr,
        epochs: config.optim.epochs,
        step_size: config.schedule.step_size,
        gamma: config.schedule.gamma,
        eta_min: config.schedule.eta_min,
        warmup_epochs: config.schedule.warmup_epochs,
    };
    let steps_per_epoch = train.len() / config.optim.batch_size
        + usize::from(train.len() % config.optim.batch_size >= 2);
    let mut stopped_early = state.stopped_early.clone();
    let total_steps = steps_per_epoch * config.optim.epochs;
    let mut lookahead: Option<Lookahead> = None;

    for epoch in state.epoch + 1..=config.optim.epochs {
        if stopped_early.is_some() {
            break;
        }
        if config.optim.lookahead_every.is_some()
            && epoch >= config.optim.lookahead_from
            && lookahead.is_none()
        {
            let (average, started) = Lookahead::new(model);
            (lookahead, model) = (Some(average), started);
        }
        ad_device.seed(epoch_seed(config.run.seed, epoch, 1));
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(
            config.run.seed,
            epoch,
            2,
        )));
        let plan = BatchPlan {
            batch_size: config.optim.batch_size,
            min_last: 2,
            normalization,
            augment: config.augment.any().then(|| {
                (
                    config.augment.clone(),
                    epoch_seed(config.run.seed, epoch, 3),
                )
            }),
            flip_phase: (config.augment.flip && config.augment.alternating_flip).then_some(
                FlipPhase {
                    seed: config.run.seed,
                    epoch,
                },
            ),
        };
        let bar = progress_bar(steps_per_epoch as u64, epoch, config.optim.epochs);
        let start = Instant::now();
        let (mut seen, mut loss_sum, mut correct) = (0usize, 0f64, 0usize);
        let mut pending: Option<(Tensor<1>, Tensor<1, Int>)> = None;
        let mut pending_from = 1;
        let epoch_lr = schedule.lr_at((epoch - 1) as f64);
        for (step, batch) in batches(train.clone(), order, plan).into_iter().enumerate() {
            let n = batch.len();
            let lr = schedule.lr_at((epoch - 1) as f64 + step as f64 / steps_per_epoch as f64);
            let batch = batch.to_device(&ad_device);
            let logits = model.forward(batch.images.clone());
            let mut loss = objective.loss(logits.clone(), batch.targets, &model);
            if let Some(teacher) = &teacher {
                loss = teacher.blend(loss, logits.clone(), batch.images);
            }
            let hits = logits
                .argmax(1)
                .reshape([n])
                .equal(batch.labels)
                .int()
                .sum();
            let batch_loss = loss.clone().detach() * n as f64;
            pending = Some(match pending.take() {
                Some((l, c)) => (l + batch_loss, c + hits),
                None => (batch_loss, hits),
            });
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            if let Some(max_norm) = config.optim.clip_norm {
                grads = clip::clip_global_norm(&model, grads, max_norm).0;
            }
            model = optimizer.step(lr, model, grads);
            if let (Some(average), Some(every)) = (&mut lookahead, config.optim.lookahead_every) {
                let global = (epoch - 1) * steps_per_epoch + step + 1;
                if global.is_multiple_of(every) {
                    model = average.update(model, Lookahead::decay(every, global, total_steps));
                }
            }
            seen += n;
            if (step + 1) % READ_EVERY == 0 || step + 1 == steps_per_epoch {
                let (l, c) = pending.take().expect("accumulated since the last read");
                let l = l.into_scalar::<f32>() as f64;
                if !l.is_finite() {
                    bar.abandon();
                    bail!(diverged(epoch, pending_from, step + 1, &run, &state));
                }
                loss_sum += l;
                correct += c.into_scalar::<i64>() as usize;
                pending_from = step + 2;
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} acc {:5.2}% lr {lr:.2e} {rate:.0} img/s",
                    loss_sum / seen as f64,
                    100.0 * correct as f64 / seen as f64
                ));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        if let Some(average) = &mut lookahead {
            model = average.update(model, 1.0);
        }
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
            lr: epoch_lr,
            seconds,
            images_per_sec: seen as f64 / seconds,
        };
        let score = metrics.val.map(|v| v.1).unwrap_or(metrics.train_accuracy);
        let improved = state.best_score.is_none_or(|b| score > b);
        if state
            .best_score
            .is_none_or(|b| score > b + config.stop.min_delta)
        {
            state.stale_epochs = 0;
        } else {
            state.stale_epochs += 1;
        }
        let info = checkpoint_info(normalization, &classes, &metrics, &run);
        let bytes = Checkpoint {
            model: model.valid(),
            info,
        }
        .to_bytes()?;
        run.write("last.safetensors", &bytes)?;
        if improved {
            state.best_score = Some(score);
            state.best_epoch = epoch;
            run.write("best.safetensors", &bytes)?;
        }
        println!("{}", epoch_line(&metrics, config.optim.epochs, improved));
        state.epoch = epoch;
        state.history.push(metrics);
        state.config = Some(config.clone());
        run.rewrite_metrics(&state.history)?;
        run.write("curves.png", &crate::plot::curves(&state.history)?)?;
        if let Some(patience) = config.stop.patience.filter(|&p| state.stale_epochs >= p) {
            let why = format!(
                "early stop after epoch {epoch}: validation accuracy has not improved by {} for {patience} epochs (best {:.2}% at epoch {})",
                config.stop.min_delta,
                100.0 * state.best_score.unwrap_or(0.0),
                state.best_epoch
            );
            println!("{why}");
            stopped_early = Some(why);
            state.stopped_early = stopped_early.clone();
        }
        if let Some(floor) = config
            .stop
            .cut_below
            .filter(|&f| epoch == config.stop.cut_after && score < f)
        {
            let why = format!(
                "cut after epoch {epoch}: accuracy {:.2}% is below --cut-below {:.2}%",
                100.0 * score,
                100.0 * floor
            );
            println!("{why}");
            stopped_early = Some(why);
            state.stopped_early = stopped_early.clone();
        }
        state.save(&run, &model, &optimizer)?;
    }

    let best_bytes = std::fs::read(run.file("best.safetensors"))?;
    let best_model = Checkpoint::from_bytes(&best_bytes, &device)?.model;
    let tta = config.run.tta;
    let test_eval = evaluate_with(&best_model, &test, normalization, &device, 256, tta)?;
    let history = &state.history;
    let summary = summary(&net, &selected.name, history, &test_eval, tta);
    run.write("summary.txt", summary.as_bytes())?;
    run.write(
        "summary.json",
        serde_json::to_string_pretty(&json!({
            "model": net.name,
            "parameters": model.parameter_count(),
            "backend": selected.name,
            "epochs": history.len(),
            "stopped_early": stopped_early,
            "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_score,
            "test_accuracy": test_eval.accuracy(),
            "test_tta": tta,
            "test_loss": test_eval.loss,
            "train_images_per_sec_mean": history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len() as f64,
            "total_train_seconds": history.iter().map(|m| m.seconds).sum::<f64>(),
        }))?
        .as_bytes(),
    )?;
    print!("{summary}");
    Ok(TrainOutcome {
        run_dir: run.path,
        epochs: state.history,
        stopped_early,
        test: test_eval,
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

fn checkpoint_info(
    normalization: Normalization,
    classes: &[String],
    m: &EpochMetrics,
    run: &RunDir,
) -> CheckpointInfo {
    let mut info = CheckpointInfo::new(normalization, classes.to_vec());
    info.training = json!({
        "run": run.path,
        "epoch": m.epoch,
        "train_accuracy": m.train_accuracy,
        "val_accuracy": m.val.map(|v| v.1),
    });
    info
}

fn diverged(epoch: usize, from: usize, to: usize, run: &RunDir, state: &TrainState) -> String {
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
    format!(
        "training diverged: the loss became NaN or infinite in epoch {epoch}, steps {from}–{to}; \
         {saved}. Try a lower --lr or --clip-norm."
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
        "epoch {}/{epochs}  train loss {:.4} acc {:5.2}%{val}  lr {:.2e}  {:.0} img/s  {:.1} s{}",
        m.epoch,
        m.train_loss,
        100.0 * m.train_accuracy,
        m.lr,
        m.images_per_sec,
        m.seconds,
        if improved { "  * best" } else { "" }
    )
}

fn summary(
    net: &ModelConfig,
    backend: &str,
    history: &[EpochMetrics],
    test: &Evaluation,
    tta: Tta,
) -> String {
    let train_secs: f64 = history.iter().map(|m| m.seconds).sum();
    let views = match tta {
        Tta::None => String::new(),
        other => format!(
            ", test-time augmentation {}",
            other
                .to_possible_value()
                .expect("no skipped variants")
                .get_name()
        ),
    };
    let mut s = format!(
        "\n{} trained {} epochs on {backend} in {train_secs:.0} s ({:.0} img/s mean)\n\
         Test accuracy (best checkpoint{views}): {:.2}% ({}/{}), test loss {:.4}\n",
        net.name,
        history.len(),
        history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len().max(1) as f64,
        100.0 * test.accuracy(),
        test.correct(),
        test.total(),
        test.loss
    );
    s.push_str(&crate::eval::per_class_table(test));
    s
}
