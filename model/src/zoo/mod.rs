//! Every network of cifar-burn. Each one is a chain of named stages (convolution blocks,
//! pooling, residual stages) followed by a classifier head, so that the activations of any
//! named stage can be read (feature maps, Grad-CAM) and the rest of the network run from there.

pub mod airbench;
pub mod cnn;
pub mod mlp;
pub mod resnet;
pub mod resnet9;
pub mod wide_resnet;

use burn::tensor::Tensor;

use crate::NUM_CLASSES;

/// A network configuration's class count when it does not say: CIFAR-10's (serde default).
pub(crate) fn cifar10_classes() -> usize {
    NUM_CLASSES
}

/// Whether a class count is CIFAR-10's, which configurations leave unwritten.
pub(crate) fn is_cifar10_classes(classes: &usize) -> bool {
    *classes == NUM_CLASSES
}

/// A network seen as `head(stage_n(… stage_1(x)))`.
pub trait Staged {
    /// The names of the stages, in order. Empty for networks without spatial stages (MLP).
    fn stage_names(&self) -> Vec<String>;
    /// Runs stage `index` (0-based) on its input.
    fn stage(&self, index: usize, x: Tensor<4>) -> Tensor<4>;
    /// Maps the output of the last stage to class logits `[batch, classes]`.
    fn head(&self, x: Tensor<4>) -> Tensor<2>;
    /// The stage Grad-CAM explains by default: the last convolutional stage.
    fn cam_stage(&self) -> Option<usize>;
}

/// Flattens `[batch, c, h, w]` to `[batch, c·h·w]`.
pub(crate) fn flatten(x: Tensor<4>) -> Tensor<2> {
    x.flatten(1, 3)
}
