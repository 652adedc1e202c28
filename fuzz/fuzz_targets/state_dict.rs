//! `trainer import`: a PyTorch state dict (SafeTensors) mapped onto a network's names; any
//! bytes give a checkpoint that loads, or an error listing what did not fit.
#![no_main]

use std::sync::LazyLock;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use model::{Checkpoint, CheckpointInfo, ModelConfig, ModelOptions, Normalization};

/// An untrained tiny-cnn, the network the state dicts are imported into.
static TEMPLATE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let device = Device::flex();
    let config = ModelConfig::from_name("tiny-cnn", &ModelOptions::default()).unwrap();
    Checkpoint {
        model: config.init(&device).unwrap(),
        info: CheckpointInfo::cifar10(Normalization {
            mean: [0.5; 3],
            std: [0.25; 3],
        }),
    }
    .to_bytes()
    .unwrap()
});

fuzz_target!(|bytes: &[u8]| {
    if let Ok(imported) = model::pytorch::from_state_dict(bytes, &TEMPLATE) {
        Checkpoint::from_bytes(&imported, &Device::flex()).expect("an import loads");
    }
});
