//! What `--resume` needs: after every epoch the model's and optimizer's full training state
//! is written under `state/`, then `state.json` names that epoch and holds the configuration. Every file is written
//! atomically and `state.json` last, so a run killed at any moment resumes from the last
//! completed epoch.

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use model::Model;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use super::run_dir::{EpochMetrics, RunDir};

/// Progress of a run, saved as `state.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Last completed epoch (0 before the first).
    pub epoch: usize,
    /// Best validation (or training) accuracy so far.
    pub best_score: Option<f64>,
    /// Epoch of the best score.
    pub best_epoch: usize,
    /// Epochs since the last improvement by at least `min_delta`.
    pub stale_epochs: usize,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<String>,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
    /// The configuration the saved epoch was trained with: what `--resume` continues from
    /// (`config.toml` beside it is the readable copy). Absent in runs of older builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TrainConfig>,
}

fn model_file(epoch: usize) -> String {
    format!("state/epoch-{epoch}.model.bpk")
}

fn optimizer_file(epoch: usize) -> String {
    format!("state/epoch-{epoch}.optim.bpk")
}

impl TrainState {
    /// Writes the model and optimizer state of `self.epoch`, then `state.json`, then removes
    /// older state files.
    pub fn save(&self, run: &RunDir, model: &Model, optimizer: &ModuleOptimizer) -> Result<()> {
        std::fs::create_dir_all(run.file("state"))?;
        let model_bytes = model.clone().into_record().into_bytes()?;
        run.write(&model_file(self.epoch), &model_bytes)?;
        run.write(&optimizer_file(self.epoch), &optimizer.into_bytes()?)?;
        run.write("state.json", serde_json::to_string_pretty(self)?.as_bytes())?;
        for entry in std::fs::read_dir(run.file("state"))? {
            let name = entry?.file_name().to_string_lossy().to_string();
            let current = format!("epoch-{}.", self.epoch);
            if !name.starts_with(&current) {
                let _ = std::fs::remove_file(run.file("state").join(name));
            }
        }
        Ok(())
    }

    /// Reads `state.json` of a run folder.
    pub fn load(run: &RunDir) -> Result<Self> {
        let path = run.file("state.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot resume {}: no completed epoch was saved ({} is missing)",
                run.path.display(),
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Puts the saved weights and optimizer state into `model` and `optimizer`.
    pub fn restore(
        &self,
        run: &RunDir,
        model: Model,
        optimizer: ModuleOptimizer,
        device: &Device,
    ) -> Result<(Model, ModuleOptimizer)> {
        let read = |file: String| -> Result<Bytes> {
            let path = run.file(&file);
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok(Bytes::from_bytes_vec(bytes))
        };
        let record = ModuleRecord::from_bytes(read(model_file(self.epoch))?)?;
        let model = model.try_load_record(record).with_context(|| {
            format!(
                "the saved state in {} does not fit this model",
                run.path.display()
            )
        })?;
        let model = model.fork(device);
        let optimizer = optimizer.from_bytes(read(optimizer_file(self.epoch))?)?;
        if self.history.len() != self.epoch {
            bail!(
                "state.json of {} is inconsistent: {} epochs of metrics for epoch {}",
                run.path.display(),
                self.history.len(),
                self.epoch
            );
        }
        Ok((model, optimizer))
    }
}
