//! 2-D max pooling on NCHW planes, with the indices of the maxima, and its backward pass.
//!
//! Flex runs every 2-D pool through its 3-D path: each output position computes the valid
//! part of its window with six integer divisions, compares with a short-circuit branch per
//! element, and the backward pass starts from an output zeroed in one pass of its own. For
//! the 2 × 2 pools of CIFAR networks the divisions cost more than the comparisons. Here the
//! windows of every output row and column are computed once per call (the plain 2 × 2
//! window with stride 2 has a loop of its own), each plane is pooled by one task with
//! branch-free comparisons, and the backward pass zeroes each plane in the task that
//! scatters its gradient, while that plane is in cache.
//!
//! Semantics are Flex's (and PyTorch's): padding never wins, a NaN always wins (the last one
//! of its window), indices count within the `H × W` plane, an empty window gives `-inf` and
//! index −1. f32 and f64 are computed natively; other dtypes take Flex's own path.

use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};
use num_traits::Float;

use super::conv2d_gemm::{Scalar, nchw_kernels_enabled, uninit_vec};
use super::pool::{pool_output_size, valid_range_maxpool};
use crate::{FlexTensor, Layout};

/// Options of one 2-D max pool, as `ModuleOps::max_pool2d` takes them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MaxPool2dOptions {
    pub(crate) kernel: [usize; 2],
    pub(crate) stride: [usize; 2],
    pub(crate) padding: [usize; 2],
    pub(crate) dilation: [usize; 2],
    pub(crate) ceil_mode: bool,
}

impl MaxPool2dOptions {
    /// The options in `ModuleOps::max_pool2d`'s argument order.
    pub(crate) fn new(
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    ) -> Self {
        Self {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        }
    }
}

/// The input positions of one output's window along one axis that lie inside the input:
/// `count` positions from `first`, `dilation` apart.
#[derive(Clone, Copy, Debug)]
struct Window {
    first: usize,
    count: usize,
}

/// The windows of every output position along one axis.
fn windows(input: usize, axis: usize, o: &MaxPool2dOptions) -> Vec<Window> {
    let (kernel, stride, padding, dilation) = (
        o.kernel[axis],
        o.stride[axis],
        o.padding[axis],
        o.dilation[axis],
    );
    let output = pool_output_size(input, kernel, padding, stride, dilation, o.ceil_mode);
    (0..output)
        .map(|out| {
            let (start, end) = valid_range_maxpool(out, kernel, stride, padding, dilation, input);
            Window {
                // `valid_range_maxpool` keeps this non-negative whenever the window is not empty.
                first: (out * stride + start * dilation).saturating_sub(padding),
                count: end - start,
            }
        })
        .collect()
}

/// Pools one `H × W` plane into `out` (and the plane-relative index of each maximum into
/// `at` when `INDEX`).
fn pool_plane<T: Float, const INDEX: bool>(
    x: &[T],
    width: usize,
    rows: &[Window],
    cols: &[Window],
    dilation: [usize; 2],
    out: &mut [T],
    at: &mut [i64],
) {
    let mut o = 0;
    for row in rows {
        for col in cols {
            let mut best = T::neg_infinity();
            let mut best_at = -1i64;
            for i in 0..row.count {
                let line = (row.first + i * dilation[0]) * width;
                for j in 0..col.count {
                    let k = line + col.first + j * dilation[1];
                    let v = x[k];
                    // Non-short-circuit `|`: the compiler selects instead of branching.
                    let take = (best_at < 0) | (v > best) | v.is_nan();
                    best = if take { v } else { best };
                    if INDEX {
                        best_at = if take { k as i64 } else { best_at };
                    } else {
                        best_at = if take { 0 } else { best_at };
                    }
                }
            }
            out[o] = best;
            if INDEX {
                at[o] = best_at;
            }
            o += 1;
        }
    }
}

/// Replaces `best` (found at `at`) by `v` (at `k`) where `v` is larger or NaN, without a branch.
#[inline(always)]
fn keep_max<T: Float>(v: T, k: usize, best: &mut T, at: &mut usize) {
    let take = (v > *best) | v.is_nan();
    *best = if take { v } else { *best };
    *at = if take { k } else { *at };
}

