//! What the page does with awkward files: each gets a clear message or is handled, and the
//! note the page shows says what was done.

use std::io::Cursor;

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::{
    DynamicImage, Frame, GrayImage, ImageBuffer, ImageEncoder, ImageFormat, Luma, Rgb, RgbImage,
    Rgba, RgbaImage,
};
use model::IMAGE_SIZE;
use model::preprocess::Framing;
use web_demo::classify::{VIEW_SIDE, prepare};

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn error(bytes: &[u8]) -> String {
    prepare(bytes, Framing::Crop).unwrap_err().to_string()
}

/// Red, green and blue of the centre pixel of the network's input.
fn centre(pixels: &[u8]) -> [u8; 3] {
    let plane = IMAGE_SIZE * IMAGE_SIZE;
    let i = (IMAGE_SIZE / 2) * IMAGE_SIZE + IMAGE_SIZE / 2;
    [pixels[i], pixels[plane + i], pixels[2 * plane + i]]
}

#[test]
fn refuses_what_is_not_a_usable_image_with_a_reason() {
    assert!(error(b"").contains("empty"));
    assert!(error(b"Hello, this is a text file.").contains("not an image"));
    let mut png = encode(
        &DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([1, 2, 3]))),
        ImageFormat::Png,
    );
    png.truncate(png.len() / 2);
    assert!(error(&png).contains("cannot decode"), "{}", error(&png));
    // 10,000 × 10,000: over the page's 8,192-pixel limit, refused before decoding.
    let huge = encode(
        &DynamicImage::ImageLuma8(GrayImage::new(10_000, 10_000)),
        ImageFormat::Png,
    );
    let message = error(&huge);
    assert!(
        message.contains("too large") && message.contains("8192"),
        "{message}"
    );
}

#[test]
fn handles_animation_depth_grayscale_and_transparency() {
    // Animated GIF: red then blue; the first frame is used and the note says so.
    let mut gif = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut gif);
        for colour in [[255, 0, 0, 255], [0, 0, 255, 255]] {
            let frame = Frame::new(RgbaImage::from_pixel(40, 40, Rgba(colour)));
            encoder.encode_frame(frame).unwrap();
        }
    }
    let prepared = prepare(&gif, Framing::Crop).unwrap();
    assert!(
        prepared.notes.iter().any(|n| n.contains("animated")),
        "{:?}",
        prepared.notes
    );
    assert_eq!(centre(&prepared.pixels), [255, 0, 0]);

    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_pixel(20, 20, Rgb([0u16, 65535, 0])));
    let prepared = prepare(&encode(&deep, ImageFormat::Png), Framing::Crop).unwrap();
    assert!(
        prepared.notes.iter().any(|n| n.contains("16-bit")),
        "{:?}",
        prepared.notes
    );
    assert_eq!(centre(&prepared.pixels), [0, 255, 0]);

    let gray = DynamicImage::ImageLuma8(GrayImage::from_pixel(20, 20, Luma([90])));
    let prepared = prepare(&encode(&gray, ImageFormat::Png), Framing::Crop).unwrap();
    assert!(
        prepared.notes.iter().any(|n| n.contains("grayscale")),
        "{:?}",
        prepared.notes
    );
    assert_eq!(centre(&prepared.pixels), [90, 90, 90]);

    let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(20, 20, Rgba([0, 0, 0, 0])));
    let prepared = prepare(&encode(&clear, ImageFormat::Png), Framing::Crop).unwrap();
    assert!(
        prepared.notes.iter().any(|n| n.contains("transparency")),
        "{:?}",
        prepared.notes
    );
    assert_eq!(centre(&prepared.pixels), [255, 255, 255]);
    assert_eq!(prepared.view.dimensions(), (VIEW_SIDE, VIEW_SIDE));
}

#[test]
fn applies_the_exif_rotation_of_a_phone_photo() {
    // Stored 64 × 32 with the left half red, right half blue, and EXIF orientation 6
    // ("rotate 90° clockwise to view"): upright it is 32 × 64 with red on top.
    let stored = RgbImage::from_fn(64, 32, |x, _| {
        if x < 32 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    // A little-endian TIFF header with one IFD entry: Orientation (0x0112), SHORT, 1, value 6.
    let exif = [
        0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00, 0x12, 0x01, 0x03, 0x00, 0x01,
        0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    let mut jpeg = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut jpeg, 95);
    encoder.set_exif_metadata(exif.to_vec()).unwrap();
    encoder
        .write_image(stored.as_raw(), 64, 32, image::ExtendedColorType::Rgb8)
        .unwrap();
    let prepared = prepare(&jpeg, Framing::Crop).unwrap();
    assert_eq!((prepared.width, prepared.height), (32, 64));
    // The centre square of the upright image straddles red (top) and blue (bottom).
    let top = prepared.view.get_pixel(VIEW_SIDE / 2, 10);
    let bottom = prepared.view.get_pixel(VIEW_SIDE / 2, VIEW_SIDE - 10);
    assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
    assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
}

#[test]
fn a_wide_photo_is_cropped_or_padded_as_asked_and_the_note_says_which() {
    // 96 × 32: red, green and blue thirds.
    let wide = DynamicImage::ImageRgb8(RgbImage::from_fn(96, 32, |x, _| {
        let mut p = [0u8; 3];
        p[(x / 32) as usize] = 255;
        Rgb(p)
    }));
    let bytes = encode(&wide, ImageFormat::Png);
    let cropped = prepare(&bytes, Framing::Crop).unwrap();
    assert_eq!(centre(&cropped.pixels), [0, 255, 0]);
    assert_eq!(
        cropped.view.get_pixel(5, VIEW_SIDE / 2).0,
        [0, 255, 0],
        "the ends are cut"
    );
    assert!(
        cropped.notes.iter().any(|n| n.contains("centre 32×32")),
        "{:?}",
        cropped.notes
    );
    let padded = prepare(&bytes, Framing::Pad).unwrap();
    assert_eq!(centre(&padded.pixels), [0, 255, 0]);
    let side = VIEW_SIDE;
    assert_eq!(
        padded.view.get_pixel(5, side / 2).0,
        [255, 0, 0],
        "the left end is kept"
    );
    assert_eq!(
        padded.view.get_pixel(side - 5, side / 2).0,
        [0, 0, 255],
        "so is the right"
    );
    assert_eq!(padded.view.get_pixel(5, 5).0, model::preprocess::PAD_COLOUR);
    assert!(
        padded.notes.iter().any(|n| n.contains("padded")),
        "{:?}",
        padded.notes
    );
}
