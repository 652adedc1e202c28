//! Training-split augmentation, applied on the batcher thread: random crop with black or
//! mirrored padding and horizontal flip (random, or alternating between epochs) on the raw
//! pixels, Cutout on the normalised image, MixUp on the whole batch. Every random choice
//! comes from the batcher's seeded generator.

use clap::{Args, ValueEnum};
use model::{IMAGE_SIZE, IMAGE_VALUES};
use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

/// Which augmentations to apply (all off by default).
#[derive(Args, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields, default, rename_all = "kebab-case")]
#[command(next_help_heading = "Augmentation")]
pub struct Augment {
    /// Random crop: pad each side with this many black pixels, then crop 32 × 32 at random
    /// (0 = off; the seeds used 4).
    #[arg(long, default_value_t = 0)]
    pub crop_padding: usize,
    /// What the random crop's padding shows: black pixels, or the image mirrored at its
    /// border (airbench's translation).
    #[arg(long, value_enum, default_value_t = CropFill::Black)]
    pub crop_fill: CropFill,
    /// Random horizontal flip with probability 1/2.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub flip: bool,
    /// With --flip: a random half of the images is flipped in odd epochs and the other half
    /// in even ones, so every image is seen both ways every two epochs (airbench's
    /// alternating flip).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub alternating_flip: bool,
    /// Cutout: zero (the mean, after normalisation) a random square of this side (0 = off).
    #[arg(long, default_value_t = 0)]
    pub cutout: usize,
    /// MixUp: blend each image and its label with another of the batch, weight ~ Beta(α, α)
    /// (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub mixup: f64,
}

/// What a random crop shows beyond the image's border.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CropFill {
    /// Black pixels.
    #[default]
    Black,
    /// The image mirrored at its border, the edge pixel not repeated (PyTorch's `reflect`).
    Reflect,
}

/// An epoch of `--alternating-flip`: the run's seed picks, once for the run, the half of the
/// images flipped in odd epochs (1, 3, …); the other half is flipped in even ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlipPhase {
    /// The run's seed.
    pub seed: u64,
    /// The epoch, 1-based.
    pub epoch: usize,
}

impl FlipPhase {
    /// Whether image `image` of the training split is flipped in this epoch.
    pub fn flips(&self, image: usize) -> bool {
        // splitmix64's finaliser of (seed, image): one fair, fixed bit per image.
        let mut z = self.seed ^ (image as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) & 1 == 1) == (self.epoch % 2 == 1)
    }
}

const PLANE: usize = IMAGE_SIZE * IMAGE_SIZE;

impl Augment {
    /// Whether any augmentation is on.
    pub fn any(&self) -> bool {
        self.crop_padding > 0 || self.flip || self.cutout > 0 || self.mixup > 0.0
    }

    /// Random crop and flip of one channel-major image, from `src` into `dst`. `flip`, when
    /// given, is the flip decided elsewhere (`--alternating-flip`); otherwise --flip draws it.
    pub fn crop_flip(&self, src: &[u8], dst: &mut [u8], flip: Option<bool>, rng: &mut StdRng) {
        let pad = self.crop_padding as i64;
        let (dx, dy) = if pad > 0 {
            (rng.random_range(-pad..=pad), rng.random_range(-pad..=pad))
        } else {
            (0, 0)
        };
        let flip = flip.unwrap_or_else(|| self.flip && rng.random_bool(0.5));
        let side = IMAGE_SIZE as i64;
        // A coordinate beyond the border: mirrored back inside, or `None` for black.
        let source = |v: i64| match self.crop_fill {
            _ if (0..side).contains(&v) => Some(v),
            CropFill::Black => None,
            CropFill::Reflect if v < 0 => Some((-v).min(side - 1)),
            CropFill::Reflect => Some((2 * (side - 1) - v).max(0)),
        };
        for c in 0..3 {
            for y in 0..side {
                for x in 0..side {
                    let sx = source(if flip { side - 1 - x } else { x } + dx);
                    let sy = source(y + dy);
                    dst[c * PLANE + (y * side + x) as usize] = match (sx, sy) {
                        (Some(sx), Some(sy)) => src[c * PLANE + (sy * side + sx) as usize],
                        _ => 0,
                    };
                }
            }
        }
    }

    /// Cutout on one normalised image: a square of side `cutout` centred anywhere (it may
    /// hang over the border) set to 0.
    pub fn cutout(&self, image: &mut [f32], rng: &mut StdRng) {
        if self.cutout == 0 {
            return;
        }
        let half = self.cutout as i64 / 2;
        let (cx, cy) = (
            rng.random_range(0..IMAGE_SIZE as i64),
            rng.random_range(0..IMAGE_SIZE as i64),
        );
        let clamp = |v: i64| v.clamp(0, IMAGE_SIZE as i64) as usize;
        let (x0, x1) = (clamp(cx - half), clamp(cx - half + self.cutout as i64));
        let (y0, y1) = (clamp(cy - half), clamp(cy - half + self.cutout as i64));
        for c in 0..3 {
            for y in y0..y1 {
                image[c * PLANE + y * IMAGE_SIZE + x0..c * PLANE + y * IMAGE_SIZE + x1].fill(0.0);
            }
        }
    }

