//! Accuracy and loss of a model over a data set.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, ensure};
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use model::{Model, Normalization};
use serde::{Deserialize, Serialize};

use crate::data::CifarSet;
use crate::data::batcher::{BatchPlan, batches};
use crate::metrics::{Confusion, in_top_k};
use crate::option_name::option_name;

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

/// Test-time augmentation: the logits averaged over views of each image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Tta {
    /// The image as it is.
    #[default]
    None,
    /// The image and its mirror image, weighted equally.
    Mirror,
    /// airbench94's six views: half the weight on `mirror`, a quarter each on `mirror` of
    /// the image shifted one pixel up-left and one pixel down-right (border mirrored).
    MirrorTranslate,
}

impl Tta {
    /// The averaged logits of `images` (`[n, 3, h, w]`).
    pub fn logits(self, model: &Model, images: Tensor<4>) -> Tensor<2> {
        let mirror = |x: Tensor<4>| (model.forward(x.clone()) + model.forward(x.flip([3]))) * 0.5;
        match self {
            Tta::None => model.forward(images),
            Tta::Mirror => mirror(images),
            Tta::MirrorTranslate => {
                let up_left = mirror(shift(images.clone(), false));
                let down_right = mirror(shift(images.clone(), true));
                mirror(images) * 0.5 + (up_left + down_right) * 0.25
            }
        }
    }
}

impl fmt::Display for Tta {
    /// The name `--tta` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&option_name(self))
    }
}

/// `images` moved one pixel along both spatial axes, down-right (`forward`) or up-left, the
/// uncovered border filled by mirroring (PyTorch's `reflect` padding, then a crop).
fn shift(images: Tensor<4>, forward: bool) -> Tensor<4> {
    [2, 3].into_iter().fold(images, |x, dim| {
        let n = x.dims()[dim];
        let parts = if forward {
            vec![x.clone().narrow(dim, 1, 1), x.narrow(dim, 0, n - 1)]
        } else {
            vec![x.clone().narrow(dim, 1, n - 1), x.narrow(dim, n - 2, 1)]
        };
        Tensor::cat(parts, dim)
    })
}

/// Runs `model` (in inference mode) over `set` on `device`.
pub fn evaluate(
    model: &Model,
    set: &Arc<CifarSet>,
    normalization: Normalization,
    device: &Device,
    batch_size: usize,
) -> Result<Evaluation> {
    evaluate_with(model, set, normalization, device, batch_size, Tta::None)
}

/// [`evaluate`] with test-time augmentation.
pub fn evaluate_with(
    model: &Model,
    set: &Arc<CifarSet>,
    normalization: Normalization,
    device: &Device,
    batch_size: usize,
    tta: Tta,
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
        flip_phase: None,
    };
    for batch in batches(set.clone(), (0..set.len()).collect(), plan) {
        let labels = batch.labels.clone();
        let batch = batch.to_device(device);
        let logits = tta.logits(&model, batch.images);
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// `[1, 1, 4, 5]` holding 0..20 row by row.
    fn ramp(device: &Device) -> Tensor<4> {
        let values: Vec<f32> = (0..20).map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, [1, 1, 4, 5]), device)
    }

    #[test]
    fn shifts_mirror_the_uncovered_border() {
        let device = Device::flex();
        let reflect = |v: i64, n: i64| {
            if v < 0 {
                -v
            } else if v >= n {
                2 * (n - 1) - v
            } else {
                v
            }
        };
        for (forward, by) in [(true, -1i64), (false, 1)] {
            let out = shift(ramp(&device), forward)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            for y in 0..4i64 {
                for x in 0..5i64 {
                    let want = (reflect(y + by, 4) * 5 + reflect(x + by, 5)) as f32;
                    assert_eq!(
                        out[(y * 5 + x) as usize],
                        want,
                        "forward {forward} at {y},{x}"
                    );
                }
            }
        }
    }

    #[test]
    fn mirror_views_do_not_care_which_way_the_image_faces() {
        let device = Device::flex();
        let model = model::ModelConfig::from_name("tiny-cnn", &Default::default())
            .unwrap()
            .init(&device)
            .unwrap();
        let values: Vec<f32> = (0..2 * 3072)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [2, 3, 32, 32]), &device);
        let logits = |tta: Tta, x: Tensor<4>| {
            tta.logits(&model, x)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
        };
        assert_eq!(
            logits(Tta::Mirror, x.clone()),
            logits(Tta::Mirror, x.clone().flip([3]))
        );
        assert_ne!(
            logits(Tta::None, x.clone()),
            logits(Tta::None, x.clone().flip([3]))
        );
        assert_ne!(
            logits(Tta::MirrorTranslate, x.clone()),
            logits(Tta::Mirror, x)
        );
    }
}
