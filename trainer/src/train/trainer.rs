//! The training step, once: [`Trainer`] holds the network, its optimizer, the objective, the
//! learning-rate schedule, an optional teacher and the lookahead average, and runs
//! [`Trainer::step`] on a batch and [`Trainer::epoch`] over an epoch's batches. `train`,
//! `lr-band`, `bench` and `search` all train through it, so `bench` times exactly the step that
//! `train` runs.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Int, Tensor};
use indicatif::ProgressBar;
use model::{Model, ModelConfig};

use super::TrainConfig;
use super::clip;
use super::distill::Teacher;
use super::lookahead::{Lookahead, LookaheadPlan};
use super::loss::Objective;
use super::optim::{self, OptimizerSpec};
use super::schedule::Schedule;
use crate::data::batcher::Batch;

/// Read the loss and accuracy back from the device every this many steps.
const READ_EVERY: usize = 10;

/// How many steps a run takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepPlan {
    /// Steps in a whole epoch.
    pub per_epoch: usize,
    /// Steps of the whole run: `⌈per_epoch × epochs⌉`, so a fractional last epoch stops early.
    pub total: usize,
}

impl StepPlan {
    /// The steps of `epochs` passes over `images` training images in batches of `batch_size`;
    /// the last, incomplete batch of each pass is dropped with `drop_last`, and otherwise kept
    /// when it has at least the 2 images batch norm needs.
    pub fn new(images: usize, batch_size: usize, epochs: f64, drop_last: bool) -> Self {
        let rest = images % batch_size;
        let per_epoch = images / batch_size + usize::from(!drop_last && rest >= 2);
        Self {
            per_epoch,
            total: (per_epoch as f64 * epochs).ceil() as usize,
        }
    }

    /// The smallest last batch an epoch's batcher may yield.
    pub fn min_last(batch_size: usize, drop_last: bool) -> usize {
        if drop_last { batch_size } else { 2 }
    }

    /// Epochs the run has, the last one perhaps partial.
    pub fn epochs(&self) -> usize {
        self.total.div_ceil(self.per_epoch.max(1))
    }
}

/// What [`Trainer::step`] leaves on the device: read back only now and then, so the device
/// never waits for the host.
pub struct StepStats {
    /// The batch's loss summed over its images.
    pub loss_sum: Tensor<1>,
    /// Images whose top prediction was their label.
    pub hits: Tensor<1, Int>,
}

/// Totals of one epoch's training steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochTotals {
    /// Images trained on.
    pub images: usize,
    /// Sum of the per-image losses.
    pub loss_sum: f64,
    /// Images predicted right (by the network before the step that learned from them).
    pub correct: usize,
    /// Wall time of the steps.
    pub seconds: f64,
    /// The learning rate of the epoch's first step.
    pub lr: f64,
}

impl EpochTotals {
    /// Mean training loss.
    pub fn loss(&self) -> f64 {
        self.loss_sum / self.images.max(1) as f64
    }

    /// Training accuracy (0–1).
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }
}

/// The loss became NaN or infinite between two read-backs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the loss became NaN or infinite in epoch {epoch}, steps {from}–{to}")]
pub struct Diverged {
    /// The epoch (1-based).
    pub epoch: usize,
    /// First step (1-based, within the epoch) since the last finite read-back.
    pub from: usize,
    /// Step at which it was seen.
    pub to: usize,
}

/// A run's training state as bytes: what `--resume` restores.
pub struct Snapshot {
    /// The network's record.
    pub model: Bytes,
    /// The optimizer's state.
    pub optimizer: Bytes,
    /// The lookahead average's record, once the average has started.
    pub average: Option<Bytes>,
}

impl From<&TrainConfig> for OptimizerSpec {
    fn from(config: &TrainConfig) -> Self {
        Self {
            kind: config.optim.optimizer,
            momentum: config.optim.momentum,
            nesterov: config.optim.nesterov,
            weight_decay: config.optim.weight_decay,
        }
    }
}

/// The network and everything that trains it.
pub struct Trainer {
    /// `None` only inside a step, while the optimizer owns the network.
    model: Option<Model>,
    optimizer: ModuleOptimizer,
    objective: Objective,
    schedule: Schedule,
    teacher: Option<Teacher>,
    lookahead: LookaheadPlan,
    average: Option<Lookahead>,
    clip_norm: Option<f64>,
    whiten_bias_epochs: Option<usize>,
    steps: StepPlan,
    /// Steps taken so far in the run.
    done: usize,
    /// The device with autodiff, where batches go.
    device: Device,
}

