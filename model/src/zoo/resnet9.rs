//! ResNet-9 in the line of the DAWNBench / airbench fast-training work (Myrtle.ai's network):
//! prep 64 → [128, pool, residual] → [256, pool] → [512, pool, residual] → global max-pool →
//! linear, with the logits scaled by 1/8.

use burn::module::Module;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Staged, flatten};
#[cfg(feature = "onnx")]
use crate::ModelError;
use crate::layers::{ConvBlock, max_pool2};
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};
use crate::{Activation, NUM_CLASSES};

/// Configuration of [`ResNet9`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResNet9Config {
    /// Channels of the prep layer; the stages have 2×, 4× and 8× as many.
    pub width: usize,
    /// Factor applied to the logits (0.125 in the original).
    pub logit_scale: f64,
    /// Number of classes it predicts (CIFAR-10's 10 unless the data has others; absent from
    /// the configurations of 10-class networks).
    #[serde(
        default = "super::cifar10_classes",
        skip_serializing_if = "super::is_cifar10_classes"
    )]
    pub classes: usize,
}

impl Default for ResNet9Config {
    fn default() -> Self {
        Self {
            width: 64,
            logit_scale: 0.125,
            classes: NUM_CLASSES,
        }
    }
}

impl ResNet9Config {
    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> ResNet9 {
        let w = self.width;
        let block = |i, o| ConvBlock::new(i, o, true, false, Activation::Relu, device);
        ResNet9 {
            prep: block(3, w),
            layer1: Stage::new(
                block(w, 2 * w),
                Some([block(2 * w, 2 * w), block(2 * w, 2 * w)]),
            ),
            layer2: Stage::new(block(2 * w, 4 * w), None),
            layer3: Stage::new(
                block(4 * w, 8 * w),
                Some([block(8 * w, 8 * w), block(8 * w, 8 * w)]),
            ),
            global_max: MaxPool2dConfig::new([4, 4]).init(),
            fc: LinearConfig::new(8 * w, self.classes)
                .with_bias(false)
                .init(device),
            logit_scale: self.logit_scale,
        }
    }
}

/// Convolution block, max-pool, then an optional two-block residual branch.
#[derive(Module, Debug)]
pub struct Stage {
    conv: ConvBlock,
    pool: MaxPool2d,
    residual: Option<[ConvBlock; 2]>,
}

impl Stage {
    fn new(conv: ConvBlock, residual: Option<[ConvBlock; 2]>) -> Self {
        Self {
            conv,
            pool: max_pool2(),
            residual,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.pool.forward(self.conv.forward(x));
        match &self.residual {
            Some([a, b]) => x.clone() + b.forward(a.forward(x)),
            None => x,
        }
    }
}

/// The fast ResNet-9.
#[derive(Module, Debug)]
pub struct ResNet9 {
    prep: ConvBlock,
    layer1: Stage,
    layer2: Stage,
    layer3: Stage,
    global_max: MaxPool2d,
    fc: Linear,
    #[module(skip)]
    logit_scale: f64,
}

impl Staged for ResNet9 {
    fn stage_names(&self) -> Vec<String> {
        ["prep", "layer1", "layer2", "layer3"]
            .map(String::from)
            .to_vec()
    }

    fn stage(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        match index {
            0 => self.prep.forward(x),
            1 => self.layer1.forward(x),
            2 => self.layer2.forward(x),
            _ => self.layer3.forward(x),
        }
    }

    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        // Global max-pool of the 4 × 4 map left by three poolings of a 32 × 32 input.
        self.fc.forward(flatten(self.global_max.forward(x))) * self.logit_scale
    }

    fn cam_stage(&self) -> Option<usize> {
        Some(3)
    }
}

#[cfg(feature = "onnx")]
impl Emit for Stage {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = self.conv.emit(g, x, &join(scope, "conv"))?;
        let x = self.pool.emit(g, &x, &join(scope, "pool"))?;
        match &self.residual {
            Some([a, b]) => {
                let r = a.emit(g, &x, &join(scope, "residual.0"))?;
                let r = b.emit(g, &r, &join(scope, "residual.1"))?;
                Ok(g.add(&x, &r))
            }
            None => Ok(x),
        }
    }
}

#[cfg(feature = "onnx")]
impl Emit for ResNet9 {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = self.prep.emit(g, x, &join(scope, "prep"))?;
        let x = self.layer1.emit(g, &x, &join(scope, "layer1"))?;
        let x = self.layer2.emit(g, &x, &join(scope, "layer2"))?;
        let x = self.layer3.emit(g, &x, &join(scope, "layer3"))?;
        let x = self.global_max.emit(g, &x, &join(scope, "global_max"))?;
        let x = g.flatten(&x);
        let x = self.fc.emit(g, &x, &join(scope, "fc"))?;
        Ok(g.scale(&x, &join(scope, "logit_scale"), self.logit_scale as f32))
    }
}
