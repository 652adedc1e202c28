//! NCHW training kernels for convolutional networks on the CPU, over plain slices.
//!
//! The operations a CIFAR network's training step spends its time in, with their gradients:
//!
//! - 2-D convolution ([`conv2d`], [`conv2d_x_grad`], [`conv2d_weight_grad`],
//!   [`conv2d_bias_grad`]): one GEMM per image (the `gemm` crate), and for stride-1 f32
//!   convolutions on x86-64 with AVX2 and FMA (checked at run time) microkernels that read
//!   zero-padded input planes in place;
//! - batch norm in two passes per direction ([`batch_norm_train`], [`batch_norm_inference`],
//!   [`batch_norm_backward`]);
//! - 2-D max pooling with the indices of the maxima ([`max_pool2d`],
//!   [`max_pool2d_with_indices`], [`max_pool2d_backward`]);
//! - ReLU and its backward pass in parallel chunks ([`relu`], [`relu_in_place`],
//!   [`relu_backward`], [`relu_backward_in_place`]);
//! - GELU and its backward pass for f32 in parallel chunks, vectorized ([`gelu`],
//!   [`gelu_backward`]).
//!
//! Every function takes contiguous row-major NCHW data as slices of f32 or f64 ([`Scalar`])
//! with its sizes in a plain struct, and returns new vectors (ReLU also works in place). The
//! patched Flex backend of Burn (`patches/burn-flex` in this repository) converts its tensors
//! to slices and calls these; this crate knows nothing of Burn.
//!
//! Features (none by default; the patched burn-flex turns on both with its own features of the
//! same names): `std` detects AVX2 and FMA at run time, without it the crate is `no_std` +
//! `alloc` and convolutions take the GEMM route; `rayon` spreads images, channels and chunks
//! over the rayon pool. The page's WebAssembly build has `std` only and runs the GEMM route.

#![cfg_attr(not(feature = "std"), no_std)]
#![warn(missing_docs)]

extern crate alloc;

mod batch_norm;
mod conv2d;
mod gelu;
mod max_pool2d;
mod relu;

use alloc::vec::Vec;

pub use batch_norm::{BatchNormDims, batch_norm_backward, batch_norm_inference, batch_norm_train};
pub use conv2d::{
    Conv2dGeometry, Conv2dOptions, conv2d, conv2d_bias_grad, conv2d_weight_grad, conv2d_x_grad,
};
pub use gelu::{gelu, gelu_backward};
pub use max_pool2d::{MaxPool2dOptions, max_pool2d, max_pool2d_backward, max_pool2d_with_indices};
pub use relu::{relu, relu_backward, relu_backward_in_place, relu_in_place};

/// The element types the kernels compute in: `f32` and `f64` (sealed).
pub trait Scalar:
    num_traits::Float + bytemuck::Pod + core::ops::AddAssign + Send + Sync + 'static + sealed::Sealed
{
}
impl Scalar for f32 {}
impl Scalar for f64 {}

mod sealed {
    /// Keeps [`super::Scalar`] to the types the kernels are written and tested for.
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A vector of `len` elements that the caller writes completely before reading any (the
/// convention of Flex's `mask.rs`): for outputs that a GEMM without `read_dst` overwrites,
/// where zeroing first would be a wasted pass over memory.
pub(crate) fn uninit_vec<T: Copy>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    #[allow(clippy::uninit_vec)]
    // SAFETY: every caller writes all `len` elements before reading them.
    unsafe {
        v.set_len(len);
    }
    v
}

/// Elements per task: large enough that dispatch costs nothing, small enough to balance.
#[cfg(feature = "rayon")]
const CHUNK: usize = 1 << 15;

/// `f(start, chunk)` for consecutive chunks of `out` (`start` is the chunk's offset), in
/// parallel where rayon is on.
pub(crate) fn for_each_chunk<T: Send>(out: &mut [T], f: impl Fn(usize, &mut [T]) + Send + Sync) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * CHUNK, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    f(0, out);
}

/// `f(c)` for every channel, in parallel where rayon is on.
pub(crate) fn per_channel<T: Send>(
    channels: usize,
    f: impl Fn(usize) -> T + Send + Sync,
) -> Vec<T> {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        (0..channels).into_par_iter().map(f).collect()
    }
    #[cfg(not(feature = "rayon"))]
    {
        (0..channels).map(f).collect()
    }
}
