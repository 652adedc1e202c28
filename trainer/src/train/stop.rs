//! Ending a run before its last epoch: early stopping on validation accuracy (`--patience`,
//! `--min-delta`) and cutting hopeless runs (`--cut-below` after `--cut-after`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::StopConfig;

/// Why a run ended before its last epoch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum StopReason {
    /// Validation accuracy did not improve by `min_delta` for `patience` epochs.
    Patience {
        /// The epoch after which the run stopped.
        epoch: usize,
        /// `--patience`.
        patience: usize,
        /// `--min-delta`.
        min_delta: f64,
        /// The best validation accuracy (0–1).
        best_accuracy: f64,
        /// Its epoch.
        best_epoch: usize,
    },
    /// Validation accuracy after epoch `epoch` was below `--cut-below`.
    Cut {
        /// `--cut-after`.
        epoch: usize,
        /// The validation accuracy (0–1).
        accuracy: f64,
        /// `--cut-below`.
        floor: f64,
    },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Patience {
                epoch,
                patience,
                min_delta,
                best_accuracy,
                best_epoch,
            } => write!(
                f,
                "early stop after epoch {epoch}: validation accuracy has not improved by \
                 {min_delta} for {patience} epochs (best {:.2}% at epoch {best_epoch})",
                100.0 * best_accuracy
            ),
            Self::Cut {
                epoch,
                accuracy,
                floor,
            } => write!(
                f,
                "cut after epoch {epoch}: validation accuracy {:.2}% is below --cut-below {:.2}%",
                100.0 * accuracy,
                100.0 * floor
            ),
        }
    }
}

/// The best validation accuracy so far and how long ago it improved.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Best validation accuracy so far (0–1).
    pub best_accuracy: Option<f64>,
    /// Its epoch (0 before any).
    pub best_epoch: usize,
    /// Epochs since the last improvement by at least `--min-delta`.
    pub stale_epochs: usize,
}

impl Progress {
    /// Takes epoch `epoch`'s validation accuracy into account; returns whether it is the best
    /// so far (the checkpoint to keep as `best.safetensors`).
    pub fn record(&mut self, epoch: usize, accuracy: f64, min_delta: f64) -> bool {
        if self.best_accuracy.is_none_or(|b| accuracy > b + min_delta) {
            self.stale_epochs = 0;
        } else {
            self.stale_epochs += 1;
        }
        let improved = self.best_accuracy.is_none_or(|b| accuracy > b);
        if improved {
            self.best_accuracy = Some(accuracy);
            self.best_epoch = epoch;
        }
        improved
    }

    /// Whether `rules` end the run after epoch `epoch`, whose validation accuracy was
    /// `accuracy`.
    pub fn stop(&self, rules: &StopConfig, epoch: usize, accuracy: f64) -> Option<StopReason> {
        if let Some(patience) = rules.patience.filter(|&p| self.stale_epochs >= p) {
            return Some(StopReason::Patience {
                epoch,
                patience,
                min_delta: rules.min_delta,
                best_accuracy: self.best_accuracy.unwrap_or(0.0),
                best_epoch: self.best_epoch,
            });
        }
        rules
            .cut_below
            .filter(|&floor| epoch == rules.cut_after && accuracy < floor)
            .map(|floor| StopReason::Cut {
                epoch,
                accuracy,
                floor,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(patience: Option<usize>, min_delta: f64, cut_below: Option<f64>) -> StopConfig {
        StopConfig {
            patience,
            min_delta,
            cut_below,
            cut_after: 2,
        }
    }

    #[test]
    fn patience_counts_epochs_without_a_large_enough_gain() {
        let rules = rules(Some(2), 0.05, None);
        let mut progress = Progress::default();
        let mut stops = Vec::new();
        for (epoch, accuracy) in [(1, 0.5), (2, 0.52), (3, 0.53), (4, 0.9)] {
            let best = progress.record(epoch, accuracy, rules.min_delta);
            assert!(best, "every epoch here beats the last");
            stops.push(progress.stop(&rules, epoch, accuracy));
        }
        // Epochs 2 and 3 gained less than 0.05: the run stops after epoch 3.
        assert_eq!(stops[..2], [None, None]);
        assert_eq!(
            stops[2],
            Some(StopReason::Patience {
                epoch: 3,
                patience: 2,
                min_delta: 0.05,
                best_accuracy: 0.53,
                best_epoch: 3
            })
        );
        assert!(
            stops[2]
                .as_ref()
                .unwrap()
                .to_string()
                .starts_with("early stop after epoch 3")
        );
    }

    #[test]
    fn a_cut_looks_only_at_its_epoch() {
        let rules = rules(None, 0.0, Some(0.3));
        let progress = Progress::default();
        assert_eq!(progress.stop(&rules, 1, 0.1), None);
        assert_eq!(progress.stop(&rules, 3, 0.1), None);
        let cut = progress.stop(&rules, 2, 0.1).unwrap();
        assert!(matches!(cut, StopReason::Cut { epoch: 2, .. }));
        assert_eq!(progress.stop(&rules, 2, 0.5), None);
    }
}