/// Initialises the network on the CPU with `seed`, so that every backend starts from the
/// same weights, then moves it to `device`.
pub(crate) fn init_model(config: &ModelConfig, device: &Device, seed: u64) -> Result<Model> {
    // The CPU device's generator is one per process: hold it from seeding to the last draw,
    // so runs in other threads (tests, a search's workers) cannot draw in between.
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let record = {
        let _held = GENERATOR
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cpu = Device::flex();
        cpu.seed(seed);
        config.init(&cpu)?.into_record()
    };
    Ok(config.init(device)?.try_load_record(record)?)
}

impl Trainer {
    /// Trains `model` (on the autodiff device `device`) as `config` says, for the steps of
    /// `steps`, distilling from `teacher` when there is one.
    pub fn new(
        model: Model,
        config: &TrainConfig,
        steps: StepPlan,
        teacher: Option<Teacher>,
        device: &Device,
    ) -> Self {
        let main = OptimizerSpec::from(config);
        let classifier = config.optim.classifier_optimizer.map(|kind| OptimizerSpec {
            kind,
            ..main.clone()
        });
        let classifier_factor =
            config.optim.classifier_lr.unwrap_or(config.optim.lr) / config.optim.lr;
        let optimizer = optim::build(
            &model,
            &main,
            classifier.as_ref().map(|c| (c, classifier_factor)),
            config.optim.norm_bias_lr_scale,
        );
        Self {
            model: Some(model),
            optimizer,
            objective: Objective::from(config),
            schedule: Schedule::from(config),
            teacher,
            lookahead: LookaheadPlan::from(config),
            average: None,
            clip_norm: config.optim.clip_norm,
            whiten_bias_epochs: config.optim.whiten_bias_epochs,
            steps,
            done: 0,
            device: device.clone(),
        }
    }

    /// The network as it is now.
    pub fn model(&self) -> &Model {
        self.model
            .as_ref()
            .expect("the network is back after every step")
    }

    /// The run's step plan.
    pub fn steps(&self) -> StepPlan {
        self.steps
    }

    /// Steps taken so far.
    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// Seeds the training device's generator (dropout masks, MixUp on the device).
    pub fn seed(&self, seed: u64) {
        self.device.seed(seed);
    }

    /// Whether every step of the run has been taken.
    pub fn finished(&self) -> bool {
        self.done >= self.steps.total
    }

    /// The epoch (1-based) of the next step.
    fn epoch_now(&self) -> usize {
        self.done / self.steps.per_epoch.max(1) + 1
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        self.schedule
            .lr_at(self.done as f64 / self.steps.per_epoch.max(1) as f64)
    }

    /// One step on `batch`: forward, loss (with the teacher's term), backward, gradient
    /// clipping, the optimizer's step at the scheduled rate, then the lookahead average when
    /// it is due. Nothing is read back from the device.
    pub fn step(&mut self, batch: Batch) -> StepStats {
        let epoch = self.epoch_now();
        let lr = self.lr();
        let n = batch.len();
        let mut model = self
            .model
            .take()
            .expect("the network is back after every step");
        if self.whiten_bias_epochs.is_some_and(|e| epoch > e) {
            model = model.freeze_whitening_bias();
        }
        let batch = batch.to_device(&self.device);
        let logits = model.forward(batch.images.clone());
        let mut loss = self.objective.loss(logits.clone(), batch.targets, &model);
        if let Some(teacher) = &self.teacher {
            loss = teacher.blend(loss, logits.clone(), batch.images);
        }
        let hits = logits
            .argmax(1)
            .reshape([n])
            .equal(batch.labels)
            .int()
            .sum();
        let loss_sum = loss.clone().detach() * n as f64;
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if let Some(max_norm) = self.clip_norm {
            grads = clip::clip_global_norm(&model, grads, max_norm).0;
        }
        model = self.optimizer.step(lr, model, grads);
        self.done += 1;
        model = self.lookahead_after_step(model, epoch);
        self.model = Some(model);
        StepStats { loss_sum, hits }
    }

    /// The lookahead average after step `self.done` of `epoch`: started or moved every
    /// `every` steps from epoch `from` on, and copied into the network after the run's last
    /// step (and, when the plan says so, after every epoch's last step).
    fn lookahead_after_step(&mut self, model: Model, epoch: usize) -> Model {
        let Some(every) = self.lookahead.every else {
            return model;
        };
        let mut model = model;
        if epoch >= self.lookahead.from && self.done.is_multiple_of(every) {
            model = match &mut self.average {
                None => {
                    let (average, model) = Lookahead::new(model);
                    self.average = Some(average);
                    model
                }
                Some(average) => {
                    let decay = Lookahead::decay(every, self.done, self.steps.total);
                    average.update(model, decay)
                }
            };
        }
        let epoch_end = self.done.is_multiple_of(self.steps.per_epoch.max(1));
        if (self.finished() || (epoch_end && self.lookahead.at_epoch_end))
            && let Some(average) = &mut self.average
        {
            model = average.update(model, 1.0);
        }
        model
    }

