//! How faithful a class activation map is to the network: what happens to the explained class's
//! probability `y` when the image is changed where the map points. The measures are those of
//! pytorch-grad-cam's metrics, on the normalised image:
//!
//! * **Confidence change** when the image is multiplied by the map (0–1) to `o`: *Average Drop*
//!   (Chattopadhay et al. 2018), the mean of `max(0, y − o) / y` (lower is better), and
//!   *Increase in Confidence*, the share of images with `o > y` (higher is better).
//! * **ROAD** (Rong et al. 2022, *Remove and Debias*): the `p` % most relevant pixels (MoRF)
//!   or least relevant (LeRF) by the map are removed and filled by noisy linear imputation,
//!   for `p` in 20, 40, 60, 80; each gives the change `o − y`. Removing what the map calls
//!   important should hurt more than removing what it calls unimportant: the combined score,
//!   the mean over `p` of `(LeRFₚ − MoRFₚ) / 2`, is higher for a more faithful map.

use anyhow::{Result, ensure};
use burn::tensor::{Device, Tensor, TensorData};
use model::cam::Cam;
use model::{IMAGE_SIZE, IMAGE_VALUES, Model};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// The removal percentages of ROAD.
pub const PERCENTILES: [usize; 4] = [20, 40, 60, 80];

/// The noise (standard deviation, in normalised units) that ROAD's imputation adds.
pub const IMPUTATION_NOISE: f32 = 0.01;

/// The pixels (of `heat.len()`) that ROAD removes at `percent`: those with the highest heat
/// when `most_relevant_first`, else the lowest (ties in pixel order).
pub fn removed(heat: &[f32], percent: usize, most_relevant_first: bool) -> Vec<bool> {
    let mut order: Vec<usize> = (0..heat.len()).collect();
    order.sort_by(|&a, &b| {
        let by_heat = heat[a].total_cmp(&heat[b]);
        if most_relevant_first {
            by_heat.reverse()
        } else {
            by_heat
        }
        .then(a.cmp(&b))
    });
    let count = (heat.len() * percent + 50) / 100;
    let mut out = vec![false; heat.len()];
    for &i in &order[..count.min(heat.len())] {
        out[i] = true;
    }
    out
}

/// The 8 neighbours of ROAD's linear imputation and their weights.
const NEIGHBOURS: [(isize, isize, f32); 8] = [
    (-1, -1, 1.0 / 12.0),
    (-1, 0, 1.0 / 6.0),
    (-1, 1, 1.0 / 12.0),
    (0, -1, 1.0 / 6.0),
    (0, 1, 1.0 / 6.0),
    (1, -1, 1.0 / 12.0),
    (1, 0, 1.0 / 6.0),
    (1, 1, 1.0 / 12.0),
];

/// ROAD's noisy linear imputation of a channel-major `3 × side × side` image: every removed
/// pixel of every channel becomes the weighted mean of its neighbours inside the image (1/6
/// for the four sides, 1/12 for the diagonals), all removed pixels solved together (successive
/// over-relaxation to 10⁻⁵), then Gaussian noise of standard deviation `noise` is added to
/// them. Kept pixels are unchanged. At least one pixel must be kept.
pub fn impute(
    image: &[f32],
    removed: &[bool],
    side: usize,
    noise: f32,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let plane = side * side;
    assert_eq!(image.len(), 3 * plane, "a 3-channel image");
    assert_eq!(removed.len(), plane, "one flag per pixel");
    let unknown: Vec<usize> = (0..plane).filter(|&p| removed[p]).collect();
    let mut out = image.to_vec();
    if unknown.is_empty() || unknown.len() == plane {
        return out;
    }
    let neighbours: Vec<Vec<(usize, f32)>> = unknown
        .iter()
        .map(|&p| {
            let (r, c) = ((p / side) as isize, (p % side) as isize);
            NEIGHBOURS
                .iter()
                .filter_map(|&(dr, dc, w)| {
                    let (nr, nc) = (r + dr, c + dc);
                    let inside =
                        (0..side as isize).contains(&nr) && (0..side as isize).contains(&nc);
                    inside.then(|| (nr as usize * side + nc as usize, w))
                })
                .collect()
        })
        .collect();
    let gaussian = Normal::new(0.0, noise.max(0.0)).expect("a finite noise level");
    for channel in out.chunks_exact_mut(plane) {
        let known: Vec<f32> = (0..plane)
            .filter(|&p| !removed[p])
            .map(|p| channel[p])
            .collect();
        let start = known.iter().sum::<f32>() / known.len() as f32;
        for &p in &unknown {
            channel[p] = start;
        }
        const OMEGA: f32 = 1.8;
        for _ in 0..5000 {
            let mut change = 0f32;
            for (&p, around) in unknown.iter().zip(&neighbours) {
                let (sum, weight) = around
                    .iter()
                    .fold((0f32, 0f32), |(s, t), &(n, w)| (s + w * channel[n], t + w));
                let next = channel[p] + OMEGA * (sum / weight - channel[p]);
                change = change.max((next - channel[p]).abs());
                channel[p] = next;
            }
            if change < 1e-5 {
                break;
            }
        }
        for &p in &unknown {
            channel[p] += gaussian.sample(rng);
        }
    }
    out
}

