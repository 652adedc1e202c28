//! Decoding a user's image file and preprocessing it to 32×32: any bytes (decompression bombs
//! included) give a picture within the size limits or an error, never a panic or a huge
//! allocation (libFuzzer's -rss_limit_mb catches those).
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::IMAGE_VALUES;
use model::preprocess::{DecodeLimits, Framing, decode_image_with, is_animated, to_cifar_pixels};

fuzz_target!(|bytes: &[u8]| {
    let _ = is_animated(bytes);
    // The page's limits (smaller than the trainer's, so that the fuzzer stays fast).
    let limits = DecodeLimits {
        max_side: 4096,
        max_bytes: 64 << 20,
    };
    if let Ok(image) = decode_image_with(bytes, limits) {
        assert!(image.width() <= limits.max_side && image.height() <= limits.max_side);
        for framing in [Framing::Crop, Framing::Pad] {
            assert_eq!(to_cifar_pixels(&image, framing).len(), IMAGE_VALUES);
        }
    }
});
