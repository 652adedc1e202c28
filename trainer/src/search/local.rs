//! `--workers N`: N worker processes of this program on this machine, each a full worker of
//! the study with its own log file, while this process reports the trials as they end and
//! passes a termination request (SIGTERM, which reaches it alone) on to them.

use std::collections::BTreeSet;
use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use super::signals;
use super::store::{Storage, Store, Study};
use super::worker::{WorkerEnd, WorkerOptions, host_name};

/// Starts `count` workers of `study` and waits for them.
pub fn run_workers(
    count: usize,
    storage: &Storage,
    study: &Study,
    options: &WorkerOptions,
) -> Result<WorkerEnd> {
    signals::watch()?;
    let program = std::env::current_exe().context("cannot find this program to start workers")?;
    let logs = options.runs_dir.join(&study.name).join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let mut workers = Vec::new();
    for i in 1..=count {
        let log = logs.join(format!(
            "{}-{}-worker{i}.log",
            host_name(),
            std::process::id()
        ));
        let file =
            File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(&program)
            .arg("search")
            .args(["--storage", &storage.url(), "--name", &study.name])
            .arg("--runs-dir")
            .arg(&options.runs_dir)
            .args([
                "--heartbeat",
                &options.heartbeat.as_secs_f64().to_string(),
                "--grace",
                &options.recovery.grace.to_string(),
                "--retries",
                &options.recovery.retries.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        workers.push((child, log));
    }
    eprintln!(
        "{count} workers on study `{}`; their output goes to {}",
        study.name,
        logs.display()
    );
    let mut store = storage.open()?;
    let mut reported = BTreeSet::new();
    let mut passed_on = false;
    let poll = options.heartbeat.min(Duration::from_secs(1));
    while !workers.is_empty() {
        report_ended(&mut store, study, &mut reported)?;
        workers.retain_mut(|(child, log)| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                if !status.success() && !signals::stop_requested() {
                    eprintln!(
                        "worker {} ended ({status}); see {}",
                        child.id(),
                        log.display()
                    );
                }
                false
            }
            Err(e) => {
                eprintln!("cannot watch worker {}: {e}", child.id());
                false
            }
        });
        if signals::terminated() && !passed_on {
            workers.iter().for_each(|(child, _)| interrupt(child));
            passed_on = true;
        }
        thread::sleep(poll);
    }
    report_ended(&mut store, study, &mut reported)?;
    if signals::stop_requested() {
        return Ok(WorkerEnd::Stopped);
    }
    let trials = store.trials(study)?;
    ensure!(
        trials.len() == study.total && trials.iter().all(|t| t.state.is_finished()),
        "the workers ended before the study was over: see {}",
        logs.display()
    );
    Ok(WorkerEnd::Finished)
}

/// Prints each trial that ended since the last call.
fn report_ended(store: &mut Store, study: &Study, reported: &mut BTreeSet<usize>) -> Result<()> {
    for trial in store.trials(study)? {
        if trial.state.is_finished() && reported.insert(trial.number) {
            println!("{}", trial.summary());
        }
    }
    Ok(())
}

/// Asks a worker to stop as Ctrl-C does (it gives its trial back to the study).
#[cfg(unix)]
fn interrupt(child: &Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a child's process id and a signal number has no memory effects.
        unsafe {
            libc::kill(pid, libc::SIGINT);
        }
    }
}

/// Elsewhere the console's Ctrl-C reaches every worker itself.
#[cfg(not(unix))]
fn interrupt(_child: &Child) {}
