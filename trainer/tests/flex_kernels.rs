//! The NCHW kernels of the patched Flex backend (`patches/burn-flex`) train like Flex's generic
//! route: 50 steps from the same weights on the same real batches give the same losses to
//! float tolerance, and the same predictions afterwards.
//!
//! The kernel switch is global to the process, so this file is its own test binary with one
//! test.

use std::path::Path;
use std::sync::Arc;

use burn::module::Module;
use burn::optim::{GradientsParams, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{Device, Tensor};
use model::{ModelConfig, ModelOptions, Normalization};
use trainer::data::CifarSet;
use trainer::data::batcher::{BatchPlan, batches};
use trainer::train::loss::{LossKind, Objective};

const STEPS: usize = 50;
const BATCH: usize = 16;

/// Losses of `STEPS` SGD steps (momentum, Nesterov) and the final logits of the first batch.
fn train(name: &str, set: &Arc<CifarSet>, nchw: bool) -> (Vec<f32>, Vec<f32>) {
    burn_flex::set_nchw_kernels(nchw);
    let device = Device::flex();
    device.seed(3);
    let ad = device.clone().autodiff();
    let config = ModelConfig::from_name(name, &ModelOptions::default()).unwrap();
    let record = config.init(&device).unwrap().into_record();
    let mut model = config.init(&ad).unwrap().load_record(record);
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
        }))
        .init();
    let objective = Objective {
        kind: LossKind::CrossEntropy,
        label_smoothing: 0.1,
        focal_alpha: 1.0,
        focal_gamma: 0.0,
        l1: 0.0,
        l2: 0.0,
    };
    let plan = BatchPlan {
        batch_size: BATCH,
        min_last: BATCH,
        normalization: Normalization::measure(&set.pixels),
        augment: None,
    };
    let order: Vec<usize> = (0..STEPS * BATCH).map(|i| i % set.len()).collect();
    let mut losses = Vec::new();
    for batch in batches(set.clone(), order.clone(), plan.clone()) {
        let batch = batch.to_device(&ad);
        let loss = objective.loss(model.forward(batch.images), batch.targets, &model);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.02, model, grads);
    }
    let first = batches(set.clone(), order[..BATCH].to_vec(), plan)
        .recv()
        .unwrap()
        .to_device(&device);
    let logits: Tensor<2> = model.valid().forward(first.images);
    burn_flex::set_nchw_kernels(true);
    (losses, logits.into_data().try_into_vec().unwrap())
}

#[test]
fn nchw_kernels_train_like_the_generic_route() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    let set = Arc::new(CifarSet::train(&sample).unwrap());
    // resnet20: BN, strided 3×3 convolutions, no conv bias; basic-cnn: conv bias, no BN.
    for name in ["resnet20", "basic-cnn"] {
        let (fast, fast_logits) = train(name, &set, true);
        let (plain, plain_logits) = train(name, &set, false);
        assert_eq!(fast.len(), STEPS);
        // Training moved: the loss of the last steps is below that of the first.
        assert!(
            plain[STEPS - 5..].iter().sum::<f32>() < plain[..5].iter().sum::<f32>(),
            "{name}: {plain:?}"
        );
        for (step, (f, p)) in fast.iter().zip(&plain).enumerate() {
            assert!(
                (f - p).abs() <= 2e-3 * p.abs().max(1.0),
                "{name} step {step}: loss {f} with the NCHW kernels, {p} without"
            );
        }
        let scale = plain_logits.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (f, p) in fast_logits.iter().zip(&plain_logits) {
            assert!(
                (f - p).abs() <= 1e-2 * scale.max(1.0),
                "{name}: logit {f} vs {p}"
            );
        }
    }
}
