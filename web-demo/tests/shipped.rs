//! The shipped weights as the page loads them: the manifest matches the files, and the
//! default model classifies and explains a real CIFAR-10 test image natively.

use std::path::Path;

use burn::tensor::Device;
use model::manifest::Manifest;
use sha2::{Digest, Sha256};
use web_demo::classify::{Answer, Classifier, prepare};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(format!("{ROOT}/weights/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn the_manifest_describes_the_committed_files() {
    let manifest = manifest();
    assert!(
        manifest.get(&manifest.default).is_some(),
        "default model listed"
    );
    for entry in &manifest.models {
        let bytes = std::fs::read(Path::new(ROOT).join("weights").join(&entry.file)).unwrap();
        assert_eq!(bytes.len() as u64, entry.bytes, "{}", entry.name);
        assert_eq!(
            format!("{:x}", Sha256::digest(&bytes)),
            entry.sha256,
            "{}",
            entry.name
        );
        let classifier = Classifier::load(&bytes, &Device::flex()).unwrap();
        let summary = classifier.summary();
        assert_eq!(summary.architecture, entry.config.name);
        assert_eq!(summary.parameters, entry.parameters, "{}", entry.name);
        assert_eq!(entry.test_images, 10_000, "measured on the whole test set");
    }
}

#[test]
fn the_default_model_explains_a_test_image() {
    let manifest = manifest();
    let entry = manifest.get(&manifest.default).unwrap();
    let bytes = std::fs::read(Path::new(ROOT).join("weights").join(&entry.file)).unwrap();
    let classifier = Classifier::load(&bytes, &Device::flex()).unwrap();
    let image = std::fs::read(format!("{ROOT}/web-demo/gallery/00504-truck.png")).unwrap();
    let prepared = prepare(&image, model::preprocess::Framing::Crop).unwrap();
    let cam = classifier.explain(&prepared, None).unwrap();
    let answer = Answer::new(&cam, classifier.classes());
    assert_eq!(answer.top.len(), 5);
    assert!(
        answer
            .top
            .windows(2)
            .all(|w| w[0].probability >= w[1].probability),
        "ranked"
    );
    assert_eq!(
        answer.explained, answer.top[0].index,
        "explains the top class"
    );
    assert!(answer.has_heat);
    assert!((cam.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    // The tensors read back separately (the browser's async path) give the same answer.
    let pending = classifier.explain_tensors(&prepared, None).unwrap();
    let probabilities = pending
        .probabilities
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let read = |t: &burn::tensor::Tensor<4>| t.clone().into_data().try_to_vec::<f32>().unwrap();
    let (activations, gradients) = (read(&pending.activations), read(&pending.gradients));
    let inputs = pending
        .finish(&probabilities, activations, gradients)
        .unwrap();
    assert_eq!(inputs.cam(model::cam::CamMethod::GradCam).unwrap(), cam);
    // Score-CAM the page's way (forward passes read back separately) equals the one call.
    let scores = classifier
        .score_cam_tensor(&prepared, &inputs)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let checkpoint = model::Checkpoint::from_bytes(&bytes, &Device::flex()).unwrap();
    let direct = model::cam::explain(
        &checkpoint.model,
        classifier.input(&prepared),
        model::cam::CamMethod::ScoreCam,
        None,
        None,
    )
    .unwrap();
    assert_eq!(inputs.score_cam(&scores).unwrap(), direct);
    assert_eq!(
        classifier.answer(&prepared, None).unwrap().top,
        answer.top,
        "the page's default answer is Grad-CAM's"
    );
}
