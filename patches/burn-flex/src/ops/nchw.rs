//! Flex's side of the NCHW training kernels of the `nchw-kernels` crate (`kernels/` in the
//! cifar-burn repository): 2-D convolution and its gradients, batch norm, 2-D max pooling,
//! ReLU and GELU over contiguous slices. This file only converts tensors to slices and back and holds
//! the switch between those kernels and Flex's generic route; `module.rs` and `activation.rs`
//! call it first and take their own route where it answers `None` (or gives the tensor back).
//!
//! f32 and f64 are computed natively; f16 and bf16 convolutions and batch norms in f32 (their
//! pooling and ReLU stay on Flex's route). [`set_nchw_kernels`] switches the kernels off, to
//! compare with the generic route.

use core::sync::atomic::{AtomicBool, Ordering};

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::ops::{ConvOptions, FloatTensorOps, IntTensorOps};
use burn_backend::{DType, Element, FloatDType, IntDType};
use burn_std::{Bytes, Shape};
use nchw_kernels::{BatchNormDims, Conv2dGeometry, Conv2dOptions, Scalar};

pub(crate) use nchw_kernels::MaxPool2dOptions;

use crate::{Flex, FlexTensor, Layout};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the NCHW training kernels on (the default) or off: the per-image GEMM and direct
/// routes for 2-D convolutions and their gradients, the two-pass batch norm, the 2-D max
/// pooling and the parallel ReLU of the `nchw-kernels` crate. Off, those operations take the
/// generic route (Burn's default implementations and this crate's NHWC tiled convolution,
/// pooling and element-wise operations); results agree to float rounding.
/// Like `torch.backends.cudnn.enabled`, it exists to compare the two.
pub fn set_nchw_kernels(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether the NCHW training kernels are on (see [`set_nchw_kernels`]).
pub fn nchw_kernels_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the kernels take a convolution (or one of its gradients) of these operands.
fn convolves(x: &FlexTensor, weight: &FlexTensor) -> bool {
    nchw_kernels_enabled()
        && x.dtype() == weight.dtype()
        && is_float(x.dtype())
        && x.layout().shape().num_dims() == 4
}

/// Whether the kernels take a batch norm of `x`.
fn normalizes(x: &FlexTensor) -> bool {
    nchw_kernels_enabled() && x.layout().shape().num_dims() >= 2 && is_float(x.dtype())
}

/// f32 and f64, and f16 and bf16 (computed in f32).
fn is_float(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// `t` as a contiguous f32 or f64 tensor (f16 and bf16 become f32).
fn as_f32_or_f64(t: &FlexTensor) -> FlexTensor {
    match t.dtype() {
        DType::F32 | DType::F64 => t.to_contiguous(),
        _ => cast(t.clone(), FloatDType::F32).to_contiguous(),
    }
}

fn cast(t: FlexTensor, dtype: FloatDType) -> FlexTensor {
    <Flex as FloatTensorOps<Flex>>::float_cast(t, dtype)
}

fn tensor<T: Element + bytemuck::Pod>(data: Vec<T>, shape: Vec<usize>, dtype: DType) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape)),
        dtype,
    )
}

/// Runs `f32_op` or `f64_op` on the elements of the contiguous inputs and returns its
/// outputs as tensors of `shapes`, in the dtype `like` (f16 and bf16 are computed in f32).
fn with_elements(
    inputs: &[&FlexTensor],
    like: DType,
    shapes: &[Vec<usize>],
    f32_op: impl FnOnce(&[&[f32]]) -> Vec<Vec<f32>>,
    f64_op: impl FnOnce(&[&[f64]]) -> Vec<Vec<f64>>,
) -> Vec<FlexTensor> {
    let converted: Vec<FlexTensor> = inputs.iter().map(|t| as_f32_or_f64(t)).collect();
    if converted[0].dtype() == DType::F64 {
        let slices: Vec<&[f64]> = converted.iter().map(|t| t.storage()).collect();
        return f64_op(&slices)
            .into_iter()
            .zip(shapes)
            .map(|(data, shape)| tensor(data, shape.clone(), DType::F64))
            .collect();
    }
    let slices: Vec<&[f32]> = converted.iter().map(|t| t.storage()).collect();
    f32_op(&slices)
        .into_iter()
        .zip(shapes)
        .map(|(data, shape)| {
            let out = tensor(data, shape.clone(), DType::F32);
            match like {
                DType::F16 => cast(out, FloatDType::F16),
                DType::BF16 => cast(out, FloatDType::BF16),
                _ => out,
            }
        })
        .collect()
}

