//! The NCHW kernels of the patched Flex backend (`patches/burn-flex`) compute the right
//! gradients: resnet20's first training step on real CIFAR images matches PyTorch's float64
//! gradients of the same network, weights and images (a committed fixture made by
//! `export/gradient_reference.py`), basic-cnn trains 50 steps like Flex's generic route, and
//! the vectorized GELU (airbench's activation) matches Flex's scalar one.
//!
//! The kernel switch is global to the process, so this file is its own test binary and its
//! tests take a lock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, SgdConfig, momentum::MomentumConfig};
use burn::tensor::{Device, Tensor, TensorData};
use model::{ModelConfig, ModelOptions, Normalization};
use serde_json::{Map, Value, json};
use trainer::data::CifarSet;
use trainer::data::batcher::{BatchPlan, batches};
use trainer::train::loss::Objective;

const STEPS: usize = 50;
const BATCH: usize = 16;
/// Seed of the weights the gradient fixture was made from.
const SEED: u64 = 3;

/// The kernel switch is process-wide: one test at a time.
static SWITCH: Mutex<()> = Mutex::new(());

fn sample() -> Arc<CifarSet> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/sample");
    Arc::new(CifarSet::train(&dir).unwrap())
}

fn fixture(model: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{model}_step0_pytorch.json"))
}

/// The models the gradient fixtures cover, without dropout so that a training step is
/// deterministic: resnet20 (convolutions without bias, batch norm, strided shortcuts) and
/// basic-cnn (convolutions with bias, max pooling, a hidden linear layer).
const GRADIENT_MODELS: [&str; 2] = ["resnet20", "basic-cnn"];

fn options(model: &str) -> ModelOptions {
    ModelOptions {
        dropout: (model == "basic-cnn").then_some(0.0),
        ..ModelOptions::default()
    }
}

fn plan(set: &CifarSet) -> BatchPlan {
    BatchPlan {
        batch_size: BATCH,
        min_last: BATCH,
        normalization: Normalization::measure(&set.pixels),
        augment: None,
        flip_phase: None,
    }
}

/// The fixed probe direction the fixture projects every gradient on: element `j` is
/// `frac(j · 2654435761 / 2³²) − 0.5`, the same in `export/gradient_reference.py`.
fn probe(j: usize) -> f64 {
    ((j as u64).wrapping_mul(2_654_435_761) % (1 << 32)) as f64 / 4_294_967_296.0 - 0.5
}

/// A parameter's path, shape, value and gradient.
type ParamGrad = (String, Vec<usize>, Vec<f32>, Vec<f32>);

/// Each parameter's path, shape, value and gradient.
struct Collect<'a> {
    grads: &'a GradientsParams,
    path: Vec<String>,
    params: Vec<ParamGrad>,
}

impl ModuleVisitor for Collect<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // Batch norm's running statistics are not trained: no gradient.
        let Some(grad) = self.grads.get::<D>(param.id) else {
            return;
        };
        let value = param.val();
        self.params.push((
            self.path.join("."),
            value.dims().to_vec(),
            value.into_data().try_into_vec().unwrap(),
            grad.into_data().try_into_vec().unwrap(),
        ));
    }
}

/// `model`'s loss and the gradient of every parameter and of the input for one batch of the
/// sample, from weights seeded with `SEED`; also the batch's images and targets.
fn first_step(
    model: &str,
    set: &Arc<CifarSet>,
) -> (f32, Vec<ParamGrad>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let device = Device::flex();
    device.seed(SEED);
    let ad = device.clone().autodiff();
    let config = ModelConfig::from_name(model, &options(model)).unwrap();
    let record = config.init(&device).unwrap().into_record();
    let model = config.init(&ad).unwrap().load_record(record);
    let batch = batches(set.clone(), (0..BATCH).collect(), plan(set))
        .recv()
        .unwrap()
        .to_device(&ad);
    let images = batch.images.clone().require_grad();
    let loss = Objective::cross_entropy().loss(
        model.forward(images.clone()),
        batch.targets.clone(),
        &model,
    );
    let grads = loss.backward();
    let input_grad: Tensor<4> = images.grad(&grads).unwrap();
    let grads = GradientsParams::from_grads(grads, &model);
    let mut collect = Collect {
        grads: &grads,
        path: Vec::new(),
        params: Vec::new(),
    };
    model.visit(&mut collect);
    (
        loss.into_scalar::<f32>(),
        collect.params,
        input_grad.into_data().try_into_vec().unwrap(),
        batch.images.into_data().try_into_vec().unwrap(),
        batch.targets.into_data().try_into_vec().unwrap(),
    )
}

