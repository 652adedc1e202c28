//! Drawing heat maps: the colour scale, the overlay on a photo, and the bilinear upsampling of
//! a layer-resolution map to the network's input size.

use image::imageops::FilterType;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

use crate::IMAGE_SIZE;

/// The "jet" colour of a heat value in 0–1: blue (cold) through green and yellow to red (hot).
pub fn heat_color(value: f32) -> [u8; 3] {
    let v = value.clamp(0.0, 1.0) * 4.0;
    let channel = |centre: f32| ((1.5 - (v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// Blends a heat map (any square side, row-major 0–1, e.g. [`Cam::heat`](super::Cam::heat))
/// over `base`, stretched to its size with bilinear filtering: `opacity` 0 keeps the image, 1
/// shows only heat.
pub fn overlay(base: &RgbImage, heat: &[f32], opacity: f32) -> RgbImage {
    let side = (heat.len() as f64).sqrt() as u32;
    let map: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(side, side, heat.to_vec()).expect("a square heat map");
    let (w, h) = base.dimensions();
    let stretched = image::imageops::resize(&map, w, h, FilterType::Triangle);
    let a = opacity.clamp(0.0, 1.0);
    RgbImage::from_fn(w, h, |x, y| {
        let colour = heat_color(stretched.get_pixel(x, y)[0]);
        let p = base.get_pixel(x, y);
        Rgb([0, 1, 2].map(|c| ((1.0 - a) * p[c] as f32 + a * colour[c] as f32).round() as u8))
    })
}

/// Which points of a map and of its upsampled copy line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// The pixels' centres (OpenCV's and PyTorch's `align_corners=False`): how heat maps are
    /// drawn.
    Centres,
    /// The corner pixels (PyTorch's `UpsamplingBilinear2d`, `align_corners=True`): how
    /// pytorch-grad-cam's Score-CAM upsamples its masks.
    Corners,
}

/// Bilinear upsampling of an `h × w` map to `32 × 32` (pixel centres aligned).
pub fn upsample(values: &[f32], h: usize, w: usize) -> Vec<f32> {
    upsample_aligned(values, h, w, Align::Centres)
}

/// Bilinear upsampling of an `h × w` map to `32 × 32`, the two grids aligned as `align` says.
pub fn upsample_aligned(values: &[f32], h: usize, w: usize, align: Align) -> Vec<f32> {
    let sample = |y: f32, x: f32| {
        let (y, x) = (y.clamp(0.0, (h - 1) as f32), x.clamp(0.0, (w - 1) as f32));
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let at = |r: usize, c: usize| values[r * w + c];
        (1.0 - fy) * ((1.0 - fx) * at(y0, x0) + fx * at(y0, x1))
            + fy * ((1.0 - fx) * at(y1, x0) + fx * at(y1, x1))
    };
    let side = IMAGE_SIZE as f32;
    // Where output position `i` of 32 reads the input of `n` positions.
    let source = |i: f32, n: usize| match align {
        Align::Centres => (i + 0.5) * n as f32 / side - 0.5,
        Align::Corners => i * (n - 1) as f32 / (side - 1.0),
    };
    (0..IMAGE_SIZE * IMAGE_SIZE)
        .map(|i| {
            let (r, c) = ((i / IMAGE_SIZE) as f32, (i % IMAGE_SIZE) as f32);
            sample(source(r, h), source(c, w))
        })
        .collect()
}

/// Scales to 0–1 by the maximum (an all-zero map stays zero).
pub fn normalise(mut heat: Vec<f32>) -> Vec<f32> {
    let max = heat.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        heat.iter_mut().for_each(|v| *v /= max);
    }
    heat
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_constants_and_orders_corners() {
        assert!(
            upsample(&[2.0; 16], 4, 4)
                .iter()
                .all(|&v| (v - 2.0).abs() < 1e-6)
        );
        // A 2 × 2 map with one hot corner: the top-left of the result is hottest.
        let up = upsample(&[1.0, 0.0, 0.0, 0.0], 2, 2);
        assert_eq!(up.len(), IMAGE_SIZE * IMAGE_SIZE);
        assert_eq!(up[0], 1.0);
        assert!(up[IMAGE_SIZE * IMAGE_SIZE - 1] < 1e-6);
        assert_eq!(normalise(vec![0.0, 2.0, 1.0]), vec![0.0, 1.0, 0.5]);
    }

    #[test]
    fn corners_aligned_upsampling_keeps_the_corner_values() {
        // A 2 × 2 map: with corners aligned the four corners are the map's values and the
        // rows between run linearly; with centres aligned the corners are clamped copies.
        let map = [0.0, 3.1, 6.2, 9.3];
        let corners = upsample_aligned(&map, 2, 2, Align::Corners);
        let at = |r: usize, c: usize| corners[r * IMAGE_SIZE + c];
        assert_eq!(
            (at(0, 0), at(0, 31), at(31, 0), at(31, 31)),
            (0.0, 3.1, 6.2, 9.3)
        );
        assert!((at(0, 1) - 0.1).abs() < 1e-5, "{}", at(0, 1));
        let centres = upsample(&map, 2, 2);
        assert_eq!(centres[1], 0.0, "inside the first pixel's half");
        assert_ne!(corners, centres);
    }

    #[test]
    fn colours_run_from_blue_to_red_and_overlay_blends() {
        assert_eq!(heat_color(0.0), [0, 0, 128]);
        assert_eq!(heat_color(0.5), [128, 255, 128]);
        assert_eq!(heat_color(1.0), [128, 0, 0]);
        assert_eq!(heat_color(7.0), heat_color(1.0), "values are clamped");
        let base = RgbImage::from_pixel(8, 8, Rgb([200, 200, 200]));
        // Hot left column, cold elsewhere, in a 2 × 2 map.
        let heat = [1.0, 0.0, 1.0, 0.0];
        assert_eq!(overlay(&base, &heat, 0.0), base);
        let full = overlay(&base, &heat, 1.0);
        assert_eq!(full.get_pixel(0, 4).0, heat_color(1.0));
        assert_eq!(full.get_pixel(7, 4).0, heat_color(0.0));
        let half = overlay(&base, &heat, 0.5);
        assert_eq!(half.get_pixel(7, 0).0, [100, 100, 164]);
    }
}