/// The geometry of `conv2d(x, weight)` with `options`.
fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Conv2dGeometry {
    let dims = |t: &FlexTensor| -> [usize; 4] { t.layout().shape().dims() };
    let options = Conv2dOptions {
        stride: options.stride,
        padding: options.padding,
        dilation: options.dilation,
        groups: options.groups,
    };
    Conv2dGeometry::new(dims(x), dims(weight), &options)
}

/// `conv2d(x, weight) + bias`, or `None` when the kernels are off or the dtype is not a float.
pub(crate) fn conv2d(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: Option<&FlexTensor>,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    if !convolves(x, weight) {
        return None;
    }
    let g = geometry(x, weight, options);
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    fn run<T: Scalar>(s: &[&[T]], g: &Conv2dGeometry) -> Vec<Vec<T>> {
        vec![nchw_kernels::conv2d(s[0], s[1], s.get(2).copied(), g)]
    }
    let shape = g.output_shape().to_vec();
    with_elements(&inputs, x.dtype(), &[shape], |s| run(s, &g), |s| run(s, &g)).pop()
}

/// The gradient of `conv2d` for `x`, or `None` when the kernels are off.
pub(crate) fn conv2d_x_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    if !convolves(x, weight) {
        return None;
    }
    let g = geometry(x, weight, options);
    let shape = x.layout().shape().to_vec();
    with_elements(
        &[output_grad, weight],
        x.dtype(),
        &[shape],
        |s| vec![nchw_kernels::conv2d_x_grad(s[0], s[1], &g)],
        |s| vec![nchw_kernels::conv2d_x_grad(s[0], s[1], &g)],
    )
    .pop()
}

/// The gradient of `conv2d` for `weight`, or `None` when the kernels are off.
pub(crate) fn conv2d_weight_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    output_grad: &FlexTensor,
    options: &ConvOptions<2>,
) -> Option<FlexTensor> {
    if !convolves(x, weight) {
        return None;
    }
    let g = geometry(x, weight, options);
    let shape = weight.layout().shape().to_vec();
    with_elements(
        &[x, output_grad],
        weight.dtype(),
        &[shape],
        |s| vec![nchw_kernels::conv2d_weight_grad(s[0], s[1], &g)],
        |s| vec![nchw_kernels::conv2d_weight_grad(s[0], s[1], &g)],
    )
    .pop()
}

/// The gradient of `conv2d` for `bias` (`output_grad` summed over images and positions), or
/// `None` when the kernels are off.
pub(crate) fn conv2d_bias_backward(
    bias: &FlexTensor,
    output_grad: &FlexTensor,
) -> Option<FlexTensor> {
    let dims = output_grad.layout().shape();
    if !convolves(output_grad, bias) {
        return None;
    }
    let (batch, c_out) = (dims[0], dims[1]);
    with_elements(
        &[output_grad],
        bias.dtype(),
        &[bias.layout().shape().to_vec()],
        |s| vec![nchw_kernels::conv2d_bias_grad(s[0], batch, c_out)],
        |s| vec![nchw_kernels::conv2d_bias_grad(s[0], batch, c_out)],
    )
    .pop()
}

/// Batch norm with the batch's own statistics (output, mean, biased variance), or `None`
/// when the kernels are off.
pub(crate) fn batch_norm_train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    if !normalizes(x) {
        return None;
    }
    let d = BatchNormDims::of_shape(x.layout().shape());
    let shape = x.layout().shape().to_vec();
    fn run<T: Scalar>(s: &[&[T]], epsilon: f64, d: BatchNormDims) -> Vec<Vec<T>> {
        let (y, mean, variance) = nchw_kernels::batch_norm_train(s[0], s[1], s[2], epsilon, d);
        vec![y, mean, variance]
    }
    let mut parts = with_elements(
        &[x, gamma, beta],
        x.dtype(),
        &[shape, vec![d.channels], vec![d.channels]],
        |s| run(s, epsilon, d),
        |s| run(s, epsilon, d),
    );
    let variance = parts.pop()?;
    let mean = parts.pop()?;
    Some((parts.pop()?, mean, variance))
}

