//! The page in a real browser: builds it once as GitHub Pages publishes it (`trunk build
//! --release` under a sub-path), then drives Debian's headless Chromium with `e2e/browser.mjs` twice,
//! once with WebGPU (SwiftShader) and once with the GPU disabled (automatic CPU fallback, the
//! first-load size budget, then offline), checking each answer against this crate's native
//! result for the same image, the user's own checkpoints (dropped and picked) included. Needs
//! trunk, wasm-bindgen-cli, chromium, node and `npm ci` in `web-demo/e2e` (README, `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use model::manifest::Manifest;
use model::preprocess::Framing;
use model::{Checkpoint, CheckpointInfo, ModelConfig, ModelOptions, Normalization};
use serde_json::{Value, json};
use web_demo::classify::{Answer, Classifier, prepare};

const CRATE: &str = env!("CARGO_MANIFEST_DIR");

fn run(command: &mut Command, what: &str, hint: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({e}); {hint}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed:\n{text}");
    text
}

/// The gallery's image files, in its order.
fn gallery() -> Vec<String> {
    let gallery: Vec<Value> = serde_json::from_slice(
        &std::fs::read(Path::new(CRATE).join("gallery/gallery.json")).unwrap(),
    )
    .unwrap();
    gallery
        .iter()
        .map(|item| item["file"].as_str().unwrap().to_string())
        .collect()
}

/// `classifier`'s native answer for a gallery image, as the page shows it by default.
fn native_answer(classifier: &Classifier, file: &str) -> Answer {
    let image = std::fs::read(Path::new(CRATE).join("gallery").join(file)).unwrap();
    let prepared = prepare(&image, Framing::Crop).unwrap();
    classifier.answer(&prepared, None).unwrap()
}