/// `(‖g‖, g · probe)` in f64.
fn summary(g: &[f32]) -> (f64, f64) {
    let norm = g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let dot = g
        .iter()
        .enumerate()
        .map(|(j, &v)| v as f64 * probe(j))
        .sum();
    (norm, dot)
}

#[test]
fn nchw_gradients_match_pytorch() {
    let _lock = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    burn_flex::set_nchw_kernels(true);
    let set = sample();
    for model in GRADIENT_MODELS {
        check_gradients(model, &set);
    }
}

/// Compares `model`'s first training step with its fixture.
fn check_gradients(model: &str, set: &Arc<CifarSet>) {
    let (loss, params, input_grad, images, targets) = first_step(model, set);
    if let Some(dir) = std::env::var_os("FLEX_GRADIENT_DUMP") {
        // The inputs of export/gradient_reference.py, which writes the fixture.
        let dump_params: Map<String, Value> = params
            .iter()
            .map(|(name, shape, value, _)| (name.clone(), json!({"shape": shape, "values": value})))
            .collect();
        let dump = json!({
            "model": model,
            "dropout": options(model).dropout,
            "params": dump_params,
            "images": images,
            "targets": targets,
        });
        let path = Path::new(&dir).join(format!("{model}.json"));
        std::fs::write(path, dump.to_string()).unwrap();
    }
    let text = std::fs::read_to_string(fixture(model)).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let ref_loss = reference["loss"].as_f64().unwrap();
    assert!(
        (loss as f64 - ref_loss).abs() < 1e-5 * ref_loss,
        "{model}: loss {loss} vs PyTorch {ref_loss}: not the fixture's weights or images (regenerate \
         it with export/gradient_reference.py)"
    );
    let mut checked = 0;
    let mut check = |name: &str, grad: &[f32]| {
        let expected = &reference["grads"][name];
        let (norm, dot) = summary(grad);
        let (ref_norm, ref_dot) = (
            expected["norm"].as_f64().unwrap(),
            expected["probe"].as_f64().unwrap(),
        );
        // 1e-4 of the gradient's norm: float32 rounding is ~1e-6 here; Flex's generic route
        // is 1e-2 off in resnet20's first stage.
        let tolerance = 1e-4 * ref_norm;
        assert!(
            (norm - ref_norm).abs() <= tolerance && (dot - ref_dot).abs() <= tolerance,
            "{model} {name}: |g| {norm} vs PyTorch {ref_norm}, g·probe {dot} vs {ref_dot}"
        );
        checked += 1;
    };
    check("input", &input_grad);
    for (name, _, _, grad) in &params {
        check(name, grad);
    }
    assert_eq!(checked, reference["grads"].as_object().unwrap().len());
}

/// Scales every parameter by `1 + self.0`.
struct Nudge(f32);

impl ModuleMapper for Nudge {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let scale = 1.0 + self.0;
        param.map(|value| value.mul_scalar(scale))
    }
}

/// Losses of `STEPS` SGD steps (momentum, Nesterov) and the final logits of the first batch.
fn train(name: &str, set: &Arc<CifarSet>, nchw: bool, nudge: f32) -> (Vec<f32>, Vec<f32>) {
    burn_flex::set_nchw_kernels(nchw);
    let device = Device::flex();
    device.seed(SEED);
    let ad = device.clone().autodiff();
    let config = ModelConfig::from_name(name, &ModelOptions::default()).unwrap();
    let record = config
        .init(&device)
        .unwrap()
        .map(&mut Nudge(nudge))
        .into_record();
    let mut model = config.init(&ad).unwrap().load_record(record);
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: true,
        }))
        .init();
    let objective = Objective::cross_entropy();
    let order: Vec<usize> = (0..STEPS * BATCH).map(|i| i % set.len()).collect();
    let mut losses = Vec::new();
    for batch in batches(set.clone(), order.clone(), plan(set)) {
        let batch = batch.to_device(&ad);
        let loss = objective.loss(model.forward(batch.images), batch.targets, &model);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(0.02, model, grads);
    }
    let first = batches(set.clone(), order[..BATCH].to_vec(), plan(set))
        .recv()
        .unwrap()
        .to_device(&device);
    let logits: Tensor<2> = model.valid().forward(first.images);
    burn_flex::set_nchw_kernels(true);
    (losses, logits.into_data().try_into_vec().unwrap())
}

