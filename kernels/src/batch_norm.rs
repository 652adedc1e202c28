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
//! in Burn's default. f32 and f64 are computed natively.

use alloc::vec::Vec;

use crate::{Scalar, per_channel, uninit_vec};

/// Sizes of a batch norm's input seen as `[batch, channels, spatial]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormDims {
    /// Images.
    pub batch: usize,
    /// Channels, each with its own statistics, scale and shift.
    pub channels: usize,
    /// Elements of one channel of one image (the product of the dimensions after the second).
    pub spatial: usize,
}

impl BatchNormDims {
    /// The sizes of an input of shape `[batch, channels, ...]` (rank ≥ 2).
    ///
    /// # Panics
    /// If `shape` has fewer than two dimensions.
    pub fn of_shape(shape: &[usize]) -> Self {
        assert!(
            shape.len() >= 2,
            "batch norm: input of rank {} < 2",
            shape.len()
        );
        let (batch, channels) = (shape[0], shape[1]);
        let spatial = shape.iter().product::<usize>() / (batch * channels).max(1);
        Self {
            batch,
            channels,
            spatial,
        }
    }

    /// Checks the lengths of an input (or output gradient) and of per-channel vectors.
    fn check<T>(&self, what: &str, x: &[&[T]], per_channel: &[&[T]]) {
        let len = self.batch * self.image();
        assert!(x.iter().all(|x| x.len() == len), "{what}: input length");
        assert!(
            per_channel.iter().all(|v| v.len() == self.channels),
            "{what}: per-channel length"
        );
    }

    /// Samples per channel.
    fn samples(&self) -> usize {
        self.batch * self.spatial
    }

    fn image(&self) -> usize {
        self.channels * self.spatial
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
fn planes<T>(data: &[T], d: BatchNormDims, c: usize) -> impl Iterator<Item = &[T]> {
    (0..d.batch).map(move |b| &data[(b * d.channels + c) * d.spatial..][..d.spatial])
}

fn to_f64<T: Scalar>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

fn from_f64<T: Scalar>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// Lanes of the sums below: independent accumulators that the compiler keeps in vector
/// registers.
const LANES: usize = 8;

/// `(Σ a, Σ a · b)` over two equally long slices, in f64.
fn sums<T: Scalar>(a: &[T], b: &[T]) -> (f64, f64) {
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
fn statistics<T: Scalar>(x: &[T], d: BatchNormDims) -> (Vec<T>, Vec<T>) {
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
fn affine<T: Scalar>(x: &[T], scale: &[T], shift: &[T], d: BatchNormDims) -> Vec<T> {
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
fn scale_shift<T: Scalar>(
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

/// Batch norm with the batch's own statistics: `(y, mean, variance)`, with
/// `y = γ · (x − mean) / √(variance + ε) + β` per channel, and the batch's per-channel mean
/// and biased variance (for the backward pass and the running statistics).
///
/// # Panics
/// If `x` does not hold `d`'s elements or `gamma` and `beta` one per channel.
pub fn batch_norm_train<T: Scalar>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    epsilon: f64,
    d: BatchNormDims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    d.check("batch_norm_train", &[x], &[gamma, beta]);
    let (mean, var) = statistics(x, d);
    let (scale, shift) = scale_shift(gamma, beta, &mean, &var, epsilon);
    (affine(x, &scale, &shift, d), mean, var)
}

/// Batch norm with given statistics (inference): `y = γ · (x − mean) / √(variance + ε) + β`
/// per channel, as one fused `x · scale + shift`.
///
/// # Panics
/// If `x` does not hold `d`'s elements or a per-channel vector one element per channel.
pub fn batch_norm_inference<T: Scalar>(
    x: &[T],
    [gamma, beta, mean, var]: [&[T]; 4],
    epsilon: f64,
    d: BatchNormDims,
) -> Vec<T> {
    d.check("batch_norm_inference", &[x], &[gamma, beta, mean, var]);
    let (scale, shift) = scale_shift(gamma, beta, mean, var, epsilon);
    affine(x, &scale, &shift, d)
}

/// The gradients of [`batch_norm_train`] for `x`, `γ` and `β`, from the input `x`, `γ`, the
/// batch statistics it returned and the output gradient `dy`.
///
/// # Panics
/// If `x` or `dy` does not hold `d`'s elements or a per-channel vector one element per
/// channel.
pub fn batch_norm_backward<T: Scalar>(
    x: &[T],
    [gamma, mean, var]: [&[T]; 3],
    epsilon: f64,
    dy: &[T],
    d: BatchNormDims,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    d.check("batch_norm_backward", &[x, dy], &[gamma, mean, var]);
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
        (
            from_f64::<T>(sum),
            from_f64::<T>((sum_x - mean * sum) * inv),
        )
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

    const DIMS: BatchNormDims = BatchNormDims {
        batch: 3,
        channels: 4,
        spatial: 5,
    };

    /// The loss `L = Σ y · r` for a fixed `r`, as a function of `x`, `γ`, `β`.
    fn loss(x: &[f64], gamma: &[f64], beta: &[f64], r: &[f64]) -> f64 {
        let (y, _, _) = batch_norm_train(x, gamma, beta, 1e-5, DIMS);
        y.iter().zip(r).map(|(y, r)| y * r).sum()
    }

    #[test]
    fn forward_normalizes_each_channel() {
        let x = values(60, 1);
        let gamma = [1.0, 2.0, 0.5, 1.0];
        let beta = [0.0, 1.0, -1.0, 3.0];
        let (y, mean, var) = batch_norm_train(&x, &gamma, &beta, 0.0, DIMS);
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
        let (_, mean, var) = batch_norm_train(&x, &gamma, &beta, 1e-5, DIMS);
        let (dx, dgamma, dbeta) = batch_norm_backward(&x, [&gamma, &mean, &var], 1e-5, &r, DIMS);
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

    /// With the batch's own statistics, inference computes what training did.
    #[test]
    fn inference_with_batch_statistics_matches_training() {
        let x = values(60, 6);
        let (gamma, beta) = (values(4, 7), values(4, 8));
        let (y, mean, var) = batch_norm_train(&x, &gamma, &beta, 1e-5, DIMS);
        assert_eq!(
            batch_norm_inference(&x, [&gamma, &beta, &mean, &var], 1e-5, DIMS),
            y
        );
    }

    #[test]
    fn dims_of_a_shape() {
        let d = BatchNormDims::of_shape(&[3, 4, 5]);
        assert_eq!(d, DIMS);
        assert_eq!(BatchNormDims::of_shape(&[2, 3, 4, 5]).spatial, 20);
        assert_eq!(BatchNormDims::of_shape(&[0, 3, 4]).spatial, 0);
    }
}
