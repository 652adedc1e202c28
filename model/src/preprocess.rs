//! From user images and raw CIFAR-10 pixels to normalised input tensors. The trainer and the
//! web demo both go through here, so a photo is prepared the same way everywhere.

use std::io::Cursor;

use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, Rgb, RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::{IMAGE_SIZE, IMAGE_VALUES, ModelError};

/// Largest width or height accepted from a user image, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoded image accepted, in bytes.
pub const MAX_DECODED_BYTES: u64 = 512 * 1024 * 1024;

/// Per-channel mean and standard deviation of the training pixels (on the 0–1 scale).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    /// Mean of R, G and B.
    pub mean: [f32; 3],
    /// Standard deviation of R, G and B.
    pub std: [f32; 3],
}

impl Normalization {
    /// Measures the statistics of images stored as CIFAR-10 pixel records: `n × 3072` bytes,
    /// each image channel-major (1024 R, 1024 G, 1024 B).
    pub fn measure(pixels: &[u8]) -> Self {
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        let mut sum = [0f64; 3];
        let mut sum_sq = [0f64; 3];
        for image in pixels.chunks_exact(IMAGE_VALUES) {
            for (c, channel) in image.chunks_exact(plane).enumerate() {
                let (s, q) = channel.iter().fold((0u64, 0u64), |(s, q), &p| {
                    (s + p as u64, q + (p as u64) * (p as u64))
                });
                sum[c] += s as f64;
                sum_sq[c] += q as f64;
            }
        }
        let count = (pixels.len() / IMAGE_VALUES * plane).max(1) as f64;
        let mut mean = [0f32; 3];
        let mut std = [0f32; 3];
        for c in 0..3 {
            let m = sum[c] / count / 255.0;
            let var = (sum_sq[c] / count / (255.0 * 255.0) - m * m).max(1e-12);
            mean[c] = m as f32;
            std[c] = var.sqrt() as f32;
        }
        Self { mean, std }
    }

    /// Writes the normalised values of channel-major `u8` images into `out` (same length).
    pub fn normalize_into(&self, pixels: &[u8], out: &mut [f32]) {
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        for (i, (&p, o)) in pixels.iter().zip(out.iter_mut()).enumerate() {
            let c = (i % IMAGE_VALUES) / plane;
            *o = (p as f32 / 255.0 - self.mean[c]) / self.std[c];
        }
    }

    /// A `[n, 3, 32, 32]` tensor of normalised images from `n × 3072` channel-major bytes.
    pub fn tensor(&self, pixels: &[u8], device: &Device) -> Tensor<4> {
        let mut values = vec![0f32; pixels.len()];
        self.normalize_into(pixels, &mut values);
        let n = pixels.len() / IMAGE_VALUES;
        Tensor::from_data(
            TensorData::new(values, [n, 3, IMAGE_SIZE, IMAGE_SIZE]),
            device,
        )
    }
}

/// Size limits for decoding user images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width or height, in pixels.
    pub max_side: u32,
    /// Largest decoded size, in bytes.
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    /// [`MAX_SIDE`] and [`MAX_DECODED_BYTES`].
    fn default() -> Self {
        Self {
            max_side: MAX_SIDE,
            max_bytes: MAX_DECODED_BYTES,
        }
    }
}

/// Decodes an image file of any common format (PNG, JPEG, GIF, WebP, BMP) with its EXIF
/// orientation applied. Animated images give their first frame. Refuses images larger than
/// [`MAX_SIDE`] per side or [`MAX_DECODED_BYTES`] decoded.
pub fn decode_image(bytes: &[u8]) -> Result<DynamicImage, ModelError> {
    decode_image_with(bytes, DecodeLimits::default())
}

/// [`decode_image`] with other size limits (a browser tab has less memory to spare).
pub fn decode_image_with(bytes: &[u8], limits: DecodeLimits) -> Result<DynamicImage, ModelError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ModelError::Image(format!("cannot read the image: {e}")))?;
    if reader.format().is_none() {
        return Err(ModelError::Image(
            "not an image this tool can read (PNG, JPEG, GIF, WebP or BMP)".into(),
        ));
    }
    let mut image_limits = Limits::default();
    image_limits.max_image_width = Some(limits.max_side);
    image_limits.max_image_height = Some(limits.max_side);
    image_limits.max_alloc = Some(limits.max_bytes);
    reader.limits(image_limits);
    let too_large = |e| image_error(e, limits);
    let mut decoder = reader.into_decoder().map_err(too_large)?;
    let orientation = decoder.orientation().map_err(too_large)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(too_large)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Whether the file is an animation (GIF, APNG or WebP with more than one frame), of which
