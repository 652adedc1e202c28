//! What the store hands out and takes back: studies, claims of trials, how a trial ended.

use anyhow::{Context, Result, ensure};

use super::super::sampler::{Params, Sampler};
use super::super::space::SearchSpec;
use super::super::trial::TrialState;
use crate::metrics::EpochMetrics;

/// A study: its name and search file.
#[derive(Clone, Debug, PartialEq)]
pub struct Study {
    /// Its name (the search folder's name under `--runs-dir`).
    pub name: String,
    /// The search file's text, as the study was created from it.
    pub text: String,
    /// The parsed search.
    pub spec: SearchSpec,
    /// How many trials it runs (a grid's size, else `trials`).
    pub total: usize,
}

impl Study {
    pub(super) fn new(name: &str, text: String) -> Result<Self> {
        let spec = SearchSpec::parse(&text)
            .with_context(|| format!("the search file of study `{name}`"))?;
        let total = Sampler::new(&spec)?.trials(&spec);
        Ok(Self {
            name: name.to_string(),
            text,
            spec,
            total,
        })
    }

    /// Refuses a search file that differs from the one the study was created from, naming
    /// each difference.
    pub fn check_same(&self, given: &SearchSpec) -> Result<()> {
        let differences = self.spec.differences(given);
        ensure!(
            differences.is_empty(),
            "study `{}` was created from another search: {}. Use the same search file, or \
             another --name for a new study",
            self.name,
            differences.join("; ")
        );
        Ok(())
    }
}

/// One claim of one trial: every later write about the trial names it, and only the latest
/// claim's writes count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    /// The study.
    pub study: String,
    /// The trial.
    pub number: usize,
    /// Which claim of the trial this is (1 for the first).
    pub attempt: u32,
}

/// A trial a worker claimed.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The claim.
    pub ticket: Ticket,
    /// The trial's options.
    pub params: Params,
    /// The run folder of its previous attempt, if one started.
    pub run_dir: Option<String>,
}

/// What a worker gets when it asks for work.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// A trial to run.
    Trial(Claimed),
    /// Nothing to claim now, but trials are running (and may be queued again).
    Wait,
    /// Every trial is over.
    Finished,
}

/// When a running trial's worker counts as dead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Recovery {
    /// Seconds without a heartbeat.
    pub grace: f64,
    /// How often a trial is queued again after its worker died, before it is failed.
    pub retries: u32,
}

/// A trial whose worker was given up while claiming.
#[derive(Clone, Debug, PartialEq)]
pub struct Silent {
    /// The trial.
    pub number: usize,
    /// Its worker.
    pub worker: String,
    /// `Queued` again, or `Failed` with no retries left.
    pub state: TrialState,
}

/// How a trial ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialEnd {
    /// `Done`, `Cut` or `Failed`.
    pub state: TrialState,
    /// Best validation accuracy (or test accuracy without a validation split).
    pub score: Option<f64>,
    /// Test accuracy of the best checkpoint.
    pub test_accuracy: Option<f64>,
    /// Wall time of the attempt.
    pub seconds: f64,
    /// The best checkpoint.
    pub checkpoint: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Every epoch's metrics (empty: keep the ones the heartbeats recorded).
    pub epochs: Vec<EpochMetrics>,
}
