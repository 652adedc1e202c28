//! Building the optimizer from the command line.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, ModuleOptimizer, SgdConfig};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// The optimizers of this slice; the training-toolkit issue adds the rest.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent with (PyTorch-style, undampened) momentum.
    Sgd,
    /// Adam (β = 0.9, 0.999; ε = 1e-8).
    Adam,
}

/// The optimizer for `kind` with `momentum` (SGD only) and L2 `weight_decay`.
pub fn build(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> ModuleOptimizer {
    let decay = (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32));
    match kind {
        OptimizerKind::Sgd => SgdConfig::new()
            .with_momentum((momentum > 0.0).then(|| MomentumConfig {
                momentum,
                dampening: 0.0,
                nesterov: false,
            }))
            .with_weight_decay(decay)
            .init(),
        OptimizerKind::Adam => AdamConfig::new()
            .with_epsilon(1e-8)
            .with_weight_decay(decay)
            .init(),
    }
}