/// [`decode_image`] uses the first frame. Unreadable files are not animations.
pub fn is_animated(bytes: &[u8]) -> bool {
    use image::codecs::{png::PngDecoder, webp::WebPDecoder};
    match image::guess_format(bytes) {
        // Frame headers only: decoding frames would paint them on a canvas of the GIF's
        // stated screen size, gigabytes for a 22-byte file (a fuzzing finding).
        Ok(image::ImageFormat::Gif) => {
            let mut options = gif::DecodeOptions::new();
            options.skip_frame_decoding(true);
            options
                .read_info(Cursor::new(bytes))
                .map(|mut decoder| {
                    let mut frames = 0;
                    while frames < 2 && matches!(decoder.read_next_frame(), Ok(Some(_))) {
                        frames += 1;
                    }
                    frames > 1
                })
                .unwrap_or(false)
        }
        Ok(image::ImageFormat::Png) => PngDecoder::new(Cursor::new(bytes))
            .and_then(|d| d.is_apng())
            .unwrap_or(false),
        Ok(image::ImageFormat::WebP) => WebPDecoder::new(Cursor::new(bytes))
            .map(|d| d.has_animation())
            .unwrap_or(false),
        _ => false,
    }
}

fn image_error(e: image::ImageError, limits: DecodeLimits) -> ModelError {
    match e {
        image::ImageError::Limits(_) => ModelError::Image(format!(
            "the image is too large (at most {} pixels a side and {} MiB decoded)",
            limits.max_side,
            limits.max_bytes / (1024 * 1024)
        )),
        other => ModelError::Image(format!("cannot decode the image: {other}")),
    }
}

/// How a picture that is not square becomes the square the networks see.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// The centre square: the ends of a wide or tall picture are cut off.
    #[default]
    Crop,
    /// The whole picture, centred on a square of [`PAD_COLOUR`].
    Pad,
}

/// The colour around a padded picture: mid grey, close to CIFAR-10's mean colour, so that it
/// normalises to about zero.
pub const PAD_COLOUR: [u8; 3] = [128, 128, 128];

impl Framing {
    /// `crop` or `pad`.
    pub fn name(self) -> &'static str {
        match self {
            Framing::Crop => "crop",
            Framing::Pad => "pad",
        }
    }

    /// What was done to a `width × height` picture, in words for the user (`None` when it was
    /// already square).
    pub fn note(self, width: u32, height: u32) -> Option<String> {
        let side = width.min(height);
        let long = width.max(height);
        (width != height).then(|| match self {
            Framing::Crop => format!("{width}×{height}: the centre {side}×{side} square was used"),
            Framing::Pad => {
                format!("{width}×{height}: the whole picture, padded with grey to {long}×{long}")
            }
        })
    }
}

impl std::str::FromStr for Framing {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "crop" => Ok(Framing::Crop),
            "pad" => Ok(Framing::Pad),
            other => Err(ModelError::BadOption(format!(
                "unknown framing `{other}` (crop: the centre square; pad: the whole picture)"
            ))),
        }
    }
}

/// Turns any image into a CIFAR-10 record's pixels: [`square_view`] at 32 × 32, channel-major.
pub fn to_cifar_pixels(image: &DynamicImage, framing: Framing) -> Vec<u8> {
    channel_major(&square_view(image, IMAGE_SIZE as u32, framing))
}

/// An RGB picture's pixels in a CIFAR-10 record's layout: channel-major (every red value, row
/// by row, then every green, then every blue). [`rgb_picture`] is the inverse.
pub fn channel_major(image: &RgbImage) -> Vec<u8> {
    let plane = (image.width() * image.height()) as usize;
    let mut out = vec![0u8; 3 * plane];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = pixel[c];
        }
    }
    out
}

/// The 32 × 32 RGB picture of a CIFAR-10 record's channel-major pixels.
pub fn rgb_picture(pixels: &[u8]) -> RgbImage {
    let (side, plane) = (IMAGE_SIZE as u32, IMAGE_SIZE * IMAGE_SIZE);
    RgbImage::from_fn(side, side, |x, y| {
        let i = (y * side + x) as usize;
        Rgb([pixels[i], pixels[plane + i], pixels[2 * plane + i]])
    })
}

