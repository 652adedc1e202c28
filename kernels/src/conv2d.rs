//! 2-D convolution as one GEMM per image on NCHW data, with its own data, weight and bias
//! gradients (the scheme of Caffe and of PyTorch's `slow_conv2d`).
//!
//! For image `b` and group `g`, the patches of `x[b]` are unfolded into `col` of shape
//! `[K, N]` with `K = C_in/groups · kh · kw` and `N = H_out · W_out`. Each row of `col` is
//! one input plane shifted by one kernel offset, so unfolding is a series of row copies.
//! Then:
//! - forward:          `y[b] = W · col`                 (`[C_out, K] · [K, N]`)
//! - data gradient:    `col = Wᵀ · dy[b]`, folded back  (`[K, C_out] · [C_out, N]`), added up
//!   where patches overlap
//! - weight gradient:  `dW += dy[b] · colᵀ`             (`[C_out, N] · [N, K]`)
//! - bias gradient:    `db = Σ_b Σ_n dy[b]`
//!
//! Images are spread over the rayon pool, one `col` buffer per task, and each GEMM runs on
//! one thread; with fewer images than threads (inference on one image) the GEMM itself runs
//! in parallel. Flex's generic route (its `conv3d_impl`, and the backward passes Burn derives
//! from `conv_transpose` and from a convolution with batch and channels swapped)
//! transposes the input to NHWC, builds an im2col matrix per tile of 512 outputs, and for the
//! weight gradient unfolds the input with the whole output map as the kernel; this route
//! reads and writes several times less memory for the 3×3 convolutions of CIFAR-sized
//! networks, which is where a training step spends its time.
//!
//! Stride-1, ungrouped f32 convolutions on x86-64 with AVX2 and FMA skip the unfolding: the
//! forward pass (and with it the input gradient, itself a forward convolution) and the weight
//! gradient read zero-padded copies of the input planes in place (`direct.rs`).
//!
//! f32 and f64 are computed natively (the direct route is f32 only).

use alloc::vec;
use alloc::vec::Vec;

use crate::{Scalar, per_channel, uninit_vec};

#[cfg(all(target_arch = "x86_64", feature = "std"))]
mod direct;

/// Stride, padding, dilation and groups of a 2-D convolution, as Burn's `ConvOptions<2>`
/// holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Padding `(before, after)` along height and width.
    pub padding: [(usize, usize); 2],
    /// Dilation along height and width.
    pub dilation: [usize; 2],
    /// Groups: input and output channels are split into this many independent convolutions.
    pub groups: usize,
}

impl Conv2dOptions {
    /// Options with the same padding before and after along each axis.
    pub fn new(
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    ) -> Self {
        Self {
            stride,
            padding: padding.map(|p| (p, p)),
            dilation,
            groups,
        }
    }
}

/// Sizes of one 2-D convolution: input `[batch, c_in, h, w]`, weight `[c_out, c_in / groups,
/// kh, kw]`, output `[batch, c_out, h_out, w_out]` (see [`Conv2dGeometry::new`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    batch: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    /// Padding before the first row and column (the end padding only changes the output size).
    pad: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    h_out: usize,
    w_out: usize,
}

impl Conv2dGeometry {
    /// The geometry of a convolution of an input of shape `x` with a weight of shape `weight`,
    /// the output size as Burn computes it.
    ///
    /// # Panics
    /// If the shapes and options do not describe a convolution: the weight's input channels
    /// times `groups` differ from the input's channels, `groups` does not divide the output
    /// channels, or a kernel size, stride or dilation is zero.
    pub fn new(x: [usize; 4], weight: [usize; 4], options: &Conv2dOptions) -> Self {
        let [batch, c_in, h, w] = x;
        let [c_out, c_in_group, kh, kw] = weight;
        let Conv2dOptions {
            stride,
            padding,
            dilation,
            groups,
        } = *options;
        assert!(
            groups > 0 && c_in_group * groups == c_in && c_out % groups == 0,
            "conv2d: weight {weight:?} and {groups} groups do not fit input {x:?}"
        );
        assert!(
            kh > 0 && kw > 0 && !stride.contains(&0) && !dilation.contains(&0),
            "conv2d: zero kernel size, stride or dilation"
        );
        let out = |len: usize, k: usize, i: usize| {
            (len + padding[i].0 + padding[i].1).saturating_sub(dilation[i] * (k - 1) + 1)
                / stride[i]
                + 1
        };
        Self {
            batch,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            pad: [padding[0].0, padding[1].0],
            dilation,
            groups,
            h_out: out(h, kh, 0),
            w_out: out(w, kw, 1),
        }
    }

    /// The output's shape, `[batch, c_out, h_out, w_out]`.
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.h_out, self.w_out]
    }

    /// Rows of `col`: input channels of one group times kernel positions.
    fn k(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Columns of `col`: output positions.
    fn n(&self) -> usize {
        self.h_out * self.w_out
    }

    fn image_in(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn image_out(&self) -> usize {
        self.c_out * self.n()
    }

    /// A 1×1 convolution with stride 1 and no padding reads `x` as `col` directly.
    fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.stride == [1, 1]
            && self.pad == [0, 0]
            && [self.h_out, self.w_out] == [self.h, self.w]
    }
}

