//! Training losses: cross-entropy with optional label smoothing, focal loss, and L1/L2
//! penalties on the weights of convolutions and linear layers (not biases, not batch norm).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::log_softmax;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The data term of the loss.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Cross-entropy (with `label_smoothing` when it is above 0).
    #[default]
    CrossEntropy,
    /// Focal loss `−α (1 − p)^γ log p` (Lin et al.), on the smoothed targets.
    Focal,
}

/// The whole training objective.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Objective {
    /// Data term.
    pub kind: LossKind,
    /// Label smoothing ε: the target puts 1 − ε on the class and ε/K on every class.
    pub label_smoothing: f64,
    /// Focal α.
    pub focal_alpha: f64,
    /// Focal γ.
    pub focal_gamma: f64,
    /// L1 penalty λ₁ · Σ|w| over conv/linear weights.
    pub l1: f64,
    /// L2 penalty λ₂ · Σw² over conv/linear weights.
    pub l2: f64,
}

impl Objective {
    /// Plain cross-entropy: no smoothing, no penalties.
    pub fn cross_entropy() -> Self {
        Self {
            kind: LossKind::CrossEntropy,
            label_smoothing: 0.0,
            focal_alpha: 1.0,
            focal_gamma: 2.0,
            l1: 0.0,
            l2: 0.0,
        }
    }

    /// Mean data loss of `logits` `[B, K]` against soft `targets` `[B, K]` (rows sum to 1).
    pub fn data_loss(&self, logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
        let k = targets.dims()[1] as f64;
        let targets = if self.label_smoothing > 0.0 {
            targets * (1.0 - self.label_smoothing) + self.label_smoothing / k
        } else {
            targets
        };
        let log_p = log_softmax(logits, 1);
        let per_class = match self.kind {
            LossKind::CrossEntropy => targets * log_p,
            LossKind::Focal => {
                let weight = (log_p.clone().exp().neg() + 1.0).powf_scalar(self.focal_gamma)
                    * self.focal_alpha;
                targets * weight * log_p
            }
        };
        per_class.sum_dim(1).mean().neg()
    }

    /// Data loss plus the weight penalties of `model`.
    pub fn loss<M: Module>(&self, logits: Tensor<2>, targets: Tensor<2>, model: &M) -> Tensor<1> {
        let data = self.data_loss(logits, targets);
        if self.l1 == 0.0 && self.l2 == 0.0 {
            return data;
        }
        let mut penalty = Penalty {
            l1: self.l1,
            l2: self.l2,
            path: Vec::new(),
            total: None,
        };
        model.visit(&mut penalty);
        match penalty.total {
            Some(p) => data + p,
            None => data,
        }
    }
}

/// Sums the penalties over parameters named `weight` with at least two dimensions.
struct Penalty {
    l1: f64,
    l2: f64,
    path: Vec<String>,
    total: Option<Tensor<1>>,
}

impl ModuleVisitor for Penalty {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if D < 2 || self.path.last().map(String::as_str) != Some("weight") {
            return;
        }
        let w = param.val();
        let mut term = w.clone().abs().sum() * self.l1;
        if self.l2 != 0.0 {
            term = term + w.powi_scalar(2).sum() * self.l2;
        }
        self.total = Some(match self.total.take() {
            Some(t) => t + term,
            None => term,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, TensorData};

    fn objective(kind: LossKind, smoothing: f64) -> Objective {
        Objective {
            kind,
            label_smoothing: smoothing,
            focal_alpha: 1.0,
            focal_gamma: 2.0,
            l1: 0.0,
            l2: 0.0,
        }
    }

    fn value(t: Tensor<1>) -> f64 {
        t.into_scalar::<f32>() as f64
    }

    /// Logits [[2, 0, 0], [0, 1, 0]], classes 0 and 2.
    fn fixture(device: &Device) -> (Tensor<2>, Tensor<2>) {
        let logits = Tensor::from_data(
            TensorData::new(vec![2f32, 0., 0., 0., 1., 0.], [2, 3]),
            device,
        );
        let targets = Tensor::from_data(
            TensorData::new(vec![1f32, 0., 0., 0., 0., 1.], [2, 3]),
            device,
        );
        (logits, targets)
    }

    /// log-softmax by hand.
    fn log_p(row: [f64; 3]) -> [f64; 3] {
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        row.map(|x| x - lse)
    }

    #[test]
    fn cross_entropy_smoothing_and_focal_match_hand_computation() {
        let device = Device::flex();
        let (a, b) = (log_p([2., 0., 0.]), log_p([0., 1., 0.]));
        let ce = -(a[0] + b[2]) / 2.0;
        let (l, t) = fixture(&device);
        assert!((value(objective(LossKind::CrossEntropy, 0.0).data_loss(l, t)) - ce).abs() < 1e-5);

        let eps = 0.1;
        let smooth = |lp: [f64; 3], class: usize| {
            -(0..3)
                .map(|k| (if k == class { 1.0 - eps } else { 0.0 } + eps / 3.0) * lp[k])
                .sum::<f64>()
        };
        let expected = (smooth(a, 0) + smooth(b, 2)) / 2.0;
        let (l, t) = fixture(&device);
        assert!(
            (value(objective(LossKind::CrossEntropy, eps).data_loss(l, t)) - expected).abs() < 1e-5
        );

        let focal = |lp: f64| -(1.0 - lp.exp()).powi(2) * lp;
        let expected = (focal(a[0]) + focal(b[2])) / 2.0;
        let (l, t) = fixture(&device);
        let got = value(objective(LossKind::Focal, 0.0).data_loss(l, t));
        assert!((got - expected).abs() < 1e-5, "{got} vs {expected}");
        assert!(got < ce, "focal down-weights easy examples");
    }

    #[test]
    fn penalties_cover_weights_but_not_biases() {
        let device = Device::flex();
        let linear = LinearConfig::new(2, 2).init(&device);
        let w = linear.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let l1: f64 = w.iter().map(|v| v.abs() as f64).sum();
        let l2: f64 = w.iter().map(|v| (v * v) as f64).sum();
        let (logits, targets) = fixture(&device);
        let (logits, targets) = (logits.slice([0..2, 0..2]), targets.slice([0..2, 0..2]));
        let mut o = objective(LossKind::CrossEntropy, 0.0);
        let base = value(o.loss(logits.clone(), targets.clone(), &linear));
        o.l1 = 0.01;
        o.l2 = 0.1;
        let with = value(o.loss(logits, targets, &linear));
        assert!(
            (with - base - (0.01 * l1 + 0.1 * l2)).abs() < 1e-5,
            "{with} {base} {l1} {l2}"
        );
    }
}