/// What the networks see of an image, at `side × side`: transparency composited over white,
/// made square as `framing` says (centre crop, or padding), resized (antialiased). Heat maps
/// are drawn over this.
pub fn square_view(image: &DynamicImage, side: u32, framing: Framing) -> RgbImage {
    let rgb = flatten_alpha(&image.to_rgba8());
    let (w, h) = rgb.dimensions();
    let square = match framing {
        Framing::Crop => {
            let crop = w.min(h).max(1);
            image::imageops::crop_imm(&rgb, (w - crop) / 2, (h - crop) / 2, crop, crop).to_image()
        }
        Framing::Pad => {
            let long = w.max(h).max(1);
            let mut square = RgbImage::from_pixel(long, long, Rgb(PAD_COLOUR));
            image::imageops::replace(
                &mut square,
                &rgb,
                i64::from((long - w) / 2),
                i64::from((long - h) / 2),
            );
            square
        }
    };
    image::imageops::resize(&square, side, side, FilterType::Triangle)
}

/// Composites an RGBA image over a white background.
fn flatten_alpha(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = p[3] as u32;
        Rgb([0, 1, 2].map(|c| ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgba};

    fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(Vec::new());
        image.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    /// The `image_decode` fuzz target's finding: a 22-byte GIF whose screen is 62,949 ×
    /// 22,968 pixels. Counting its frames once painted them on a canvas that size (over 2 GB
    /// before libFuzzer stopped it); now it is read from the frame headers.
    #[test]
    fn a_tiny_gif_claiming_a_huge_screen_is_counted_without_painting_it() {
        let bomb = [
            0x47, 0x49, 0x46, 0x38, 0x37, 0x61, 0xe5, 0xf5, 0xb8, 0x59, 0x46, 0x38, 0x39, 0x61,
            0x20, 0x06, 0x20, 0x00, 0xf7, 0x00, 0x00, 0x38,
        ];
        assert!(!is_animated(&bomb));
        let err = decode_image(&bomb).unwrap_err().to_string();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn gif_frames_are_counted() {
        use image::codecs::gif::GifEncoder;
        use image::{Delay, Frame, RgbaImage};
        let gif = |frames: usize| {
            let mut bytes = Vec::new();
            let mut encoder = GifEncoder::new(&mut bytes);
            for i in 0..frames {
                let picture = RgbaImage::from_pixel(8, 8, Rgba([40 * i as u8, 0, 0, 255]));
                let frame = Frame::from_parts(picture, 0, 0, Delay::from_numer_denom_ms(100, 1));
                encoder.encode_frame(frame).unwrap();
            }
            drop(encoder);
            bytes
        };
        assert!(!is_animated(&gif(1)));
        assert!(is_animated(&gif(2)));
        assert!(is_animated(&gif(3)));
    }

    #[test]
    fn measures_known_statistics() {
        // Two images: one all 0, one all 255 → mean 0.5, std 0.5 in every channel.
        let mut pixels = vec![0u8; IMAGE_VALUES];
        pixels.extend(vec![255u8; IMAGE_VALUES]);
        let n = Normalization::measure(&pixels);
        for c in 0..3 {
            assert!((n.mean[c] - 0.5).abs() < 1e-6 && (n.std[c] - 0.5).abs() < 1e-6);
        }
        let mut out = vec![0f32; pixels.len()];
        n.normalize_into(&pixels, &mut out);
        assert_eq!(out[0], -1.0);
        assert_eq!(out[IMAGE_VALUES], 1.0);
    }

    #[test]
    fn channel_major_pixels_and_pictures_convert_both_ways() {
        let picture = RgbImage::from_fn(32, 32, |x, y| Rgb([x as u8, y as u8, (x * y) as u8]));
        let pixels = channel_major(&picture);
        assert_eq!(pixels.len(), IMAGE_VALUES);
        // (5, 2): red 5 in the first plane, green 2 in the second, blue 10 in the third.
        let at = 2 * 32 + 5;
        assert_eq!(
            [pixels[at], pixels[1024 + at], pixels[2048 + at]],
            [5, 2, 10]
        );
        assert_eq!(rgb_picture(&pixels), picture);
    }

    #[test]
    fn resizes_crops_and_orders_channels() {
        // 64 × 40 image: left half red, right half blue; the centre crop is 40 × 40.
        let img = RgbaImage::from_fn(64, 40, |x, _| {
            if x < 32 {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([0, 0, 255, 255])
            }
        });
        let px = to_cifar_pixels(&DynamicImage::ImageRgba8(img), Framing::Crop);
        assert_eq!(px.len(), IMAGE_VALUES);
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        assert_eq!(px[0], 255, "top-left is red in the R plane");
        assert_eq!(px[2 * plane], 0, "top-left has no blue");
        assert_eq!(px[2 * plane + 31], 255, "top-right is blue");
    }

    #[test]
    fn padding_keeps_the_whole_picture_and_cropping_its_centre() {
        // 96 × 32: red, green and blue thirds.
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(96, 32, |x, _| {
            let mut p = [0u8; 3];
            p[(x / 32) as usize] = 255;
            Rgb(p)
        }));
        let crop = square_view(&img, 32, Framing::Crop);
        assert!(
            crop.pixels().all(|p| p.0 == [0, 255, 0]),
            "only the green centre"
        );
        let pad = square_view(&img, 96, Framing::Pad);
        // A 96 × 96 square: grey bands above and below the 32-pixel-high picture.
        assert_eq!(pad.get_pixel(0, 0).0, PAD_COLOUR);
        assert_eq!(pad.get_pixel(95, 95).0, PAD_COLOUR);
        assert_eq!(pad.get_pixel(5, 48).0, [255, 0, 0], "the left end is kept");
        assert_eq!(pad.get_pixel(48, 48).0, [0, 255, 0]);
        assert_eq!(
            pad.get_pixel(90, 48).0,
            [0, 0, 255],
            "the right end is kept"
        );
        // At the network's size the thirds are still there, between grey bands.
        let px = to_cifar_pixels(&img, Framing::Pad);
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        let at = |c: usize, row: usize, col: usize| px[c * plane + row * IMAGE_SIZE + col];
        assert_eq!([at(0, 0, 0), at(1, 0, 0), at(2, 0, 0)], PAD_COLOUR);
        assert_eq!([at(0, 16, 2), at(1, 16, 2), at(2, 16, 2)], [255, 0, 0]);
        assert_eq!([at(0, 16, 29), at(1, 16, 29), at(2, 16, 29)], [0, 0, 255]);
        // A square picture is the same either way; the notes say what happened.
        let square = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 40, Rgb([9, 8, 7])));
        assert_eq!(
            square_view(&square, 32, Framing::Pad),
            square_view(&square, 32, Framing::Crop)
        );
        assert_eq!(Framing::Pad.note(40, 40), None);
        assert!(Framing::Pad.note(96, 32).unwrap().contains("padded"));
        assert!(Framing::Crop.note(96, 32).unwrap().contains("centre 32×32"));
        assert_eq!("pad".parse::<Framing>().unwrap(), Framing::Pad);
        assert!("fit".parse::<Framing>().is_err());
    }

    #[test]
    fn transparent_pixels_become_white() {
        let img = RgbaImage::from_pixel(8, 8, Rgba([0, 0, 0, 0]));
        let px = to_cifar_pixels(&DynamicImage::ImageRgba8(img), Framing::Crop);
        assert!(px.iter().all(|&p| p == 255));
    }

    #[test]
    fn decodes_png_jpeg_and_16_bit_and_rejects_garbage() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(50, 30, Rgb([10, 200, 30])));
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Bmp] {
            let decoded = decode_image(&encode(&img, format)).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (50, 30));
        }
        let deep =
            DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(5, 5, Rgb([65535u16, 0, 0])));
        let px = to_cifar_pixels(
            &decode_image(&encode(&deep, ImageFormat::Png)).unwrap(),
            Framing::Crop,
        );
        assert_eq!(px[0], 255);
        let gray = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, image::Luma([77])));
        let px = to_cifar_pixels(
            &decode_image(&encode(&gray, ImageFormat::Png)).unwrap(),
            Framing::Crop,
        );
        assert!(px.iter().all(|&p| p == 77));
        let err = decode_image(b"definitely not an image").unwrap_err();
        assert!(err.to_string().contains("not an image"), "{err}");
        let mut truncated = encode(&img, ImageFormat::Png);
        truncated.truncate(truncated.len() / 2);
        assert!(decode_image(&truncated).is_err());
    }

    #[test]
    fn refuses_images_beyond_the_size_limit() {
        let wide = DynamicImage::ImageLuma8(image::GrayImage::new(MAX_SIDE + 1, 1));
        let err = decode_image(&encode(&wide, ImageFormat::Png))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large"), "{err}");
    }
}
