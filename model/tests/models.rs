//! Every registered network: parameter counts against the PyTorch originals, output shapes on
//! the Flex CPU device, named-layer activations, and checkpoint round trips.

use burn::module::Module;
use burn::tensor::{DType, Device, Distribution, Tensor};
use model::checkpoint::Precision;
use model::registry::MODELS;
use model::{Checkpoint, CheckpointInfo, ModelConfig, ModelOptions, Normalization};
use safetensors::{Dtype, SafeTensors};

fn build(name: &str, options: &ModelOptions) -> model::Model {
    ModelConfig::from_name(name, options)
        .unwrap()
        .init(&Device::flex())
        .unwrap()
}

fn params(name: &str) -> usize {
    build(name, &ModelOptions::default()).parameter_count()
}

fn images(n: usize, device: &Device) -> Tensor<4> {
    Tensor::random([n, 3, 32, 32], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn parameter_counts_equal_the_pytorch_originals() {
    let expected = [
        ("mlp", 1_841_162),
        ("basic-cnn", 1_147_466),
        ("resnet20", 272_474),
        ("resnet32", 466_906),
        ("resnet56", 855_770),
        ("resnet18", 11_173_962),
        ("resnet34", 21_282_122),
        ("resnet50", 23_520_842),
        ("vgg11-bn", 9_231_114),
        ("wrn-28-10", 36_479_194),
        // Seed 002 reports 12,906,250 for its ImprovedCNN.
        ("improved-cnn", 12_906_250),
        // With the frozen whitening filters and batch-norm scales, as PyTorch's
        // `parameters()` counts them (export/torch_models.py checks the twins).
        ("airbench94", 1_972_792),
        ("airbench93", 569_656),
    ];
    for (name, count) in expected {
        assert_eq!(params(name), count, "{name}");
    }
    let three_fc = ModelOptions {
        fc: Some("512,512".into()),
        ..Default::default()
    };
    assert_eq!(build("vgg11-bn", &three_fc).parameter_count(), 9_756_426);
    // VGG-A without batch norm loses γ and β of its eight convolutions.
    assert_eq!(
        params("vgg11"),
        9_231_114 - 2 * (64 + 128 + 256 + 256 + 4 * 512)
    );
}

#[test]
fn options_change_the_network_or_are_refused() {
    // Seed 004's (32, 32) filters: conv 3→32, conv 32→32 with BN, FC 32·8·8 → 10.
    let tiny = 3 * 32 * 9 + 32 + 64 + 32 * 32 * 9 + 32 + 64 + 32 * 64 * 10 + 10;
    assert_eq!(params("tiny-cnn"), tiny);
    let hidden = ModelOptions {
        hidden: Some(100),
        ..Default::default()
    };
    assert_eq!(
        build("mlp", &hidden).parameter_count(),
        3072 * 100 + 100 + 100 * 100 + 100 + 1010
    );
    for preset in ["small", "medium", "large", "wide", "deep"] {
        for fc in ["default", "simplified", "complex"] {
            let o = ModelOptions {
                filters: Some(preset.into()),
                fc: Some(fc.into()),
                ..Default::default()
            };
            let m = build("configurable-cnn", &o);
            let y = m.forward(images(2, &Device::flex()));
            assert_eq!(y.dims(), [2, 10], "{preset}/{fc}");
        }
    }
    // airbench93 widened to 64/144/144: whitening 24·3·2·2 + 24, block1 as airbench93's
    // (9·24·64 + 9·64·64 + 4·64), block2 9·64·144 + 9·144·144 + 4·144, block3
    // 2·9·144·144 + 4·144, head 144·10.
    let wide = ModelOptions {
        filters: Some("64,144,144".into()),
        ..Default::default()
    };
    let m = build("airbench93", &wide);
    assert_eq!(
        m.parameter_count(),
        312 + 50_944 + 270_144 + 373_824 + 1_440
    );
    assert_eq!(m.forward(images(2, &Device::flex())).dims(), [2, 10]);
    for bad in ["64,144", "64,0,144", "wide"] {
        let o = ModelOptions {
            filters: Some(bad.into()),
            ..Default::default()
        };
        assert!(ModelConfig::from_name("airbench94", &o).is_err(), "{bad}");
    }
    let bad = ModelOptions {
        filters: Some("wide".into()),
        ..Default::default()
    };
    let err = ModelConfig::from_name("resnet20", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no `filters` option"), "{err}");
    let err = ModelConfig::from_name("resnet21", &ModelOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("6n+2"), "{err}");
    let err = ModelConfig::from_name("lenet", &ModelOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown model") && err.contains("basic-cnn"),
        "{err}"
    );
}

#[test]
fn every_registered_model_maps_images_to_ten_logits() {
    let device = Device::flex();
    for (name, _) in MODELS {
        let m = build(name, &ModelOptions::default());
        let logits = m.forward(images(2, &device));
        assert_eq!(logits.dims(), [2, 10], "{name}");
        let values = logits.into_data().try_to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn named_layers_give_activations_and_resume_the_forward_pass() {
    let device = Device::flex();
    let cases = [
        ("basic-cnn", "conv3", [2, 128, 8, 8]),
        ("resnet20", "layer3", [2, 64, 8, 8]),
        ("resnet9", "layer3", [2, 512, 4, 4]),
        ("airbench94", "block3", [2, 256, 3, 3]),
        ("airbench93", "block3", [2, 128, 3, 3]),
        ("tiny-cnn", "conv2", [2, 32, 16, 16]),
    ];
    for (name, layer, shape) in cases {
        let m = build(name, &ModelOptions::default());
        assert_eq!(m.cam_layer().as_deref(), Some(layer), "{name}");
        let x = images(2, &device);
        let a = m.activations(x.clone(), layer).unwrap();
        assert_eq!(a.dims(), shape, "{name}");
        // One pass gives every layer, each the same as asked for alone (inference mode).
        let v = m.valid();
        let all = v.all_activations(x.clone());
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(names, v.layer_names(), "{name}");
        for (layer, alone) in all {
            let one = v.activations(x.clone(), &layer).unwrap();
            let gap = (one - alone).abs().max().into_scalar::<f32>();
            assert_eq!(gap, 0.0, "{name} {layer}");
        }
        let resumed = m.forward_from(a, layer).unwrap();
        let direct = m.forward(x);
        let diff = (resumed - direct).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-4, "{name}: {diff}");
    }
    let m = build("basic-cnn", &ModelOptions::default());
    let err = m
        .activations(images(1, &device), "conv9")
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv1, pool1"), "{err}");
    assert!(build("mlp", &ModelOptions::default()).cam_layer().is_none());
}

#[test]
fn checkpoints_round_trip_weights_and_batch_norm_statistics() {
    let flex = Device::flex();
    let train = flex.clone().autodiff();
    let config = ModelConfig::from_name("resnet20", &ModelOptions::default()).unwrap();
    let model = config.init(&train).unwrap();
    // A training-mode forward pass moves the batch-norm running statistics.
    let _ = model.forward(images(4, &train) * 3.0 + 1.0);
    let model = model.valid();
    let info = CheckpointInfo::cifar10(Normalization {
        mean: [0.1, 0.2, 0.3],
        std: [0.4, 0.5, 0.6],
    });
    let bytes = Checkpoint {
        model: model.clone(),
        info: info.clone(),
    }
    .to_bytes()
    .unwrap();

    let loaded = Checkpoint::from_bytes(&bytes, &flex).unwrap();
    assert_eq!(loaded.info, info);
    assert_eq!(loaded.model.config(), &config);
    let x = images(3, &flex);
    let diff = (loaded.model.forward(x.clone()) - model.forward(x.clone()).to_device(&flex))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff < 1e-5, "{diff}");
    // A fresh network gives other outputs, so the comparison above means something.
    let fresh = config.init(&flex).unwrap();
    let other = (fresh.forward(x.clone()) - loaded.model.forward(x))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(other > 1e-3);
}

#[test]
fn a_half_precision_checkpoint_is_half_the_size_and_reads_back_as_f32() {
    let flex = Device::flex();
    let config = ModelConfig::from_name("resnet20", &ModelOptions::default()).unwrap();
    let checkpoint = Checkpoint {
        model: config.init(&flex).unwrap(),
        info: CheckpointInfo::cifar10(Normalization {
            mean: [0.5; 3],
            std: [0.25; 3],
        }),
    };
    let full = checkpoint.to_bytes().unwrap();
    let half = checkpoint.to_bytes_as(Precision::F16).unwrap();
    let ratio = half.len() as f64 / full.len() as f64;
    assert!((0.5..0.56).contains(&ratio), "f16 file {ratio:.3} of f32");
    // Convolution and linear weights in f16; batch norm (running variance) stays f32.
    let tensors = SafeTensors::deserialize(&half).unwrap();
    let dtype_of = |part: &str| {
        let (_, view) = tensors
            .iter()
            .find(|(name, _)| name.contains(part))
            .unwrap_or_else(|| panic!("no tensor named *{part}*"));
        view.dtype()
    };
    assert_eq!(dtype_of("conv1.weight"), Dtype::F16);
    assert_eq!(dtype_of("fc.weight"), Dtype::F16);
    assert_eq!(dtype_of("running_var"), Dtype::F32);

    let loaded = Checkpoint::from_bytes(&half, &flex).unwrap();
    let x = images(4, &flex);
    let (a, b) = (
        checkpoint.model.forward(x.clone()),
        loaded.model.forward(x.clone()),
    );
    assert_eq!(b.dtype(), DType::F32);
    let scale = a.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    // f16 keeps 11 significant bits: relative errors of about 1e-3, never the f32 1e-6.
    assert!(diff > 0.0 && diff < 1e-2 * scale, "{diff} of {scale}");
}

/// `bytes` (a checkpoint) with its SafeTensors header rewritten by `edit`, which may shorten it
/// (the header is padded back to its length with spaces, as the format allows).
fn with_header(bytes: &[u8], edit: impl FnOnce(&str) -> String) -> Vec<u8> {
    let (n, _) = SafeTensors::read_metadata(bytes).unwrap();
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let forged = edit(header);
    assert_ne!(forged, header, "header layout changed: {header}");
    assert!(forged.len() <= n, "the edit lengthened the header");
    let mut out = bytes.to_vec();
    out[8..8 + n].copy_from_slice(format!("{forged:<n$}").as_bytes());
    out
}

#[test]
fn a_checkpoint_for_another_architecture_is_refused_clearly() {
    let flex = Device::flex();
    let model = build("resnet20", &ModelOptions::default());
    let info = CheckpointInfo::cifar10(Normalization {
        mean: [0.5; 3],
        std: [0.25; 3],
    });
    let bytes = Checkpoint { model, info }.to_bytes().unwrap();
    // Rewrite the header to claim resnet32: the tensors no longer fit.
    let bad = with_header(&bytes, |header| {
        header
            .replace(
                "\\\"name\\\":\\\"resnet20\\\"",
                "\\\"name\\\":\\\"resnet32\\\"",
            )
            .replace("\\\"blocks\\\":[3,3,3]", "\\\"blocks\\\":[5,5,5]")
    });
    let err = Checkpoint::from_bytes(&bad, &flex).unwrap_err().to_string();
    assert!(err.contains("do not fit `resnet32`"), "{err}");

    // A network of a kind this build does not know (a newer trainer's, say) is named as such.
    let alien = with_header(&bytes, |header| {
        header.replace("\\\"kind\\\":\\\"resnet\\\"", "\\\"kind\\\":\\\"vit\\\"")
    });
    let err = Checkpoint::from_bytes(&alien, &flex)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown network") && err.contains("`vit`"),
        "{err}"
    );

    let err = Checkpoint::from_bytes(b"\x00\x01garbage", &flex)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a SafeTensors file"), "{err}");
}

#[test]
fn every_registered_network_is_of_a_known_kind() {
    for (name, _) in MODELS {
        let config = ModelConfig::from_name(name, &ModelOptions::default()).unwrap();
        let json = serde_json::to_value(&config).unwrap();
        let kind = json["net"]["kind"].as_str().unwrap();
        assert!(
            model::registry::NetConfig::KINDS.contains(&kind),
            "{name}: kind `{kind}`"
        );
    }
}

const GRAD_CAM: model::cam::CamMethod = model::cam::CamMethod::GradCam;

#[test]
fn grad_cam_explains_a_class_at_the_default_layer() {
    let device = Device::flex();
    let m = build("basic-cnn", &ModelOptions::default());
    let image = images(1, &device);
    let predicted = model::cam::explain(&m, image.clone(), GRAD_CAM, None, None).unwrap();
    assert_eq!(predicted.layer, "conv3");
    assert_eq!(predicted.heat.len(), 32 * 32);
    assert!(predicted.heat.iter().all(|v| (0.0..=1.0).contains(v)));
    let top = predicted
        .probabilities
        .iter()
        .cloned()
        .fold(f32::MIN, f32::max);
    assert_eq!(
        predicted.probabilities[predicted.class], top,
        "default class is the predicted one"
    );
    // Another class weights the channels differently, so its map differs.
    let other = (predicted.class + 5) % 10;
    let cam = model::cam::explain(&m, image.clone(), GRAD_CAM, Some(other), None).unwrap();
    assert_eq!(cam.class, other);
    assert_ne!(cam.heat, predicted.heat);
    let early = model::cam::explain(&m, image.clone(), GRAD_CAM, None, Some("conv1")).unwrap();
    assert_eq!(early.layer, "conv1");
    assert!(model::cam::explain(&m, image.clone(), GRAD_CAM, Some(10), None).is_err());
    let mlp = build("mlp", &ModelOptions::default());
    let err = model::cam::explain(&mlp, image, GRAD_CAM, None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no convolutional layer"), "{err}");
}
