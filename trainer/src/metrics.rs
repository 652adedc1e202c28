//! Classification metrics from a confusion matrix: per-class precision, recall, F1 and
//! support with macro and weighted averages, and the most confused class pairs.

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class): `matrix[t][p]`, one row and column per class.
pub type Confusion = Vec<Vec<usize>>;

/// Precision, recall, F1 and support of one class (or an average of them).
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct ClassScores {
    /// Of the images predicted as this class, the fraction that are.
    pub precision: f64,
    /// Of the images of this class, the fraction predicted as it.
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Number of images of this class.
    pub support: usize,
}

/// Per-class scores and their macro (unweighted) and weighted (by support) averages.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ClassReport {
    /// One entry per class, in label order.
    pub classes: Vec<ClassScores>,
    /// Unweighted mean over classes.
    pub macro_avg: ClassScores,
    /// Mean weighted by support.
    pub weighted_avg: ClassScores,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The per-class report of a confusion matrix.
pub fn class_report(confusion: &Confusion) -> ClassReport {
    let classes: Vec<ClassScores> = (0..confusion.len())
        .map(|c| {
            let hits = confusion[c][c];
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let (precision, recall) = (ratio(hits, predicted), ratio(hits, support));
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let total: usize = classes.iter().map(|c| c.support).sum();
    let average = |weight: &dyn Fn(&ClassScores) -> f64| {
        let norm: f64 = classes.iter().map(weight).sum();
        let mean = |f: fn(&ClassScores) -> f64| {
            if norm == 0.0 {
                0.0
            } else {
                classes.iter().map(|c| weight(c) * f(c)).sum::<f64>() / norm
            }
        };
        ClassScores {
            precision: mean(|c| c.precision),
            recall: mean(|c| c.recall),
            f1: mean(|c| c.f1),
            support: total,
        }
    };
    ClassReport {
        macro_avg: average(&|_| 1.0),
        weighted_avg: average(&|c| c.support as f64),
        classes,
    }
}

/// The `n` most frequent mistakes as `(true class, predicted class, count)`, most first.
pub fn most_confused(confusion: &Confusion, n: usize) -> Vec<(usize, usize, usize)> {
    let classes = confusion.len();
    let mut pairs: Vec<(usize, usize, usize)> = (0..classes)
        .flat_map(|t| (0..classes).map(move |p| (t, p)))
        .filter(|&(t, p)| t != p && confusion[t][p] > 0)
        .map(|(t, p)| (t, p, confusion[t][p]))
        .collect();
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    pairs.truncate(n);
    pairs
}

/// Whether `label` is among the `k` highest of `scores`.
pub fn in_top_k(scores: &[f32], label: usize, k: usize) -> bool {
    let own = scores[label];
    // Ties count against the label, so top-k never exceeds k classes.
    scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| s > own || (s == own && i < label))
        .count()
        < k
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten images of classes 0–2: true 0,0,0,0,1,1,1,2,2,2 predicted 0,0,1,2,1,1,0,2,2,1.
    fn fixture() -> Confusion {
        let truth = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2];
        let predicted = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1];
        let mut m = vec![vec![0; 10]; 10];
        for (t, p) in truth.into_iter().zip(predicted) {
            m[t][p] += 1;
        }
        m
    }

    #[test]
    fn precision_recall_f1_by_hand() {
        let r = class_report(&fixture());
        // Class 0: 2 hits, 4 true, 3 predicted → P 2/3, R 1/2, F1 4/7.
        let c0 = r.classes[0];
        assert!((c0.precision - 2.0 / 3.0).abs() < 1e-12 && (c0.recall - 0.5).abs() < 1e-12);
        assert!((c0.f1 - 4.0 / 7.0).abs() < 1e-12 && c0.support == 4);
        // Class 1: 2 hits, 3 true, 4 predicted → P 1/2, R 2/3, F1 4/7.
        let c1 = r.classes[1];
        assert!((c1.precision - 0.5).abs() < 1e-12 && (c1.recall - 2.0 / 3.0).abs() < 1e-12);
        // Class 2: 2 hits, 3 true, 3 predicted → P = R = F1 = 2/3.
        assert!((r.classes[2].f1 - 2.0 / 3.0).abs() < 1e-12);
        // Classes 3–9 have no images: zeros, and they count in the macro average.
        assert_eq!(r.classes[5], ClassScores::default());
        let macro_p = (2.0 / 3.0 + 0.5 + 2.0 / 3.0) / 10.0;
        assert!((r.macro_avg.precision - macro_p).abs() < 1e-12);
        let weighted_r = (4.0 * 0.5 + 3.0 * 2.0 / 3.0 + 3.0 * 2.0 / 3.0) / 10.0;
        assert!((r.weighted_avg.recall - weighted_r).abs() < 1e-12);
        assert_eq!(r.weighted_avg.support, 10);
    }

    #[test]
    fn most_confused_pairs_and_top_k() {
        let pairs = most_confused(&fixture(), 3);
        // Each mistake happens once: ties in (true, predicted) order.
        assert_eq!(pairs, vec![(0, 1, 1), (0, 2, 1), (1, 0, 1)]);
        let scores = [0.1, 0.5, 0.2, 0.9];
        assert!(in_top_k(&scores, 3, 1));
        assert!(!in_top_k(&scores, 1, 1) && in_top_k(&scores, 1, 2));
        assert!(!in_top_k(&scores, 0, 3) && in_top_k(&scores, 0, 4));
        assert!(
            !in_top_k(&[0.5, 0.5], 1, 1),
            "a tie does not put both in the top 1"
        );
    }
}

/// One row of `metrics.csv`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training accuracy over the epoch (0–1).
    pub train_accuracy: f64,
    /// Validation loss and accuracy, when there is a validation split.
    pub val: Option<(f64, f64)>,
    /// Test loss and accuracy, with `--test-each-epoch`.
    #[serde(default)]
    pub test: Option<(f64, f64)>,
    /// Learning rate used.
    pub lr: f64,
    /// Wall time of the epoch's training steps.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_sec: f64,
}
