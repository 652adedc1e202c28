//! One worker of a study: claims a trial, trains it as a normal run folder while a second
//! thread sends heartbeats (and the epochs trained so far) to the store, records how it ended,
//! and asks for the next, until every trial is over. A trial left by a dead worker resumes
//! from its run folder's last epoch when the folder is reachable. Ctrl-C gives the running
//! trial back to the study.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::runner::trial_config;
use super::signals;
use super::store::{Claim, Claimed, Recovery, Storage, Store, Study, Ticket, TrialEnd};
use super::table::write_csv;
use super::trial::TrialState;
use crate::train::run_dir::read_metrics;
use crate::train::{self, TrainJob, TrainOutcome};

/// How often a waiting or training worker looks for Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

/// How a worker runs.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerOptions {
    /// Where the study's folder (`<runs-dir>/<study>`, with a run folder per trial) goes.
    pub runs_dir: PathBuf,
    /// Time between heartbeats (and between looks for work while others finish).
    pub heartbeat: Duration,
    /// When another worker counts as dead.
    pub recovery: Recovery,
}

/// How a worker's loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerEnd {
    /// Every trial of the study is over.
    Finished,
    /// Ctrl-C or SIGTERM between trials.
    Stopped,
}

/// This process as a worker: `host:pid`.
pub fn worker_id() -> String {
    format!("{}:{}", host_name(), std::process::id())
}

/// The machine's name, for worker ids and log names.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Runs trials of `study` until none is left (or Ctrl-C).
pub fn work(storage: &Storage, study: &Study, options: &WorkerOptions) -> Result<WorkerEnd> {
    signals::watch()?;
    let worker = worker_id();
    let mut store = storage.open()?;
    let dir = options.runs_dir.join(&study.name);
    eprintln!("worker {worker}: study `{}` in {storage}", study.name);
    loop {
        if signals::stop_requested() {
            return Ok(WorkerEnd::Stopped);
        }
        let (claim, silent) = store.claim(study, &worker, &options.recovery)?;
        for lost in silent {
            let next = match lost.state {
                TrialState::Queued => "queued again",
                _ => "failed: no retries left",
            };
            eprintln!(
                "trial {}: worker {} went silent; {next}",
                lost.number, lost.worker
            );
        }
        match claim {
            Claim::Finished => return Ok(WorkerEnd::Finished),
            Claim::Wait => {
                let until = Instant::now() + options.heartbeat;
                while Instant::now() < until && !signals::stop_requested() {
                    thread::sleep(POLL.min(options.heartbeat));
                }
            }
            Claim::Trial(claimed) => {
                let number = claimed.ticket.number;
                run_trial(storage, &mut store, study, &dir, claimed, options)?;
                let trials = store.trials(study)?;
                if let Some(trial) = trials.iter().find(|t| t.number == number) {
                    eprintln!("{}", trial.summary());
                }
                std::fs::create_dir_all(&dir)?;
                write_csv(&dir.join("search.csv"), &study.spec, &trials)?;
            }
        }
    }
}

/// Trains a claimed trial and records how it ended; a failed training is a result, not an
/// error.
fn run_trial(
    storage: &Storage,
    store: &mut Store,
    study: &Study,
    dir: &Path,
    claimed: Claimed,
    options: &WorkerOptions,
) -> Result<()> {
    let ticket = claimed.ticket;
    let name = format!("trial-{:03}", ticket.number);
    let (run_dir, resume) = run_folder(claimed.run_dir.as_deref(), &dir.join(&name));
    store.started(&ticket, &run_dir.display().to_string())?;
    if resume {
        eprintln!(
            "trial {}: resuming {} (attempt {})",
            ticket.number,
            run_dir.display(),
            ticket.attempt
        );
    }
    let heartbeat = Heartbeat::start(storage, &ticket, &run_dir, options.heartbeat);
    let start = Instant::now();
    let outcome =
        trial_config(&study.spec, dir, ticket.number, &claimed.params, name).and_then(|config| {
            train::run(&TrainJob {
                config,
                resume: resume.then(|| run_dir.clone()),
            })
        });
    heartbeat.stop();
    let end = trial_end(outcome, start.elapsed().as_secs_f64());
    if !store.finish(&ticket, &end)? {
        eprintln!(
            "trial {}: this worker was given up as silent and the trial went to another; \
             its result here is not recorded",
            ticket.number
        );
    }
    Ok(())
}

