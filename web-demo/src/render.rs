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

/// One channel of a layer's activations, drawn in grey.
#[derive(Clone, Debug)]
pub struct FeatureMap {
    /// The channel's index in the layer.
    pub channel: usize,
    /// Its mean activation (how strongly it responded overall).
    pub mean: f32,
    /// `height × width` RGBA bytes, black (lowest) to white (highest value in this map).
    pub rgba: Vec<u8>,
}

/// The `count` channels with the highest mean activation of a `channels × height × width`
/// layer (row-major values), strongest first, each scaled to its own range.
pub fn strongest_maps(
    values: &[f32],
    (channels, height, width): (usize, usize, usize),
    count: usize,
) -> Vec<FeatureMap> {
    let plane = height * width;
    let mut means: Vec<(usize, f32)> = (0..channels)
        .map(|c| {
            let map = &values[c * plane..(c + 1) * plane];
            (c, map.iter().sum::<f32>() / plane.max(1) as f32)
        })
        .collect();
    means.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    means
        .into_iter()
        .take(count)
        .map(|(channel, mean)| {
            let map = &values[channel * plane..(channel + 1) * plane];
            let low = map.iter().copied().fold(f32::INFINITY, f32::min);
            let high = map.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let span = (high - low).max(1e-12);
            let rgba = map
                .iter()
                .flat_map(|&v| {
                    let g = (255.0 * (v - low) / span).round() as u8;
                    [g, g, g, 255]
                })
                .collect();
            FeatureMap {
                channel,
                mean,
                rgba,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strongest_channels_come_first_each_in_its_own_range() {
        // Three 1 × 2 channels with means 1, 3 and 2.
        let values = [0.0, 2.0, 3.0, 3.0, 1.0, 3.0];
        let maps = strongest_maps(&values, (3, 1, 2), 2);
        assert_eq!(maps.iter().map(|m| m.channel).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(maps[0].mean, 3.0);
        // A flat channel is black; the others run from black to white.
        assert_eq!(maps[0].rgba, [0, 0, 0, 255, 0, 0, 0, 255]);
        assert_eq!(maps[1].rgba, [0, 0, 0, 255, 255, 255, 255, 255]);
    }
}
