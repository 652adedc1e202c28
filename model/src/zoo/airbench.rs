//! `airbench94`, after Keller Jordan's airbench94 (94 % on CIFAR-10 in a few GPU-seconds): a
//! frozen 2 × 2 whitening convolution set from the training images' patch covariance, GELU,
//! then three groups `conv → 2 × 2 max-pool → BN → GELU → conv → BN → GELU` of widths
//! 64/256/256, a 3 × 3 max-pool and a bias-free linear head whose logits are scaled by 1/9.
//!
//! The groups' convolutions have no bias and start as identities on their first input
//! channels (Dirac initialisation); their batch norms have `ε = 1e-12`, running statistics
//! that keep 60 % of their value per step, and a scale frozen at 1 (only the shift learns).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::{Staged, flatten};
use crate::layers::{conv, max_pool2, replace_value};
#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph, join};
use crate::{Activation, ModelError, NUM_CLASSES};

/// Side of the whitening convolution's square patches.
const WHITEN_KERNEL: usize = 2;
/// Values in one whitening patch: 3 channels × 2 × 2.
const PATCH: usize = 3 * WHITEN_KERNEL * WHITEN_KERNEL;
/// Added to each eigenvalue before its inverse square root scales the eigenvector.
const WHITEN_EPS: f64 = 5e-4;

/// Configuration of [`Airbench`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AirbenchConfig {
    /// Widths of the three convolution groups.
    pub widths: [usize; 3],
    /// Factor applied to the logits (1/9 in the original).
    pub logit_scale: f64,
    /// Number of classes it predicts (absent from the configurations of 10-class networks).
    #[serde(
        default = "super::cifar10_classes",
        skip_serializing_if = "super::is_cifar10_classes"
    )]
    pub classes: usize,
}

impl Default for AirbenchConfig {
    fn default() -> Self {
        Self {
            widths: [64, 256, 256],
            logit_scale: 1.0 / 9.0,
            classes: NUM_CLASSES,
        }
    }
}

impl AirbenchConfig {
    /// Builds the network on `device`, its whitening layer still random (see
    /// [`Airbench::whiten`]).
    pub fn init(&self, device: &Device) -> Airbench {
        let [a, b, c] = self.widths;
        let mut whiten = Conv2dConfig::new([3, 2 * PATCH], [WHITEN_KERNEL, WHITEN_KERNEL])
            .with_padding(PaddingConfig2d::Valid)
            .init(device);
        whiten.weight = whiten.weight.set_require_grad(false);
        whiten.bias = whiten.bias.map(|b| replace_value(b, |t| t.zeros_like()));
        Airbench {
            whiten,
            block1: Group::new(2 * PATCH, a, device),
            block2: Group::new(a, b, device),
            block3: Group::new(b, c, device),
            pool: MaxPool2dConfig::new([3, 3]).init(),
            fc: LinearConfig::new(c, self.classes)
                .with_bias(false)
                .init(device),
            logit_scale: self.logit_scale,
        }
    }
}

/// A 3 × 3 bias-free convolution whose first `min(input, output)` filters are identities.
fn dirac_conv(input: usize, output: usize, device: &Device) -> Conv2d {
    let mut layer = conv([input, output], 3, 1, false, device);
    let k = input.min(output);
    let mut identity = vec![0f32; k * input * 9];
    for i in 0..k {
        identity[(i * input + i) * 9 + 4] = 1.0;
    }
    let identity = Tensor::<4>::from_data(TensorData::new(identity, [k, input, 3, 3]), device);
    layer.weight = replace_value(layer.weight, |w| {
        w.slice_assign([0..k, 0..input, 0..3, 0..3], identity)
    });
    layer
}

/// Batch norm with ε = 1e-12, momentum 0.4 (PyTorch's convention) and a frozen unit scale.
fn frozen_scale_norm(channels: usize, device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(channels)
        .with_epsilon(1e-12)
        .with_momentum(0.4)
        .init(device);
    norm.gamma = norm.gamma.set_require_grad(false);
    norm
}

/// `conv → 2 × 2 max-pool → BN → GELU → conv → BN → GELU`.
#[derive(Module, Debug)]
pub struct Group {
    conv1: Conv2d,
    pool: MaxPool2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
}

