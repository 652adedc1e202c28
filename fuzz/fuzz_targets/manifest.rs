//! `weights/manifest.json` as `trainer ship` and `cam-eval --record` read it: any bytes parse
//! into a manifest that survives a round trip, or give an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use model::manifest::Manifest;

fuzz_target!(|bytes: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(bytes) else {
        return;
    };
    // Written as `trainer ship` writes it, it reads back as the same manifest.
    let text = manifest.to_json();
    let again: Manifest = serde_json::from_str(&text).expect("a written manifest reads back");
    assert_eq!(again.to_json(), text);
    let mut edited = manifest.clone();
    for shipped in &manifest.models {
        let _ = shipped.config.validate();
        edited.upsert(shipped.clone());
        assert!(edited.get(&shipped.name).is_some());
    }
});
