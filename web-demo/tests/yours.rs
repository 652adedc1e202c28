//! The user's own checkpoint in the page: a file is told apart from an image by its content,
//! any network and classes the trainer makes loads and classifies (the MLP without a heat
//! map), and a file that is not a usable checkpoint is refused with its reason.

use burn::tensor::Device;
use model::preprocess::Framing;
use model::{Checkpoint, CheckpointInfo, ModelConfig, ModelOptions, Normalization};
use serde_json::json;
use web_demo::classify::{Classifier, FileKind, MAX_FILE_BYTES, prepare};

const GALLERY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/gallery");

fn normalization() -> Normalization {
    Normalization {
        mean: [0.5; 3],
        std: [0.25; 3],
    }
}

/// The bytes of an untrained `name` predicting `classes`, as the trainer writes them.
fn checkpoint(name: &str, options: &ModelOptions, classes: &[&str]) -> Vec<u8> {
    let config = ModelConfig::from_name(name, options)
        .unwrap()
        .with_classes(classes.len())
        .unwrap();
    let mut info = CheckpointInfo::new(
        normalization(),
        classes.iter().map(|c| c.to_string()).collect(),
    );
    info.training =
        json!({"run": "runs/cats", "epoch": 12, "train_accuracy": 0.9, "val_accuracy": 0.75});
    Checkpoint {
        model: config.init(&Device::flex()).unwrap(),
        info,
    }
    .to_bytes()
    .unwrap()
}

fn gallery_image(file: &str) -> web_demo::classify::Prepared {
    let bytes = std::fs::read(format!("{GALLERY}/{file}")).unwrap();
    prepare(&bytes, Framing::Crop).unwrap()
}

fn load_error(bytes: &[u8]) -> String {
    Classifier::load(bytes, &Device::flex())
        .unwrap_err()
        .to_string()
}

/// A SafeTensors file of one tensor and the given `__metadata__`, written by hand.
fn safetensors(metadata: serde_json::Value) -> Vec<u8> {
    let header = json!({
        "__metadata__": metadata,
        "weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    })
    .to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    bytes
}

#[test]
fn a_file_is_told_to_be_an_image_or_a_checkpoint_by_its_content() {
    let png = std::fs::read(format!("{GALLERY}/00515-cat.png")).unwrap();
    assert_eq!(FileKind::of(&png), FileKind::Image);
    let tiny = checkpoint("tiny-cnn", &ModelOptions::default(), &["a", "b"]);
    assert_eq!(FileKind::of(&tiny), FileKind::Checkpoint);
    assert_eq!(FileKind::of(&safetensors(json!({}))), FileKind::Checkpoint);
    // The page sniffs the first 16 bytes only.
    assert_eq!(FileKind::of(&png[..16]), FileKind::Image);
    assert_eq!(FileKind::of(&tiny[..16]), FileKind::Checkpoint);
    // Junk goes to the image decoder, which says it is not an image.
    for junk in [&b""[..], b"{}", b"Hello, this is a text file.", &[0xff; 64]] {
        assert_eq!(FileKind::of(junk), FileKind::Image, "{junk:?}");
    }
    // A GIF 123 pixels high has a `{` where a SafeTensors header starts: still an image.
    let gif = b"GIF89a\x10\x00\x7b\x00\x00\x00\x00,\x00\x00";
    assert_eq!(gif[8], b'{');
    assert_eq!(FileKind::of(gif), FileKind::Image);
    // A header length past the page's limit is not a checkpoint the page could read.
    let mut huge = (MAX_FILE_BYTES + 1).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{\"a\":1}");
    assert_eq!(FileKind::of(&huge), FileKind::Image);
}

#[test]
fn a_checkpoint_of_other_classes_is_shown_with_its_own_names() {
    // An untrained three-class ResNet named like a pets folder's checkpoint.
    let names = ["cat", "dog", "rabbit"];
    let bytes = checkpoint("resnet20", &ModelOptions::default(), &names);
    let classifier = Classifier::load(&bytes, &Device::flex()).unwrap();
    let summary = classifier.summary();
    assert_eq!(summary.architecture, "resnet20");
    assert_eq!(summary.classes, names);
    assert_eq!(summary.cam_layer.as_deref(), Some("layer3"));
    assert_eq!(summary.layers.len(), 4, "{:?}", summary.layers);
    assert_eq!(
        (summary.epoch, summary.val_accuracy),
        (Some(12), Some(0.75))
    );
    let answer = classifier
        .answer(&gallery_image("00515-cat.png"), Some(2))
        .unwrap();
    let mut shown: Vec<&str> = answer.top.iter().map(|t| t.name.as_str()).collect();
    shown.sort();
    assert_eq!(shown, ["cat", "dog", "rabbit"]);
    assert_eq!(answer.explained, 2, "the class asked about is explained");
    assert_eq!(answer.layer.as_deref(), Some("layer3"));
}

#[test]
fn an_mlp_classifies_without_a_heat_map() {
    let options = ModelOptions {
        hidden: Some(16),
        ..ModelOptions::default()
    };
    let bytes = checkpoint("mlp", &options, &["sea", "land"]);
    let classifier = Classifier::load(&bytes, &Device::flex()).unwrap();
    assert!(!classifier.can_explain());
    let summary = classifier.summary();
    assert_eq!((summary.cam_layer, summary.layers.len()), (None, 0));
    let prepared = gallery_image("00516-ship.png");
    let answer = classifier.answer(&prepared, None).unwrap();
    assert_eq!(answer.top.len(), 2);
    let total: f32 = answer.top.iter().map(|t| t.probability).sum();
    assert!((total - 1.0).abs() < 1e-5, "{total}");
    assert_eq!(answer.explained, answer.top[0].index);
    assert!(!answer.has_heat && answer.layer.is_none());
    assert_eq!(classifier.answer(&prepared, Some(1)).unwrap().explained, 1);
    let err = classifier
        .answer(&prepared, Some(2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("class 2 does not exist"), "{err}");
    let err = classifier
        .explain_tensors(&prepared, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no convolutional layer"), "{err}");
    assert!(classifier.all_activations(&prepared).is_empty());
}

#[test]
fn a_file_that_is_not_a_usable_checkpoint_is_refused_with_its_reason() {
    let err = load_error(b"only text, not a checkpoint");
    assert!(err.contains("not a SafeTensors file"), "{err}");
    let err = load_error(&safetensors(json!({"format": "pt"})));
    assert!(err.contains("not written by cifar-burn"), "{err}");
    // A cifar-burn header naming a network of a kind this build does not know.
    let header = json!({
        "format": 1,
        "model": {"name": "vit-tiny", "net": {"kind": "vit", "patch": 4}},
        "info": {"normalization": normalization(), "classes": ["a", "b"]},
    });
    let err = load_error(&safetensors(json!({"cifar-burn": header.to_string()})));
    assert!(
        err.contains("unknown network") && err.contains("`vit-tiny` is of kind `vit`"),
        "{err}"
    );
    // Weights of another shape than the header's network.
    let header = json!({
        "format": 1,
        "model": ModelConfig::from_name("tiny-cnn", &ModelOptions::default()).unwrap(),
        "info": CheckpointInfo::cifar10(normalization()),
    });
    let err = load_error(&safetensors(json!({"cifar-burn": header.to_string()})));
    assert!(err.contains("weights do not fit `tiny-cnn`"), "{err}");
    // Over the page's limit, refused before it is parsed.
    let err = load_error(&vec![0; MAX_FILE_BYTES as usize + 1]);
    assert!(err.contains("over the page's limit of 100 MB"), "{err}");
}