/// One map's measures on one image: the explained class's probability on the image, on the
/// image multiplied by the map, and after ROAD's removals.
#[derive(Clone, Debug, PartialEq)]
pub struct MapScores {
    /// `y`: the probability of the explained class on the image.
    pub original: f32,
    /// `o`: on the image multiplied by the map.
    pub masked: f32,
    /// After removing the most relevant [`PERCENTILES`] of the pixels.
    pub morf: [f32; 4],
    /// After removing the least relevant ones.
    pub lerf: [f32; 4],
}

/// The measures of each map in `cams` (all of one image and class, as `model::cam` returns them)
/// for a normalised image (`3 × 32 × 32`, channel-major), with one batched forward pass.
pub fn score_maps(
    model: &Model,
    image: &[f32],
    cams: &[Cam],
    rng: &mut impl Rng,
    device: &Device,
) -> Result<Vec<MapScores>> {
    ensure!(image.len() == IMAGE_VALUES, "a 3 × 32 × 32 image");
    let Some(first) = cams.first() else {
        return Ok(Vec::new());
    };
    let (class, original) = (first.class, first.probabilities[first.class]);
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    // Per map: the masked image, then MoRF and LeRF at each percentile.
    let mut batch: Vec<f32> = Vec::new();
    for cam in cams {
        ensure!(cam.class == class, "the maps explain different classes");
        batch.extend((0..IMAGE_VALUES).map(|i| image[i] * cam.heat[i % plane]));
        for most_relevant_first in [true, false] {
            for percent in PERCENTILES {
                let gone = removed(&cam.heat, percent, most_relevant_first);
                batch.extend(impute(image, &gone, IMAGE_SIZE, IMPUTATION_NOISE, rng));
            }
        }
    }
    let n = batch.len() / IMAGE_VALUES;
    let input = Tensor::<4>::from_data(
        TensorData::new(batch, [n, 3, IMAGE_SIZE, IMAGE_SIZE]),
        device,
    );
    let probabilities = burn::tensor::activation::softmax(model.forward(input), 1);
    let classes = probabilities.dims()[1];
    let values: Vec<f32> = probabilities
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("cannot read the probabilities: {e:?}"))?;
    let p = |row: usize| values[row * classes + class];
    Ok((0..cams.len())
        .map(|m| {
            let row = m * 9;
            MapScores {
                original,
                masked: p(row),
                morf: [0, 1, 2, 3].map(|i| p(row + 1 + i)),
                lerf: [0, 1, 2, 3].map(|i| p(row + 5 + i)),
            }
        })
        .collect())
}

/// A method's measures averaged over images.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faithfulness {
    /// Images measured.
    pub images: usize,
    /// Average Drop, % (lower is better).
    pub average_drop: f64,
    /// Increase in Confidence, % of images (higher is better).
    pub increase: f64,
    /// Mean `o − y` after removing the most relevant pixels, per [`PERCENTILES`].
    pub morf: [f64; 4],
    /// Mean `o − y` after removing the least relevant pixels.
    pub lerf: [f64; 4],
    /// The standard error of [`Faithfulness::road`] over the images (0 for one image).
    pub road_error: f64,
}

impl Faithfulness {
    /// The averages of `scores`.
    pub fn of(scores: &[MapScores]) -> Self {
        let n = scores.len().max(1) as f64;
        let mean = |f: &dyn Fn(&MapScores) -> f64| scores.iter().map(f).sum::<f64>() / n;
        let drop = |s: &MapScores| {
            f64::from((s.original - s.masked).max(0.0)) / f64::from(s.original).max(1e-12)
        };
        let increase = |s: &MapScores| f64::from(u8::from(s.masked > s.original));
        // Each image's combined score; their mean is `road()`.
        let per_image: Vec<f64> = scores
            .iter()
            .map(|s| {
                (0..PERCENTILES.len())
                    .map(|i| f64::from(s.lerf[i] - s.morf[i]) / 2.0)
                    .sum::<f64>()
                    / PERCENTILES.len() as f64
            })
            .collect();
        let road = per_image.iter().sum::<f64>() / n;
        let road_error = if scores.len() > 1 {
            let variance = per_image.iter().map(|r| (r - road).powi(2)).sum::<f64>() / (n - 1.0);
            (variance / n).sqrt()
        } else {
            0.0
        };
        Self {
            images: scores.len(),
            road_error,
            average_drop: 100.0 * mean(&drop),
            increase: 100.0 * mean(&increase),
            morf: [0, 1, 2, 3].map(|i| mean(&|s| f64::from(s.morf[i] - s.original))),
            lerf: [0, 1, 2, 3].map(|i| mean(&|s| f64::from(s.lerf[i] - s.original))),
        }
    }