    /// Trains on `batches` (one epoch's, in order) until they run out or the run's last step
    /// is taken; reads the loss back every few steps, shows progress on `bar`, and fails as
    /// soon as the loss is not finite.
    pub fn epoch(
        &mut self,
        batches: impl IntoIterator<Item = Batch>,
        bar: &ProgressBar,
    ) -> Result<EpochTotals, Diverged> {
        let epoch = self.epoch_now();
        let start = Instant::now();
        let mut totals = EpochTotals {
            images: 0,
            loss_sum: 0.0,
            correct: 0,
            seconds: 0.0,
            lr: self.lr(),
        };
        let mut pending: Option<StepStats> = None;
        let mut unread_from = 1;
        let mut step = 0;
        for batch in batches {
            if self.finished() {
                break;
            }
            let lr = self.lr();
            totals.images += batch.len();
            let stats = self.step(batch);
            step += 1;
            pending = Some(match pending.take() {
                Some(p) => StepStats {
                    loss_sum: p.loss_sum + stats.loss_sum,
                    hits: p.hits + stats.hits,
                },
                None => stats,
            });
            if step % READ_EVERY == 0 || self.finished() {
                self.read_back(&mut pending, &mut totals, epoch, &mut unread_from, step)?;
                let rate = totals.images as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} acc {:5.2}% lr {lr:.2e} {rate:.0} img/s",
                    totals.loss(),
                    100.0 * totals.accuracy()
                ));
            }
            bar.inc(1);
        }
        self.read_back(&mut pending, &mut totals, epoch, &mut unread_from, step)?;
        totals.seconds = start.elapsed().as_secs_f64();
        Ok(totals)
    }

    /// Adds the steps accumulated in `pending` to `totals`.
    fn read_back(
        &self,
        pending: &mut Option<StepStats>,
        totals: &mut EpochTotals,
        epoch: usize,
        unread_from: &mut usize,
        step: usize,
    ) -> Result<(), Diverged> {
        let Some(stats) = pending.take() else {
            return Ok(());
        };
        let loss = stats.loss_sum.into_scalar::<f32>() as f64;
        if !loss.is_finite() {
            return Err(Diverged {
                epoch,
                from: *unread_from,
                to: step,
            });
        }
        totals.loss_sum += loss;
        totals.correct += stats.hits.into_scalar::<i64>() as usize;
        *unread_from = step + 1;
        Ok(())
    }

    /// The network, the optimizer's state and the lookahead average, as bytes.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let model = self.model();
        model.sync_running_stats();
        Ok(Snapshot {
            model: model.clone().into_record().into_bytes()?,
            optimizer: self.optimizer.into_bytes()?,
            average: match &self.average {
                Some(average) => Some(average.as_model(model).into_record().into_bytes()?),
                None => None,
            },
        })
    }

    /// The trainer continuing a run from `snapshot`, taken after epoch `epochs_done`.
    pub fn restore(mut self, snapshot: Snapshot, epochs_done: usize) -> Result<Self> {
        let model = self
            .model
            .take()
            .expect("the network is back after every step");
        let load = |model: Model, bytes: Bytes| -> Result<Model> {
            let record = ModuleRecord::from_bytes(bytes)?;
            Ok(model
                .try_load_record(record)
                .context("the saved state does not fit this model")?
                .fork(&self.device))
        };
        self.model = Some(load(model.clone(), snapshot.model)?);
        self.average = match snapshot.average {
            Some(bytes) => Some(Lookahead::from_model(&load(model, bytes)?)),
            None => None,
        };
        self.optimizer = self.optimizer.from_bytes(snapshot.optimizer)?;
        self.done = (epochs_done * self.steps.per_epoch).min(self.steps.total);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::lookahead::tests::values;
    use model::IMAGE_VALUES;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_step_plan_counts_airbench_steps() {
        // airbench94: 50,000 images in batches of 1,024 without the last 848, for 9.9 epochs.
        let plan = StepPlan::new(50_000, 1024, 9.9, true);
        assert_eq!((plan.per_epoch, plan.total, plan.epochs()), (48, 476, 10));
        let plan = StepPlan::new(50_000, 1024, 11.0, true);
        assert_eq!((plan.per_epoch, plan.total, plan.epochs()), (48, 528, 11));
        // Kept, the last batch adds a step; a last batch of one image never trains.
        assert_eq!(StepPlan::new(50_000, 1024, 1.0, false).per_epoch, 49);
        assert_eq!(StepPlan::new(1025, 1024, 1.0, false).per_epoch, 1);
        assert_eq!(StepPlan::min_last(1024, true), 1024);
        assert_eq!(StepPlan::min_last(1024, false), 2);
    }

    /// Eight random images with random labels.
    fn batch(seed: u64) -> Batch {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = 8;
        let labels: Vec<i64> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let mut targets = vec![0f32; n * 10];
        for (i, &l) in labels.iter().enumerate() {
            targets[i * 10 + l as usize] = 1.0;
        }
        Batch {
            images: (0..n * IMAGE_VALUES)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
            labels,
            targets,
            classes: 10,
        }
    }

    /// A trainer of `network` with SGD, steps of 4 per epoch and 8 in all, and `flags`.
    fn trainer_of(network: &str, flags: &str) -> Trainer {
        let device = Device::flex().autodiff();
        let config = TrainConfig::layered(&[(
            "test".into(),
            toml::from_str(&format!(
                "model = \"{network}\"\noptimizer = \"sgd\"\nlr = 0.05\n{flags}"
            ))
            .unwrap(),
        )])
        .unwrap();
        let net = model::ModelConfig::from_name(network, &Default::default()).unwrap();
        let model = init_model(&net, &device, 3).unwrap();
        let steps = StepPlan {
            per_epoch: 4,
            total: 8,
        };
        Trainer::new(model, &config, steps, None, &device)
    }

    fn trainer(flags: &str) -> Trainer {
        trainer_of("tiny-cnn", &format!("lookahead-every = 3\n{flags}"))
    }

    fn average(trainer: &Trainer) -> Vec<Vec<f32>> {
        let average = trainer.average.as_ref().expect("the average started");
        values(&average.as_model(trainer.model()))
    }

    #[test]
    fn lookahead_copies_its_average_every_few_steps_and_after_the_last() {
        for at_epoch_end in [false, true] {
            let mut t = trainer(&format!("lookahead-epoch-end = {at_epoch_end}"));
            for seed in 0..3 {
                t.step(batch(seed));
            }
            assert!(t.average.is_some(), "the first update (step 3) starts it");
            assert_eq!(values(t.model()), average(&t), "copied back at step 3");
            t.step(batch(3));
            // Step 4 ends the epoch but is no multiple of 3: the network has moved on unless
            // the average is copied at every epoch's end.
            assert_eq!(values(t.model()) == average(&t), at_epoch_end);
            for seed in 4..8 {
                t.step(batch(seed));
            }
            assert!(t.finished());
            assert_eq!(values(t.model()), average(&t), "copied after the last step");
            // What is saved and tested is the average too, batch-norm statistics included
            // (the last forward pass's are not left pending behind it).
            assert_eq!(values(&t.model().valid()), average(&t));
        }
    }

    #[test]
    fn the_whitening_bias_freezes_after_its_epochs() {
        // The whitening layer's bias is the second tensor airbench93 visits, after its filters.
        let bias = |t: &Trainer| {
            let all = values(t.model());
            assert_eq!(all[1].len(), 24);
            all[1].clone()
        };
        for frozen_after in [1, 2] {
            let mut t = trainer_of(
                "airbench93",
                &format!("whiten-bias-epochs = {frozen_after}"),
            );
            let start = bias(&t);
            for seed in 0..4 {
                t.step(batch(seed));
            }
            let after_one = bias(&t);
            assert_ne!(after_one, start, "the bias learns in epoch 1");
            for seed in 4..8 {
                t.step(batch(seed));
            }
            assert_eq!(bias(&t) == after_one, frozen_after == 1);
        }
    }

    #[test]
    fn lookahead_starts_with_its_first_epoch_and_survives_a_snapshot() {
        let mut t = trainer("lookahead-from = 2");
        for seed in 0..4 {
            t.step(batch(seed));
        }
        assert!(t.average.is_none(), "step 3 is in epoch 1");
        for seed in 4..6 {
            t.step(batch(seed));
        }
        assert!(t.average.is_some(), "step 6 is the first update of epoch 2");
        t.step(batch(6));
        let snapshot = t.snapshot().unwrap();
        let restored = trainer("lookahead-from = 2").restore(snapshot, 1).unwrap();
        assert_eq!(values(restored.model()), values(t.model()));
        assert_eq!(average(&restored), average(&t));
    }
}
