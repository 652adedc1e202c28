//! What `--resume` needs: after every epoch the trainer's full state (network, optimizer,
//! lookahead average) is written under `state/`, then `state.json` names that epoch and holds
//! the configuration. Every file is written atomically and `state.json` last, so a run killed
//! at any moment resumes from the last completed epoch.

use anyhow::{Context, Result, bail};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use super::run_dir::{EpochMetrics, RunDir};
use super::stop::{Progress, StopReason};
use super::trainer::Snapshot;

/// Progress of a run, saved as `state.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// Last completed epoch (0 before the first).
    pub epoch: usize,
    /// The best validation accuracy so far, for the best checkpoint and early stopping.
    pub progress: Progress,
    /// Why the run stopped early, if it did.
    pub stopped_early: Option<StopReason>,
    /// Metrics of every completed epoch.
    pub history: Vec<EpochMetrics>,
    /// The configuration the saved epoch was trained with: what `--resume` continues from
    /// (`config.toml` beside it is the readable copy).
    pub config: Option<TrainConfig>,
}

fn state_file(epoch: usize, part: &str) -> String {
    format!("state/epoch-{epoch}.{part}.bpk")
}

impl TrainState {
    /// Writes `snapshot` as the state of `self.epoch`, then `state.json`, then removes older
    /// state files.
    pub fn save(&self, run: &RunDir, snapshot: &Snapshot) -> Result<()> {
        std::fs::create_dir_all(run.file("state"))?;
        run.write(&state_file(self.epoch, "model"), &snapshot.model)?;
        run.write(&state_file(self.epoch, "optim"), &snapshot.optimizer)?;
        if let Some(average) = &snapshot.average {
            run.write(&state_file(self.epoch, "average"), average)?;
        }
        run.write("state.json", serde_json::to_string_pretty(self)?.as_bytes())?;
        let current = format!("epoch-{}.", self.epoch);
        for entry in std::fs::read_dir(run.file("state"))? {
            let name = entry?.file_name().to_string_lossy().to_string();
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
        let state: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged or was written by another version of the trainer",
                path.display()
            )
        })?;
        if state.history.len() != state.epoch {
            bail!(
                "state.json of {} is inconsistent: {} epochs of metrics for epoch {}",
                run.path.display(),
                state.history.len(),
                state.epoch
            );
        }
        Ok(state)
    }

    /// The trainer's state saved for `self.epoch`.
    pub fn snapshot(&self, run: &RunDir) -> Result<Snapshot> {
        let read = |part: &str| -> Result<Bytes> {
            let path = run.file(&state_file(self.epoch, part));
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            Ok(Bytes::from_bytes_vec(bytes))
        };
        let average = run.file(&state_file(self.epoch, "average"));
        Ok(Snapshot {
            model: read("model")?,
            optimizer: read("optim")?,
            average: if average.is_file() {
                Some(read("average")?)
            } else {
                None
            },
        })
    }
}
