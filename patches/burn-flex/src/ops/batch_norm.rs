//! Batch normalization on NCHW data in two passes per direction: per-channel statistics read
//! straight from the channel planes in one pass (sums accumulated in f64), then one fused
//! `x · scale + shift` (forward) or `scale · (dy − mean(dy) − x̂ · mean(dy · x̂))` (backward)
//! over every element.
//!
//! Burn's default implementations (`ModuleOps::batch_norm_train` and its backward) compute
//! the same formulas from general tensor operations: each reduction first transposes the
//! batch and channel dimensions into a contiguous copy, and every intermediate (centred
//! input, squares, normalized input, products) is a tensor of the input's size. Here the
//! statistics are reduced in place and only the output is written.
//!
//! The input is `[batch, channels, ...]` of any rank ≥ 2; the variance is the biased one, as
//! in Burn's default. f32 and f64 are computed natively, f16 and bf16 in f32.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use num_traits::Float;

use super::conv2d_gemm::{Scalar, nchw_kernels_enabled, uninit_vec, with_elements};
use crate::FlexTensor;

/// Sizes of the input seen as `[batch, channels, spatial]`.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    channels: usize,
    spatial: usize,
}

impl Dims {
    fn of(x: &FlexTensor) -> Self {
        let shape = x.layout().shape();
        let (batch, channels) = (shape[0], shape[1]);
        let spatial = shape.num_elements() / (batch * channels).max(1);
        Self {
            batch,
            channels,
            spatial,
        }
    }

    /// Samples per channel.
    fn samples(&self) -> usize {
        self.batch * self.spatial
    }

    fn image(&self) -> usize {
        self.channels * self.spatial
    }
}

