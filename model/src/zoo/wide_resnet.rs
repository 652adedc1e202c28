//! Wide residual networks (Zagoruyko & Komodakis), seed 003's WRN-28-10: pre-activation
//! blocks (BN → ReLU → conv), dropout between the two convolutions of a block, convolutions
//! without bias.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Staged, flatten};
use crate::ModelError;
use crate::layers::{batch_norm, conv};
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};

/// Configuration of [`WideResNet`]: WRN-`depth`-`widen`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WideResNetConfig {
    /// Total depth, `6n + 4` (16, 22, 28, 40, …).
    pub depth: usize,
    /// Width multiplier `k` of the stages 16k-32k-64k.
    pub widen: usize,
    /// Dropout probability inside each block.
    pub dropout: f64,
    /// Number of classes it predicts (CIFAR-10's 10 unless the data has others; absent from
    /// the configurations of 10-class networks).
    #[serde(
        default = "super::cifar10_classes",
        skip_serializing_if = "super::is_cifar10_classes"
    )]
    pub classes: usize,
}

impl WideResNetConfig {
    /// Checks depth, width and dropout.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return Err(ModelError::BadOption(format!(
                "a Wide-ResNet has depth 6n+4 (16, 22, 28, 40), not {}",
                self.depth
            )));
        }
        if self.widen == 0 {
            return Err(ModelError::BadOption(
                "a Wide-ResNet needs width ≥ 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::BadOption(format!(
                "dropout {} is not in [0, 1)",
                self.dropout
            )));
        }
        Ok(())
    }

    /// Builds the network on `device`. Call [`WideResNetConfig::validate`] first.
    pub fn init(&self, device: &Device) -> WideResNet {
        let n = (self.depth - 4) / 6;
        let widths = [16 * self.widen, 32 * self.widen, 64 * self.widen];
        let mut channels = 16;
        let mut stages = Vec::new();
        for (i, &width) in widths.iter().enumerate() {
            let stage = (0..n)
                .map(|b| {
                    let stride = if i > 0 && b == 0 { 2 } else { 1 };
                    let block = WideBlock::new(channels, width, stride, self.dropout, device);
                    channels = width;
                    block
                })
                .collect();
            stages.push(stage);
        }
        WideResNet {
            stem: conv([3, 16], 3, 1, false, device),
            stages,
            bn: batch_norm(channels, device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(channels, self.classes).init(device),
        }
    }
}

/// A pre-activation wide block.
#[derive(Module, Debug)]
pub struct WideBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    dropout: Dropout,
    bn2: BatchNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl WideBlock {
    fn new(input: usize, output: usize, stride: usize, dropout: f64, device: &Device) -> Self {
        Self {
            bn1: batch_norm(input, device),
            conv1: conv([input, output], 3, stride, false, device),
            dropout: DropoutConfig::new(dropout).init(),
            bn2: batch_norm(output, device),
            conv2: conv([output, output], 3, 1, false, device),
            shortcut: (input != output || stride != 1)
                .then(|| conv([input, output], 1, stride, false, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pre = relu(self.bn1.forward(x.clone()));
        let out = self.dropout.forward(self.conv1.forward(pre.clone()));
        let out = self.conv2.forward(relu(self.bn2.forward(out)));
        let skip = match &self.shortcut {
            Some(c) => c.forward(pre),
            None => x,
        };
        out + skip
    }
}

/// A wide residual network.
#[derive(Module, Debug)]
pub struct WideResNet {
    stem: Conv2d,
    stages: Vec<Vec<WideBlock>>,
    bn: BatchNorm,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl Staged for WideResNet {
    fn stage_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        names.extend((1..=self.stages.len()).map(|i| format!("block{i}")));
        names
    }

    fn stage(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        if index == 0 {
            return self.stem.forward(x);
        }
        self.stages[index - 1]
            .iter()
            .fold(x, |x, block| block.forward(x))
    }

    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        let x = relu(self.bn.forward(x));
        self.fc.forward(flatten(self.pool.forward(x)))
    }

    fn cam_stage(&self) -> Option<usize> {
        Some(self.stages.len())
    }
}

#[cfg(feature = "onnx")]
impl Emit for WideBlock {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let pre = self.bn1.emit(g, x, &join(scope, "bn1"))?;
        let pre = g.relu(&pre);
        let out = self.conv1.emit(g, &pre, &join(scope, "conv1"))?;
        let out = self.bn2.emit(g, &out, &join(scope, "bn2"))?;
        let out = g.relu(&out);
        let out = self.conv2.emit(g, &out, &join(scope, "conv2"))?;
        let skip = match &self.shortcut {
            Some(c) => c.emit(g, &pre, &join(scope, "shortcut"))?,
            None => x.to_string(),
        };
        Ok(g.add(&out, &skip))
    }
}

#[cfg(feature = "onnx")]
impl Emit for WideResNet {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let mut x = self.stem.emit(g, x, &join(scope, "stem"))?;
        for (i, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                x = block.emit(g, &x, &join(scope, &format!("stages.{i}.{b}")))?;
            }
        }
        let x = self.bn.emit(g, &x, &join(scope, "bn"))?;
        let x = g.relu(&x);
        let x = g.global_average_pool(&x);
        let x = g.flatten(&x);
        self.fc.emit(g, &x, &join(scope, "fc"))
    }
}
