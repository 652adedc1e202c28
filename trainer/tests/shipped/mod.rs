//! The models the page ships, as `weights/manifest.json` lists them.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `(name, weights file)` of every model in `weights/manifest.json`, in its order.
pub fn shipped_models() -> Vec<(String, PathBuf)> {
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(weights.join("manifest.json")).unwrap())
            .unwrap();
    manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let name = entry["name"].as_str().unwrap().to_string();
            (name, weights.join(entry["file"].as_str().unwrap()))
        })
        .collect()
}