    /// MixUp over a batch: `images` (`n × 3072`) and soft `targets` (`n × classes`) become
    /// `λ·x_i + (1 − λ)·x_π(i)` for one λ ~ Beta(α, α) and a random permutation π.
    pub fn mixup(&self, images: &mut [f32], targets: &mut [f32], classes: usize, rng: &mut StdRng) {
        if self.mixup <= 0.0 {
            return;
        }
        let n = targets.len() / classes;
        let lambda = Beta::new(self.mixup, self.mixup)
            .expect("α > 0")
            .sample(rng) as f32;
        let mut order: Vec<usize> = (0..n).collect();
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), rng);
        let (x, t) = (images.to_vec(), targets.to_vec());
        for (i, &j) in order.iter().enumerate() {
            for k in 0..IMAGE_VALUES {
                images[i * IMAGE_VALUES + k] =
                    lambda * x[i * IMAGE_VALUES + k] + (1.0 - lambda) * x[j * IMAGE_VALUES + k];
            }
            for k in 0..classes {
                targets[i * classes + k] =
                    lambda * t[i * classes + k] + (1.0 - lambda) * t[j * classes + k];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// An image whose R value encodes the pixel position: x + 32·y (mod 256), G = 1, B = 2.
    fn ramp() -> Vec<u8> {
        let mut img = vec![0u8; IMAGE_VALUES];
        for i in 0..PLANE {
            img[i] = (i % 251) as u8 + 1;
            img[PLANE + i] = 1;
            img[2 * PLANE + i] = 2;
        }
        img
    }

    #[test]
    fn flip_mirrors_and_crop_shifts_with_black_borders() {
        let src = ramp();
        let mut dst = vec![0u8; IMAGE_VALUES];
        let flip = Augment {
            flip: true,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let mut flipped = 0;
        for _ in 0..20 {
            flip.crop_flip(&src, &mut dst, None, &mut rng);
            if dst[0] == src[31] {
                flipped += 1;
                assert_eq!(dst[31], src[0]);
            } else {
                assert_eq!(dst, src);
            }
        }
        assert!((4..=16).contains(&flipped), "flipped {flipped} of 20");

        let crop = Augment {
            crop_padding: 4,
            ..Default::default()
        };
        let mut shifted = 0;
        for _ in 0..20 {
            crop.crop_flip(&src, &mut dst, None, &mut rng);
            let black = dst[..PLANE].iter().filter(|&&v| v == 0).count();
            // Black border rows/columns appear exactly when the crop is shifted.
            if dst[..PLANE] != src[..PLANE] {
                shifted += 1;
                assert!(black > 0 && black <= 8 * 32 + 8 * 32, "{black}");
            }
        }
        assert!(shifted >= 15, "{shifted}");
    }

    #[test]
    fn reflected_padding_mirrors_the_border_without_repeating_it() {
        let src = ramp();
        let mut dst = vec![0u8; IMAGE_VALUES];
        let crop = Augment {
            crop_padding: 2,
            crop_fill: CropFill::Reflect,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let mut shifted = 0;
        for _ in 0..30 {
            crop.crop_flip(&src, &mut dst, Some(false), &mut rng);
            assert!(dst[..PLANE].iter().all(|&v| v != 0), "no black pixel");
            // Find the shift from pixel (16, 16), then check the whole plane against it.
            let at = |x: i64, y: i64| src[(y * 32 + x) as usize];
            let (dx, dy) = (-2..=2i64)
                .flat_map(|dx| (-2..=2i64).map(move |dy| (dx, dy)))
                .find(|&(dx, dy)| dst[16 * 32 + 16] == at(16 + dx, 16 + dy))
                .expect("a shift within 2 pixels");
            let mirror = |v: i64| {
                if v < 0 {
                    -v
                } else if v > 31 {
                    62 - v
                } else {
                    v
                }
            };
            for y in 0..32i64 {
                for x in 0..32i64 {
                    assert_eq!(
                        dst[(y * 32 + x) as usize],
                        at(mirror(x + dx), mirror(y + dy))
                    );
                }
            }
            shifted += usize::from((dx, dy) != (0, 0));
        }
        assert!(shifted >= 20, "{shifted}");
    }

    #[test]
    fn alternating_flip_flips_each_image_in_every_other_epoch() {
        let phase = |epoch| FlipPhase { seed: 9, epoch };
        let first: Vec<bool> = (0..1000).map(|i| phase(1).flips(i)).collect();
        let half = first.iter().filter(|&&f| f).count();
        assert!((430..=570).contains(&half), "{half} of 1000 flipped");
        for epoch in 2..6 {
            for (i, &f) in first.iter().enumerate() {
                assert_eq!(phase(epoch).flips(i), f == (epoch % 2 == 1));
            }
        }
        let other: Vec<bool> = (0..1000)
            .map(|i| FlipPhase { seed: 10, epoch: 1 }.flips(i))
            .collect();
        assert_ne!(first, other, "the seed picks the half");
    }

    #[test]
    fn cutout_zeroes_one_square_and_mixup_blends_labels() {
        let a = Augment {
            cutout: 8,
            mixup: 1.0,
            ..Default::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let mut img = vec![1f32; IMAGE_VALUES];
        a.cutout(&mut img, &mut rng);
        let zeros = img[..PLANE].iter().filter(|&&v| v == 0.0).count();
        assert!((16..=64).contains(&zeros), "{zeros}");
        assert_eq!(
            img[..PLANE].iter().filter(|&&v| v == 0.0).count(),
            img[PLANE..2 * PLANE].iter().filter(|&&v| v == 0.0).count()
        );

        let mut images: Vec<f32> = (0..4).flat_map(|i| vec![i as f32; IMAGE_VALUES]).collect();
        let mut targets = vec![0f32; 4 * 10];
        for i in 0..4 {
            targets[i * 10 + i] = 1.0;
        }
        a.mixup(&mut images, &mut targets, 10, &mut rng);
        for i in 0..4 {
            let row = &targets[i * 10..(i + 1) * 10];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            // The image is the same blend of the two sources as the label.
            let expected: f32 = row.iter().enumerate().map(|(k, w)| k as f32 * w).sum();
            assert!((images[i * IMAGE_VALUES] - expected).abs() < 1e-4);
        }
    }
}