impl Group {
    fn new(input: usize, output: usize, device: &Device) -> Self {
        Self {
            conv1: dirac_conv(input, output, device),
            pool: max_pool2(),
            norm1: frozen_scale_norm(output, device),
            conv2: dirac_conv(output, output, device),
            norm2: frozen_scale_norm(output, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm1.forward(self.pool.forward(self.conv1.forward(x)));
        let x = Activation::Gelu.apply(x);
        Activation::Gelu.apply(self.norm2.forward(self.conv2.forward(x)))
    }
}

/// The airbench94 network.
#[derive(Module, Debug)]
pub struct Airbench {
    whiten: Conv2d,
    block1: Group,
    block2: Group,
    block3: Group,
    pool: MaxPool2d,
    fc: Linear,
    #[module(skip)]
    logit_scale: f64,
}

impl Airbench {
    /// The network with the whitening layer's bias frozen (no gradient).
    pub fn freeze_whitening_bias(mut self) -> Self {
        self.whiten.bias = self.whiten.bias.map(|b| b.set_require_grad(false));
        self
    }

    /// Sets the frozen whitening filters from the 2 × 2 patches of `images` (normalised, `[n,
    /// 3, h, w]`): the covariance's eigenvectors scaled by `1/√(λ + 5e-4)`, largest eigenvalue
    /// first, then the same filters negated. The bias is left as it is.
    pub fn whiten(mut self, images: Tensor<4>) -> Result<Self, ModelError> {
        let [n, channels, h, w] = images.dims();
        if channels != 3 || h < WHITEN_KERNEL || w < WHITEN_KERNEL || n == 0 {
            return Err(ModelError::BadOption(format!(
                "the whitening layer needs RGB images of at least 2 × 2 pixels, not [{n}, {channels}, {h}, {w}]"
            )));
        }
        let pixels = images
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| ModelError::BadOption(format!("whitening images: {e:?}")))?;
        let covariance = patch_covariance(&pixels, [n, h, w]);
        let (values, vectors) = symmetric_eigen(covariance);
        let mut filters = vec![0f32; 2 * PATCH * PATCH];
        for (k, &(value, column)) in values.iter().enumerate() {
            let scale = 1.0 / (value.max(0.0) + WHITEN_EPS).sqrt();
            for (i, row) in vectors.iter().enumerate() {
                let v = (row[column] * scale) as f32;
                filters[k * PATCH + i] = v;
                filters[(PATCH + k) * PATCH + i] = -v;
            }
        }
        let shape = [2 * PATCH, 3, WHITEN_KERNEL, WHITEN_KERNEL];
        self.whiten.weight = replace_value(self.whiten.weight, |old| {
            Tensor::from_data(TensorData::new(filters, shape), &old.device())
        });
        Ok(self)
    }
}

/// The uncentred covariance `E[p pᵀ]` of every 2 × 2 patch `p` (channel-major, as a
/// convolution filter is laid out) of `n` images of `h × w`, in f64.
fn patch_covariance(pixels: &[f32], [n, h, w]: [usize; 3]) -> [[f64; PATCH]; PATCH] {
    let mut sum = [[0f64; PATCH]; PATCH];
    let mut patch = [0f64; PATCH];
    let plane = h * w;
    for image in pixels.chunks_exact(3 * plane).take(n) {
        for y in 0..=h - WHITEN_KERNEL {
            for x in 0..=w - WHITEN_KERNEL {
                for (i, value) in patch.iter_mut().enumerate() {
                    let (c, dy, dx) = (i / 4, i / 2 % 2, i % 2);
                    *value = image[c * plane + (y + dy) * w + x + dx] as f64;
                }
                for (row, &a) in sum.iter_mut().zip(&patch) {
                    for (s, &b) in row.iter_mut().zip(&patch) {
                        *s += a * b;
                    }
                }
            }
        }
    }
    let count = (n * (h - 1) * (w - 1)) as f64;
    sum.map(|row| row.map(|s| s / count))
}

/// Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: the eigenvalues,
/// largest first, each with the index of its column in the returned eigenvector matrix.
/// (A 12 × 12 matrix, once per run: too small to bring in a linear-algebra crate for.)
fn symmetric_eigen(mut a: [[f64; PATCH]; PATCH]) -> (Vec<(f64, usize)>, [[f64; PATCH]; PATCH]) {
    let mut v = [[0f64; PATCH]; PATCH];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..PATCH)
            .flat_map(|i| (0..PATCH).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        if off < 1e-30 {
            break;
        }
        for p in 0..PATCH {
            for q in p + 1..PATCH {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                // The rotation that zeroes a[p][q] (Golub & Van Loan, §8.5).
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                let rotate = |x: f64, y: f64| (c * x - s * y, s * x + c * y);
                for row in a.iter_mut() {
                    (row[p], row[q]) = rotate(row[p], row[q]);
                }
                let (row_p, row_q) = (a[p], a[q]);
                for (k, (&x, &y)) in row_p.iter().zip(&row_q).enumerate() {
                    (a[p][k], a[q][k]) = rotate(x, y);
                }
                for row in v.iter_mut() {
                    (row[p], row[q]) = rotate(row[p], row[q]);
                }
            }
        }
    }
    let mut values: Vec<(f64, usize)> = (0..PATCH).map(|i| (a[i][i], i)).collect();
    values.sort_by(|x, y| y.0.total_cmp(&x.0));
    (values, v)
}

