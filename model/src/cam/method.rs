//! The class activation map methods: how each turns a layer's activations (and the gradient
//! of the class score with respect to them) into a map at the layer's resolution. Definitions
//! follow the papers as pytorch-grad-cam implements them, so that maps can be compared with
//! it; everything here runs on the host, on values read back from the device.

use std::fmt;
use std::str::FromStr;

use crate::ModelError;

/// A class activation map method. With `Aᵏ` the layer's activations of channel `k` and
/// `Gᵏ = ∂y_c/∂Aᵏ` the gradient of the class logit `y_c`, over the layer's `h × w` positions,
/// each method gives a map `L` at the layer's resolution; every map is then passed through a
/// ReLU, upsampled bilinearly to 32 × 32 (pixel centres aligned) and scaled by its maximum to
/// 0–1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CamMethod {
    /// Grad-CAM (Selvaraju et al. 2017): `L = Σₖ αₖ Aᵏ`, `αₖ` the spatial mean of `Gᵏ`.
    GradCam,
    /// HiResCAM (Draelos & Carin 2020): `L = Σₖ Gᵏ ⊙ Aᵏ`, the gradient kept per position.
    HiResCam,
    /// Grad-CAM++ (Chattopadhay et al. 2018): `αₖ = Σᵢⱼ aᵏᵢⱼ ReLU(Gᵏᵢⱼ)` with
    /// `aᵏᵢⱼ = (Gᵏᵢⱼ)² / (2 (Gᵏᵢⱼ)² + Σₐᵦ Aᵏₐᵦ (Gᵏᵢⱼ)³ + 10⁻⁶)` (0 where `Gᵏᵢⱼ = 0`), the closed
    /// form for an exponential of the score, then `L = Σₖ αₖ Aᵏ`.
    GradCamPlusPlus,
    /// XGrad-CAM (Fu et al. 2020): `αₖ = Σᵢⱼ Gᵏᵢⱼ Aᵏᵢⱼ / (Σᵢⱼ Aᵏᵢⱼ + 10⁻⁷)`, `L = Σₖ αₖ Aᵏ`.
    XGradCam,
    /// LayerCAM (Jiang et al. 2021): `L = Σₖ ReLU(Gᵏ) ⊙ Aᵏ`.
    LayerCam,
    /// Eigen-CAM (Muhammad & Yilmaz 2020), no gradient and no class: the activations as an
    /// `hw × K` matrix, centred over positions, projected on their first principal direction
    /// (first right singular vector). A singular vector's sign is arbitrary; it is chosen so
    /// that the map agrees with the channel sum `Σₖ Aᵏ` (pytorch-grad-cam leaves it to the SVD).
    EigenCam,
    /// Score-CAM (Wang et al. 2020), no gradient: each channel, upsampled to 32 × 32 with the
    /// corner pixels aligned (as pytorch-grad-cam's `UpsamplingBilinear2d`) and scaled to 0–1
    /// (min–max), masks the normalised input; `α = softmax over k` of the class
    /// logit of each masked image, `L = Σₖ αₖ Aᵏ`. One forward pass per channel.
    ScoreCam,
}

impl CamMethod {
    /// Every method, in the order menus list them.
    pub const ALL: [CamMethod; 7] = [
        CamMethod::GradCam,
        CamMethod::HiResCam,
        CamMethod::GradCamPlusPlus,
        CamMethod::XGradCam,
        CamMethod::LayerCam,
        CamMethod::EigenCam,
        CamMethod::ScoreCam,
    ];

    /// The name on the command line and in files (`gradcam`, `hirescam`, `gradcam++`, …).
    pub fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "gradcam",
            CamMethod::HiResCam => "hirescam",
            CamMethod::GradCamPlusPlus => "gradcam++",
            CamMethod::XGradCam => "xgradcam",
            CamMethod::LayerCam => "layercam",
            CamMethod::EigenCam => "eigencam",
            CamMethod::ScoreCam => "scorecam",
        }
    }

    /// The name people write (`Grad-CAM`, `HiResCAM`, …).
    pub fn title(self) -> &'static str {
        match self {
            CamMethod::GradCam => "Grad-CAM",
            CamMethod::HiResCam => "HiResCAM",
            CamMethod::GradCamPlusPlus => "Grad-CAM++",
            CamMethod::XGradCam => "XGrad-CAM",
            CamMethod::LayerCam => "LayerCAM",
            CamMethod::EigenCam => "Eigen-CAM",
            CamMethod::ScoreCam => "Score-CAM",
        }
    }

    /// Whether the map explains a class (every method but Eigen-CAM does).
    pub fn is_class_specific(self) -> bool {
        self != CamMethod::EigenCam
    }

    /// Whether one forward and one backward pass give the map (every method but Score-CAM,
    /// which runs the network once more per channel of the layer: 100× the time or more).
    pub fn is_single_pass(self) -> bool {
        self != CamMethod::ScoreCam
    }
}