/// [`pool_plane`] for the common 2 × 2 window with stride 2, no padding and no dilation,
/// whose windows all lie inside the plane: the four candidates in the same order.
fn pool_plane_2x2<T: Float, const INDEX: bool>(
    x: &[T],
    width: usize,
    [out_h, out_w]: [usize; 2],
    out: &mut [T],
    at: &mut [i64],
) {
    for oh in 0..out_h {
        let top = 2 * oh * width;
        let upper = &x[top..top + 2 * out_w];
        let lower = &x[top + width..top + width + 2 * out_w];
        let out = &mut out[oh * out_w..(oh + 1) * out_w];
        for ow in 0..out_w {
            let i = 2 * ow;
            let (mut best, mut k) = (upper[i], top + i);
            keep_max(upper[i + 1], top + i + 1, &mut best, &mut k);
            keep_max(lower[i], top + width + i, &mut best, &mut k);
            keep_max(lower[i + 1], top + width + i + 1, &mut best, &mut k);
            out[ow] = best;
            if INDEX {
                at[oh * out_w + ow] = k as i64;
            }
        }
    }
}

/// Whether every window is the 2 × 2 block at twice its output position.
fn is_plain_2x2(o: &MaxPool2dOptions, [h, w]: [usize; 2], [out_h, out_w]: [usize; 2]) -> bool {
    o.kernel == [2, 2]
        && o.stride == [2, 2]
        && o.padding == [0, 0]
        && o.dilation == [1, 1]
        && 2 * out_h <= h
        && 2 * out_w <= w
}

/// `f(plane, out_plane, at_plane)` for every plane, in parallel where rayon is on; `at` is
/// empty when no indices are asked for.
fn for_each_plane<T: Scalar>(
    out: &mut [T],
    at: &mut [i64],
    plane: usize,
    f: impl Fn(usize, &mut [T], &mut [i64]) + Send + Sync,
) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        if at.is_empty() {
            out.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(p, out)| f(p, out, &mut []));
        } else {
            out.par_chunks_mut(plane)
                .zip(at.par_chunks_mut(plane))
                .enumerate()
                .for_each(|(p, (out, at))| f(p, out, at));
        }
    }
    #[cfg(not(feature = "rayon"))]
    {
        if at.is_empty() {
            for (p, out) in out.chunks_mut(plane).enumerate() {
                f(p, out, &mut []);
            }
        } else {
            for (p, (out, at)) in out.chunks_mut(plane).zip(at.chunks_mut(plane)).enumerate() {
                f(p, out, at);
            }
        }
    }
}

fn pool<T: Scalar + Float, const INDEX: bool>(
    x: &[T],
    [planes, h, w]: [usize; 3],
    o: &MaxPool2dOptions,
) -> ([usize; 2], Vec<T>, Vec<i64>) {
    let (rows, cols) = (windows(h, 0, o), windows(w, 1, o));
    let out_plane = rows.len() * cols.len();
    let mut out = uninit_vec::<T>(planes * out_plane);
    let mut at = if INDEX {
        uninit_vec::<i64>(planes * out_plane)
    } else {
        Vec::new()
    };
    if out_plane > 0 && h * w > 0 {
        let out_hw = [rows.len(), cols.len()];
        let plain = is_plain_2x2(o, [h, w], out_hw);
        for_each_plane(&mut out, &mut at, out_plane, |p, out, at| {
            let x = &x[p * h * w..(p + 1) * h * w];
            if plain {
                pool_plane_2x2::<T, INDEX>(x, w, out_hw, out, at);
            } else {
                pool_plane::<T, INDEX>(x, w, &rows, &cols, o.dilation, out, at);
            }
        });
    } else {
        // Windows that hold no input position (only possible on an empty input).
        out.fill(T::neg_infinity());
        at.fill(-1);
    }
    ([rows.len(), cols.len()], out, at)
}

fn pool_tensor<const INDEX: bool>(
    x: &FlexTensor,
    o: &MaxPool2dOptions,
) -> Option<(FlexTensor, Option<FlexTensor>)> {
    let shape = x.layout().shape();
    if !nchw_kernels_enabled()
        || shape.num_dims() != 4
        || !matches!(x.dtype(), DType::F32 | DType::F64)
    {
        return None;
    }
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let x = x.to_contiguous();
    let dims = [n * c, h, w];
    let (out_hw, out, at) = match x.dtype() {
        DType::F32 => {
            let (hw, out, at) = pool::<f32, INDEX>(x.storage(), dims, o);
            (hw, Bytes::from_elems(out), at)
        }
        _ => {
            let (hw, out, at) = pool::<f64, INDEX>(x.storage(), dims, o);
            (hw, Bytes::from_elems(out), at)
        }
    };
    let out_shape = Shape::from(alloc::vec![n, c, out_hw[0], out_hw[1]]);
    let indices = INDEX.then(|| {
        FlexTensor::new(
            Bytes::from_elems(at),
            Layout::contiguous(out_shape.clone()),
            DType::I64,
        )
    });
    let y = FlexTensor::new(out, Layout::contiguous(out_shape), x.dtype());
    Some((y, indices))
}

