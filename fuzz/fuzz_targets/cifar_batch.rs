//! The CIFAR-10 binary-batch reader: any bytes either parse into whole records with labels
//! 0–9, or give an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::{IMAGE_VALUES, NUM_CLASSES};
use trainer::data::CifarSet;
use trainer::data::cifar::RECORD_BYTES;

fuzz_target!(|bytes: &[u8]| {
    let classes = model::cifar10_class_names();
    if let Ok(set) = CifarSet::parse(bytes, "fuzz input", &classes) {
        assert_eq!(set.len() * RECORD_BYTES, bytes.len());
        assert_eq!(set.pixels.len(), set.len() * IMAGE_VALUES);
        assert!(set.labels.iter().all(|&l| (l as usize) < NUM_CLASSES));
        if let Ok((a, b)) = set.split(0.5, 1) {
            assert_eq!(a.len() + b.len(), set.len());
        }
    }
});