impl fmt::Display for CamMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CamMethod {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace(['-', '_'], "");
        let wanted = wanted.replace("plusplus", "++").replace("pp", "++");
        CamMethod::ALL
            .into_iter()
            .find(|m| m.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = CamMethod::ALL.iter().map(|m| m.name()).collect();
                ModelError::BadOption(format!(
                    "unknown CAM method `{s}` (known: {})",
                    names.join(", ")
                ))
            })
    }
}

/// One image's activations at a layer and the gradient of the class logit with respect to
/// them, read back from the device: `channels × height × width` values each, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMaps {
    /// Number of channels `K`.
    pub channels: usize,
    /// The layer's height `h`.
    pub height: usize,
    /// The layer's width `w`.
    pub width: usize,
    /// `Aᵏᵢⱼ` at `(k * h + i) * w + j`.
    pub activations: Vec<f32>,
    /// `Gᵏᵢⱼ` at the same places.
    pub gradients: Vec<f32>,
}

impl LayerMaps {
    /// Checks that both arrays hold `channels × height × width` values.
    pub fn new(
        (channels, height, width): (usize, usize, usize),
        activations: Vec<f32>,
        gradients: Vec<f32>,
    ) -> Result<Self, ModelError> {
        let n = channels * height * width;
        if n == 0 || activations.len() != n || gradients.len() != n {
            return Err(ModelError::BadOption(format!(
                "a {channels} × {height} × {width} layer needs {n} activations and gradients, \
                 got {} and {}",
                activations.len(),
                gradients.len()
            )));
        }
        Ok(Self {
            channels,
            height,
            width,
            activations,
            gradients,
        })
    }

    fn positions(&self) -> usize {
        self.height * self.width
    }