/// The max pool of `x` (NCHW), or `None` where Flex's own path takes it.
pub(crate) fn forward(x: &FlexTensor, o: &MaxPool2dOptions) -> Option<FlexTensor> {
    pool_tensor::<false>(x, o).map(|(y, _)| y)
}

/// The max pool of `x` (NCHW) and the I64 plane-relative indices of its maxima, or `None`
/// where Flex's own path takes it.
pub(crate) fn forward_with_indices(
    x: &FlexTensor,
    o: &MaxPool2dOptions,
) -> Option<(FlexTensor, FlexTensor)> {
    pool_tensor::<true>(x, o).map(|(y, at)| (y, at.expect("indices were asked for")))
}

/// Adds each output gradient to the input position its index names, plane by plane.
fn scatter<T: Scalar, I: Copy + Into<i64> + Send + Sync>(
    dy: &[T],
    at: &[I],
    planes: usize,
    in_plane: usize,
) -> Vec<T> {
    let mut dx = uninit_vec::<T>(planes * in_plane);
    if in_plane == 0 {
        return dx;
    }
    let out_plane = dy.len() / planes.max(1);
    for_each_plane(&mut dx, &mut [], in_plane, |p, dx, _| {
        dx.fill(T::zero());
        let range = p * out_plane..(p + 1) * out_plane;
        for (&g, &k) in dy[range.clone()].iter().zip(&at[range]) {
            let k: i64 = k.into();
            if k >= 0 {
                dx[k as usize] += g;
            }
        }
    });
    dx
}

/// The gradient of a max pool with respect to its input `x`, from the output gradient and
/// the indices of [`forward_with_indices`] (I64, or I32 after a cast), or `None` where Flex's
/// own path takes it.
pub(crate) fn backward(
    x: &FlexTensor,
    output_grad: &FlexTensor,
    indices: &FlexTensor,
) -> Option<FlexTensor> {
    let shape = x.layout().shape();
    if !nchw_kernels_enabled()
        || shape.num_dims() != 4
        || !matches!(x.dtype(), DType::F32 | DType::F64)
        || output_grad.dtype() != x.dtype()
        || !matches!(indices.dtype(), DType::I64 | DType::I32)
    {
        return None;
    }
    let planes = shape[0] * shape[1];
    let in_plane = shape[2] * shape[3];
    let dy = output_grad.to_contiguous();
    let at = indices.to_contiguous();
    let dx = match (x.dtype(), at.dtype()) {
        (DType::F32, DType::I64) => Bytes::from_elems(scatter::<f32, i64>(
            dy.storage(),
            at.storage(),
            planes,
            in_plane,
        )),
        (DType::F32, _) => Bytes::from_elems(scatter::<f32, i32>(
            dy.storage(),
            at.storage(),
            planes,
            in_plane,
        )),
        (_, DType::I64) => Bytes::from_elems(scatter::<f64, i64>(
            dy.storage(),
            at.storage(),
            planes,
            in_plane,
        )),
        _ => Bytes::from_elems(scatter::<f64, i32>(
            dy.storage(),
            at.storage(),
            planes,
            in_plane,
        )),
    };
    Some(FlexTensor::new(
        dx,
        Layout::contiguous(shape.clone()),
        x.dtype(),
    ))
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
        FlexTensor::new(
            Bytes::from_elems(data),
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
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
    fn matches_flex_own_route() {
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
                let (y, at) = forward_with_indices(&x, &o).expect("f32 NCHW is taken");
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
                same_bits(&forward(&x, &o).unwrap(), &y_ref);

                let len = y.layout().shape().num_elements();
                let dy = FlexTensor::new(
                    Bytes::from_elems((0..len).map(|i| (i % 11) as f32 * 0.5).collect()),
                    Layout::contiguous(y.layout().shape().clone()),
                    DType::F32,
                );
                let dx = backward(&x, &dy, &at).unwrap();
                let dx_ref = pool::max_pool2d_backward_f32(x.clone(), dy.clone(), at_ref);
                same_bits(&dx, &dx_ref);
                let at32: Vec<i32> = at.storage::<i64>().iter().map(|&k| k as i32).collect();
                let at32 = FlexTensor::new(
                    Bytes::from_elems(at32),
                    Layout::contiguous(at.layout().shape().clone()),
                    DType::I32,
                );
                same_bits(&backward(&x, &dy, &at32).unwrap(), &dx_ref);
            }
        }
    }

    #[test]
    fn other_dtypes_take_flex_own_route() {
        let x = input([1, 1, 4, 4], false);
        let half = <crate::Flex as burn_backend::ops::FloatTensorOps<crate::Flex>>::float_cast(
            x,
            burn_backend::FloatDType::F16,
        );
        assert!(forward(&half, &options([2, 2], 2, 0, 1, false)).is_none());
    }
}