/// The user's own checkpoints that `browser.mjs` gives the page, written into `dir` as the
/// trainer writes them, with their native answers:
/// - `meine.safetensors`, the shipped tiny-cnn under German class names with a training
///   record: a trained network (decisive answers) whose names come from the file alone;
/// - `mlp-3.safetensors`, an untrained three-class MLP, which has no spatial layers to
///   explain, with the gallery image on which its top class leads most;
/// - `vit-tiny.safetensors`, a cifar-burn checkpoint of a network kind this build does not
///   know, which the page must refuse.
fn user_checkpoints(dir: &Path, shipped: &[u8]) -> Value {
    let flex = Device::flex();
    let mut mine = Checkpoint::from_bytes(shipped, &flex).unwrap();
    mine.info.classes = [
        "Flugzeug",
        "Auto",
        "Vogel",
        "Katze",
        "Hirsch",
        "Hund",
        "Frosch",
        "Pferd",
        "Schiff",
        "Lastwagen",
    ]
    .map(String::from)
    .to_vec();
    mine.info.training = json!({"epoch": 7, "val_accuracy": 0.625});
    let mine_path = dir.join("meine.safetensors");
    std::fs::write(&mine_path, mine.to_bytes().unwrap()).unwrap();
    let classifier = Classifier::load(&std::fs::read(&mine_path).unwrap(), &flex).unwrap();
    let mine_layers = classifier.summary().layers.len();
    let images: Vec<Value> = gallery()[..2]
        .iter()
        .map(|file| json!({"file": file, "top": native_answer(&classifier, file).top}))
        .collect();

    let options = ModelOptions {
        hidden: Some(32),
        ..ModelOptions::default()
    };
    let mlp = Checkpoint {
        model: ModelConfig::from_name("mlp", &options)
            .unwrap()
            .with_classes(3)
            .unwrap()
            .init(&flex)
            .unwrap(),
        info: CheckpointInfo::new(
            Normalization {
                mean: [0.5; 3],
                std: [0.25; 3],
            },
            ["cloud", "meadow", "street"].map(String::from).to_vec(),
        ),
    };
    let mlp_path = dir.join("mlp-3.safetensors");
    std::fs::write(&mlp_path, mlp.to_bytes().unwrap()).unwrap();
    let classifier = Classifier::load(&std::fs::read(&mlp_path).unwrap(), &flex).unwrap();
    let margin = |answer: &Answer| answer.top[0].probability - answer.top[1].probability;
    let (file, answer) = gallery()
        .into_iter()
        .map(|file| {
            let answer = native_answer(&classifier, &file);
            (file, answer)
        })
        .max_by(|a, b| margin(&a.1).total_cmp(&margin(&b.1)))
        .unwrap();
    assert!(
        margin(&answer) > 1e-3,
        "the untrained MLP hesitates on every image: {answer:?}"
    );
    assert!(!answer.has_heat && answer.layer.is_none());
    // A cifar-burn header naming a network of a kind this build does not know, with one
    // tensor, as a newer trainer might write it.
    let header = json!({
        "format": 1,
        "model": {"name": "vit-tiny", "net": {"kind": "vit", "patch": 4}},
        "info": {"normalization": mlp.info.normalization, "classes": ["a", "b"]},
    });
    let header = json!({
        "__metadata__": {"cifar-burn": header.to_string()},
        "weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    })
    .to_string();
    let mut unknown = (header.len() as u64).to_le_bytes().to_vec();
    unknown.extend_from_slice(header.as_bytes());
    unknown.extend_from_slice(&1.0f32.to_le_bytes());
    let unknown_path = dir.join("vit-tiny.safetensors");
    std::fs::write(&unknown_path, unknown).unwrap();
    json!({
        "unknown": unknown_path,
        "mine": {
            "path": mine_path,
            "file": "meine.safetensors",
            "classes": mine.info.classes,
            "layers": mine_layers,
            "images": images,
        },
        "mlp": {
            "path": mlp_path,
            "file": "mlp-3.safetensors",
            "classes": mlp.info.classes,
            "image": {"file": file, "top": answer.top},
        },
    })
}

/// The native answers for every gallery image, as `browser.mjs` expects them.
fn expected_answers(dir: &Path) -> PathBuf {
    let root = Path::new(CRATE).join("..");
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(root.join("weights/manifest.json")).unwrap())
            .unwrap();
    let entry = manifest.get(&manifest.default).unwrap();
    let bytes = std::fs::read(root.join("weights").join(&entry.file)).unwrap();
    let classifier = Classifier::load(&bytes, &Device::flex()).unwrap();
    let gallery: Vec<Value> = serde_json::from_slice(
        &std::fs::read(Path::new(CRATE).join("gallery/gallery.json")).unwrap(),
    )
    .unwrap();
    let mut images = Vec::new();
    let mut correct = 0;
    for item in &gallery {
        let file = item["file"].as_str().unwrap();
        let answer = native_answer(&classifier, file);
        if answer.top[0].name == item["label"].as_str().unwrap() {
            correct += 1;
        }
        images.push(json!({"file": file, "top": answer.top}));
    }
    let tiny = manifest.get("tiny-cnn").expect("tiny-cnn is shipped");
    let yours = user_checkpoints(
        dir,
        &std::fs::read(root.join("weights").join(&tiny.file)).unwrap(),
    );
    eprintln!(
        "{}: {correct}/{} gallery images right natively",
        entry.name,
        gallery.len()
    );
    let path = dir.join("expected.json");
    std::fs::write(
        &path,
        json!({
            "model": entry.name,
            "file": entry.file,
            "images": images,
            "layers": classifier.summary().layers.len(),
            "yours": yours,
            // The page's default explanation: the manifest's most faithful method.
            "method": entry.explanation.as_ref().map_or("gradcam", |e| e.method.as_str()),
        })
        .to_string(),
    )
    .unwrap();
    path
}

#[test]
#[ignore = "needs trunk, wasm-bindgen-cli, Chromium, node and npm ci in web-demo/e2e: run ./check"]
fn the_page_classifies_and_explains_in_chromium_on_webgpu_and_on_the_cpu() {
    let dir = std::env::temp_dir().join(format!("cifar-burn-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected = expected_answers(&dir);
    assert!(
        Path::new(CRATE)
            .join("e2e/node_modules/playwright-core")
            .exists(),
        "run `npm ci` in web-demo/e2e first (see README)"
    );
    // One build, served under /cifar-burn/ as GitHub Pages serves a project site: WebGPU, then
    // the CPU fallback with the camera (Chromium's fake one) and offline from the service
    // worker's cache.
    let base = "/cifar-burn/";
    let dist = dir.join("dist");
    run(
        Command::new("trunk")
            .args(["build", "--release", "--public-url", base, "--dist"])
            .arg(&dist)
            .current_dir(CRATE),
        "trunk build --release",
        "install trunk 0.21.14 and wasm-bindgen-cli 0.2.130 (see README)",
    );
    for (backend, extra) in [("webgpu", &[][..]), ("cpu", &["--offline", "--camera"][..])] {
        let out = run(
            Command::new("node")
                .arg("browser.mjs")
                .arg("--dist")
                .arg(&dist)
                .arg("--expected")
                .arg(&expected)
                .args(["--backend", backend, "--base", base])
                .args(extra)
                .current_dir(Path::new(CRATE).join("e2e")),
            &format!("the browser test on {backend}"),
            "install node and Debian's chromium (see README)",
        );
        eprint!("{out}");
        assert!(out.contains(&format!("ok ({backend})")), "{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