/// Batch norm with given statistics (inference), or `None` when the kernels are off.
pub(crate) fn batch_norm(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
) -> Option<FlexTensor> {
    if !normalizes(x) {
        return None;
    }
    let d = BatchNormDims::of_shape(x.layout().shape());
    let shape = x.layout().shape().to_vec();
    fn run<T: Scalar>(s: &[&[T]], epsilon: f64, d: BatchNormDims) -> Vec<Vec<T>> {
        let statistics = [s[1], s[2], s[3], s[4]];
        vec![nchw_kernels::batch_norm_inference(
            s[0], statistics, epsilon, d,
        )]
    }
    with_elements(
        &[x, gamma, beta, mean, variance],
        x.dtype(),
        &[shape],
        |s| run(s, epsilon, d),
        |s| run(s, epsilon, d),
    )
    .pop()
}

/// Gradients of [`batch_norm_train`] for `x`, `γ` and `β`, or `None` when the kernels are off.
pub(crate) fn batch_norm_train_backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
    output_grad: &FlexTensor,
) -> Option<(FlexTensor, FlexTensor, FlexTensor)> {
    if !normalizes(x) {
        return None;
    }
    let d = BatchNormDims::of_shape(x.layout().shape());
    let shape = x.layout().shape().to_vec();
    fn run<T: Scalar>(s: &[&[T]], epsilon: f64, d: BatchNormDims) -> Vec<Vec<T>> {
        let statistics = [s[1], s[2], s[3]];
        let (dx, dgamma, dbeta) =
            nchw_kernels::batch_norm_backward(s[0], statistics, epsilon, s[4], d);
        vec![dx, dgamma, dbeta]
    }
    let mut parts = with_elements(
        &[x, gamma, mean, variance, output_grad],
        x.dtype(),
        &[shape, vec![d.channels], vec![d.channels]],
        |s| run(s, epsilon, d),
        |s| run(s, epsilon, d),
    );
    let beta_grad = parts.pop()?;
    let gamma_grad = parts.pop()?;
    Some((parts.pop()?, gamma_grad, beta_grad))
}