/// The output positions `o` in `0..out_len` whose input `o·stride + offset` is in `0..len`.
fn valid_range(offset: isize, stride: usize, len: usize, out_len: usize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        offset.unsigned_abs().div_ceil(stride)
    };
    let reach = len as isize - offset;
    let hi = if reach <= 0 {
        0
    } else {
        (reach as usize - 1) / stride + 1
    };
    let hi = hi.min(out_len);
    (lo.min(hi), hi)
}

/// Visits every (row of `col`, output row) pair of group `group` with the input row it reads,
/// or `None` where the kernel row falls in the padding; `f(col_row, oy, input_row, x_offset,
/// valid_columns)`.
fn for_each_patch_row(
    g: &Conv2dGeometry,
    group: usize,
    mut f: impl FnMut(usize, usize, Option<usize>, isize, (usize, usize)),
) {
    let per_group = g.c_in / g.groups;
    let mut row = 0;
    for ci in group * per_group..(group + 1) * per_group {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let x_offset = (kx * g.dilation[1]) as isize - g.pad[1] as isize;
                let cols = valid_range(x_offset, g.stride[1], g.w, g.w_out);
                for oy in 0..g.h_out {
                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize - g.pad[0] as isize;
                    let input_row = (0..g.h as isize)
                        .contains(&iy)
                        .then(|| ci * g.h * g.w + iy as usize * g.w);
                    f(row, oy, input_row, x_offset, cols);
                }
                row += 1;
            }
        }
    }
}

/// Whether every row of `col` is one contiguous shifted copy of an input plane: stride 1
/// and as many output as input columns ("same" padding), the 3×3 convolutions of ResNets.
fn is_shifted_plane(g: &Conv2dGeometry) -> bool {
    g.stride == [1, 1] && g.w_out == g.w
}

/// For `is_shifted_plane` geometries, visits every row of `col` for `group` as
/// `f(col_row, plane_start, delta, valid_rows, valid_columns)`: output element `j` of the row
/// reads input element `plane_start + j + delta` when its row and column are valid.
fn for_each_shifted_plane(
    g: &Conv2dGeometry,
    group: usize,
    mut f: impl FnMut(usize, usize, isize, (usize, usize), (usize, usize)),
) {
    let per_group = g.c_in / g.groups;
    let mut row = 0;
    for ci in group * per_group..(group + 1) * per_group {
        for ky in 0..g.kh {
            let y_offset = (ky * g.dilation[0]) as isize - g.pad[0] as isize;
            let rows = valid_range(y_offset, 1, g.h, g.h_out);
            for kx in 0..g.kw {
                let x_offset = (kx * g.dilation[1]) as isize - g.pad[1] as isize;
                let cols = valid_range(x_offset, 1, g.w, g.w_out);
                let delta = y_offset * g.w as isize + x_offset;
                f(row, ci * g.h * g.w, delta, rows, cols);
                row += 1;
            }
        }
    }
}

/// The span of a shifted plane from its first to its last valid element (`None` if empty).
fn valid_span(
    w: usize,
    (top, bottom): (usize, usize),
    (lo, hi): (usize, usize),
) -> Option<(usize, usize)> {
    (top < bottom && lo < hi).then(|| (top * w + lo, (bottom - 1) * w + hi))
}

