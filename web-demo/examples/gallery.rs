//! Writes the page's gallery: the first test image of each class found in the committed
//! sample (`data/sample/test_batch.bin`, CIFAR-10 test records 500–699) as PNG files, and
//! `gallery/gallery.json` naming each file's true class and test-set index. The PNGs are
//! compressed as hard as the encoder can (they are part of the page's first load).
//!
//! `cargo run -p web-demo --example gallery` (from the workspace root).

use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbImage};
use model::{CLASSES, IMAGE_SIZE, IMAGE_VALUES};
use serde_json::json;

/// Test-set index of the sample's first record.
const FIRST_INDEX: usize = 500;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(root.join("../data/sample/test_batch.bin"))?;
    let out = root.join("gallery");
    std::fs::create_dir_all(&out)?;
    let mut entries = Vec::new();
    let mut seen = [false; CLASSES.len()];
    // A record is one label byte then 3072 pixel bytes (R, G, B planes).
    for (i, record) in bytes.chunks_exact(1 + IMAGE_VALUES).enumerate() {
        let label = record[0] as usize;
        if seen[label] {
            continue;
        }
        seen[label] = true;
        let plane = IMAGE_SIZE * IMAGE_SIZE;
        let pixels = &record[1..];
        let side = IMAGE_SIZE as u32;
        let image = RgbImage::from_fn(side, side, |x, y| {
            let at = y as usize * IMAGE_SIZE + x as usize;
            image::Rgb([pixels[at], pixels[plane + at], pixels[2 * plane + at]])
        });
        let index = FIRST_INDEX + i;
        let file = format!("{index:05}-{}.png", CLASSES[label]);
        let png = std::fs::File::create(out.join(&file))?;
        PngEncoder::new_with_quality(png, CompressionType::Best, FilterType::Adaptive)
            .write_image(&image, side, side, image::ExtendedColorType::Rgb8)?;
        entries.push(json!({"file": file, "label": CLASSES[label], "index": index}));
    }
    std::fs::write(
        out.join("gallery.json"),
        serde_json::to_string_pretty(&entries)? + "\n",
    )?;
    println!("wrote {} images to {}", entries.len(), out.display());
    Ok(())
}
