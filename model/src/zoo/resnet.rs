//! Residual networks for 32 × 32 inputs: the CIFAR ResNets of He et al. (`resnet20/32/56`,
//! stages 16-32-64, seed 000) and the ImageNet ResNets adapted to CIFAR (`resnet18/34/50`,
//! 3 × 3 stem, no initial max-pool, seed 003). Shortcuts that change shape are 1 × 1
//! convolutions with batch norm (projection shortcuts).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{Staged, flatten};
use crate::ModelError;
use crate::layers::{batch_norm, conv};
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};

/// Configuration of [`ResNet`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Base width of each stage (the stem has the first one).
    pub widths: Vec<usize>,
    /// Number of residual blocks in each stage.
    pub blocks: Vec<usize>,
    /// Bottleneck blocks (1×1, 3×3, 1×1, expansion 4) instead of basic blocks (two 3×3).
    pub bottleneck: bool,
    /// Number of classes it predicts (CIFAR-10's 10 unless the data has others; absent from
    /// the configurations of 10-class networks).
    #[serde(
        default = "super::cifar10_classes",
        skip_serializing_if = "super::is_cifar10_classes"
    )]
    pub classes: usize,
}

impl ResNetConfig {
    /// The CIFAR ResNet of depth `6n + 2` (20, 32, 44, 56, 110, …).
    pub fn cifar(depth: usize) -> Result<Self, ModelError> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(ModelError::BadOption(format!(
                "a CIFAR ResNet has depth 6n+2 (20, 32, 44, 56, 110), not {depth}"
            )));
        }
        let n = (depth - 2) / 6;
        Ok(Self {
            widths: vec![16, 32, 64],
            blocks: vec![n; 3],
            bottleneck: false,
            classes: super::cifar10_classes(),
        })
    }

    /// The ImageNet ResNet of depth 18, 34, 50, 101 or 152 with a CIFAR stem.
    pub fn imagenet(depth: usize) -> Result<Self, ModelError> {
        let (blocks, bottleneck) = match depth {
            18 => (vec![2, 2, 2, 2], false),
            34 => (vec![3, 4, 6, 3], false),
            50 => (vec![3, 4, 6, 3], true),
            101 => (vec![3, 4, 23, 3], true),
            152 => (vec![3, 8, 36, 3], true),
            _ => {
                return Err(ModelError::BadOption(format!(
                    "an ImageNet-style ResNet has depth 18, 34, 50, 101 or 152, not {depth}"
                )));
            }
        };
        Ok(Self {
            widths: vec![64, 128, 256, 512],
            blocks,
            bottleneck,
            classes: super::cifar10_classes(),
        })
    }

    fn expansion(&self) -> usize {
        if self.bottleneck { 4 } else { 1 }
    }

    /// Builds the network on `device`.
    pub fn init(&self, device: &Device) -> ResNet {
        let expansion = self.expansion();
        let mut channels = self.widths[0];
        let mut stages = Vec::new();
        for (i, (&width, &count)) in self.widths.iter().zip(&self.blocks).enumerate() {
            let mut stage = Vec::new();
            for b in 0..count {
                let stride = if i > 0 && b == 0 { 2 } else { 1 };
                stage.push(if self.bottleneck {
                    Block::Bottleneck(Bottleneck::new(channels, width, stride, device))
                } else {
                    Block::Basic(BasicBlock::new(channels, width, stride, device))
                });
                channels = width * expansion;
            }
            stages.push(stage);
        }
        ResNet {
            stem: conv([3, self.widths[0]], 3, 1, false, device),
            stem_bn: batch_norm(self.widths[0], device),
            stages,
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            fc: LinearConfig::new(channels, self.classes).init(device),
        }
    }
}

/// A 1 × 1 convolution with batch norm that matches a shortcut to its block's output.
#[derive(Module, Debug)]
pub struct Projection {
    conv: Conv2d,
    bn: BatchNorm,
}

impl Projection {
    /// A projection when the block changes shape, `None` when the identity fits.
    pub fn when_needed(
        input: usize,
        output: usize,
        stride: usize,
        device: &Device,
    ) -> Option<Self> {
        (stride != 1 || input != output).then(|| Self {
            conv: conv([input, output], 1, stride, false, device),
            bn: batch_norm(output, device),
        })
    }

    /// Applies the projection.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// Applies an optional projection, or passes `x` through.
pub(crate) fn shortcut(projection: &Option<Projection>, x: Tensor<4>) -> Tensor<4> {
    match projection {
        Some(p) => p.forward(x),
        None => x,
    }
}

/// Two 3 × 3 convolutions with batch norm and a shortcut.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<Projection>,
}