    /// Channel `k` of `values` (activations or gradients).
    fn channel<'a>(&self, values: &'a [f32], k: usize) -> &'a [f32] {
        let n = self.positions();
        &values[k * n..(k + 1) * n]
    }

    /// Activation channel `k`.
    pub fn activation(&self, k: usize) -> &[f32] {
        self.channel(&self.activations, k)
    }

    /// The method's map at the layer's resolution, after the ReLU, not yet upsampled or
    /// scaled. Score-CAM's channel weights come from forward passes (see [`score_weights`]
    /// and [`LayerMaps::weighted`]), so it is refused here.
    pub fn map(&self, method: CamMethod) -> Result<Vec<f32>, ModelError> {
        let map = match method {
            CamMethod::GradCam => {
                let positions = self.positions() as f32;
                self.weighted(&self.channel_weights(|g, _, _| g / positions))
            }
            CamMethod::GradCamPlusPlus => self.weighted(&self.channel_weights(|g, _, sum| {
                if g == 0.0 {
                    return 0.0;
                }
                let (g2, g3) = (g * g, g * g * g);
                g.max(0.0) * g2 / (2.0 * g2 + sum * g3 + 1e-6)
            })),
            CamMethod::XGradCam => {
                self.weighted(&self.channel_weights(|g, a, sum| g * a / (sum + 1e-7)))
            }
            CamMethod::HiResCam => self.elementwise(|g| g),
            CamMethod::LayerCam => self.elementwise(|g| g.max(0.0)),
            CamMethod::EigenCam => self.principal_projection(),
            CamMethod::ScoreCam => {
                return Err(ModelError::BadOption(
                    "Score-CAM weighs channels by forward passes of masked images: \
                     use cam::explain"
                        .into(),
                ));
            }
        };
        Ok(map.into_iter().map(|v| v.max(0.0)).collect())
    }

    /// `αₖ = Σᵢⱼ term(Gᵏᵢⱼ, Aᵏᵢⱼ, Σᵢⱼ Aᵏᵢⱼ)`.
    fn channel_weights(&self, term: impl Fn(f32, f32, f32) -> f32) -> Vec<f32> {
        (0..self.channels)
            .map(|k| {
                let (a, g) = (self.activation(k), self.channel(&self.gradients, k));
                let sum: f32 = a.iter().sum();
                g.iter().zip(a).map(|(&g, &a)| term(g, a, sum)).sum()
            })
            .collect()
    }

    /// `Σₖ weights[k] Aᵏ`.
    pub fn weighted(&self, weights: &[f32]) -> Vec<f32> {
        let mut map = vec![0.0; self.positions()];
        for (k, &alpha) in weights.iter().enumerate().take(self.channels) {
            for (m, &a) in map.iter_mut().zip(self.activation(k)) {
                *m += alpha * a;
            }
        }
        map
    }

    /// `Σₖ f(Gᵏ) ⊙ Aᵏ`.
    fn elementwise(&self, f: impl Fn(f32) -> f32) -> Vec<f32> {
        let mut map = vec![0.0; self.positions()];
        for k in 0..self.channels {
            let (a, g) = (self.activation(k), self.channel(&self.gradients, k));
            for ((m, &a), &g) in map.iter_mut().zip(a).zip(g) {
                *m += f(g) * a;
            }
        }
        map
    }

    /// Eigen-CAM's projection of the centred `hw × K` activation matrix `X` on its first right
    /// singular vector `v`: `X v = σ u`, with `u` the top eigenvector of `X Xᵀ` found by power
    /// iteration, its sign chosen to agree with the centred channel sum.
    fn principal_projection(&self) -> Vec<f32> {
        let (n, k) = (self.positions(), self.channels);
        // x[p][c]: position p, channel c, centred over positions (in f64 for the iteration).
        let mut x = vec![vec![0f64; k]; n];
        for c in 0..k {
            let a = self.activation(c);
            let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            for (row, &value) in x.iter_mut().zip(a) {
                row[c] = f64::from(value) - mean;
            }
        }
        let channel_sum: Vec<f64> = x.iter().map(|row| row.iter().sum()).collect();
        // u ← X (Xᵀ u) / ‖·‖, from the channel sum (or a fixed start when that is zero).
        let mut u = channel_sum.clone();
        if norm(&u) == 0.0 {
            u = (0..n).map(|p| 1.0 + p as f64 / n as f64).collect();
        }
        let mut sigma = 0.0;
        for _ in 0..500 {
            let v: Vec<f64> = (0..k)
                .map(|c| (0..n).map(|p| x[p][c] * u[p]).sum())
                .collect();
            let next: Vec<f64> = x
                .iter()
                .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let length = norm(&next);
            if length == 0.0 {
                return vec![0.0; n];
            }
            let next: Vec<f64> = next.iter().map(|v| v / length).collect();
            let change: f64 = next.iter().zip(&u).map(|(a, b)| (a - b).abs()).sum();
            u = next;
            sigma = length.sqrt();
            if change < 1e-12 {
                break;
            }
        }
        let agrees: f64 = u.iter().zip(&channel_sum).map(|(a, b)| a * b).sum();
        let sign = if agrees < 0.0 { -1.0 } else { 1.0 };
        u.iter().map(|v| (sign * sigma * v) as f32).collect()
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Score-CAM's channel weights from the class logit of each masked image: their softmax.
pub fn score_weights(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.iter().map(|e| e / total).collect()
}

/// Score-CAM's masks: each channel upsampled to the input size by `upsample` and scaled to
/// 0–1 by its minimum and maximum (`(a - min) / (max - min + 10⁻⁸)`).
pub fn score_masks(maps: &LayerMaps, upsample: impl Fn(&[f32]) -> Vec<f32>) -> Vec<Vec<f32>> {
    (0..maps.channels)
        .map(|k| {
            let up = upsample(maps.activation(k));
            let min = up.iter().copied().fold(f32::INFINITY, f32::min);
            let max = up.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            up.iter().map(|v| (v - min) / (max - min + 1e-8)).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two channels on a 1 × 2 layer: A⁰ = [1, 3], A¹ = [2, 0]; G⁰ = [1, -1], G¹ = [2, 4].
    fn small() -> LayerMaps {
        LayerMaps::new(
            (2, 1, 2),
            vec![1.0, 3.0, 2.0, 0.0],
            vec![1.0, -1.0, 2.0, 4.0],
        )
        .unwrap()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn gradient_methods_give_the_hand_computed_maps() {
        let maps = small();
        // Grad-CAM: α = [0, 3]; L = 0·A⁰ + 3·A¹ = [6, 0].
        close(&maps.map(CamMethod::GradCam).unwrap(), &[6.0, 0.0]);
        // HiResCAM: G⁰A⁰ + G¹A¹ = [1 + 4, -3 + 0] = [5, -3] → ReLU [5, 0].
        close(&maps.map(CamMethod::HiResCam).unwrap(), &[5.0, 0.0]);
        // LayerCAM: ReLU(G)·A = [1 + 4, 0 + 0] = [5, 0].
        close(&maps.map(CamMethod::LayerCam).unwrap(), &[5.0, 0.0]);
        // XGrad-CAM: α⁰ = (1 - 3) / 4 = -0.5, α¹ = (4 + 0) / 2 = 2;
        // L = -0.5·[1, 3] + 2·[2, 0] = [3.5, -1.5] → [3.5, 0].
        close(&maps.map(CamMethod::XGradCam).unwrap(), &[3.5, 0.0]);
        // Grad-CAM++: channel 0 (ΣA = 4): g = 1 → 1·1/(2 + 4 + ε) = 1/6; g = -1 → ReLU 0.
        // Channel 1 (ΣA = 2): g = 2 → 2·4/(8 + 16) = 1/3; g = 4 → 4·16/(32 + 128) = 0.4.
        // α = [1/6, 11/15]; L = [1/6 + 22/15, 3/6] = [1.6333, 0.5].
        close(
            &maps.map(CamMethod::GradCamPlusPlus).unwrap(),
            &[1.0 / 6.0 + 22.0 / 15.0, 0.5],
        );
        assert!(maps.map(CamMethod::ScoreCam).is_err());
    }

    #[test]
    fn eigen_cam_projects_on_the_principal_direction() {
        // Rank one: Aᵏ = cₖ P with P = [0, 1, 3] and c = [1, 2]. Centred, X = (P - 4/3) cᵀ,
        // so the projection is ‖c‖ (P - 4/3) = √5 · [-4/3, -1/3, 5/3], ReLU'd.
        let p = [0.0, 1.0, 3.0];
        let activations: Vec<f32> = [1.0, 2.0].iter().flat_map(|c| p.map(|v| c * v)).collect();
        let maps = LayerMaps::new((2, 1, 3), activations, vec![0.0; 6]).unwrap();
        let s = 5f32.sqrt();
        close(
            &maps.map(CamMethod::EigenCam).unwrap(),
            &[0.0, 0.0, s * 5.0 / 3.0],
        );
        // Negative activations flip the SVD's sign, not the map's agreement with them.
        let flipped = LayerMaps::new((1, 1, 3), vec![0.0, -1.0, -3.0], vec![0.0; 3]).unwrap();
        close(
            &flipped.map(CamMethod::EigenCam).unwrap(),
            &[4.0 / 3.0, 1.0 / 3.0, 0.0],
        );
        // No variation over positions: nothing to show.
        let flat = LayerMaps::new((2, 1, 2), vec![1.0; 4], vec![0.0; 4]).unwrap();
        close(&flat.map(CamMethod::EigenCam).unwrap(), &[0.0, 0.0]);
    }

    #[test]
    fn score_cam_weights_and_masks() {
        close(&score_weights(&[0.0, 0.0]), &[0.5, 0.5]);
        let w = score_weights(&[10.0, 10.0 + 2f32.ln()]);
        close(&w, &[1.0 / 3.0, 2.0 / 3.0]);
        let masks = score_masks(&small(), |c| c.to_vec());
        close(&masks[0], &[0.0, 1.0]);
        close(&masks[1], &[1.0, 0.0]);
        close(&small().weighted(&w), &[1.0 / 3.0 + 4.0 / 3.0, 1.0]);
    }

    #[test]
    fn names_round_trip() {
        for method in CamMethod::ALL {
            assert_eq!(method.name().parse::<CamMethod>().unwrap(), method);
            assert_eq!(method.title().parse::<CamMethod>().unwrap(), method);
        }
        assert_eq!(
            "GradCAMPlusPlus".parse::<CamMethod>().unwrap(),
            CamMethod::GradCamPlusPlus
        );
        assert!("grad".parse::<CamMethod>().is_err());
        assert!(LayerMaps::new((2, 1, 2), vec![0.0; 4], vec![0.0; 3]).is_err());
    }
}
