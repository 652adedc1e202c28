//! The run folder: `runs/<name>/` with the resolved config, `metrics.csv`, checkpoints and
//! the summary. Every file is written atomically (temporary file, then rename), so an
//! interrupted run never leaves a half-written file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::io::write_atomic;
pub use crate::metrics::EpochMetrics;

/// One row of `metrics.csv`: an epoch's metrics, flat.
#[derive(Serialize, Deserialize)]
struct MetricsRow {
    epoch: usize,
    train_loss: f64,
    train_accuracy: f64,
    val_loss: Option<f64>,
    val_accuracy: Option<f64>,
    lr: f64,
    epoch_seconds: f64,
    train_images_per_sec: f64,
    test_loss: Option<f64>,
    test_accuracy: Option<f64>,
}

impl From<&EpochMetrics> for MetricsRow {
    fn from(m: &EpochMetrics) -> Self {
        Self {
            epoch: m.epoch,
            train_loss: m.train_loss,
            train_accuracy: m.train_accuracy,
            val_loss: m.val.map(|v| v.0),
            val_accuracy: m.val.map(|v| v.1),
            lr: m.lr,
            epoch_seconds: m.seconds,
            train_images_per_sec: m.images_per_sec,
            test_loss: m.test.map(|t| t.0),
            test_accuracy: m.test.map(|t| t.1),
        }
    }
}

impl From<MetricsRow> for EpochMetrics {
    fn from(row: MetricsRow) -> Self {
        Self {
            epoch: row.epoch,
            train_loss: row.train_loss,
            train_accuracy: row.train_accuracy,
            val: row.val_loss.zip(row.val_accuracy),
            test: row.test_loss.zip(row.test_accuracy),
            lr: row.lr,
            seconds: row.epoch_seconds,
            images_per_sec: row.train_images_per_sec,
        }
    }
}

/// The epochs a run folder's `metrics.csv` holds (while a run writes it: the ones finished
/// so far); none when it is missing, up to the first row it cannot read.
pub fn read_metrics(run_dir: &Path) -> Vec<EpochMetrics> {
    let Ok(mut reader) = csv::Reader::from_path(run_dir.join("metrics.csv")) else {
        return Vec::new();
    };
    reader
        .deserialize::<MetricsRow>()
        .map_while(Result::ok)
        .map(EpochMetrics::from)
        .collect()
}

/// `metrics.csv` of `history`: a header, then a row per epoch (empty cells where a split was
/// not evaluated).
fn metrics_csv(history: &[EpochMetrics]) -> Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    writer.write_record(METRICS_COLUMNS)?;
    for m in history {
        writer.serialize(MetricsRow::from(m))?;
    }
    writer.into_inner().context("cannot write metrics.csv")
}

/// Columns of `metrics.csv`.
pub const METRICS_COLUMNS: [&str; 10] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "lr",
    "epoch_seconds",
    "train_images_per_sec",
    "test_loss",
    "test_accuracy",
];

/// A run folder.
pub struct RunDir {
    /// Its path.
    pub path: PathBuf,
}

impl RunDir {
    /// Creates `runs_dir/name`, or `runs_dir/<prefix>-<n>` with the first free `n` when no
    /// name is given. An existing named folder is refused, never overwritten.
    pub fn create(runs_dir: &Path, name: Option<&str>, prefix: &str) -> Result<Self> {
        std::fs::create_dir_all(runs_dir)
            .with_context(|| format!("cannot create {}", runs_dir.display()))?;
        let path = match name {
            Some(name) => {
                let path = runs_dir.join(name);
                if path.exists() {
                    bail!(
                        "run folder {} exists already; choose another --name",
                        path.display()
                    );
                }
                path
            }
            None => (1..)
                .map(|n| runs_dir.join(format!("{prefix}-{n}")))
                .find(|p| !p.exists())
                .expect("some index is free"),
        };
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let dir = Self { path };
        dir.rewrite_metrics(&[])?;
        Ok(dir)
    }

    /// Opens an existing run folder (for `--resume`).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join("config.toml").is_file() {
            bail!(
                "{} is not a run folder (it has no config.toml)",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Rewrites `metrics.csv` with exactly `history`, after every epoch (atomically, like
    /// every file of the folder; when resuming, rows of an interrupted epoch are dropped).
    pub fn rewrite_metrics(&self, history: &[EpochMetrics]) -> Result<()> {
        self.write("metrics.csv", &metrics_csv(history)?)
    }

    /// Path of `file` inside the run folder.
    pub fn file(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    /// Writes `file` atomically.
    pub fn write(&self, file: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.file(file), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_runs_and_refuses_to_overwrite() {
        let root = std::env::temp_dir().join(format!("cifar-burn-runs-{}", std::process::id()));
        let a = RunDir::create(&root, None, "mlp").unwrap();
        let b = RunDir::create(&root, None, "mlp").unwrap();
        assert_eq!(a.path, root.join("mlp-1"));
        assert_eq!(b.path, root.join("mlp-2"));
        assert!(RunDir::create(&root, Some("mlp-1"), "mlp").is_err());
        a.rewrite_metrics(&[EpochMetrics {
            epoch: 1,
            train_loss: 2.0,
            train_accuracy: 0.25,
            val: None,
            test: Some((1.5, 0.375)),
            lr: 0.001,
            seconds: 1.5,
            images_per_sec: 100.0,
        }])
        .unwrap();
        let csv = std::fs::read_to_string(a.file("metrics.csv")).unwrap();
        assert_eq!(csv.lines().next().unwrap(), METRICS_COLUMNS.join(","));
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            "1,2.0,0.25,,,0.001,1.5,100.0,1.5,0.375"
        );
        a.write("x.json", b"{}").unwrap();
        assert!(!a.file("x.json.tmp").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
