//! The models the page ships, as `weights/manifest.json` lists them.

use std::path::{Path, PathBuf};

use trainer::cmd::ship::read_manifest;

/// `(name, weights file)` of every model in `weights/manifest.json`, in its order.
pub fn shipped_models() -> Vec<(String, PathBuf)> {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights");
    read_manifest(&weights.join("manifest.json"))
        .unwrap()
        .models
        .into_iter()
        .map(|entry| (entry.name, weights.join(entry.file)))
        .collect()
}