impl BasicBlock {
    fn new(input: usize, width: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv([input, width], 3, stride, false, device),
            bn1: batch_norm(width, device),
            conv2: conv([width, width], 3, 1, false, device),
            bn2: batch_norm(width, device),
            shortcut: Projection::when_needed(input, width, stride, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = self.bn2.forward(self.conv2.forward(out));
        relu(out + shortcut(&self.shortcut, x))
    }
}

/// 1 × 1 reduce, 3 × 3, 1 × 1 expand (×4), each with batch norm, and a shortcut.
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    shortcut: Option<Projection>,
}

impl Bottleneck {
    fn new(input: usize, width: usize, stride: usize, device: &Device) -> Self {
        let output = width * 4;
        Self {
            conv1: conv([input, width], 1, 1, false, device),
            bn1: batch_norm(width, device),
            conv2: conv([width, width], 3, stride, false, device),
            bn2: batch_norm(width, device),
            conv3: conv([width, output], 1, 1, false, device),
            bn3: batch_norm(output, device),
            shortcut: Projection::when_needed(input, output, stride, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let out = relu(self.bn2.forward(self.conv2.forward(out)));
        let out = self.bn3.forward(self.conv3.forward(out));
        relu(out + shortcut(&self.shortcut, x))
    }
}

/// A residual block of either kind.
// A handful of these exist per network, built once: boxing the larger variants would buy
// nothing but indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    /// Two 3 × 3 convolutions.
    Basic(BasicBlock),
    /// 1 × 1, 3 × 3, 1 × 1.
    Bottleneck(Bottleneck),
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Basic(b) => b.forward(x),
            Block::Bottleneck(b) => b.forward(x),
        }
    }
}

/// A residual network: stem, residual stages, global average pooling, linear classifier.
#[derive(Module, Debug)]
pub struct ResNet {
    stem: Conv2d,
    stem_bn: BatchNorm,
    stages: Vec<Vec<Block>>,
    pool: AdaptiveAvgPool2d,
    fc: Linear,
}

impl Staged for ResNet {
    fn stage_names(&self) -> Vec<String> {
        let mut names = vec!["stem".to_string()];
        names.extend((1..=self.stages.len()).map(|i| format!("layer{i}")));
        names
    }

    fn stage(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        if index == 0 {
            return relu(self.stem_bn.forward(self.stem.forward(x)));
        }
        self.stages[index - 1]
            .iter()
            .fold(x, |x, block| block.forward(x))
    }

    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        self.fc.forward(flatten(self.pool.forward(x)))
    }

    fn cam_stage(&self) -> Option<usize> {
        Some(self.stages.len())
    }
}

#[cfg(feature = "onnx")]
impl Emit for Projection {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = self.conv.emit(g, x, &join(scope, "conv"))?;
        self.bn.emit(g, &x, &join(scope, "bn"))
    }
}

/// The shortcut branch of a block as a graph: the input itself or its projection.
#[cfg(feature = "onnx")]
fn emit_shortcut(
    projection: &Option<Projection>,
    g: &mut Graph,
    x: &str,
    scope: &str,
) -> Result<String, ModelError> {
    match projection {
        Some(p) => p.emit(g, x, &join(scope, "shortcut")),
        None => Ok(x.to_string()),
    }
}

#[cfg(feature = "onnx")]
impl Emit for Block {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let (out, shortcut) = match self {
            Block::Basic(b) => {
                let out = b.conv1.emit(g, x, &join(scope, "conv1"))?;
                let out = b.bn1.emit(g, &out, &join(scope, "bn1"))?;
                let out = g.relu(&out);
                let out = b.conv2.emit(g, &out, &join(scope, "conv2"))?;
                (b.bn2.emit(g, &out, &join(scope, "bn2"))?, &b.shortcut)
            }
            Block::Bottleneck(b) => {
                let out = b.conv1.emit(g, x, &join(scope, "conv1"))?;
                let out = b.bn1.emit(g, &out, &join(scope, "bn1"))?;
                let out = g.relu(&out);
                let out = b.conv2.emit(g, &out, &join(scope, "conv2"))?;
                let out = b.bn2.emit(g, &out, &join(scope, "bn2"))?;
                let out = g.relu(&out);
                let out = b.conv3.emit(g, &out, &join(scope, "conv3"))?;
                (b.bn3.emit(g, &out, &join(scope, "bn3"))?, &b.shortcut)
            }
        };
        let skip = emit_shortcut(shortcut, g, x, scope)?;
        let sum = g.add(&out, &skip);
        Ok(g.relu(&sum))
    }
}

#[cfg(feature = "onnx")]
impl Emit for ResNet {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = self.stem.emit(g, x, &join(scope, "stem"))?;
        let x = self.stem_bn.emit(g, &x, &join(scope, "stem_bn"))?;
        let mut x = g.relu(&x);
        for (i, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                x = block.emit(g, &x, &join(scope, &format!("stages.{i}.{b}")))?;
            }
        }
        let x = g.global_average_pool(&x);
        let x = g.flatten(&x);
        self.fc.emit(g, &x, &join(scope, "fc"))
    }
}
