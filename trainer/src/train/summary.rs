//! What a finished run reports: `summary.json` (typed) and the text `summary.txt` prints.

use serde::{Deserialize, Serialize};

use super::run_dir::EpochMetrics;
use super::stop::StopReason;
use crate::eval::{Evaluation, Tta};

/// Which weights the run's test evaluation used.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TestedWeights {
    /// The checkpoint of the epoch with the best validation accuracy (`best.safetensors`).
    BestValidation,
    /// The weights after the last step (`last.safetensors`): runs without validation.
    Final,
}

/// `summary.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Model name.
    pub model: String,
    /// Trainable parameters, as PyTorch counts them.
    pub parameters: usize,
    /// Backend short name.
    pub backend: String,
    /// Epochs trained (the last one may have been partial).
    pub epochs: usize,
    /// Training steps taken.
    pub steps: usize,
    /// Why the run ended before its last epoch, if it did.
    pub stopped_early: Option<StopReason>,
    /// The best validation accuracy and its epoch; absent without a validation split.
    pub best_val_accuracy: Option<f64>,
    /// The epoch of `best_val_accuracy`.
    pub best_epoch: Option<usize>,
    /// Training accuracy over the last epoch's steps.
    pub final_train_accuracy: f64,
    /// The weights the test evaluation used.
    pub tested_weights: TestedWeights,
    /// Test accuracy (0–1).
    pub test_accuracy: f64,
    /// Test-time augmentation of the test evaluation.
    pub test_tta: Tta,
    /// Mean test cross-entropy.
    pub test_loss: f64,
    /// Mean of the epochs' training throughputs.
    pub train_images_per_sec_mean: f64,
    /// Wall time of all training steps (evaluations not included).
    pub total_train_seconds: f64,
}

impl Summary {
    /// The text of `summary.txt`, with `test`'s per-class table.
    pub fn text(&self, test: &Evaluation) -> String {
        let views = match self.test_tta {
            Tta::None => String::new(),
            other => format!(", test-time augmentation {other}"),
        };
        let weights = match self.tested_weights {
            TestedWeights::BestValidation => format!(
                "best validation checkpoint, epoch {}",
                self.best_epoch.unwrap_or(0)
            ),
            TestedWeights::Final => "final weights".to_string(),
        };
        let mut s = format!(
            "\n{} trained {} epochs ({} steps) on {} in {:.0} s ({:.0} img/s mean)\n",
            self.model,
            self.epochs,
            self.steps,
            self.backend,
            self.total_train_seconds,
            self.train_images_per_sec_mean
        );
        if let Some(reason) = &self.stopped_early {
            s.push_str(&format!("Stopped: {reason}\n"));
        }
        s.push_str(&format!(
            "Test accuracy ({weights}{views}): {:.2}% ({}/{}), test loss {:.4}\n",
            100.0 * test.accuracy(),
            test.correct(),
            test.total(),
            test.loss
        ));
        s.push_str(&crate::eval::per_class_table(test));
        s
    }
}

/// Mean throughput and total time of `history`'s epochs.
pub fn throughput(history: &[EpochMetrics]) -> (f64, f64) {
    let seconds = history.iter().map(|m| m.seconds).sum();
    let mean = history.iter().map(|m| m.images_per_sec).sum::<f64>() / history.len().max(1) as f64;
    (mean, seconds)
}
