//! `trainer search`: opens the study in its store (creating it from `--config`, or joining
//! it), runs one worker in this process or `--workers N` worker processes, and writes
//! `search.csv` from the store.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Command, FromArgMatches};

use super::local::run_workers;
use super::sampler::Params;
use super::space::SearchSpec;
use super::store::{Recovery, Storage, Store};
use super::table::write_csv;
use super::trial::Trial;
use super::worker::{WorkerEnd, WorkerOptions, work};
use crate::io::write_atomic;
use crate::train::{TrainConfig, config};

/// Options of `trainer search`.
#[derive(Args, Clone, Debug)]
pub struct SearchArgs {
    /// The search file (TOML: method, trials, epochs, [fixed], [space]): creates the study, or
    /// joins it when it exists with the same search. Without it, joins the study named by
    /// --name (or the store's only study).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The study's name, and its folder's under --runs-dir [default: the search file's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Where the study's folder goes, with a run folder per trial (on a cluster: a file
    /// system every worker shares).
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// The study store: sqlite:PATH (workers on this machine) or
    /// postgres://user:password@host:port/database (workers anywhere)
    /// [default: sqlite:<runs-dir>/<name>/study.db].
    #[arg(long)]
    pub storage: Option<String>,
    /// Worker processes to start on this machine, each training one trial at a time.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Seconds between a running trial's heartbeats.
    #[arg(long, default_value_t = 10.0)]
    pub heartbeat: f64,
    /// Seconds without a heartbeat after which a trial's worker counts as dead and the
    /// trial is queued again (give every worker of a study the same value).
    #[arg(long, default_value_t = 60.0)]
    pub grace: f64,
    /// How often a trial whose worker died is queued again before it counts as failed.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Only continue an existing study: refuse to start a new one.
    #[arg(long)]
    pub resume: bool,
}

impl SearchArgs {
    /// Parses the arguments of `trainer search` (without the program and subcommand names).
    pub fn parse<S: AsRef<OsStr>>(args: &[S]) -> Result<Self> {
        let command = Self::augment_args(Command::new("search"));
        let argv = std::iter::once(OsStr::new("search")).chain(args.iter().map(AsRef::as_ref));
        Ok(Self::from_arg_matches(
            &command.try_get_matches_from(argv)?,
        )?)
    }
}

/// The name of the only study in `store`.
pub fn sole_study(store: &mut Store, storage: &Storage) -> Result<String> {
    let names = store.study_names()?;
    match names.as_slice() {
        [name] => Ok(name.clone()),
        [] => bail!("{storage} holds no study yet: start one with --config FILE"),
        _ => bail!(
            "{storage} holds the studies {}: choose one with --name",
            names.join(", ")
        ),
    }
}

/// Runs the search (or this worker's share of it) to its end; returns every trial.
pub fn run(args: &SearchArgs) -> Result<Vec<Trial>> {
    ensure!(
        args.heartbeat > 0.0 && args.heartbeat.is_finite(),
        "--heartbeat must be a positive number of seconds"
    );
    ensure!(
        args.grace > args.heartbeat && args.grace.is_finite(),
        "--grace ({} s) must be longer than --heartbeat ({} s)",
        args.grace,
        args.heartbeat
    );
    ensure!(args.workers >= 1, "--workers must be at least 1");
    let text = match &args.config {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
        ),
        None => None,
    };
    let name = args.name.clone().or_else(|| {
        args.config
            .as_ref()
            .and_then(|file| file.file_stem())
            .map(|stem| stem.to_string_lossy().into_owned())
    });
    // Absolute, so that the run folders and checkpoints the store records name the same files
    // from every worker and every machine that mounts them at the same place.
    let runs_dir = std::path::absolute(&args.runs_dir)
        .with_context(|| format!("cannot locate {}", args.runs_dir.display()))?;
    let storage = match (&args.storage, &name) {
        (Some(url), _) => Storage::parse(url)?,
        (None, Some(name)) => Storage::Sqlite(runs_dir.join(name).join("study.db")),
        (None, None) => bail!("which study? Give --config FILE, --name NAME or --storage URL"),
    };
    let mut store = storage.open()?;
    let name = match name {
        Some(name) => name,
        None => sole_study(&mut store, &storage)?,
    };
    let study = match (&text, args.resume) {
        (Some(text), false) => {
            let (study, created) = store
                .create_or_join(&name, text)
                .with_context(|| format!("in {storage}"))?;
            let verb = if created { "created" } else { "joined" };
            eprintln!("{verb} study `{name}` in {storage}: {} trials", study.total);
            study
        }
        (given, _) => {
            let study = store.study(&name).with_context(|| {
                format!("in {storage}; without --resume, --config FILE starts it")
            })?;
            if let Some(text) = given {
                study.check_same(&SearchSpec::parse(text)?)?;
            }
            study
        }
    };
    let dir = runs_dir.join(&study.name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_atomic(&dir.join("search.toml"), study.text.as_bytes())?;
    let options = WorkerOptions {
        runs_dir,
        heartbeat: Duration::from_secs_f64(args.heartbeat),
        recovery: Recovery {
            grace: args.grace,
            retries: args.retries,
        },
    };
    let end = if args.workers == 1 {
        work(&storage, &study, &options)?
    } else {
        run_workers(args.workers, &storage, &study, &options)?
    };
    let trials = store.trials(&study)?;
    write_csv(&dir.join("search.csv"), &study.spec, &trials)?;
    if end == WorkerEnd::Stopped {
        let over = trials.iter().filter(|t| t.state.is_finished()).count();
        bail!(
            "stopped with {over} of {} trials over; the same command continues the study",
            study.total
        );
    }
    Ok(trials)
}

/// Trial `k`'s configuration: the search's fixed options, then the trial's, then its budget,
/// seed and folder.
pub fn trial_config(
    spec: &SearchSpec,
    dir: &Path,
    k: usize,
    params: &Params,
    name: String,
) -> Result<TrainConfig> {
    let mut own = toml::Table::new();
    own.insert("epochs".into(), (spec.epochs as f64).into());
    own.insert("seed".into(), ((spec.seed + k as u64) as i64).into());
    own.insert("runs-dir".into(), dir.display().to_string().into());
    own.insert("name".into(), name.into());
    if let Some(cut) = spec.cut_below {
        own.insert("cut-below".into(), cut.into());
    }
    let mut fixed = spec.fixed.clone();
    let mut layers = Vec::new();
    match fixed.remove("preset") {
        Some(toml::Value::String(name)) => layers.push(config::preset_layer(&name)?),
        Some(other) => bail!("`preset` in [fixed] must be a preset's name, not {other}"),
        None => {}
    }
    layers.push(("the search's [fixed] options".into(), fixed));
    layers.push((
        format!("the options of trial {k}"),
        params.iter().cloned().collect(),
    ));
    layers.push((format!("trial {k}'s budget and folder"), own));
    TrainConfig::layered(&layers)
}
