//! Plain convolutional networks: a list of convolution / pooling / dropout layers followed by
//! a fully connected classifier. `tiny-cnn` (seed 004), `basic-cnn` and `configurable-cnn`
//! (seed 000), `improved-cnn` and VGG-A with or without batch norm (seed 002) are all instances.

use burn::module::Module;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Staged, flatten};
use crate::layers::{ConvBlock, max_pool2};
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};
use crate::{Activation, IMAGE_SIZE, ModelError};

/// One layer of the feature extractor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum LayerSpec {
    /// 3 × 3 convolution to this many channels, then batch norm (if enabled) and activation.
    Conv(usize),
    /// 2 × 2 max-pooling.
    Pool,
    /// Dropout with this probability.
    Dropout(f64),
}

/// Configuration of [`Cnn`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CnnConfig {
    /// The feature extractor, in order.
    pub layers: Vec<LayerSpec>,
    /// Batch norm after every convolution.
    pub batch_norm: bool,
    /// Activation after every convolution and hidden fully connected layer.
    pub activation: Activation,
    /// Widths of the hidden fully connected layers (empty: one linear layer to the classes).
    pub classifier: Vec<usize>,
    /// Batch norm after every hidden fully connected layer.
    pub classifier_batch_norm: bool,
    /// Dropout after every hidden fully connected activation.
    pub classifier_dropout: f64,
    /// Number of classes it predicts (CIFAR-10's 10 unless the data has others; absent from
    /// the configurations of 10-class networks).
    #[serde(
        default = "super::cifar10_classes",
        skip_serializing_if = "super::is_cifar10_classes"
    )]
    pub classes: usize,
}

impl CnnConfig {
    /// Checks that the layer list makes a network for 32 × 32 inputs.
    pub fn validate(&self) -> Result<(), ModelError> {
        let pools = self
            .layers
            .iter()
            .filter(|l| matches!(l, LayerSpec::Pool))
            .count();
        if IMAGE_SIZE >> pools.min(6) == 0 || pools > 5 {
            return Err(ModelError::BadOption(format!(
                "{pools} pooling layers shrink a 32×32 image to nothing (at most 5)"
            )));
        }
        for layer in &self.layers {
            match *layer {
                LayerSpec::Conv(0) => {
                    return Err(ModelError::BadOption(
                        "a convolution needs ≥ 1 channel".into(),
                    ));
                }
                LayerSpec::Dropout(p) if !(0.0..1.0).contains(&p) => {
                    return Err(ModelError::BadOption(format!(
                        "dropout {p} is not in [0, 1)"
                    )));
                }
                _ => {}
            }
        }
        if !(0.0..1.0).contains(&self.classifier_dropout) {
            return Err(ModelError::BadOption(format!(
                "dropout {} is not in [0, 1)",
                self.classifier_dropout
            )));
        }
        if self.classifier.contains(&0) {
            return Err(ModelError::BadOption(
                "a hidden layer needs ≥ 1 unit".into(),
            ));
        }
        Ok(())
    }

    /// Builds the network on `device`. Call [`CnnConfig::validate`] first.
    pub fn init(&self, device: &Device) -> Cnn {
        let mut channels = 3;
        let mut side = IMAGE_SIZE;
        let layers = self
            .layers
            .iter()
            .map(|spec| match *spec {
                LayerSpec::Conv(out) => {
                    let block = ConvBlock::new(
                        channels,
                        out,
                        self.batch_norm,
                        true,
                        self.activation,
                        device,
                    );
                    channels = out;
                    CnnLayer::Conv(block)
                }
                LayerSpec::Pool => {
                    side /= 2;
                    CnnLayer::Pool(max_pool2())
                }
                LayerSpec::Dropout(p) => CnnLayer::Dropout(DropoutConfig::new(p).init()),
            })
            .collect();
        let mut width = channels * side * side;
        let mut hidden = Vec::new();
        for &units in &self.classifier {
            hidden.push(Hidden {
                linear: LinearConfig::new(width, units).init(device),
                bn: self
                    .classifier_batch_norm
                    .then(|| BatchNormConfig::new(units).init(device)),
            });
            width = units;
        }
        Cnn {
            layers,
            names: stage_names(&self.layers),
            hidden,
            dropout: DropoutConfig::new(self.classifier_dropout).init(),
            output: LinearConfig::new(width, self.classes).init(device),
            activation: self.activation,
        }
    }
}

/// Names `conv1, pool1, dropout1, conv2, …`, each kind counted on its own.
fn stage_names(layers: &[LayerSpec]) -> Vec<String> {
    let mut counts = [0usize; 3];
    layers
        .iter()
        .map(|layer| {
            let (slot, kind) = match layer {
                LayerSpec::Conv(_) => (0, "conv"),
                LayerSpec::Pool => (1, "pool"),
                LayerSpec::Dropout(_) => (2, "dropout"),
            };
            counts[slot] += 1;
            format!("{kind}{}", counts[slot])
        })
        .collect()
}

/// One layer of the feature extractor, built.
// A handful of these exist per network, built once: boxing the larger variants would buy
// nothing but indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum CnnLayer {
    /// Convolution block.
    Conv(ConvBlock),
    /// Max-pooling.
    Pool(MaxPool2d),
    /// Dropout.
    Dropout(Dropout),
}

/// A hidden fully connected layer with optional batch norm.
#[derive(Module, Debug)]
pub struct Hidden {
    linear: Linear,
    bn: Option<BatchNorm>,
}

/// A plain CNN.
#[derive(Module, Debug)]
pub struct Cnn {
    layers: Vec<CnnLayer>,
    #[module(skip)]
    names: Vec<String>,
    hidden: Vec<Hidden>,
    dropout: Dropout,
    output: Linear,
    #[module(skip)]
    activation: Activation,
}

impl Staged for Cnn {
    fn stage_names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn stage(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        match &self.layers[index] {
            CnnLayer::Conv(block) => block.forward(x),
            CnnLayer::Pool(pool) => pool.forward(x),
            CnnLayer::Dropout(dropout) => dropout.forward(x),
        }
    }

    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = flatten(x);
        for layer in &self.hidden {
            x = layer.linear.forward(x);
            if let Some(bn) = &layer.bn {
                x = bn.forward(x);
            }
            x = self.dropout.forward(self.activation.apply(x));
        }
        self.output.forward(x)
    }

    fn cam_stage(&self) -> Option<usize> {
        self.layers
            .iter()
            .rposition(|l| matches!(l, CnnLayer::Conv(_)))
    }
}

#[cfg(feature = "onnx")]
impl Emit for Cnn {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let mut x = x.to_string();
        for (i, layer) in self.layers.iter().enumerate() {
            let scope = join(scope, &format!("layers.{i}"));
            x = match layer {
                CnnLayer::Conv(block) => block.emit(g, &x, &scope)?,
                CnnLayer::Pool(pool) => pool.emit(g, &x, &scope)?,
                CnnLayer::Dropout(_) => x,
            };
        }
        x = g.flatten(&x);
        for (i, layer) in self.hidden.iter().enumerate() {
            let scope = join(scope, &format!("hidden.{i}"));
            x = layer.linear.emit(g, &x, &join(&scope, "linear"))?;
            if let Some(bn) = &layer.bn {
                x = bn.emit(g, &x, &join(&scope, "bn"))?;
            }
            x = g.activation(self.activation, &x);
        }
        self.output.emit(g, &x, &join(scope, "output"))
    }
}
