//! Turning maps into pictures: values scaled to bytes, planes stretched to 32 × 32 tiles.

/// Scales values to 0–255 by their minimum and maximum (a constant map becomes mid-gray).
pub(super) fn to_bytes(values: &[f32]) -> Vec<u8> {
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = hi - lo;
    values
        .iter()
        .map(|&v| {
            if span > 0.0 {
                ((v - lo) / span * 255.0).round() as u8
            } else {
                128
            }
        })
        .collect()
}

/// A `side × side` plane (one byte a pixel) stretched to a 32 × 32 CIFAR tile (channel-major
/// RGB, gray), nearest neighbour so small kernels stay crisp.
pub(super) fn gray_tile(plane: &[u8], side: usize) -> Vec<u8> {
    let mut tile = vec![0u8; 3 * 1024];
    for y in 0..32 {
        for x in 0..32 {
            let v = plane[(y * side / 32) * side + x * side / 32];
            for c in 0..3 {
                tile[c * 1024 + y * 32 + x] = v;
            }
        }
    }
    tile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_stretches() {
        assert_eq!(to_bytes(&[-1.0, 0.0, 1.0]), vec![0, 128, 255]);
        assert_eq!(to_bytes(&[3.0, 3.0]), vec![128, 128]);
        let tile = gray_tile(&[0, 255, 255, 0], 2);
        assert_eq!(tile[0], 0);
        assert_eq!(tile[31], 255, "top-right from the second pixel");
        assert_eq!(tile[1024 + 31 * 32], 255, "bottom-left, green plane");
    }
}