impl Staged for Airbench {
    fn stage_names(&self) -> Vec<String> {
        ["whiten", "block1", "block2", "block3"]
            .map(String::from)
            .to_vec()
    }

    fn stage(&self, index: usize, x: Tensor<4>) -> Tensor<4> {
        match index {
            0 => Activation::Gelu.apply(self.whiten.forward(x)),
            1 => self.block1.forward(x),
            2 => self.block2.forward(x),
            _ => self.block3.forward(x),
        }
    }

    fn head(&self, x: Tensor<4>) -> Tensor<2> {
        // A 32 × 32 input leaves 3 × 3 after the whitening (31) and three poolings (15, 7, 3).
        self.fc.forward(flatten(self.pool.forward(x))) * self.logit_scale
    }

    fn cam_stage(&self) -> Option<usize> {
        Some(3)
    }
}

#[cfg(feature = "onnx")]
impl Emit for Group {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = self.conv1.emit(g, x, &join(scope, "conv1"))?;
        let x = self.pool.emit(g, &x, &join(scope, "pool"))?;
        let x = self.norm1.emit(g, &x, &join(scope, "norm1"))?;
        let x = g.activation(Activation::Gelu, &x);
        let x = self.conv2.emit(g, &x, &join(scope, "conv2"))?;
        let x = self.norm2.emit(g, &x, &join(scope, "norm2"))?;
        Ok(g.activation(Activation::Gelu, &x))
    }
}

