//! One trial of a study as the store holds it: its options, where it stands, who ran it and
//! what it scored.

use anyhow::{Result, bail};

use super::sampler::Params;
use crate::metrics::EpochMetrics;

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrialState {
    /// Waiting for a worker (new, released by Ctrl-C, or its worker went silent).
    Queued,
    /// A worker trains it and sends heartbeats.
    Running,
    /// Trained to the end.
    Done,
    /// Training failed, or its workers went silent more often than `--retries` allows.
    Failed,
    /// Stopped by the search's `cut-below` after its first epoch (it keeps its score).
    Cut,
}

impl TrialState {
    /// Every state, as the store writes them.
    pub const ALL: [TrialState; 5] = [
        TrialState::Queued,
        TrialState::Running,
        TrialState::Done,
        TrialState::Failed,
        TrialState::Cut,
    ];

    /// The state's name in the store and in `search.csv`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Queued => "queued",
            TrialState::Running => "running",
            TrialState::Done => "done",
            TrialState::Failed => "failed",
            TrialState::Cut => "cut",
        }
    }

    /// The state named `name`.
    pub fn parse(name: &str) -> Result<Self> {
        match Self::ALL.into_iter().find(|s| s.as_str() == name) {
            Some(state) => Ok(state),
            None => bail!("`{name}` is not a trial state"),
        }
    }

    /// Whether the trial is over (done, failed or cut).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TrialState::Done | TrialState::Failed | TrialState::Cut
        )
    }
}

/// A trial and what is known of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Trial number, from 0 (trial `k` of a grid is the grid's `k`-th point).
    pub number: usize,
    /// Where it stands.
    pub state: TrialState,
    /// The searched options.
    pub params: Params,
    /// How often a worker claimed it.
    pub attempts: u32,
    /// How often its worker went silent (each may queue it again, up to `--retries`).
    pub lost: u32,
    /// The worker that claimed it last (`host:pid`).
    pub worker: Option<String>,
    /// Best validation accuracy (test accuracy when there is no validation split).
    pub score: Option<f64>,
    /// Test accuracy of the best checkpoint.
    pub test_accuracy: Option<f64>,
    /// Wall time of the attempt that finished it.
    pub seconds: Option<f64>,
    /// Its run folder.
    pub run_dir: Option<String>,
    /// Its best checkpoint.
    pub checkpoint: Option<String>,
    /// Why it failed, or why its last worker was given up.
    pub error: Option<String>,
    /// Metrics of each epoch trained so far.
    pub epochs: Vec<EpochMetrics>,
}

impl Trial {
    /// The status column of `search.csv`: the state, and for a failure its reason.
    pub fn status(&self) -> String {
        match (&self.state, &self.error) {
            (TrialState::Failed, Some(why)) => format!("failed: {}", why.replace('\n', "; ")),
            (state, _) => state.as_str().to_string(),
        }
    }

    /// One line about the trial: `trial 3: done, score 45.21%, test 44.10% (host:812)`.
    pub fn summary(&self) -> String {
        let percent = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
        let mut line = format!(
            "trial {}: {}, score {}, test {}",
            self.number,
            self.status(),
            percent(self.score),
            percent(self.test_accuracy)
        );
        if let Some(worker) = &self.worker {
            line.push_str(&format!(" ({worker}"));
            if self.attempts > 1 {
                line.push_str(&format!(", attempt {}", self.attempts));
            }
            line.push(')');
        }
        line
    }
}
