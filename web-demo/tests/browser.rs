//! The page in a real browser: builds it once as GitHub Pages publishes it (`trunk build
//! --release` under a sub-path), then drives Debian's headless Chromium with `e2e/browser.mjs` twice,
//! once with WebGPU (SwiftShader) and once with the GPU disabled (automatic CPU fallback, the
//! first-load size budget, then offline), checking each answer against this crate's native
//! result for the same image. Needs trunk, wasm-bindgen-cli, chromium, node and `npm ci` in
//! `web-demo/e2e` (README, `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::Device;
use model::manifest::Manifest;
use model::preprocess::Framing;
use serde_json::json;
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

/// The native answers for every gallery image, as `browser.mjs` expects them.
fn expected_answers(dir: &Path) -> PathBuf {
    let root = Path::new(CRATE).join("..");
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(root.join("weights/manifest.json")).unwrap())
            .unwrap();
    let entry = manifest.get(&manifest.default).unwrap();
    let bytes = std::fs::read(root.join("weights").join(&entry.file)).unwrap();
    let classifier = Classifier::load(&bytes, &Device::flex()).unwrap();
    let gallery: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(Path::new(CRATE).join("gallery/gallery.json")).unwrap(),
    )
    .unwrap();
    let mut images = Vec::new();
    let mut correct = 0;
    for item in &gallery {
        let file = item["file"].as_str().unwrap();
        let prepared = prepare(
            &std::fs::read(Path::new(CRATE).join("gallery").join(file)).unwrap(),
            Framing::Crop,
        )
        .unwrap();
        let answer = Answer::new(
            &classifier.explain(&prepared, None).unwrap(),
            classifier.classes(),
        );
        if answer.top[0].1 == item["label"].as_str().unwrap() {
            correct += 1;
        }
        images.push(json!({"file": file, "top": answer.top}));
    }
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
            "layers": classifier.layers().len(),
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