#[test]
fn nchw_kernels_train_basic_cnn_like_the_generic_route() {
    let _lock = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let set = sample();
    // basic-cnn: convolutions with bias and padding, max pooling, dropout; no batch norm.
    // Not resnet20: Flex's generic route gets its gradients wrong (see the test above).
    let (fast, fast_logits) = train("basic-cnn", &set, true, 0.0);
    let (plain, plain_logits) = train("basic-cnn", &set, false, 0.0);
    // The same generic route from weights nudged by one part in ten million (about one
    // ulp): how far float rounding alone moves this training, as max pooling's and ReLU's
    // choices amplify it.
    let (nudged, nudged_logits) = train("basic-cnn", &set, false, 1e-7);
    assert_eq!(fast.len(), STEPS);
    assert!(
        plain[STEPS - 5..].iter().sum::<f32>() < plain[..5].iter().sum::<f32>(),
        "training did not move: {plain:?}"
    );
    // Before rounding differences have grown: the same losses to float precision.
    for step in 0..5 {
        let (f, p) = (fast[step], plain[step]);
        assert!((f - p).abs() <= 1e-5 * p, "step {step}: loss {f} vs {p}");
    }
    // Over 50 steps: no further apart than the nudge drives the generic route.
    let gap = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let (loss_gap, loss_noise) = (gap(&fast, &plain), gap(&nudged, &plain));
    let (logit_gap, logit_noise) = (
        gap(&fast_logits, &plain_logits),
        gap(&nudged_logits, &plain_logits),
    );
    eprintln!(
        "loss gap {loss_gap} (nudge {loss_noise}), logit gap {logit_gap} (nudge {logit_noise})"
    );
    assert!(
        loss_gap <= 4.0 * loss_noise.max(1e-5),
        "losses {fast:?} vs {plain:?}"
    );
    assert!(
        logit_gap <= 4.0 * logit_noise.max(1e-4),
        "logits {fast_logits:?} vs {plain_logits:?}"
    );
}

/// `gelu(x)` and its input gradient for `x` of `len` values spread over [-10, 10], with the
/// kernels on or off.
fn gelu_and_gradient(len: usize, nchw: bool) -> (Vec<f32>, Vec<f32>) {
    burn_flex::set_nchw_kernels(nchw);
    let device = Device::flex().autodiff();
    let values: Vec<f32> = (0..len)
        .map(|i| ((i * 37) % 2001) as f32 / 100.0 - 10.0)
        .collect();
    let x = Tensor::<1>::from_data(TensorData::new(values.clone(), [len]), &device).require_grad();
    let y = burn::tensor::activation::gelu(x.clone());
    // Weights on the output so that the gradient differs from element to element.
    let weights = Tensor::<1>::from_data(TensorData::new(values, [len]), &device);
    let grads = (y.clone() * weights).sum().backward();
    let dx = x.grad(&grads).expect("x requires its gradient");
    burn_flex::set_nchw_kernels(true);
    (
        y.into_data().try_into_vec().unwrap(),
        dx.into_data().try_into_vec().unwrap(),
    )
}

#[test]
fn vectorized_gelu_matches_flex_scalar_gelu() {
    let _lock = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    // Above the size from which the kernels take element-wise operations (256 Ki).
    let len = 300_000;
    let (y, dx) = gelu_and_gradient(len, true);
    let (want_y, want_dx) = gelu_and_gradient(len, false);
    for (got, want) in [(&y, &want_y), (&dx, &want_dx)] {
        assert_eq!(got.len(), len);
        for (&a, &b) in got.iter().zip(want) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
    // The two routes differ in their last bits somewhere, so the kernels' route did run.
    assert_ne!(y, want_y, "the kernels' GELU was not taken");
}
