//! Pixels for the page's canvases.

use image::RgbImage;
use model::cam::heat_color;

/// RGBA bytes of an RGB picture (for `ImageData`).
pub fn rgba(image: &RgbImage) -> Vec<u8> {
    image
        .pixels()
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect()
}

/// RGBA bytes of a heat map (values 0–1) in the "jet" colours, fully opaque; the page scales
/// the small map up smoothly and sets its opacity.
pub fn heat_rgba(heat: &[f32]) -> Vec<u8> {
    heat.iter()
        .flat_map(|&v| {
            let [r, g, b] = heat_color(v);
            [r, g, b, 255]
        })
        .collect()
}