/// Unfolds the patches of one image `x` (`[C_in, H, W]`) for `group` into `col` (`[K, N]`).
fn unfold<T: Scalar>(x: &[T], g: &Conv2dGeometry, group: usize, col: &mut [T]) {
    let n = g.n();
    if is_shifted_plane(g) {
        let w = g.w;
        for_each_shifted_plane(g, group, |row, plane, delta, rows, (lo, hi)| {
            let out = &mut col[row * n..(row + 1) * n];
            let Some((first, end)) = valid_span(w, rows, (lo, hi)) else {
                out.fill(T::zero());
                return;
            };
            let src = (plane as isize + first as isize + delta) as usize;
            out[first..end].copy_from_slice(&x[src..src + (end - first)]);
            // Rows outside the input, and the columns that wrapped around to a neighbour row.
            out[..rows.0 * w].fill(T::zero());
            out[rows.1 * w..].fill(T::zero());
            zero_columns(&mut out[rows.0 * w..rows.1 * w], w, (lo, hi));
        });
        return;
    }
    let sw = g.stride[1];
    for_each_patch_row(g, group, |row, oy, input, x_offset, (lo, hi)| {
        let out = &mut col[row * n + oy * g.w_out..row * n + (oy + 1) * g.w_out];
        let Some(start) = input else {
            out.fill(T::zero());
            return;
        };
        out[..lo].fill(T::zero());
        out[hi..].fill(T::zero());
        let src = &x[start..start + g.w];
        if sw == 1 {
            let first = (lo as isize + x_offset) as usize;
            out[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
        } else {
            for (ox, o) in out.iter_mut().enumerate().take(hi).skip(lo) {
                *o = src[((ox * sw) as isize + x_offset) as usize];
            }
        }
    });
}

/// Zeroes columns `..lo` and `hi..` of the `w`-wide lines of `lines`, a column at a time: only
/// one or two columns for a 3×3 kernel, where a `fill` per line would call `memset` for one
/// element.
fn zero_columns<T: Scalar>(lines: &mut [T], w: usize, (lo, hi): (usize, usize)) {
    for column in (0..lo).chain(hi..w) {
        lines
            .iter_mut()
            .skip(column)
            .step_by(w)
            .for_each(|v| *v = T::zero());
    }
}

/// Adds `col` (`[K, N]`) back onto the image gradient `dx` (`[C_in, H, W]`) for `group`:
/// the transpose of [`unfold`], for the convolutions [`data_grad_as_forward`] does not take.
fn fold<T: Scalar>(col: &[T], g: &Conv2dGeometry, group: usize, dx: &mut [T]) {
    let n = g.n();
    let sw = g.stride[1];
    for_each_patch_row(g, group, |row, oy, input, x_offset, (lo, hi)| {
        let Some(start) = input else { return };
        let src = &col[row * n + oy * g.w_out..row * n + (oy + 1) * g.w_out];
        let dst = &mut dx[start..start + g.w];
        if sw == 1 {
            let first = (lo as isize + x_offset) as usize;
            for (d, &s) in dst[first..first + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                *d += s;
            }
        } else {
            for (ox, &s) in src.iter().enumerate().take(hi).skip(lo) {
                dst[((ox * sw) as isize + x_offset) as usize] += s;
            }
        }
    });
}

/// A matrix operand: base pointer, row stride and column stride, in elements.
#[derive(Clone, Copy)]
struct Operand<T> {
    ptr: *const T,
    row_stride: isize,
    col_stride: isize,
}

impl<T> Operand<T> {
    /// A row-major `[rows, cols]` matrix.
    fn rows(data: &[T], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: cols as isize,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    fn transposed(data: &[T], cols: usize) -> Self {
        Self {
            ptr: data.as_ptr(),
            row_stride: 1,
            col_stride: cols as isize,
        }
    }
}

/// `dst[m×n] = (accumulate ? dst : 0) + lhs[m×k] · rhs[k×n]`, where `dst` is laid out as
/// `dst_layout` says within the slice.
fn matmul<T: Scalar>(
    [m, n, k]: [usize; 3],
    dst: &mut [T],
    dst_layout: Layout2,
    accumulate: bool,
    lhs: Operand<T>,
    rhs: Operand<T>,
    parallel: bool,
) {
    assert!(
        m * n == 0 || (m - 1) * dst_layout.row_stride + (n - 1) * dst_layout.col_stride < dst.len(),
        "matmul: destination too small"
    );
    #[cfg(feature = "rayon")]
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    #[cfg(not(feature = "rayon"))]
    let parallelism = {
        let _ = parallel;
        gemm::Parallelism::None
    };
    // SAFETY: `dst` holds every element its layout addresses (checked above); the callers
    // pass operands whose strides stay inside the slices they were built from.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_layout.col_stride as isize,
            dst_layout.row_stride as isize,
            accumulate,
            lhs.ptr,
            lhs.col_stride,
            lhs.row_stride,
            rhs.ptr,
            rhs.col_stride,
            rhs.row_stride,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Row and column strides of a destination matrix.
#[derive(Clone, Copy)]
struct Layout2 {
    row_stride: usize,
    col_stride: usize,
}

impl Layout2 {
    /// Column-major with `rows` rows: the transpose of a row-major matrix with `rows` columns.
    fn columns(rows: usize) -> Self {
        Self {
            row_stride: 1,
            col_stride: rows,
        }
    }
}

/// Whether to run each GEMM on the whole pool (fewer images than threads).
fn gemm_in_parallel(batch: usize) -> bool {
    #[cfg(feature = "rayon")]
    {
        batch < rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = batch;
        false
    }
}

/// Calls `f(b, chunk, col)` for every image `b`, with `chunk` the `b`-th `len`-sized chunk of
/// `out` and `col` a scratch buffer of `col_len` elements that `f` writes before reading
/// (by [`unfold`] or a GEMM without `read_dst`), images spread over the pool.
fn for_each_image<T: Scalar>(
    out: &mut [T],
    len: usize,
    col_len: usize,
    f: impl Fn(usize, &mut [T], &mut [T]) + Send + Sync,
) {
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(len)
            .enumerate()
            .for_each_init(|| uninit_vec(col_len), |col, (b, chunk)| f(b, chunk, col));
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut col = uninit_vec(col_len);
        for (b, chunk) in out.chunks_mut(len).enumerate() {
            f(b, chunk, &mut col);
        }
    }
}

/// `conv2d(x, w) + bias`: `x` is `[batch, c_in, h, w]`, `w` is `[c_out, c_in / groups, kh, kw]`
/// and `bias` is `[c_out]`, as `g` says; the result is `[batch, c_out, h_out, w_out]`.
///
/// # Panics
/// If a slice's length does not match `g`.
pub fn conv2d<T: Scalar>(x: &[T], w: &[T], bias: Option<&[T]>, g: &Conv2dGeometry) -> Vec<T> {
    assert_eq!(x.len(), g.batch * g.image_in(), "conv2d: input length");
    assert_eq!(w.len(), g.c_out * g.k(), "conv2d: weight length");
    assert!(
        bias.is_none_or(|b| b.len() == g.c_out),
        "conv2d: bias length"
    );
    let (k, n) = (g.k(), g.n());
    let c_out_g = g.c_out / g.groups;
    // Every element is written by the GEMMs (one per group, without `read_dst`).
    let mut y = uninit_vec(g.batch * g.image_out());
    let parallel = gemm_in_parallel(g.batch);
    // Stride-1 f32 convolutions of at least one image per thread read their input in place.
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    if !parallel && direct::forward(x, w, bias, g, &mut y) {
        return y;
    }
    let col_len = if g.is_pointwise() { 0 } else { k * n };
    // `gemm` keeps the destination column-major and skips packing an operand with unit row
    // stride, so this computes `yᵀ = colᵀ · Wᵀ` (`[N, K] · [K, C_out]`): `yᵀ` column-major is
    // `y` row-major, and `colᵀ` has unit row stride.
    for_each_image(&mut y, g.image_out(), col_len, |b, y_b, col| {
        let x_b = &x[b * g.image_in()..(b + 1) * g.image_in()];
        for group in 0..g.groups {
            let lhs = if g.is_pointwise() {
                Operand::transposed(&x_b[group * k * n..], n)
            } else {
                unfold(x_b, g, group, col);
                Operand::transposed(col, n)
            };
            matmul(
                [n, c_out_g, k],
                &mut y_b[group * c_out_g * n..],
                Layout2::columns(n),
                false,
                lhs,
                Operand::transposed(&w[group * c_out_g * k..], k),
                parallel,
            );
        }
        if let Some(bias) = bias {
            for (plane, &b) in y_b.chunks_mut(n).zip(bias) {
                plane.iter_mut().for_each(|v| *v += b);
            }
        }
    });
    y
}

/// For a stride-1 convolution the input gradient is itself a convolution: of `dy` with the
/// kernel flipped in space and its input and output channels swapped, with `dilation·(k−1) −
/// pad` padding before. Its geometry, when that padding is not negative.
///
/// Computing it as a forward convolution (unfold `dy`, one GEMM of depth `C_out·kh·kw`)
/// writes each input gradient once, where the general route's GEMM has depth `C_out` only and
/// its `col` result is added back onto the input planes by [`fold`], `kh·kw` passes.
fn data_grad_as_forward(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    if g.stride != [1, 1] {
        return None;
    }
    let pad = |i: usize, k: usize| (g.dilation[i] * (k - 1)).checked_sub(g.pad[i]);
    Some(Conv2dGeometry {
        batch: g.batch,
        c_in: g.c_out,
        h: g.h_out,
        w: g.w_out,
        c_out: g.c_in,
        kh: g.kh,
        kw: g.kw,
        stride: [1, 1],
        pad: [pad(0, g.kh)?, pad(1, g.kw)?],
        dilation: g.dilation,
        groups: g.groups,
        h_out: g.h,
        w_out: g.w,
    })
}

/// The kernel of [`data_grad_as_forward`]: `w'[group·C_in_g + i, o, ky, kx] =
/// w[group·C_out_g + o, i, kh−1−ky, kw−1−kx]`.
fn flipped_transposed<T: Scalar>(w: &[T], g: &Conv2dGeometry) -> Vec<T> {
    let (c_in_g, c_out_g, taps) = (g.c_in / g.groups, g.c_out / g.groups, g.kh * g.kw);
    let mut flipped = uninit_vec(w.len());
    for group in 0..g.groups {
        for o in 0..c_out_g {
            for i in 0..c_in_g {
                let src = &w[((group * c_out_g + o) * c_in_g + i) * taps..][..taps];
                let dst = &mut flipped[((group * c_in_g + i) * c_out_g + o) * taps..][..taps];
                // Reversing the `[ky, kx]` taps maps `(ky, kx)` to `(kh−1−ky, kw−1−kx)`.
                dst.iter_mut()
                    .zip(src.iter().rev())
                    .for_each(|(d, &s)| *d = s);
            }
        }
    }
    flipped
}

/// The gradient of [`conv2d`] for its input `x` (`[batch, c_in, h, w]`), from the output
/// gradient `dy` (`[batch, c_out, h_out, w_out]`) and the weight `w`.
///
/// # Panics
/// If a slice's length does not match `g`.
pub fn conv2d_x_grad<T: Scalar>(dy: &[T], w: &[T], g: &Conv2dGeometry) -> Vec<T> {
    assert_eq!(
        dy.len(),
        g.batch * g.image_out(),
        "conv2d_x_grad: output gradient length"
    );
    assert_eq!(w.len(), g.c_out * g.k(), "conv2d_x_grad: weight length");
    if let Some(transposed) = data_grad_as_forward(g) {
        return conv2d(dy, &flipped_transposed(w, g), None, &transposed);
    }
    let (k, n) = (g.k(), g.n());
    let c_out_g = g.c_out / g.groups;
    let mut dx = vec![T::zero(); g.batch * g.image_in()];
    let parallel = gemm_in_parallel(g.batch);
    // `colᵀ = dyᵀ · W` (`[N, C_out] · [C_out, K]`), column-major: see `conv2d`.
    for_each_image(&mut dx, g.image_in(), k * n, |b, dx_b, col| {
        let dy_b = &dy[b * g.image_out()..(b + 1) * g.image_out()];
        for group in 0..g.groups {
            let lhs = Operand::transposed(&dy_b[group * c_out_g * n..], n);
            let rhs = Operand::rows(&w[group * c_out_g * k..], k);
            let shape = [n, k, c_out_g];
            if g.is_pointwise() {
                let dst = &mut dx_b[group * k * n..];
                matmul(shape, dst, Layout2::columns(n), false, lhs, rhs, parallel);
            } else {
                matmul(shape, col, Layout2::columns(n), false, lhs, rhs, parallel);
                fold(col, g, group, dx_b);
            }
        }
    });
    dx
}

/// The gradient of [`conv2d`] for its weight (`[c_out, c_in / groups, kh, kw]`), from the
/// input `x` and the output gradient `dy`.
///
/// # Panics
/// If a slice's length does not match `g`.
pub fn conv2d_weight_grad<T: Scalar>(x: &[T], dy: &[T], g: &Conv2dGeometry) -> Vec<T> {
    assert_eq!(
        x.len(),
        g.batch * g.image_in(),
        "conv2d_weight_grad: input length"
    );
    assert_eq!(
        dy.len(),
        g.batch * g.image_out(),
        "conv2d_weight_grad: output gradient length"
    );
    let (k, n) = (g.k(), g.n());
    let c_out_g = g.c_out / g.groups;
    let weights = g.c_out * k;
    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    {
        let mut dw = uninit_vec(weights);
        if !gemm_in_parallel(g.batch) && direct::weight_grad(x, dy, g, &mut dw) {
            return dw;
        }
    }
    // `gemm` keeps the destination column-major and gathers every operand without unit row
    // stride into packed panels, one element at a time: so each image's `dy` is transposed
    // first (`dyᵀ` has unit row stride as the left operand), and the gradient is accumulated
    // column-major, as `dwᵀ` (`[K, C_out]`), then transposed once.
    let dw_t = sum_over_image_runs(g.batch, |images, parallel| {
        let mut dw_t = vec![T::zero(); weights];
        let mut col = uninit_vec(if g.is_pointwise() { 0 } else { k * n });
        let mut dy_t = uninit_vec(g.image_out());
        for b in images {
            let x_b = &x[b * g.image_in()..(b + 1) * g.image_in()];
            let dy_b = &dy[b * g.image_out()..(b + 1) * g.image_out()];
            transpose(dy_b, g.c_out, n, &mut dy_t);
            for group in 0..g.groups {
                let rhs = if g.is_pointwise() {
                    Operand::transposed(&x_b[group * k * n..], n)
                } else {
                    unfold(x_b, g, group, &mut col);
                    Operand::transposed(&col, n)
                };
                matmul(
                    [c_out_g, k, n],
                    &mut dw_t[group * c_out_g..],
                    Layout2::columns(g.c_out),
                    true,
                    Operand::transposed(&dy_t[group * c_out_g..], g.c_out),
                    rhs,
                    parallel,
                );
            }
        }
        dw_t
    });
    let mut dw = uninit_vec(weights);
    transpose(&dw_t, k, g.c_out, &mut dw);
    dw
}

/// The sum of `partial(images, parallel)` over contiguous runs of images, one per thread
/// of the pool, computed in parallel. `parallel` is `true` for a batch of one image, whose
/// GEMMs may then use the pool.
fn sum_over_image_runs<T: Scalar>(
    batch: usize,
    partial: impl Fn(core::ops::Range<usize>, bool) -> Vec<T> + Sync,
) -> Vec<T> {
    #[cfg(feature = "rayon")]
    let threads = rayon::current_num_threads().min(batch).max(1);
    #[cfg(not(feature = "rayon"))]
    let threads = 1;
    if threads == 1 {
        return partial(0..batch, batch == 1);
    }
    let per = batch.div_ceil(threads);
    let runs = (0..threads).map(|t| t * per..((t + 1) * per).min(batch));
    let add = |mut a: Vec<T>, b: Vec<T>| {
        a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
        a
    };
    #[cfg(feature = "rayon")]
    let sum = {
        use rayon::prelude::*;
        let runs: Vec<_> = runs.collect();
        runs.into_par_iter()
            .map(|images| partial(images, false))
            .reduce_with(add)
    };
    #[cfg(not(feature = "rayon"))]
    let sum = runs.map(|images| partial(images, false)).reduce(add);
    sum.expect("at least one run")
}

/// Writes the transpose of the row-major `[rows, cols]` matrix `src` into `dst`
/// (`[cols, rows]`), in blocks of 16 columns so the writes stay in the first-level cache.
/// f32 on x86-64 moves 4 × 4 tiles through SSE registers (about 4× faster than one element
/// at a time).
fn transpose<T: Scalar>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    let (src, dst) = (&src[..rows * cols], &mut dst[..rows * cols]);
    #[cfg(target_arch = "x86_64")]
    if core::any::TypeId::of::<T>() == core::any::TypeId::of::<f32>() {
        let (src, dst) = (bytemuck::cast_slice(src), bytemuck::cast_slice_mut(dst));
        let (tiled_rows, tiled_cols) = (rows / 4 * 4, cols / 4 * 4);
        transpose_tiles_f32(src, [rows, cols], [tiled_rows, tiled_cols], dst);
        transpose_lines(src, rows, cols, dst, |r| {
            if r < tiled_rows { tiled_cols } else { 0 }
        });
        return;
    }
    transpose_lines(src, rows, cols, dst, |_| 0);
}

/// [`transpose`] one element at a time, for the columns from `first_col(row)` on.
fn transpose_lines<T: Copy>(
    src: &[T],
    rows: usize,
    cols: usize,
    dst: &mut [T],
    first_col: impl Fn(usize) -> usize,
) {
    const BLOCK: usize = 16;
    for start in (0..cols).step_by(BLOCK) {
        let end = (start + BLOCK).min(cols);
        for (r, line) in src.chunks_exact(cols).enumerate().take(rows) {
            let from = first_col(r).max(start);
            for (c, &v) in line.iter().enumerate().take(end).skip(from) {
                dst[c * rows + r] = v;
            }
        }
    }
}

/// The top-left `tiled[0] × tiled[1]` part (multiples of 4) of the transpose of the
/// `[rows, cols]` matrix `src`, by 4 × 4 tiles in SSE registers (every x86-64 has SSE).
#[cfg(target_arch = "x86_64")]
fn transpose_tiles_f32(
    src: &[f32],
    [rows, cols]: [usize; 2],
    [tiled_rows, tiled_cols]: [usize; 2],
    dst: &mut [f32],
) {
    use core::arch::x86_64::{_MM_TRANSPOSE4_PS, _mm_loadu_ps, _mm_storeu_ps};
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    assert!(tiled_rows <= rows && tiled_cols <= cols);
    for block in (0..tiled_cols).step_by(16) {
        for r in (0..tiled_rows).step_by(4) {
            for c in (block..(block + 16).min(tiled_cols)).step_by(4) {
                // SAFETY: rows r..r + 4 and columns c..c + 4 lie inside both matrices (the
                // asserts above, and r + 4 ≤ tiled_rows, c + 4 ≤ tiled_cols); SSE is part
                // of the x86-64 baseline.
                unsafe {
                    let s = src.as_ptr().add(r * cols + c);
                    let mut a = _mm_loadu_ps(s);
                    let mut b = _mm_loadu_ps(s.add(cols));
                    let mut e = _mm_loadu_ps(s.add(2 * cols));
                    let mut f = _mm_loadu_ps(s.add(3 * cols));
                    _MM_TRANSPOSE4_PS(&mut a, &mut b, &mut e, &mut f);
                    let d = dst.as_mut_ptr().add(c * rows + r);
                    _mm_storeu_ps(d, a);
                    _mm_storeu_ps(d.add(rows), b);
                    _mm_storeu_ps(d.add(2 * rows), e);
                    _mm_storeu_ps(d.add(3 * rows), f);
                }
            }
        }
    }
}

/// The gradient of [`conv2d`] for its bias: the output gradient `dy` (`[batch, c_out, ...]`)
/// summed per channel over images and positions. Channels run in parallel, each summed in
/// eight independent lanes (vector registers) over its planes.
///
/// # Panics
/// If `dy`'s length is not a multiple of `batch · c_out`.
pub fn conv2d_bias_grad<T: Scalar>(dy: &[T], batch: usize, c_out: usize) -> Vec<T> {
    const LANES: usize = 8;
    assert!(
        dy.len().is_multiple_of(batch * c_out),
        "conv2d_bias_grad: output gradient length"
    );
    let n = dy.len() / (batch * c_out).max(1);
    let channel = |c: usize| {
        let mut lanes = [T::zero(); LANES];
        for b in 0..batch {
            let plane = &dy[(b * c_out + c) * n..][..n];
            let chunks = plane.chunks_exact(LANES);
            for (lane, &v) in lanes.iter_mut().zip(chunks.remainder()) {
                *lane += v;
            }
            for chunk in chunks {
                for (lane, &v) in lanes.iter_mut().zip(chunk) {
                    *lane += v;
                }
            }
        }
        lanes.iter().fold(T::zero(), |sum, &v| sum + v)
    };
    per_channel(c_out, channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bias gradient sums each channel over images and positions (odd plane sizes, so
    /// the lanes' remainders count).
    #[test]
    fn bias_grad_sums_each_channel() {
        let (batch, c_out, n) = (3, 5, 13);
        let dy: Vec<f64> = (0..batch * c_out * n)
            .map(|i| (i % 17) as f64 - 8.5)
            .collect();
        let db = conv2d_bias_grad(&dy, batch, c_out);
        for (c, &got) in db.iter().enumerate() {
            let want: f64 = (0..batch)
                .flat_map(|b| dy[(b * c_out + c) * n..][..n].iter())
                .sum();
            assert!((got - want).abs() < 1e-9, "channel {c}: {got} vs {want}");
        }
    }

    /// The transpose (SSE tiles for f32 on x86-64, plus the ragged edges) against its
    /// definition, for sizes that are and are not multiples of the tile and of the block.
    #[test]
    fn transpose_matches_its_definition() {
        fn check<T: Scalar + core::fmt::Debug + PartialEq>(of: impl Fn(usize) -> T) {
            for (rows, cols) in [
                (1, 1),
                (4, 4),
                (3, 7),
                (5, 18),
                (16, 1024),
                (17, 33),
                (64, 36),
            ] {
                let src: Vec<T> = (0..rows * cols).map(&of).collect();
                let mut dst = vec![T::zero(); rows * cols];
                transpose(&src, rows, cols, &mut dst);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(
                            dst[c * rows + r],
                            src[r * cols + c],
                            "{rows}×{cols} at {r},{c}"
                        );
                    }
                }
            }
        }
        check(|i| i as f32 + 0.5);
        check(|i| i as f64 - 0.25);
    }

    /// Direct loops, the definition of a grouped, strided, dilated, padded convolution.
    pub(super) fn reference_forward(x: &[f64], w: &[f64], g: &Conv2dGeometry) -> Vec<f64> {
        let per_group_in = g.c_in / g.groups;
        let per_group_out = g.c_out / g.groups;
        let mut y = vec![0.0; g.batch * g.image_out()];
        for b in 0..g.batch {
            for co in 0..g.c_out {
                let group = co / per_group_out;
                for oy in 0..g.h_out {
                    for ox in 0..g.w_out {
                        let mut sum = 0.0;
                        for cl in 0..per_group_in {
                            let ci = group * per_group_in + cl;
                            for ky in 0..g.kh {
                                for kx in 0..g.kw {
                                    let iy = (oy * g.stride[0] + ky * g.dilation[0]) as isize
                                        - g.pad[0] as isize;
                                    let ix = (ox * g.stride[1] + kx * g.dilation[1]) as isize
                                        - g.pad[1] as isize;
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * g.c_in + ci) * g.h + iy as usize) * g.w
                                        + ix as usize];
                                    let wv = w[((co * per_group_in + cl) * g.kh + ky) * g.kw + kx];
                                    sum += xv * wv;
                                }
                            }
                        }
                        y[((b * g.c_out + co) * g.h_out + oy) * g.w_out + ox] = sum;
                    }
                }
            }
        }
        y
    }

    /// Deterministic values in [-1, 1).
    pub(super) fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    fn geometries() -> Vec<Conv2dGeometry> {
        /// `[batch, c_in, h, w]`, `[c_out, kh, kw]`, stride, padding (begin, end), dilation, groups.
        fn make(
            [batch, c_in, h, w]: [usize; 4],
            [c_out, kh, kw]: [usize; 3],
            stride: [usize; 2],
            pad: [usize; 2],
            end: [usize; 2],
            dilation: [usize; 2],
            groups: usize,
        ) -> Conv2dGeometry {
            let options = Conv2dOptions {
                stride,
                padding: [(pad[0], end[0]), (pad[1], end[1])],
                dilation,
                groups,
            };
            Conv2dGeometry::new(
                [batch, c_in, h, w],
                [c_out, c_in / groups, kh, kw],
                &options,
            )
        }
        vec![
            make([3, 4, 8, 8], [5, 3, 3], [1, 1], [1, 1], [1, 1], [1, 1], 1), // ResNet's 3×3
            make([2, 3, 7, 9], [4, 3, 3], [2, 2], [1, 1], [1, 1], [1, 1], 1), // strided, odd
            make([2, 4, 6, 6], [6, 1, 1], [1, 1], [0, 0], [0, 0], [1, 1], 1), // pointwise
            make([2, 4, 8, 8], [6, 1, 1], [2, 2], [0, 0], [0, 0], [1, 1], 1), // strided 1×1
            make([1, 4, 9, 7], [4, 3, 2], [1, 2], [2, 0], [1, 1], [2, 1], 2), // groups, dilation
            make([2, 2, 5, 5], [3, 5, 5], [1, 1], [0, 0], [0, 0], [1, 1], 1), // no padding
            make([2, 2, 6, 6], [3, 2, 2], [1, 1], [0, 0], [1, 1], [1, 1], 1), // asymmetric pad
            make([5, 3, 4, 4], [2, 3, 3], [3, 3], [1, 1], [1, 1], [1, 1], 1), // stride 3
            make([2, 3, 6, 7], [4, 3, 3], [1, 1], [2, 2], [2, 2], [2, 2], 1), // dilated "same"
            make([2, 2, 6, 5], [3, 3, 3], [1, 1], [0, 1], [0, 1], [1, 1], 1), // rows cropped
            make([2, 3, 5, 5], [4, 1, 1], [1, 1], [1, 1], [1, 1], [1, 1], 1), // pad beyond kernel
            make([2, 3, 5, 4], [4, 1, 1], [1, 1], [0, 0], [1, 2], [1, 1], 1), // 1×1, pad after
        ]
    }

    fn assert_close(actual: &[f64], expected: &[f64], what: &str, g: &Conv2dGeometry) {
        assert_eq!(actual.len(), expected.len(), "{what} length, {g:?}");
        for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
            assert!(
                (a - e).abs() < 1e-10,
                "{what}[{i}] = {a}, expected {e}, {g:?}"
            );
        }
    }

    #[test]
    fn forward_matches_direct_loops() {
        for (i, g) in geometries().iter().enumerate() {
            let x = values(g.batch * g.image_in(), i as u64);
            let w = values(g.c_out * g.k(), 100 + i as u64);
            let bias = values(g.c_out, 200 + i as u64);
            let mut expected = reference_forward(&x, &w, g);
            for (j, v) in expected.iter_mut().enumerate() {
                *v += bias[(j / g.n()) % g.c_out];
            }
            assert_close(&conv2d(&x, &w, Some(&bias), g), &expected, "y", g);
        }
    }

    /// The gradients are the transposes of the forward map: for every input `x` and weight
    /// `w`, `⟨conv(x, w), dy⟩ = ⟨x, dx(dy, w)⟩ = ⟨w, dw(x, dy)⟩`, and the gradient of one
    /// coordinate is the forward map applied to a unit vector.
    #[test]
    fn gradients_are_the_transposed_forward_map() {
        for (i, g) in geometries().iter().enumerate() {
            let x = values(g.batch * g.image_in(), 300 + i as u64);
            let w = values(g.c_out * g.k(), 400 + i as u64);
            let dy = values(g.batch * g.image_out(), 500 + i as u64);
            let dx = conv2d_x_grad(&dy, &w, g);
            let dw = conv2d_weight_grad(&x, &dy, g);
            // dx[j] = ⟨conv(e_j, w), dy⟩ and dw[j] = ⟨conv(x, e_j), dy⟩, by direct loops.
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
            let expected_dx: Vec<f64> = (0..x.len())
                .map(|j| {
                    let mut e = vec![0.0; x.len()];
                    e[j] = 1.0;
                    dot(&reference_forward(&e, &w, g), &dy)
                })
                .collect();
            let expected_dw: Vec<f64> = (0..w.len())
                .map(|j| {
                    let mut e = vec![0.0; w.len()];
                    e[j] = 1.0;
                    dot(&reference_forward(&x, &e, g), &dy)
                })
                .collect();
            assert_close(&dx, &expected_dx, "dx", g);
            assert_close(&dw, &expected_dw, "dw", g);
            let db = conv2d_bias_grad(&dy, g.batch, g.c_out);
            let expected_db: Vec<f64> = (0..g.c_out)
                .map(|c| {
                    (0..g.batch)
                        .map(|b| dy[(b * g.c_out + c) * g.n()..][..g.n()].iter().sum::<f64>())
                        .sum()
                })
                .collect();
            assert_close(&db, &expected_db, "db", g);
        }
    }

    /// The adjoint identities `⟨conv(x, w), dy⟩ = ⟨x, dx⟩ = ⟨w, dw⟩` at the sizes of
    /// CIFAR ResNets (too large for the unit-vector check above), with several threads.
    #[test]
    fn gradients_are_adjoint_at_resnet_sizes() {
        let cases = [
            ([16, 16, 32, 32], [16, 3, 3], [1, 1], [1, 1]),
            ([16, 16, 32, 32], [32, 3, 3], [2, 2], [1, 1]),
            ([16, 16, 32, 32], [32, 1, 1], [2, 2], [0, 0]),
            ([16, 32, 16, 16], [64, 3, 3], [2, 2], [1, 1]),
            ([16, 3, 32, 32], [16, 3, 3], [1, 1], [1, 1]),
        ];
        for (i, (x_shape, [c_out, kh, kw], stride, pad)) in cases.into_iter().enumerate() {
            let options = Conv2dOptions::new(stride, pad, [1, 1], 1);
            let g = Conv2dGeometry::new(x_shape, [c_out, x_shape[1], kh, kw], &options);
            let x = values(g.batch * g.image_in(), 600 + i as u64);
            let w = values(g.c_out * g.k(), 700 + i as u64);
            let dy = values(g.batch * g.image_out(), 800 + i as u64);
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(a, b)| a * b).sum::<f64>();
            let forward = dot(&conv2d(&x, &w, None, &g), &dy);
            let data = dot(&x, &conv2d_x_grad(&dy, &w, &g));
            let weight = dot(&w, &conv2d_weight_grad(&x, &dy, &g));
            let tol = 1e-9 * forward.abs().max(1.0);
            assert!(
                (forward - data).abs() < tol,
                "{g:?}: ⟨y, dy⟩ {forward} vs ⟨x, dx⟩ {data}"
            );
            assert!(
                (forward - weight).abs() < tol,
                "{g:?}: ⟨y, dy⟩ {forward} vs ⟨w, dw⟩ {weight}"
            );
        }
    }

    #[test]
    fn output_size_follows_burn() {
        for (len, k, stride, pad, dilation) in [
            (32, 3, 1, 1, 1),
            (32, 3, 2, 1, 1),
            (7, 3, 2, 1, 1),
            (9, 2, 1, 2, 2),
            (8, 1, 2, 0, 1),
        ] {
            let options = Conv2dOptions::new([stride; 2], [pad; 2], [dilation; 2], 1);
            let g = Conv2dGeometry::new([1, 1, len, len], [1, 1, k, k], &options);
            // Burn's `calculate_conv_output_size` (burn-backend 0.22.1), written out.
            let expected = (len + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
            assert_eq!([g.h_out, g.w_out], [expected; 2]);
            assert_eq!(g.output_shape(), [1, 1, expected, expected]);
        }
    }

    /// Convolutions whose shapes do not fit are refused before any kernel reads a slice.
    #[test]
    #[should_panic(expected = "do not fit")]
    fn geometry_refuses_mismatched_channels() {
        Conv2dGeometry::new(
            [1, 4, 8, 8],
            [2, 3, 3, 3],
            &Conv2dOptions::new([1; 2], [1; 2], [1; 2], 1),
        );
    }

    #[test]
    #[should_panic(expected = "weight length")]
    fn conv2d_refuses_a_short_weight() {
        let g = Conv2dGeometry::new(
            [1, 2, 4, 4],
            [3, 2, 3, 3],
            &Conv2dOptions::new([1; 2], [1; 2], [1; 2], 1),
        );
        conv2d(&[0f32; 32], &[0f32; 53], None, &g);
    }

    /// Where the machine that built the tests lacks AVX2 and FMA, the direct route's tests are
    /// ignored (or, run with `--include-ignored`, return at once); without `std` they are not
    /// built. This test says so by its name in the test report, and checks that convolutions
    /// take the GEMM route here.
    #[cfg(any(not(build_cpu_has_avx2_fma), not(feature = "std")))]
    #[test]
    fn direct_route_untested_here_no_avx2_fma_or_no_std() {
        #[cfg(all(target_arch = "x86_64", feature = "std"))]
        {
            assert!(
                !direct::supported(),
                "built where AVX2 and FMA were missing, run where they are present: rebuild"
            );
            let options = Conv2dOptions::new([1; 2], [1; 2], [1; 2], 1);
            let g = Conv2dGeometry::new([4, 3, 8, 8], [4, 3, 3, 3], &options);
            let (x, w) = (vec![1f32; g.batch * g.image_in()], vec![1f32; 108]);
            let mut y = vec![0f32; g.batch * g.image_out()];
            assert!(
                !direct::forward(&x, &w, None, &g, &mut y),
                "the direct route declines"
            );
        }
    }
}
