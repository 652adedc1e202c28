//! Runs the trials of a search, records each in `search.csv` as it ends, survives failing
//! trials and resumes where an interrupted search stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Args;

use super::sampler::{Params, Sampler};
use super::space::{Dist, SearchSpec, arg_value};
use crate::io::write_atomic;
use crate::train::{self, TrainConfig, TrainJob, config};

/// Options of `trainer search`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// The search file (TOML: method, trials, epochs, [fixed], [space]).
    #[arg(long)]
    pub config: PathBuf,
    /// Name of the search folder under --runs-dir [default: the file's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Where the search folder goes.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Continue an interrupted search: finished trials are kept, the rest run.
    #[arg(long)]
    pub resume: bool,
}

/// One line of `search.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialResult {
    /// Trial number, from 0.
    pub trial: usize,
    /// `ok`, `cut` (stopped by `cut-below`), or `failed: <why>`.
    pub status: String,
    /// Best validation accuracy (or test accuracy without a validation split).
    pub score: Option<f64>,
    /// Test accuracy of the best checkpoint.
    pub test_accuracy: Option<f64>,
    /// Wall time of the trial.
    pub seconds: f64,
    /// The searched options.
    pub params: Params,
}

const FIXED_COLUMNS: [&str; 5] = ["trial", "status", "score", "test_accuracy", "seconds"];

/// Runs (or resumes) the search; returns every trial's result.
pub fn run(args: &SearchArgs) -> Result<Vec<TrialResult>> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let spec = SearchSpec::parse(&text).with_context(|| format!("{}", args.config.display()))?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "search".into())
    });
    let dir = args.runs_dir.join(&name);
    let csv = dir.join("search.csv");
    let mut done: BTreeMap<usize, TrialResult> = BTreeMap::new();
    if args.resume {
        ensure!(
            csv.exists(),
            "nothing to resume: {} does not exist",
            csv.display()
        );
        let recorded = std::fs::read_to_string(dir.join("search.toml"))?;
        ensure!(
            SearchSpec::parse(&recorded)? == spec,
            "{} differs from the search being resumed ({})",
            args.config.display(),
            dir.join("search.toml").display()
        );
        for result in read_csv(&csv, &spec)? {
            done.insert(result.trial, result);
        }
    } else {
        ensure!(
            !dir.exists(),
            "{} exists: choose another --name, or --resume it",
            dir.display()
        );
        std::fs::create_dir_all(&dir)?;
        write_atomic(&dir.join("search.toml"), text.as_bytes())?;
        write_csv(&csv, &spec, &[])?;
    }

    let mut sampler = Sampler::new(&spec)?;
    let mut results = Vec::new();
    for k in 0..sampler.trials(&spec) {
        let proposed = sampler.ask(k)?;
        if let Some(result) = done.remove(&k) {
            sampler.tell(&result.params, result.score)?;
            results.push(result);
            continue;
        }
        let result = run_trial(&spec, &dir, k, proposed);
        sampler.tell(&result.params, result.score)?;
        results.push(result);
        let result = results.last().expect("just pushed");
        write_csv(&csv, &spec, &results)?;
        eprintln!(
            "trial {k}: {} score {}",
            result.status,
            result
                .score
                .map(|s| format!("{:.2}%", 100.0 * s))
                .unwrap_or("-".into())
        );
    }
    Ok(results)
}

/// Trains one trial in `dir/trial-NNN`; a failure becomes a result, never an error.
fn run_trial(spec: &SearchSpec, dir: &Path, k: usize, params: Params) -> TrialResult {
    let start = Instant::now();
    let trial_name = format!("trial-{k:03}");
    // A trial interrupted last time starts again from scratch.
    let _ = std::fs::remove_dir_all(dir.join(&trial_name));
    let outcome = trial_config(spec, dir, k, &params, trial_name).and_then(|config| {
        train::run(&TrainJob {
            config,
            resume: None,
        })
    });
    let seconds = start.elapsed().as_secs_f64();
    match outcome {
        Ok(outcome) => {
            let test = outcome.test.accuracy();
            let best_val = outcome
                .epochs
                .iter()
                .filter_map(|m| m.val.map(|(_, acc)| acc))
                .fold(None, |b: Option<f64>, a| Some(b.map_or(a, |b| b.max(a))));
            let cut = matches!(outcome.stopped_early, Some(train::StopReason::Cut { .. }));
            TrialResult {
                trial: k,
                status: if cut { "cut" } else { "ok" }.into(),
                score: Some(best_val.unwrap_or(test)),
                test_accuracy: Some(test),
                seconds,
                params,
            }
        }
        Err(e) => TrialResult {
            trial: k,
            status: format!("failed: {}", format!("{e:#}").replace('\n', "; ")),
            score: None,
            test_accuracy: None,
            seconds,
            params,
        },
    }
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

/// Writes `search.csv` (atomically) with a row per result: the fixed columns, then one per
/// searched option, in the space's order.
fn write_csv(csv: &Path, spec: &SearchSpec, results: &[TrialResult]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = FIXED_COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend(spec.space.keys().cloned());
    writer.write_record(&header)?;
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for r in results {
        let mut row = vec![
            r.trial.to_string(),
            r.status.clone(),
            opt(r.score),
            opt(r.test_accuracy),
            format!("{:.1}", r.seconds),
        ];
        row.extend(r.params.iter().map(|(_, value)| arg_value(value)));
        writer.write_record(&row)?;
    }
    let bytes = writer.into_inner().context("cannot write the CSV")?;
    write_atomic(csv, &bytes)
}

/// Reads `search.csv` back (the searched options typed by the space).
pub fn read_csv(csv: &Path, spec: &SearchSpec) -> Result<Vec<TrialResult>> {
    let at = |n: usize| format!("{} line {}", csv.display(), n + 2);
    let mut reader =
        csv::Reader::from_path(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let names: Vec<&String> = spec.space.keys().collect();
    let expected = FIXED_COLUMNS.len() + names.len();
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let cells = record.with_context(|| at(n))?;
        ensure!(
            cells.len() == expected,
            "{}: {} cells, expected {expected}",
            at(n),
            cells.len()
        );
        let number = |s: &str| s.parse::<f64>().ok();
        let params = names
            .iter()
            .zip(cells.iter().skip(FIXED_COLUMNS.len()))
            .map(|(name, cell)| ((*name).clone(), typed(cell, spec.space.get(*name))))
            .collect();
        out.push(TrialResult {
            trial: cells[0].parse().with_context(|| at(n))?,
            status: cells[1].to_string(),
            score: number(&cells[2]),
            test_accuracy: number(&cells[3]),
            seconds: number(&cells[4]).unwrap_or(0.0),
            params,
        });
    }
    Ok(out)
}

/// A CSV cell as the TOML value it was written from: a choice is matched against the
/// choices (so `"512,512"` or `"64"` come back as the strings they were), other ranges are
/// numbers.
fn typed(cell: &str, dist: Option<&Dist>) -> toml::Value {
    if let Some(Dist::Choices(choices)) = dist
        && let Some(choice) = choices.iter().find(|c| arg_value(c) == cell)
    {
        return choice.clone();
    }
    if let Ok(i) = cell.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = cell.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = cell.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(cell.to_string())
    }
}
