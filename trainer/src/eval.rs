//! Accuracy and loss of a model over a data set.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;
use burn::tensor::activation::softmax;
use model::{Model, Normalization};
use serde::Serialize;

use crate::data::CifarSet;
use crate::data::batcher::{BatchPlan, batches};
use crate::metrics::{Confusion, in_top_k};

/// One misclassified image.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Mistake {
    /// Index in the evaluated set.
    pub index: usize,
    /// True class.
    pub label: usize,
    /// Predicted class.
    pub predicted: usize,
    /// Probability given to the predicted class.
    pub confidence: f32,
}

/// The result of running a model over a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Confusion,
    /// `top_k[k - 1]`: images whose class is among the `k` most probable, `k` = 1..5.
    pub top_k: [usize; 5],
    /// Every misclassified image, in set order.
    pub mistakes: Vec<Mistake>,
    /// Inference throughput, images per second.
    pub images_per_sec: f64,
    /// The class names, in label order.
    pub classes: Vec<String>,
}

impl Evaluation {
    /// Images seen.
    pub fn total(&self) -> usize {
        self.confusion.iter().flatten().sum()
    }

    /// Images classified correctly.
    pub fn correct(&self) -> usize {
        (0..self.confusion.len())
            .map(|c| self.confusion[c][c])
            .sum()
    }

    /// Fraction classified correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct() as f64 / self.total().max(1) as f64
    }

    /// Fraction whose class is among the `k` most probable (`k` = 1..5).
    pub fn top_k_accuracy(&self, k: usize) -> f64 {
        self.top_k[k - 1] as f64 / self.total().max(1) as f64
    }

    /// Per class: `(correct, total)`.
    pub fn per_class(&self) -> Vec<(usize, usize)> {
        (0..self.confusion.len())
            .map(|c| (self.confusion[c][c], self.confusion[c].iter().sum()))
            .collect()
    }
}

/// Runs `model` (in inference mode) over `set` on `device`.
pub fn evaluate(
    model: &Model,
    set: &Arc<CifarSet>,
    normalization: Normalization,
    device: &Device,
    batch_size: usize,
) -> Result<Evaluation> {
    ensure!(!set.is_empty(), "cannot evaluate on an empty set");
    let classes = set.classes.len();
    ensure!(
        model.config().classes() == classes,
        "the network predicts {} classes but the data has {classes} ({})",
        model.config().classes(),
        set.classes.join(", ")
    );
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let start = Instant::now();
    let mut loss_sum = 0f64;
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut top_k = [0usize; 5];
    let mut mistakes = Vec::new();
    let mut index = 0;
    let plan = BatchPlan {
        batch_size,
        min_last: 1,
        normalization,
        augment: None,
    };
    for batch in batches(set.clone(), (0..set.len()).collect(), plan) {
        let labels = batch.labels.clone();
        let batch = batch.to_device(device);
        let logits = model.forward(batch.images);
        let loss = loss_fn
            .forward(logits.clone(), batch.labels)
            .into_scalar::<f32>() as f64;
        loss_sum += loss * labels.len() as f64;
        let probs = softmax(logits, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()?;
        for (p, &label) in probs.chunks_exact(classes).zip(&labels) {
            let label = label as usize;
            let predicted = (0..classes).fold(0, |best, c| if p[c] > p[best] { c } else { best });
            confusion[label][predicted] += 1;
            for (k, hits) in top_k.iter_mut().enumerate() {
                *hits += usize::from(in_top_k(p, label, k + 1));
            }
            if predicted != label {
                mistakes.push(Mistake {
                    index,
                    label,
                    predicted,
                    confidence: p[predicted],
                });
            }
            index += 1;
        }
    }
    Ok(Evaluation {
        loss: loss_sum / index as f64,
        confusion,
        top_k,
        mistakes,
        images_per_sec: index as f64 / start.elapsed().as_secs_f64(),
        classes: set.classes.clone(),
    })
}

/// Fails unless `set` has the classes of the checkpoint (`names`, in label order).
pub fn check_classes(names: &[String], set: &CifarSet) -> Result<()> {
    ensure!(
        names == set.classes.as_slice(),
        "the checkpoint classifies [{}] but the data has the classes [{}]",
        names.join(", "),
        set.classes.join(", ")
    );
    Ok(())
}

/// A table of per-class accuracy.
pub fn per_class_table(result: &Evaluation) -> String {
    let mut out = format!("{:<12} {:>9} {:>13}\n", "class", "accuracy", "correct");
    for (class, (correct, total)) in result.classes.iter().zip(result.per_class()) {
        let acc = 100.0 * correct as f64 / total.max(1) as f64;
        out.push_str(&format!(
            "{class:<12} {acc:>8.2}% {:>13}\n",
            format!("{correct}/{total}")
        ));
    }
    out
}
