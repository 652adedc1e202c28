//! Accuracy and loss of a model over a data set.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::Device;
use model::{Model, NUM_CLASSES, Normalization};

use crate::data::CifarSet;
use crate::data::batcher::{BatchPlan, batches};

/// The result of running a model over a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Images classified correctly.
    pub correct: usize,
    /// Images seen.
    pub total: usize,
    /// Per class: `(correct, total)`.
    pub per_class: [(usize, usize); NUM_CLASSES],
    /// Inference throughput, images per second.
    pub images_per_sec: f64,
}

impl Evaluation {
    /// Fraction classified correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
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
    let model = model.valid();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let start = Instant::now();
    let mut loss_sum = 0f64;
    let mut per_class = [(0usize, 0usize); NUM_CLASSES];
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
        let predictions = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()?;
        for (&p, &l) in predictions.iter().zip(&labels) {
            per_class[l as usize].1 += 1;
            if p == l {
                per_class[l as usize].0 += 1;
            }
        }
    }
    let total: usize = per_class.iter().map(|c| c.1).sum();
    Ok(Evaluation {
        loss: loss_sum / total as f64,
        correct: per_class.iter().map(|c| c.0).sum(),
        total,
        per_class,
        images_per_sec: total as f64 / start.elapsed().as_secs_f64(),
    })
}
