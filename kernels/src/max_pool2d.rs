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
//! index −1. f32 and f64 are computed natively.

use alloc::vec::Vec;

use crate::{Scalar, uninit_vec};

/// Options of one 2-D max pool, as Burn's `ModuleOps::max_pool2d` takes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool2dOptions {
    /// Window height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding before and after, along height and width (padding never wins).
    pub padding: [usize; 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
    /// Whether a last partial window makes an output (as in PyTorch).
    pub ceil_mode: bool,
}

impl MaxPool2dOptions {
    /// The options in `ModuleOps::max_pool2d`'s argument order.
    pub fn new(
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

/// Output size of a pool along one axis: Flex 0.22.1's `pool_output_size` (`ops/pool.rs`),
/// copied, so that both routes size their outputs alike.
fn pool_output_size(
    input: usize,
    kernel: usize,
    padding: usize,
    stride: usize,
    dilation: usize,
    ceil_mode: bool,
) -> usize {
    assert!(kernel > 0, "pool: kernel size must be > 0");
    assert!(stride > 0, "pool: stride must be > 0");
    let effective_kernel = dilation * (kernel - 1) + 1;
    let padded = input + 2 * padding;
    if padded < effective_kernel {
        return if ceil_mode { 1 } else { 0 };
    }
    let numerator = padded - effective_kernel;
    if ceil_mode {
        let out = numerator.div_ceil(stride) + 1;
        // Drop the last window if it would start at or past the end of the input
        // (in the trailing padding, or beyond the input without padding) (PyTorch/ONNX)
        if (out - 1) * stride >= input + padding {
            out - 1
        } else {
            out
        }
    } else {
        numerator / stride + 1
    }
}

/// The kernel positions `start..end` of output `out`'s window that fall inside the input:
/// Flex 0.22.1's `valid_range_maxpool` (`ops/pool.rs`), copied.
fn valid_range_maxpool(
    out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    input: usize,
) -> (usize, usize) {
    let out = out as isize;
    let kernel = kernel as isize;
    let stride = stride as isize;
    let pad = pad as isize;
    let dilation = dilation as isize;
    let input = input as isize;

    let p = pad - out * stride;
    let start = if p > 0 { (p - 1) / dilation + 1 } else { 0 };
    let start = start.max(0).min(kernel);

    let c = input + pad - out * stride;
    let end = if c > 0 { (c - 1) / dilation + 1 } else { 0 };
    let end = end.max(0).min(kernel).max(start);

    (start as usize, end as usize)
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
fn pool_plane<T: Scalar, const INDEX: bool>(
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
fn keep_max<T: Scalar>(v: T, k: usize, best: &mut T, at: &mut usize) {
    let take = (v > *best) | v.is_nan();
    *best = if take { v } else { *best };
    *at = if take { k } else { *at };
}

/// [`pool_plane`] for the common 2 × 2 window with stride 2, no padding and no dilation,
/// whose windows all lie inside the plane: the four candidates in the same order.
fn pool_plane_2x2<T: Scalar, const INDEX: bool>(
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

fn pool<T: Scalar, const INDEX: bool>(
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

/// The max pool of `x`, `planes` planes of `h × w` (`[batch · channels, h, w]` of an NCHW
/// input): `([h_out, w_out], y)`, `y` holding `planes` planes of `h_out × w_out`.
///
/// # Panics
/// If `x` does not hold `planes · h · w` elements, or a kernel size or stride is zero.
pub fn max_pool2d<T: Scalar>(
    x: &[T],
    [planes, h, w]: [usize; 3],
    o: &MaxPool2dOptions,
) -> ([usize; 2], Vec<T>) {
    assert_eq!(x.len(), planes * h * w, "max_pool2d: input length");
    let (out_hw, y, _) = pool::<T, false>(x, [planes, h, w], o);
    (out_hw, y)
}

/// [`max_pool2d`] and the index of each maximum within its `h × w` plane:
/// `([h_out, w_out], y, indices)`.
///
/// # Panics
/// As [`max_pool2d`].
pub fn max_pool2d_with_indices<T: Scalar>(
    x: &[T],
    [planes, h, w]: [usize; 3],
    o: &MaxPool2dOptions,
) -> ([usize; 2], Vec<T>, Vec<i64>) {
    assert_eq!(
        x.len(),
        planes * h * w,
        "max_pool2d_with_indices: input length"
    );
    pool::<T, true>(x, [planes, h, w], o)
}

/// The gradient of a max pool for its input (`planes` planes of `in_plane` elements), from
/// the output gradient `dy` and the indices of [`max_pool2d_with_indices`] (i64, or i32 after
/// a cast): each output gradient added to the input position its index names, plane by plane
/// (a negative index, from an empty window, adds nothing).
///
/// # Panics
/// If `dy` and `indices` differ in length or do not split into `planes` planes, or an index
/// lies outside its plane.
pub fn max_pool2d_backward<T: Scalar, I: Copy + Into<i64> + Send + Sync>(
    dy: &[T],
    indices: &[I],
    planes: usize,
    in_plane: usize,
) -> Vec<T> {
    let at = indices;
    assert_eq!(
        dy.len(),
        at.len(),
        "max_pool2d_backward: gradient and indices lengths"
    );
    assert!(
        dy.len().is_multiple_of(planes),
        "max_pool2d_backward: gradient length"
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::{format, vec};

    fn options(k: [usize; 2], s: usize, p: usize, d: usize, ceil_mode: bool) -> MaxPool2dOptions {
        MaxPool2dOptions::new(k, [s, s], [p, p], [d, d], ceil_mode)
    }

    /// Deterministic values with ties and repeated maxima (small integers), some NaN.
    fn input(len: usize, with_nan: bool) -> Vec<f32> {
        (0..len)
            .map(|i| {
                if with_nan && i % 37 == 5 {
                    f32::NAN
                } else {
                    ((i * 7919) % 13) as f32 - 6.0
                }
            })
            .collect()
    }

    /// Output size along one axis, PyTorch's formula: `⌊(in + 2p − d(k − 1) − 1) / s⌋ + 1`
    /// (`⌈…⌉` in ceil mode, less the last window where it would start past the input and the
    /// left padding).
    fn reference_size(input: usize, axis: usize, o: &MaxPool2dOptions) -> usize {
        let [input, k, s, p, d] = [
            input,
            o.kernel[axis],
            o.stride[axis],
            o.padding[axis],
            o.dilation[axis],
        ]
        .map(|v| v as i64);
        let span = input + 2 * p - d * (k - 1) - 1;
        let out = (span + if o.ceil_mode { s - 1 } else { 0 }).div_euclid(s) + 1;
        let out = if o.ceil_mode && (out - 1) * s >= input + p {
            out - 1
        } else {
            out
        };
        out.max(0) as usize
    }

    /// Max pooling by its definition, visiting each window in the order Flex 0.22.1's own
    /// pooling does (`max_pool3d_with_indices_impl`: rows, then columns): the first position
    /// inside the input is taken, then any larger value or a NaN; padding never wins; an empty
    /// window gives −∞ and index −1.
    fn reference_pool(
        x: &[f32],
        [planes, h, w]: [usize; 3],
        o: &MaxPool2dOptions,
    ) -> ([usize; 2], Vec<f32>, Vec<i64>) {
        let [out_h, out_w] = [reference_size(h, 0, o), reference_size(w, 1, o)];
        let (mut y, mut at) = (vec![], vec![]);
        let inside = |out: usize, t: usize, axis: usize, len: usize| {
            let pos = (out * o.stride[axis] + t * o.dilation[axis]) as i64 - o.padding[axis] as i64;
            (0..len as i64).contains(&pos).then_some(pos as usize)
        };
        for p in 0..planes {
            for oy in 0..out_h {
                for ox in 0..out_w {
                    let (mut best, mut best_at) = (f32::NEG_INFINITY, -1i64);
                    for ty in 0..o.kernel[0] {
                        let Some(iy) = inside(oy, ty, 0, h) else {
                            continue;
                        };
                        for tx in 0..o.kernel[1] {
                            let Some(ix) = inside(ox, tx, 1, w) else {
                                continue;
                            };
                            let v = x[p * h * w + iy * w + ix];
                            if best_at < 0 || v > best || v.is_nan() {
                                (best, best_at) = (v, (iy * w + ix) as i64);
                            }
                        }
                    }
                    y.push(best);
                    at.push(best_at);
                }
            }
        }
        ([out_h, out_w], y, at)
    }

    /// The backward pass by its definition: each output gradient added, in output order, to
    /// the input its index names.
    fn reference_backward(dy: &[f32], at: &[i64], planes: usize, in_plane: usize) -> Vec<f32> {
        let mut dx = vec![0.0; planes * in_plane];
        let out_plane = dy.len() / planes;
        for (j, (&g, &k)) in dy.iter().zip(at).enumerate() {
            if k >= 0 {
                dx[j / out_plane * in_plane + k as usize] += g;
            }
        }
        dx
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter()
            .map(|v| if v.is_nan() { u32::MAX } else { v.to_bits() })
            .collect()
    }

    /// Forward values, indices and the backward pass agree bit for bit with the definition,
    /// in the order Flex's own pooling follows (the wiring in `patches/burn-flex` also checks
    /// them against Flex itself).
    #[test]
    fn matches_the_definition() {
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
        for ([n, c, h, w], o) in cases {
            for with_nan in [false, true] {
                let dims = [n * c, h, w];
                let x = input(n * c * h * w, with_nan);
                let (out_hw, y, at) = max_pool2d_with_indices(&x, dims, &o);
                let (out_hw_ref, y_ref, at_ref) = reference_pool(&x, dims, &o);
                let case = format!("{dims:?} {o:?} NaN {with_nan}");
                assert_eq!(out_hw, out_hw_ref, "{case}");
                assert_eq!(bits(&y), bits(&y_ref), "{case}");
                assert_eq!(at, at_ref, "{case}");
                let (out_hw_plain, y_plain) = max_pool2d(&x, dims, &o);
                assert_eq!(
                    (out_hw_plain, bits(&y_plain)),
                    (out_hw, bits(&y_ref)),
                    "{case}"
                );

                let dy: Vec<f32> = (0..y.len()).map(|i| (i % 11) as f32 * 0.5).collect();
                let dx_ref = reference_backward(&dy, &at_ref, n * c, h * w);
                let dx = max_pool2d_backward(&dy, &at, n * c, h * w);
                assert_eq!(bits(&dx), bits(&dx_ref), "{case}");
                let at32: Vec<i32> = at.iter().map(|&k| k as i32).collect();
                let dx32 = max_pool2d_backward(&dy, &at32, n * c, h * w);
                assert_eq!(bits(&dx32), bits(&dx_ref), "{case}");
            }
        }
    }

    /// f64 takes the same code: the 2 × 2 pool of CIFAR networks against f32's result.
    #[test]
    fn f64_pools_like_f32() {
        let dims = [6, 8, 8];
        let x = input(6 * 64, true);
        let x64: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let o = options([2, 2], 2, 0, 1, false);
        let (hw, y, at) = max_pool2d_with_indices(&x, dims, &o);
        let (hw64, y64, at64) = max_pool2d_with_indices(&x64, dims, &o);
        assert_eq!((hw, at), (hw64, at64));
        let same = |(&a, &b): (&f64, &f32)| a.is_nan() && b.is_nan() || a == f64::from(b);
        assert!(y64.iter().zip(&y).all(same));
    }
}