#[cfg(feature = "onnx")]
impl Emit for Airbench {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let x = self.whiten.emit(g, x, &join(scope, "whiten"))?;
        let x = g.activation(Activation::Gelu, &x);
        let x = self.block1.emit(g, &x, &join(scope, "block1"))?;
        let x = self.block2.emit(g, &x, &join(scope, "block2"))?;
        let x = self.block3.emit(g, &x, &join(scope, "block3"))?;
        let x = self.pool.emit(g, &x, &join(scope, "pool"))?;
        let x = g.flatten(&x);
        let x = self.fc.emit(g, &x, &join(scope, "fc"))?;
        Ok(g.scale(&x, &join(scope, "logit_scale"), self.logit_scale as f32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Images whose channels and neighbouring pixels are strongly correlated: a smooth random
    /// field in R, mostly the same field in G and B.
    fn correlated_images(n: usize, side: usize) -> Vec<f32> {
        let mut seed = 11u64;
        let mut noise = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let plane = side * side;
        let mut out = Vec::with_capacity(n * 3 * plane);
        for _ in 0..n {
            let raw: Vec<f32> = (0..(side + 1) * (side + 1)).map(|_| noise()).collect();
            let field: Vec<f32> = (0..plane)
                .map(|i| {
                    let (y, x) = (i / side, i % side);
                    let at = |dy: usize, dx: usize| raw[(y + dy) * (side + 1) + x + dx];
                    at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)
                })
                .collect();
            out.extend(field.iter().copied());
            out.extend(field.iter().map(|&f| 0.8 * f + 0.3 * noise()));
            out.extend(field.iter().map(|&f| 0.6 * f + 0.5 * noise()));
        }
        out
    }

    #[test]
    fn the_whitening_layer_decorrelates_its_patches() {
        let device = Device::flex();
        let (n, side) = (64, 16);
        let pixels = correlated_images(n, side);
        let images =
            Tensor::<4>::from_data(TensorData::new(pixels.clone(), [n, 3, side, side]), &device);
        let before = patch_covariance(&pixels, [n, side, side]);
        assert!(
            before[0][4].abs() > 0.5 * before[0][0],
            "R and G are correlated"
        );
        let net = AirbenchConfig::default()
            .init(&device)
            .whiten(images.clone())
            .unwrap();
        let out = net.whiten.forward(images);
        let [_, channels, h, w] = out.dims();
        assert_eq!((channels, h, w), (2 * PATCH, side - 1, side - 1));
        let y = out.into_data().try_to_vec::<f32>().unwrap();
        let plane = h * w;
        let (values, _) = symmetric_eigen(before);
        // E[y yᵀ] over every output position is diag(λ / (λ + ε)) for the first 12 filters.
        for i in 0..PATCH {
            for j in 0..PATCH {
                let mut sum = 0f64;
                for image in y.chunks_exact(channels * plane) {
                    for p in 0..plane {
                        sum += image[i * plane + p] as f64 * image[j * plane + p] as f64;
                    }
                }
                let got = sum / (n * plane) as f64;
                let lambda = values[i].0;
                let want = if i == j {
                    lambda / (lambda + WHITEN_EPS)
                } else {
                    0.0
                };
                assert!(
                    (got - want).abs() < 2e-3,
                    "E[y{i} y{j}] = {got}, want {want}"
                );
            }
        }
        // The second half of the filters is the first, negated.
        for image in y.chunks_exact(channels * plane) {
            for k in 0..PATCH * plane {
                let (a, b) = (image[k], image[PATCH * plane + k]);
                assert!((a + b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn frozen_parameters_get_no_gradient_and_convolutions_start_as_identities() {
        let device = Device::flex().autodiff();
        let net = AirbenchConfig::default().init(&device);
        let pixels = correlated_images(2, 32);
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [2, 3, 32, 32]), &device);
        let features = (0..4).fold(x, |x, i| net.stage(i, x));
        let grads = net.head(features).powi_scalar(2).sum().backward();
        let has_grad = |t: Tensor<1>| t.grad(&grads).is_some();
        assert!(
            net.whiten.weight.val().grad(&grads).is_none(),
            "whitening weight frozen"
        );
        assert!(
            has_grad(net.whiten.bias.as_ref().unwrap().val()),
            "its bias learns"
        );
        for group in [&net.block1, &net.block2, &net.block3] {
            for norm in [&group.norm1, &group.norm2] {
                assert!(!has_grad(norm.gamma.val()), "batch-norm scale frozen");
                assert!(has_grad(norm.beta.val()), "batch-norm shift learns");
            }
            assert!(group.conv1.weight.val().grad(&grads).is_some());
        }
        // block2's first convolution, 64 → 256: filters 0..64 pass their own channel through.
        let w = net.block2.conv1.weight.val();
        let [out, input, ..] = w.dims();
        let w = w.into_data().try_to_vec::<f32>().unwrap();
        for o in 0..input {
            for i in 0..input {
                for tap in 0..9 {
                    let want = if o == i && tap == 4 { 1.0 } else { 0.0 };
                    assert_eq!(w[(o * input + i) * 9 + tap], want);
                }
            }
        }
        assert!(
            w[input * input * 9..out * input * 9]
                .iter()
                .any(|&v| v != 0.0),
            "the rest random"
        );
    }

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        // A random symmetric matrix: V diag(λ) Vᵀ must give it back, V orthonormal.
        let mut a = [[0f64; PATCH]; PATCH];
        let mut seed = 7u64;
        for (i, j) in (0..PATCH).flat_map(|i| (0..=i).map(move |j| (i, j))) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let x = (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            a[i][j] = x;
            a[j][i] = x;
        }
        let (values, v) = symmetric_eigen(a);
        assert!(values.windows(2).all(|w| w[0].0 >= w[1].0));
        for i in 0..PATCH {
            for j in 0..PATCH {
                let back: f64 = values.iter().map(|&(l, k)| v[i][k] * l * v[j][k]).sum();
                assert!((back - a[i][j]).abs() < 1e-10, "{i},{j}");
                let dot: f64 = (0..PATCH).map(|k| v[k][i] * v[k][j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-10);
            }
        }
    }
}