    /// ROAD's combined score: the mean over the percentiles of `(LeRF − MoRF) / 2` (higher is
    /// more faithful).
    pub fn road(&self) -> f64 {
        (0..PERCENTILES.len())
            .map(|i| (self.lerf[i] - self.morf[i]) / 2.0)
            .sum::<f64>()
            / PERCENTILES.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn removal_takes_the_hottest_or_coldest_share() {
        let heat = [0.1, 0.9, 0.5, 0.9, 0.0];
        // 40 % of 5 pixels = 2: the two hottest (ties in pixel order), or the two coldest.
        assert_eq!(removed(&heat, 40, true), [false, true, false, true, false]);
        assert_eq!(removed(&heat, 40, false), [true, false, false, false, true]);
        assert_eq!(removed(&heat, 0, true), [false; 5]);
    }

    #[test]
    fn imputation_solves_the_neighbour_means() {
        let mut rng = StdRng::seed_from_u64(0);
        // A linear ramp in x: the weighted mean of symmetric neighbours is the centre's value,
        // so removed pixels inside are restored exactly (without noise).
        let side = 6;
        let ramp: Vec<f32> = (0..3 * side * side)
            .map(|i| (i % side) as f32 + (i / (side * side)) as f32 * 10.0)
            .collect();
        let mut gone = vec![false; side * side];
        for p in [7, 8, 14, 15, 16, 21, 27, 28] {
            gone[p] = true;
        }
        let filled = impute(&ramp, &gone, side, 0.0, &mut rng);
        for (a, b) in filled.iter().zip(&ramp) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        // A removed corner next to two known values: between them, the weighted mean.
        let mut image = vec![0f32; 3 * 4];
        image[1] = 6.0; // (0, 1)
        image[2] = 12.0; // (1, 0)
        image[3] = 3.0; // (1, 1)
        let filled = impute(&image, &[true, false, false, false], 2, 0.0, &mut rng);
        // (1/6 · 6 + 1/6 · 12 + 1/12 · 3) / (1/6 + 1/6 + 1/12) = 3.25 / 0.41667 = 7.8.
        assert!((filled[0] - 7.8).abs() < 1e-4, "{}", filled[0]);
        assert_eq!(&filled[1..4], &image[1..4]);
        // Noise moves only removed pixels.
        let noisy = impute(&image, &[true, false, false, false], 2, 0.5, &mut rng);
        assert_ne!(noisy[0], filled[0]);
        assert_eq!(&noisy[1..4], &image[1..4]);
    }

    fn f_scores() -> [MapScores; 1] {
        [MapScores {
            original: 0.8,
            masked: 0.4,
            morf: [0.6, 0.4, 0.2, 0.1],
            lerf: [0.8, 0.8, 0.7, 0.6],
        }]
    }

    #[test]
    fn averages_and_road_score() {
        let [a] = f_scores();
        let b = MapScores {
            original: 0.5,
            masked: 0.6,
            ..a.clone()
        };
        let f = Faithfulness::of(&[a, b]);
        assert_eq!(f.images, 2);
        // Drops: 0.4 / 0.8 = 50 % and 0 (an increase): mean 25 %; one increase in two.
        assert!((f.average_drop - 25.0).abs() < 1e-6);
        assert!((f.increase - 50.0).abs() < 1e-9);
        // MoRF at 20 %: (0.6 − 0.8 + 0.6 − 0.5) / 2 = −0.05; LeRF at 20 %: (0 + 0.3) / 2 = 0.15.
        assert!((f.morf[0] + 0.05).abs() < 1e-6 && (f.lerf[0] - 0.15).abs() < 1e-6);
        // LeRF − MoRF per percentile: 0.2, 0.4, 0.5, 0.5 → halves 0.1, 0.2, 0.25, 0.25.
        assert!((f.road() - 0.2).abs() < 1e-6, "{}", f.road());
        // Per image: the same removals, so the same combined score twice: no spread.
        assert!(f.road_error.abs() < 1e-6, "{}", f.road_error);
        let c = MapScores {
            lerf: [0.8; 4],
            ..MapScores::clone(&f_scores()[0])
        };
        let spread = Faithfulness::of(&[f_scores()[0].clone(), c]);
        // Combined scores 0.2 and (0.2 + 0.4 + 0.6 + 0.7) / 8 = 0.2375: for two values the
        // standard error is half their distance, 0.01875.
        assert!(
            (spread.road_error - 0.01875).abs() < 1e-6,
            "{}",
            spread.road_error
        );
    }
}