/// Whether these kernels take a batch norm of `x`.
fn applies(x: &FlexTensor) -> bool {
    nchw_kernels_enabled()
        && x.layout().shape().num_dims() >= 2
        && matches!(x.dtype(), DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// `f(c)` for every channel, in parallel where rayon is on.
pub(super) fn per_channel<T: Send>(channels: usize, f: impl Fn(usize) -> T + Send + Sync) -> Vec<T> {
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

/// `f(image, out_image)` for every image, in parallel where rayon is on.
fn per_image<T: Scalar>(out: &mut [T], image: usize, f: impl Fn(usize, &mut [T]) + Send + Sync) {
    if image == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(image)
            .enumerate()
            .for_each(|(b, chunk)| f(b, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    {
        for (b, chunk) in out.chunks_mut(image).enumerate() {
            f(b, chunk);
        }
    }
}

/// The `spatial`-long planes of channel `c` across the batch.
fn planes<T>(data: &[T], d: Dims, c: usize) -> impl Iterator<Item = &[T]> {
    (0..d.batch).map(move |b| &data[(b * d.channels + c) * d.spatial..][..d.spatial])
}

fn to_f64<T: Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

fn from_f64<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// Lanes of the sums below: independent accumulators that the compiler keeps in vector
/// registers.
const LANES: usize = 8;

/// `(Σ a, Σ a · b)` over two equally long slices, in f64.
fn sums<T: Float>(a: &[T], b: &[T]) -> (f64, f64) {
    let mut s = [0f64; LANES];
    let mut p = [0f64; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for i in 0..LANES {
            let (x, y) = (to_f64(ca[i]), to_f64(cb[i]));
            s[i] += x;
            p[i] += x * y;
        }
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        let (x, y) = (to_f64(*x), to_f64(*y));
        s[0] += x;
        p[0] += x * y;
    }
    (s.iter().sum(), p.iter().sum())
}

/// Per-channel mean and biased variance, from `Σx` and `Σx²` accumulated in f64 (exact enough
/// unless the mean is many orders of magnitude above the spread).
fn statistics<T: Scalar + Float>(x: &[T], d: Dims) -> (Vec<T>, Vec<T>) {
    let n = d.samples().max(1) as f64;
    per_channel(d.channels, |c| {
        let (sum, sum_sq) = planes(x, d, c)
            .map(|plane| sums(plane, plane))
            .fold((0.0, 0.0), |(a, b), (s, q)| (a + s, b + q));
        let mean = sum / n;
        let var = (sum_sq / n - mean * mean).max(0.0);
        (from_f64::<T>(mean), from_f64::<T>(var))
    })
    .into_iter()
    .unzip()
}

/// `y = x · scale[c] + shift[c]`.
fn affine<T: Scalar + Float>(x: &[T], scale: &[T], shift: &[T], d: Dims) -> Vec<T> {
    // Every element is written below.
    let mut y = uninit_vec(x.len());
    per_image(&mut y, d.image(), |b, y_b| {
        let x_b = &x[b * d.image()..][..d.image()];
        for (c, (y_c, x_c)) in y_b
            .chunks_mut(d.spatial)
            .zip(x_b.chunks(d.spatial))
            .enumerate()
        {
            let (s, t) = (scale[c], shift[c]);
            for (y, &x) in y_c.iter_mut().zip(x_c) {
                *y = x * s + t;
            }
        }
    });
    y
}

/// `scale = γ / √(var + ε)` and `shift = β − mean · scale`.
fn scale_shift<T: Scalar + Float>(
    gamma: &[T],
    beta: &[T],
    mean: &[T],
    var: &[T],
    epsilon: f64,
) -> (Vec<T>, Vec<T>) {
    let eps = T::from(epsilon).expect("epsilon fits");
    (0..gamma.len())
        .map(|c| {
            let scale = gamma[c] / (var[c] + eps).sqrt();
            (scale, beta[c] - mean[c] * scale)
        })
        .unzip()
}

fn train_slices<T: Scalar + Float>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    epsilon: f64,
    d: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (mean, var) = statistics(x, d);
    let (scale, shift) = scale_shift(gamma, beta, &mean, &var, epsilon);
    (affine(x, &scale, &shift, d), mean, var)
}

/// Gradients for `x`, `γ` and `β`.
fn backward_slices<T: Scalar + Float>(
    x: &[T],
    gamma: &[T],
    mean: &[T],
    var: &[T],
    epsilon: f64,
    dy: &[T],
    d: Dims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let eps = T::from(epsilon).expect("epsilon fits");
    let n = T::from(d.samples().max(1)).expect("sample count fits");
    let inv_std: Vec<T> = var.iter().map(|&v| (v + eps).sqrt().recip()).collect();
    // Σ dy and Σ dy · x̂ = (Σ dy · x − mean · Σ dy) / std, per channel.
    let (beta_grad, gamma_grad): (Vec<T>, Vec<T>) = per_channel(d.channels, |c| {
        let (sum, sum_x) = planes(dy, d, c)
            .zip(planes(x, d, c))
            .map(|(g, x)| sums(g, x))
            .fold((0.0, 0.0), |(a, b), (s, p)| (a + s, b + p));
        let (mean, inv) = (to_f64(mean[c]), to_f64(inv_std[c]));
        (from_f64::<T>(sum), from_f64::<T>((sum_x - mean * sum) * inv))
    })
    .into_iter()
    .unzip();
    // Every element is written below.
    let mut dx = uninit_vec(x.len());
    per_image(&mut dx, d.image(), |b, dx_b| {
        let base = b * d.image();
        for (c, dx_c) in dx_b.chunks_mut(d.spatial).enumerate() {
            let x_c = &x[base + c * d.spatial..][..d.spatial];
            let dy_c = &dy[base + c * d.spatial..][..d.spatial];
            let (m, s) = (mean[c], inv_std[c]);
            let (mean_dy, mean_dy_xhat) = (beta_grad[c] / n, gamma_grad[c] / n);
            let scale = gamma[c] * s;
            for ((o, &x), &g) in dx_c.iter_mut().zip(x_c).zip(dy_c) {
                *o = scale * (g - mean_dy - (x - m) * s * mean_dy_xhat);
            }
        }
    });
    (dx, gamma_grad, beta_grad)
}

/// The tensors [`train`] returns: output, batch mean and biased batch variance.
pub(crate) type TrainOutput = (FlexTensor, FlexTensor, FlexTensor);

/// Batch norm with the batch's own statistics, or `None` when these kernels are off.
pub(crate) fn train(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    epsilon: f64,
) -> Option<TrainOutput> {
    if !applies(x) {
        return None;
    }
    let d = Dims::of(x);
    let shape = x.layout().shape().to_vec();
    let mut parts = with_elements(
        &[x, gamma, beta],
        x.dtype(),
        &[shape, vec![d.channels], vec![d.channels]],
        |s| {
            let (y, m, v) = train_slices(s[0], s[1], s[2], epsilon, d);
            vec![y, m, v]
        },
        |s| {
            let (y, m, v) = train_slices(s[0], s[1], s[2], epsilon, d);
            vec![y, m, v]
        },
    );
    let variance = parts.pop()?;
    let mean = parts.pop()?;
    Some((parts.pop()?, mean, variance))
}

/// Batch norm with given statistics (inference), or `None` when these kernels are off.
pub(crate) fn inference(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
) -> Option<FlexTensor> {
    if !applies(x) {
        return None;
    }
    let d = Dims::of(x);
    let shape = x.layout().shape().to_vec();
    let run = |s: &[&[f32]]| {
        let (scale, shift) = scale_shift(s[1], s[2], s[3], s[4], epsilon);
        vec![affine(s[0], &scale, &shift, d)]
    };
    let run64 = |s: &[&[f64]]| {
        let (scale, shift) = scale_shift(s[1], s[2], s[3], s[4], epsilon);
        vec![affine(s[0], &scale, &shift, d)]
    };
    with_elements(
        &[x, gamma, beta, mean, variance],
        x.dtype(),
        &[shape],
        run,
        run64,
    )
    .pop()
}

/// The tensors [`backward`] returns: gradients for `x`, `γ` and `β`.
pub(crate) type BackwardOutput = (FlexTensor, FlexTensor, FlexTensor);

/// Gradients of [`train`], or `None` when these kernels are off.
pub(crate) fn backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    mean: &FlexTensor,
    variance: &FlexTensor,
    epsilon: f64,
    output_grad: &FlexTensor,
) -> Option<BackwardOutput> {
    if !applies(x) {
        return None;
    }
    let d = Dims::of(x);
    let shape = x.layout().shape().to_vec();
    let mut parts = with_elements(
        &[x, gamma, mean, variance, output_grad],
        x.dtype(),
        &[shape, vec![d.channels], vec![d.channels]],
        |s| {
            let (dx, dg, db) = backward_slices(s[0], s[1], s[2], s[3], epsilon, s[4], d);
            vec![dx, dg, db]
        },
        |s| {
            let (dx, dg, db) = backward_slices(s[0], s[1], s[2], s[3], epsilon, s[4], d);
            vec![dx, dg, db]
        },
    );
    let beta_grad = parts.pop()?;
    let gamma_grad = parts.pop()?;
    Some((parts.pop()?, gamma_grad, beta_grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f64> {
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

    const DIMS: Dims = Dims {
        batch: 3,
        channels: 4,
        spatial: 5,
    };

    /// The loss `L = Σ y · r` for a fixed `r`, as a function of `x`, `γ`, `β`.
    fn loss(x: &[f64], gamma: &[f64], beta: &[f64], r: &[f64]) -> f64 {
        let (y, _, _) = train_slices(x, gamma, beta, 1e-5, DIMS);
        y.iter().zip(r).map(|(y, r)| y * r).sum()
    }

    #[test]
    fn forward_normalizes_each_channel() {
        let x = values(60, 1);
        let gamma = [1.0, 2.0, 0.5, 1.0];
        let beta = [0.0, 1.0, -1.0, 3.0];
        let (y, mean, var) = train_slices(&x, &gamma, &beta, 0.0, DIMS);
        for c in 0..4 {
            let xs: Vec<f64> = planes(&x, DIMS, c).flatten().copied().collect();
            let m = xs.iter().sum::<f64>() / 15.0;
            let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / 15.0;
            assert!((mean[c] - m).abs() < 1e-12 && (var[c] - v).abs() < 1e-12);
            let ys: Vec<f64> = planes(&y, DIMS, c).flatten().copied().collect();
            let ym = ys.iter().sum::<f64>() / 15.0;
            let ysd = (ys.iter().map(|y| (y - ym) * (y - ym)).sum::<f64>() / 15.0).sqrt();
            assert!((ym - beta[c]).abs() < 1e-12, "channel {c} mean {ym}");
            assert!((ysd - gamma[c]).abs() < 1e-9, "channel {c} std {ysd}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let x = values(60, 2);
        let gamma = values(4, 3);
        let beta = values(4, 4);
        let r = values(60, 5);
        let (_, mean, var) = train_slices(&x, &gamma, &beta, 1e-5, DIMS);
        let (dx, dgamma, dbeta) = backward_slices(&x, &gamma, &mean, &var, 1e-5, &r, DIMS);
        let h = 1e-6;
        let numeric = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
        for i in 0..60 {
            let d = numeric(&|e| {
                let mut x2 = x.clone();
                x2[i] += e;
                loss(&x2, &gamma, &beta, &r)
            });
            assert!((dx[i] - d).abs() < 1e-6, "dx[{i}] = {}, numeric {d}", dx[i]);
        }
        for c in 0..4 {
            let dg = numeric(&|e| {
                let mut g2 = gamma.clone();
                g2[c] += e;
                loss(&x, &g2, &beta, &r)
            });
            let db = numeric(&|e| {
                let mut b2 = beta.clone();
                b2[c] += e;
                loss(&x, &gamma, &b2, &r)
            });
            assert!((dgamma[c] - dg).abs() < 1e-6, "dgamma[{c}]");
            assert!((dbeta[c] - db).abs() < 1e-6, "dbeta[{c}]");
        }
    }
}