/// Whether the kernels pool `x`: NCHW f32 or f64.
fn pools(x: &FlexTensor) -> bool {
    nchw_kernels_enabled()
        && x.layout().shape().num_dims() == 4
        && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// The max pool of `x` (NCHW) and, when `INDEX`, the I64 indices of its maxima.
fn pool<const INDEX: bool>(
    x: &FlexTensor,
    o: &MaxPool2dOptions,
) -> (FlexTensor, Option<FlexTensor>) {
    let [n, c, h, w] = x.layout().shape().dims();
    let x = x.to_contiguous();
    let dims = [n * c, h, w];
    fn run<T: Scalar + Element, const INDEX: bool>(
        x: &FlexTensor,
        dims: [usize; 3],
        o: &MaxPool2dOptions,
    ) -> ([usize; 2], Bytes, Vec<i64>) {
        if INDEX {
            let (hw, y, at) = nchw_kernels::max_pool2d_with_indices::<T>(x.storage(), dims, o);
            (hw, Bytes::from_elems(y), at)
        } else {
            let (hw, y) = nchw_kernels::max_pool2d::<T>(x.storage(), dims, o);
            (hw, Bytes::from_elems(y), Vec::new())
        }
    }
    let (out_hw, y, at) = match x.dtype() {
        DType::F32 => run::<f32, INDEX>(&x, dims, o),
        _ => run::<f64, INDEX>(&x, dims, o),
    };
    let shape = vec![n, c, out_hw[0], out_hw[1]];
    let y = FlexTensor::new(y, Layout::contiguous(Shape::from(shape.clone())), x.dtype());
    (y, INDEX.then(|| tensor(at, shape, DType::I64)))
}

/// The max pool of `x` (NCHW), or `None` where Flex's own route takes it.
pub(crate) fn max_pool2d(x: &FlexTensor, o: &MaxPool2dOptions) -> Option<FlexTensor> {
    pools(x).then(|| pool::<false>(x, o).0)
}

/// The max pool of `x` (NCHW) and the plane-relative indices of its maxima in
/// `indices_dtype`, or `None` where Flex's own route takes it.
pub(crate) fn max_pool2d_with_indices(
    x: &FlexTensor,
    o: &MaxPool2dOptions,
    indices_dtype: IntDType,
) -> Option<(FlexTensor, FlexTensor)> {
    if !pools(x) {
        return None;
    }
    let (y, indices) = pool::<true>(x, o);
    let mut indices = indices.expect("indices were asked for");
    if indices.dtype() != DType::from(indices_dtype) {
        indices = Flex::int_cast(indices, indices_dtype);
    }
    Some((y, indices))
}

/// The gradient of a max pool with respect to its input `x`, from the output gradient and
/// the indices of [`max_pool2d_with_indices`] (I64 or I32), or `None` where Flex's own route
/// takes it.
pub(crate) fn max_pool2d_backward(
    x: &FlexTensor,
    output_grad: &FlexTensor,
    indices: &FlexTensor,
) -> Option<FlexTensor> {
    if !pools(x)
        || output_grad.dtype() != x.dtype()
        || !matches!(indices.dtype(), DType::I64 | DType::I32)
    {
        return None;
    }
    let [n, c, h, w] = x.layout().shape().dims();
    let (planes, in_plane) = (n * c, h * w);
    let dy = output_grad.to_contiguous();
    let at = indices.to_contiguous();
    fn run<T: Scalar + Element, I: Element + bytemuck::Pod + Into<i64> + Send + Sync>(
        dy: &FlexTensor,
        at: &FlexTensor,
        planes: usize,
        in_plane: usize,
    ) -> Bytes {
        let dx =
            nchw_kernels::max_pool2d_backward::<T, I>(dy.storage(), at.storage(), planes, in_plane);
        Bytes::from_elems(dx)
    }
    let dx = match (x.dtype(), at.dtype()) {
        (DType::F32, DType::I64) => run::<f32, i64>(&dy, &at, planes, in_plane),
        (DType::F32, _) => run::<f32, i32>(&dy, &at, planes, in_plane),
        (_, DType::I64) => run::<f64, i64>(&dy, &at, planes, in_plane),
        _ => run::<f64, i32>(&dy, &at, planes, in_plane),
    };
    let shape = x.layout().shape().clone();
    Some(FlexTensor::new(dx, Layout::contiguous(shape), x.dtype()))
}

/// Whether the parallel ReLU (and, for f32, GELU) takes a tensor of this layout and dtype:
/// contiguous f32 or f64 of at least [`PARALLEL_THRESHOLD`](super::PARALLEL_THRESHOLD) elements, with rayon.
fn relu_applies(t: &FlexTensor) -> bool {
    #[cfg(feature = "rayon")]
    let large = t.layout().num_elements() >= super::PARALLEL_THRESHOLD;
    #[cfg(not(feature = "rayon"))]
    let large = false;
    nchw_kernels_enabled()
        && large
        && matches!(t.dtype(), DType::F32 | DType::F64)
        && t.layout().contiguous_offsets().is_some()
}

/// The contiguous elements of `t`.
fn elements<T: Element + bytemuck::Pod>(t: &FlexTensor) -> &[T] {
    let (start, end) = t.layout().contiguous_offsets().expect("checked contiguous");
    &t.storage::<T>()[start..end]
}

/// Whether `t` owns its buffer alone from its first element (a ReLU's input, an output
/// gradient), so that a result may be written over it.
fn writable(t: &FlexTensor) -> bool {
    t.is_unique() && t.layout().start_offset() == 0
}

/// `max(x, 0)` (NaN stays NaN), in place when `x` owns its buffer, or `Err(x)` where Flex's
/// own operation takes it.
pub(crate) fn relu(mut x: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    if !relu_applies(&x) {
        return Err(x);
    }
    fn run<T: Scalar + Element>(mut x: FlexTensor) -> FlexTensor {
        if writable(&x) {
            let n = x.layout().num_elements();
            nchw_kernels::relu_in_place(&mut x.storage_mut::<T>()[..n]);
            return x;
        }
        let y = nchw_kernels::relu(elements::<T>(&x));
        tensor(y, x.layout().shape().to_vec(), x.dtype())
    }
    x = match x.dtype() {
        DType::F32 => run::<f32>(x),
        _ => run::<f64>(x),
    };
    Ok(x)
}

/// The gradient of ReLU from its output and the output gradient (written over `grad` when
/// it owns its buffer), or `Err(grad)` where Flex's own operation takes them.
pub(crate) fn relu_backward(
    output: &FlexTensor,
    grad: FlexTensor,
) -> Result<FlexTensor, FlexTensor> {
    if !relu_applies(output)
        || !relu_applies(&grad)
        || output.dtype() != grad.dtype()
        || output.layout().shape() != grad.layout().shape()
    {
        return Err(grad);
    }
    fn run<T: Scalar + Element>(output: &FlexTensor, mut grad: FlexTensor) -> FlexTensor {
        let output = elements::<T>(output);
        if writable(&grad) {
            let n = grad.layout().num_elements();
            nchw_kernels::relu_backward_in_place(output, &mut grad.storage_mut::<T>()[..n]);
            return grad;
        }
        let dx = nchw_kernels::relu_backward(output, elements::<T>(&grad));
        tensor(dx, grad.layout().shape().to_vec(), grad.dtype())
    }
    Ok(match output.dtype() {
        DType::F32 => run::<f32>(output, grad),
        _ => run::<f64>(output, grad),
    })
}

/// GELU of a tensor the parallel ReLU would take, if it is f32 (vectorized `erf`), or
/// `Err(x)` where Flex's own operation takes it.
pub(crate) fn gelu(x: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    if !relu_applies(&x) || x.dtype() != DType::F32 {
        return Err(x);
    }
    let y = nchw_kernels::gelu(elements::<f32>(&x));
    Ok(tensor(y, x.layout().shape().to_vec(), DType::F32))
}

/// The gradient of GELU from its input and the output gradient, for the tensors [`gelu`]
/// takes, or `Err(grad)` where Flex's own operation takes them.
pub(crate) fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> Result<FlexTensor, FlexTensor> {
    let applies = |t: &FlexTensor| relu_applies(t) && t.dtype() == DType::F32;
    if !applies(x) || !applies(&grad) || x.layout().shape() != grad.layout().shape() {
        return Err(grad);
    }
    let dx = nchw_kernels::gelu_backward(elements::<f32>(x), elements::<f32>(&grad));
    Ok(tensor(dx, grad.layout().shape().to_vec(), DType::F32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::pool;

    fn options(k: [usize; 2], s: usize, p: usize, d: usize, ceil_mode: bool) -> MaxPool2dOptions {
        MaxPool2dOptions::new(k, [s, s], [p, p], [d, d], ceil_mode)
    }

    /// Deterministic values with ties and repeated maxima (small integers), some NaN.
    fn input(shape: [usize; 4], with_nan: bool) -> FlexTensor {
        let len: usize = shape.iter().product();
        let data: Vec<f32> = (0..len)
            .map(|i| {
                if with_nan && i % 37 == 5 {
                    f32::NAN
                } else {
                    ((i * 7919) % 13) as f32 - 6.0
                }
            })
            .collect();
        tensor(data, shape.to_vec(), DType::F32)
    }

    fn same_bits(a: &FlexTensor, b: &FlexTensor) {
        assert_eq!(a.layout().shape(), b.layout().shape());
        let bits = |t: &FlexTensor| -> Vec<u32> {
            t.to_contiguous()
                .storage::<f32>()
                .iter()
                .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
                .collect()
        };
        assert_eq!(bits(a), bits(b));
    }

    /// Forward values, indices and the backward pass agree exactly with Flex's own route.
    #[test]
    fn max_pool_matches_flex_own_route() {
        let cases = [
            ([2, 3, 32, 32], options([2, 2], 2, 0, 1, false)),
            ([3, 5, 16, 16], options([2, 2], 2, 0, 1, false)),
            ([1, 2, 7, 9], options([2, 2], 2, 0, 1, false)),
            ([1, 2, 7, 9], options([2, 2], 2, 0, 1, true)),
            ([1, 2, 1, 3], options([2, 2], 2, 0, 1, true)),
            ([2, 2, 9, 8], options([3, 3], 2, 1, 1, false)),
            ([2, 2, 9, 8], options([3, 3], 2, 1, 1, true)),
            ([1, 3, 10, 11], options([3, 3], 1, 1, 1, false)),
            ([1, 2, 12, 12], options([2, 2], 1, 1, 2, false)),
            ([1, 2, 8, 9], options([2, 3], 2, 1, 1, false)),
            ([2, 4, 4, 4], options([4, 4], 4, 0, 1, false)),
            ([1, 1, 5, 6], options([1, 1], 2, 0, 1, false)),
        ];
        for (shape, o) in cases {
            for with_nan in [false, true] {
                let x = input(shape, with_nan);
                let (y, at) =
                    max_pool2d_with_indices(&x, &o, IntDType::I64).expect("f32 NCHW is taken");
                let (y_ref, at_ref) = pool::max_pool2d_with_indices_f32(
                    x.clone(),
                    o.kernel,
                    o.stride,
                    o.padding,
                    o.dilation,
                    o.ceil_mode,
                );
                same_bits(&y, &y_ref);
                assert_eq!(at.storage::<i64>(), at_ref.to_contiguous().storage::<i64>());
                same_bits(&max_pool2d(&x, &o).unwrap(), &y_ref);

                let len = y.layout().shape().num_elements();
                let dy = tensor(
                    (0..len).map(|i| (i % 11) as f32 * 0.5).collect(),
                    y.layout().shape().to_vec(),
                    DType::F32,
                );
                let dx = max_pool2d_backward(&x, &dy, &at).unwrap();
                let dx_ref = pool::max_pool2d_backward_f32(x.clone(), dy.clone(), at_ref);
                same_bits(&dx, &dx_ref);
                let (_, at32) = max_pool2d_with_indices(&x, &o, IntDType::I32).unwrap();
                assert_eq!(at32.dtype(), DType::I32);
                same_bits(&max_pool2d_backward(&x, &dy, &at32).unwrap(), &dx_ref);
            }
        }
    }

    #[test]
    fn other_dtypes_pool_on_flex_own_route() {
        let x = input([1, 1, 4, 4], false);
        let half = cast(x, FloatDType::F16);
        assert!(max_pool2d(&half, &options([2, 2], 2, 0, 1, false)).is_none());
    }

    /// The geometry's output size is Burn's.
    #[test]
    fn conv_output_size_follows_burn() {
        for (len, k, stride, pad, dilation) in [(32, 3, 1, 1, 1), (32, 3, 2, 1, 1), (7, 3, 2, 1, 1)]
        {
            let options = ConvOptions::new([stride; 2], [pad; 2], [dilation; 2], 1);
            let x = tensor(vec![0f32; len * len], vec![1, 1, len, len], DType::F32);
            let w = tensor(vec![0f32; k * k], vec![1, 1, k, k], DType::F32);
            let expected =
                burn_backend::ops::conv::calculate_conv_output_size(k, stride, pad, dilation, len);
            assert_eq!(
                geometry(&x, &w, &options).output_shape(),
                [1, 1, expected, expected]
            );
        }
    }

    #[cfg(feature = "rayon")]
    mod relu {
        use super::super::*;

        const LEN: usize = crate::ops::PARALLEL_THRESHOLD + 1234;

        fn relu_input(data: Vec<f32>) -> FlexTensor {
            tensor(data, vec![2, LEN / 2], DType::F32)
        }

        fn values(seed: usize) -> Vec<f32> {
            (0..LEN)
                .map(|i| match (i * 31 + seed) % 97 {
                    0 => f32::NAN,
                    1 => 0.0,
                    2 => -0.0,
                    k => k as f32 - 48.5,
                })
                .collect()
        }

        fn bits(t: &FlexTensor) -> Vec<u32> {
            elements::<f32>(t).iter().map(|v| v.to_bits()).collect()
        }

        /// Forward and backward, in place and into a new buffer, against the definition; a
        /// tensor that shares its buffer is not overwritten.
        #[test]
        fn matches_the_definition_in_place_and_not() {
            let x = values(0);
            let want: Vec<u32> = x
                .iter()
                .map(|&v| if v.is_nan() || v > 0.0 { v } else { 0.0 }.to_bits())
                .collect();
            let shared = relu_input(x.clone());
            let keep = shared.clone();
            let y_new = relu(shared).expect("large f32 is taken");
            assert_eq!(bits(&y_new), want);
            assert!(bits(&keep) == x.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let y_in_place = relu(relu_input(x.clone())).expect("large f32 is taken");
            assert_eq!(bits(&y_in_place), want);

            let g = values(5);
            let want: Vec<u32> = want
                .iter()
                .zip(&g)
                .map(|(&y, &g)| {
                    let y = f32::from_bits(y);
                    if y.is_nan() || y > 0.0 { g } else { 0.0 }.to_bits()
                })
                .collect();
            let grad = relu_input(g.clone());
            let held = grad.clone();
            assert_eq!(bits(&relu_backward(&y_new, grad).unwrap()), want);
            let g_bits: Vec<u32> = g.iter().map(|v| v.to_bits()).collect();
            assert!(
                bits(&held) == g_bits,
                "a shared gradient is not overwritten"
            );
            assert_eq!(bits(&relu_backward(&y_new, relu_input(g)).unwrap()), want);
        }

        #[test]
        fn small_tensors_take_flex_own_route() {
            let small = tensor(vec![1.0f32; 8], vec![8], DType::F32);
            assert!(relu(small).is_err());
        }
    }
}
