//! Seed 001's multi-layer perceptron: 3072 → h → h → 10.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Staged, flatten};
#[cfg(feature = "onnx")]
use crate::ModelError;
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};
use crate::{Activation, IMAGE_VALUES, NUM_CLASSES};

/// Configuration of [`Mlp`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    /// Width of both hidden layers.
    pub hidden: usize,
    /// Activation after each hidden layer.
    pub activation: Activation,
    /// Dropout probability after each hidden activation.
    pub dropout: f64,
    /// Number of classes it predicts (CIFAR-10's 10 unless the data has others; absent from
    /// the configurations of 10-class networks).
    #[serde(
        default = "super::cifar10_classes",
        skip_serializing_if = "super::is_cifar10_classes"
    )]
    pub classes: usize,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            hidden: 512,
            activation: Activation::Relu,
            dropout: 0.0,
            classes: NUM_CLASSES,
        }
    }
}

impl MlpConfig {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        Mlp {
            fc1: LinearConfig::new(IMAGE_VALUES, self.hidden).init(device),
            fc2: LinearConfig::new(self.hidden, self.hidden).init(device),
            fc3: LinearConfig::new(self.hidden, self.classes).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        }
    }
}

/// Fully connected network on the flattened image.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    dropout: Dropout,
    #[module(skip)]
    activation: Activation,
}

impl Staged for Mlp {
    fn stage_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn stage(&self, _index: usize, x: Tensor<4>) -> Tensor<4> {
        x
    }

    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self
            .dropout
            .forward(self.activation.apply(self.fc1.forward(flatten(x))));
        let x = self
            .dropout
            .forward(self.activation.apply(self.fc2.forward(x)));
        self.fc3.forward(x)
    }

    fn cam_stage(&self) -> Option<usize> {
        None
    }
}

#[cfg(feature = "onnx")]
impl Emit for Mlp {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = g.flatten(x);
        let x = self.fc1.emit(g, &x, &join(scope, "fc1"))?;
        let x = g.activation(self.activation, &x);
        let x = self.fc2.emit(g, &x, &join(scope, "fc2"))?;
        let x = g.activation(self.activation, &x);
        self.fc3.emit(g, &x, &join(scope, "fc3"))
    }
}