/// Where a claimed trial trains: the folder of an earlier attempt that finished an epoch
/// (resumed), else `own`, emptied of anything an attempt left before its first epoch.
fn run_folder(earlier: Option<&str>, own: &Path) -> (PathBuf, bool) {
    let resumable = earlier
        .map(PathBuf::from)
        .into_iter()
        .chain([own.to_path_buf()])
        .find(|dir| dir.join("state.json").is_file());
    match resumable {
        Some(dir) => (dir, true),
        None => {
            let _ = std::fs::remove_dir_all(own);
            (own.to_path_buf(), false)
        }
    }
}

/// How a trial ended, from what training returned.
fn trial_end(outcome: Result<TrainOutcome>, seconds: f64) -> TrialEnd {
    match outcome {
        Ok(outcome) => {
            let test = outcome.test.accuracy();
            let best_val = outcome
                .epochs
                .iter()
                .filter_map(|m| m.val.map(|(_, acc)| acc))
                .reduce(f64::max);
            TrialEnd {
                state: if was_cut(&outcome) {
                    TrialState::Cut
                } else {
                    TrialState::Done
                },
                score: Some(best_val.unwrap_or(test)),
                test_accuracy: Some(test),
                seconds,
                checkpoint: Some(
                    outcome
                        .run_dir
                        .join("best.safetensors")
                        .display()
                        .to_string(),
                ),
                error: None,
                epochs: outcome.epochs,
            }
        }
        Err(e) => TrialEnd {
            state: TrialState::Failed,
            score: None,
            test_accuracy: None,
            seconds,
            checkpoint: None,
            error: Some(format!("{e:#}")),
            epochs: Vec::new(),
        },
    }
}

/// Whether the search's `cut-below` stopped the run (the one place that reads why a run
/// stopped early).
fn was_cut(outcome: &TrainOutcome) -> bool {
    matches!(outcome.stopped_early, Some(train::StopReason::Cut { .. }))
}

/// A running trial's heartbeat: a thread with its own connection that, every interval, tells
/// the store the trial is alive and records the epochs the run folder's `metrics.csv` holds,
/// and on Ctrl-C gives the trial back and ends the process.
struct Heartbeat {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Heartbeat {
    fn start(storage: &Storage, ticket: &Ticket, run_dir: &Path, every: Duration) -> Self {
        let (stop, stopped) = mpsc::channel();
        let (storage, ticket, run_dir) = (storage.clone(), ticket.clone(), run_dir.to_path_buf());
        let thread = thread::spawn(move || beat(&storage, &ticket, &run_dir, every, &stopped));
        Self { stop, thread }
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn beat(
    storage: &Storage,
    ticket: &Ticket,
    run_dir: &Path,
    every: Duration,
    stopped: &mpsc::Receiver<()>,
) {
    let mut store = None;
    let mut last = Instant::now();
    let mut warned = false;
    loop {
        match stopped.recv_timeout(POLL.min(every)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        if signals::stop_requested() {
            let released = store
                .get_or_insert_with(|| storage.open())
                .as_mut()
                .map_err(|e| anyhow::anyhow!("{e:#}"))
                .and_then(|s| s.release(ticket));
            match released {
                Ok(_) => eprintln!(
                    "stopped: trial {} goes back to the study (its run folder {} resumes from \
                     its last epoch)",
                    ticket.number,
                    run_dir.display()
                ),
                Err(e) => eprintln!("stopped: trial {} not released: {e:#}", ticket.number),
            }
            std::process::exit(130);
        }
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let result = match store.get_or_insert_with(|| storage.open()) {
            Ok(s) => s.heartbeat(ticket).and_then(|alive| {
                s.add_epochs(ticket, &read_metrics(run_dir))?;
                Ok(alive)
            }),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        match result {
            Ok(true) => {}
            Ok(false) if !warned => {
                warned = true;
                eprintln!(
                    "trial {}: the store gave this worker up as silent; the trial may run \
                     elsewhere",
                    ticket.number
                );
            }
            Ok(false) => {}
            Err(e) => {
                eprintln!("trial {}: heartbeat failed: {e:#}", ticket.number);
                store = None;
            }
        }
    }
}
