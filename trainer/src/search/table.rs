//! `search.csv`: a readable copy of a study's trials (the store is the source), one row per
//! trial with the searched options last. Folders of searches run before the study store have
//! only this file and `search.toml`; they are read back by the columns' names.

use std::path::Path;

use anyhow::{Context, Result, ensure};

use super::space::{Dist, SearchSpec, arg_value};
use super::trial::{Trial, TrialState};
use crate::io::write_atomic;

/// The columns before the searched options.
const COLUMNS: [&str; 8] = [
    "trial",
    "status",
    "score",
    "test_accuracy",
    "seconds",
    "attempts",
    "worker",
    "run_dir",
];

/// Writes `search.csv` (atomically): the columns above, then one per searched option in the
/// space's order.
pub fn write_csv(csv: &Path, spec: &SearchSpec, trials: &[Trial]) -> Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
    header.extend(spec.space.keys().cloned());
    writer.write_record(&header)?;
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for t in trials {
        let mut row = vec![
            t.number.to_string(),
            t.status(),
            opt(t.score),
            opt(t.test_accuracy),
            t.seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
            t.attempts.to_string(),
            t.worker.clone().unwrap_or_default(),
            t.run_dir.clone().unwrap_or_default(),
        ];
        row.extend(t.params.iter().map(|(_, value)| arg_value(value)));
        writer.write_record(&row)?;
    }
    let bytes = writer.into_inner().context("cannot write the CSV")?;
    write_atomic(csv, &bytes)
}

/// Reads `search.csv` back (the searched options typed by the space). Columns are found by
/// name, so files of older builds (status `ok`, no attempts, worker or run folder) read too.
pub fn read_csv(csv: &Path, spec: &SearchSpec) -> Result<Vec<Trial>> {
    let at = |n: usize| format!("{} line {}", csv.display(), n + 2);
    let mut reader =
        csv::Reader::from_path(csv).with_context(|| format!("cannot read {}", csv.display()))?;
    let header = reader.headers()?.clone();
    let column = |name: &str| header.iter().position(|h| h == name);
    let required = |name: &str| {
        column(name).with_context(|| format!("{} has no `{name}` column", csv.display()))
    };
    let (trial, status, score, test) = (
        required("trial")?,
        required("status")?,
        required("score")?,
        required("test_accuracy")?,
    );
    let (seconds, attempts, worker, run_dir) = (
        column("seconds"),
        column("attempts"),
        column("worker"),
        column("run_dir"),
    );
    let options: Vec<(&String, usize)> = spec
        .space
        .keys()
        .map(|name| Ok((name, required(name)?)))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let cells = record.with_context(|| at(n))?;
        let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).filter(|c| !c.is_empty());
        let number = |i: Option<usize>| cell(i).and_then(|c| c.parse::<f64>().ok());
        let (state, error) = match cell(Some(status)).unwrap_or("") {
            "ok" => (TrialState::Done, None),
            failed if failed.starts_with("failed") => (
                TrialState::Failed,
                failed.strip_prefix("failed: ").map(str::to_string),
            ),
            other => (TrialState::parse(other).with_context(|| at(n))?, None),
        };
        ensure!(
            cells.len() == header.len(),
            "{}: {} cells, expected {}",
            at(n),
            cells.len(),
            header.len()
        );
        out.push(Trial {
            number: cells[trial].parse().with_context(|| at(n))?,
            state,
            params: options
                .iter()
                .map(|(name, i)| {
                    let dist = spec.space.get(*name);
                    ((*name).clone(), typed(&cells[*i], dist))
                })
                .collect(),
            attempts: cell(attempts).and_then(|c| c.parse().ok()).unwrap_or(1),
            lost: 0,
            worker: cell(worker).map(str::to_string),
            score: number(Some(score)),
            test_accuracy: number(Some(test)),
            seconds: number(seconds),
            run_dir: cell(run_dir).map(str::to_string),
            checkpoint: None,
            error,
            epochs: Vec::new(),
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
