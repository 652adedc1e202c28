//! Small building blocks shared by several networks of the zoo.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use crate::Activation;
#[cfg(feature = "onnx")]
use crate::ModelError;
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};

/// A `k × k` convolution with "same" padding for odd `k` and the given stride.
pub fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .init(device)
}

/// `param` with its value replaced by `f(value)`, keeping its id and its gradient tracking
/// (the new value is a fresh leaf of the autodiff graph, tracked as the old one was).
pub fn replace_value<const D: usize>(
    param: Param<Tensor<D>>,
    f: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Param<Tensor<D>> {
    param.map(|old| {
        let tracked = old.is_require_grad();
        let new = f(old).detach();
        if tracked { new.require_grad() } else { new }
    })
}

/// A 2-D batch normalisation over `channels` channels, PyTorch's defaults.
pub fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).init(device)
}

/// A 2 × 2 max-pooling with stride 2.
pub fn max_pool2() -> MaxPool2d {
    MaxPool2dConfig::new([2, 2]).init()
}

/// Convolution (3 × 3), optional batch norm, then an activation: the unit most CNNs of the
/// seeds are made of.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: Option<BatchNorm>,
    #[module(skip)]
    activation: Activation,
}

impl ConvBlock {
    /// A 3 × 3 stride-1 block from `input` to `output` channels. The convolution has a bias
    /// unless it is followed by batch norm and `bias_with_bn` is false.
    pub fn new(
        input: usize,
        output: usize,
        with_bn: bool,
        bias_with_bn: bool,
        activation: Activation,
        device: &Device,
    ) -> Self {
        Self {
            conv: conv([input, output], 3, 1, !with_bn || bias_with_bn, device),
            bn: with_bn.then(|| batch_norm(output, device)),
            activation,
        }
    }

    /// Applies convolution, batch norm (when present) and the activation.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        self.activation.apply(x)
    }
}

#[cfg(feature = "onnx")]
impl Emit for ConvBlock {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let mut x = self.conv.emit(g, x, &join(scope, "conv"))?;
        if let Some(bn) = &self.bn {
            x = bn.emit(g, &x, &join(scope, "bn"))?;
        }
        Ok(g.activation(self.activation, &x))
    }
}
