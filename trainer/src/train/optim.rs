//! Optimizers: SGD (momentum, Nesterov), Adam, AdamW, RMSprop, seed 000's custom optimizer,
//! and a second optimizer with its own learning rate for the classifier layers.

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdamConfig, AdamWConfig, LearningRate, ModuleOptimizer, Optimizer, RecordState, RmsPropConfig,
    SgdConfig, StateSink, StateSource,
};
use burn::store::burn_pack::Scalar;
use burn::tensor::{Device, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// An optimizer family.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent; PyTorch-style momentum (no dampening), optional Nesterov.
    Sgd,
    /// Adam (β = 0.9, 0.999; ε = 1e-8), weight decay as L2 on the gradient.
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    Adamw,
    /// RMSprop (α = 0.99, ε = 1e-8) with momentum.
    Rmsprop,
    /// Seed 000's custom optimizer: Adam moments, then momentum (optionally Nesterov) on the
    /// Adam step, weight decay as L2 on the gradient.
    Custom,
}

/// The hyperparameters every optimizer family draws from.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerSpec {
    /// Family.
    pub kind: OptimizerKind,
    /// Momentum factor (SGD, RMSprop, custom).
    pub momentum: f64,
    /// Nesterov momentum (SGD, custom).
    pub nesterov: bool,
    /// Weight decay.
    pub weight_decay: f64,
}

/// Seed 000's optimizer. With `g` the gradient plus `weight_decay · θ`:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`, `u = m̂ / (√v̂ + ε)` (bias-corrected),
/// `b ← μb + u`, and `θ ← θ − lr · (u + μb)` with Nesterov or `θ − lr · b` without.
/// With `μ = 0` it is Adam.
#[derive(Clone, Debug)]
pub struct SeedOptimizer {
    beta_1: f64,
    beta_2: f64,
    epsilon: f64,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
}

/// Per-parameter state of [`SeedOptimizer`].
#[derive(Clone)]
pub struct SeedOptimizerState<const D: usize> {
    m: Tensor<D>,
    v: Tensor<D>,
    buffer: Tensor<D>,
    step: usize,
}

// Written out because burn's `#[derive(RecordState)]` only works inside burn-optim.
impl<const D: usize> RecordState for SeedOptimizerState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "m", self.m.to_data());
        out.push_tensor(prefix, "v", self.v.to_data());
        out.push_tensor(prefix, "buffer", self.buffer.to_data());
        out.push_scalar(prefix, "step", Scalar::UInt(self.step as u64));
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        let mut tensor = |leaf| {
            src.take_tensor(prefix, leaf)
                .map(|d| Tensor::from_data(d, device))
        };
        let (m, v, buffer) = (tensor("m")?, tensor("v")?, tensor("buffer")?);
        let step = match src.take_scalar(prefix, "step")? {
            Scalar::UInt(s) => s as usize,
            _ => return None,
        };
        Some(Self { m, v, buffer, step })
    }
}

impl Optimizer for SeedOptimizer {
    type State<const D: usize> = SeedOptimizerState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let grad = if self.weight_decay > 0.0 {
            grad + tensor.clone() * self.weight_decay
        } else {
            grad
        };
        let (m, v, buffer, step) = match state {
            Some(s) => (s.m, s.v, s.buffer, s.step + 1),
            None => (grad.zeros_like(), grad.zeros_like(), grad.zeros_like(), 1),
        };
        let m = m * self.beta_1 + grad.clone() * (1.0 - self.beta_1);
        let v = v * self.beta_2 + grad.powi_scalar(2) * (1.0 - self.beta_2);
        let m_hat = m.clone() / (1.0 - self.beta_1.powi(step as i32));
        let v_hat = v.clone() / (1.0 - self.beta_2.powi(step as i32));
        let update = m_hat / (v_hat.sqrt() + self.epsilon);
        let buffer = buffer * self.momentum + update.clone();
        let direction = if self.nesterov {
            update + buffer.clone() * self.momentum
        } else {
            buffer.clone()
        };
        let tensor = tensor - direction * lr;
        (tensor, Some(SeedOptimizerState { m, v, buffer, step }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        SeedOptimizerState {
            m: state.m.to_device(device),
            v: state.v.to_device(device),
            buffer: state.buffer.to_device(device),
            step: state.step,
        }
    }
}

/// An optimizer whose learning rate is the scheduled one times `factor` (the classifier's
/// own rate relative to the base rate).
#[derive(Clone)]
struct Scaled<O> {
    inner: O,
    factor: f64,
}

impl<O: Optimizer> Optimizer for Scaled<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        self.inner.step(lr * self.factor, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// Adds `spec`'s optimizer to `base` (or starts one), scaled by `factor`, for `group`.
fn attach(
    base: Option<ModuleOptimizer>,
    spec: &OptimizerSpec,
    factor: f64,
    group: ParamGroup,
) -> ModuleOptimizer {
    let decay = (spec.weight_decay > 0.0).then(|| WeightDecayConfig::new(spec.weight_decay as f32));
    macro_rules! put {
        ($opt:expr) => {{
            let scaled = Scaled {
                inner: $opt,
                factor,
            };
            match base {
                None => ModuleOptimizer::from(scaled),
                Some(base) => base.with_group(group, scaled, None),
            }
        }};
    }
    match spec.kind {
        OptimizerKind::Sgd => put!(
            SgdConfig::new()
                .with_momentum((spec.momentum > 0.0).then_some(MomentumConfig {
                    momentum: spec.momentum,
                    dampening: 0.0,
                    nesterov: spec.nesterov,
                }))
                .with_weight_decay(decay)
                .build()
        ),
        OptimizerKind::Adam => put!(
            AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .build()
        ),
        OptimizerKind::Adamw => put!(
            AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(spec.weight_decay as f32)
                .build()
        ),
        OptimizerKind::Rmsprop => put!(
            RmsPropConfig::new()
                .with_momentum(spec.momentum as f32)
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .build()
        ),
        OptimizerKind::Custom => put!(SeedOptimizer {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            momentum: spec.momentum,
            nesterov: spec.nesterov,
            weight_decay: spec.weight_decay,
        }),
    }
}

/// The optimizer for a whole model: `main` everywhere, or `classifier` (with its learning
/// rate `classifier_factor` × the scheduled rate) on the fully connected layers; the
/// batch-norm shifts (β) learn `norm_bias_scale` times faster than the rest of the network,
/// with their weight decay divided by as much (airbench's bias scaler; 1 leaves them be).
pub fn build<M: Module>(
    model: &M,
    main: &OptimizerSpec,
    classifier: Option<(&OptimizerSpec, f64)>,
    norm_bias_scale: f64,
) -> ModuleOptimizer {
    let mut optimizer = attach(None, main, 1.0, ParamGroup::all());
    if norm_bias_scale != 1.0 {
        let spec = OptimizerSpec {
            weight_decay: main.weight_decay / norm_bias_scale,
            ..main.clone()
        };
        // A field is entered with its name and the type of the struct that holds it.
        let ids = param_ids(model, |path| {
            matches!(path.last(), Some(("beta", "Struct:BatchNorm")))
        });
        optimizer = attach(
            Some(optimizer),
            &spec,
            norm_bias_scale,
            ParamGroup::from_ids(ids),
        );
    }
    match classifier {
        None => optimizer,
        Some((spec, factor)) => attach(
            Some(optimizer),
            spec,
            factor,
            ParamGroup::from_ids(linear_param_ids(model)),
        ),
    }
}

/// Ids of the parameters that belong to fully connected (`Linear`) layers.
pub fn linear_param_ids<M: Module>(model: &M) -> Vec<ParamId> {
    param_ids(model, |path| {
        path.iter()
            .any(|(_, container)| *container == "Struct:Linear")
    })
}

/// Ids of the float parameters whose path satisfies `keep`: from the model down to the
/// parameter, each field's name with the type of the struct (or enum, …) that holds it.
fn param_ids<M: Module>(model: &M, keep: impl Fn(&[(&str, &str)]) -> bool) -> Vec<ParamId> {
    struct Collect<F> {
        path: Vec<(String, String)>,
        keep: F,
        ids: Vec<ParamId>,
    }
    impl<F: Fn(&[(&str, &str)]) -> bool> ModuleVisitor for Collect<F> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path
                .push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let path: Vec<(&str, &str)> = self
                .path
                .iter()
                .map(|(n, c)| (n.as_str(), c.as_str()))
                .collect();
            if (self.keep)(&path) {
                self.ids.push(param.id);
            }
        }
    }
    let mut collect = Collect {
        path: Vec::new(),
        keep,
        ids: Vec::new(),
    };
    model.visit(&mut collect);
    collect.ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;

    /// Minimises f(θ) = ½‖θ‖² from θ = [1, −2] for three steps; its gradient is θ itself.
    fn trajectory(spec: &OptimizerSpec, lr: f64) -> Vec<f32> {
        let device = Device::flex().autodiff();
        let mut layer = burn::nn::LinearConfig::new(2, 1)
            .with_bias(false)
            .init(&device);
        layer.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1f32, -2.0], [2, 1]),
            &device,
        ));
        let mut optimizer = build(&layer, spec, None, 1.0);
        for _ in 0..3 {
            let loss = layer.weight.val().powi_scalar(2).sum() * 0.5;
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optimizer.step(lr, layer, grads);
        }
        layer.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    fn spec(
        kind: OptimizerKind,
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    ) -> OptimizerSpec {
        OptimizerSpec {
            kind,
            momentum,
            nesterov,
            weight_decay,
        }
    }

    fn assert_close(got: &[f32], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    /// Hand computation of SGD with momentum μ (no dampening) and optional Nesterov.
    fn sgd_by_hand(theta0: f64, lr: f64, mu: f64, nesterov: bool, wd: f64) -> f64 {
        let (mut theta, mut b) = (theta0, 0.0);
        for step in 0..3 {
            let g = theta + wd * theta;
            b = if step == 0 { g } else { mu * b + g };
            theta -= lr * if nesterov { g + mu * b } else { b };
        }
        theta
    }

    #[test]
    fn sgd_momentum_nesterov_and_weight_decay_match_hand_computation() {
        for (mu, nesterov, wd) in [
            (0.0, false, 0.0),
            (0.9, false, 0.0),
            (0.9, true, 0.0),
            (0.9, true, 0.1),
        ] {
            let got = trajectory(&spec(OptimizerKind::Sgd, mu, nesterov, wd), 0.1);
            let want = [
                sgd_by_hand(1.0, 0.1, mu, nesterov, wd),
                sgd_by_hand(-2.0, 0.1, mu, nesterov, wd),
            ];
            assert_close(&got, &want);
        }
    }

    /// Seed 000's optimizer by hand (Adam when μ = 0).
    fn custom_by_hand(theta0: f64, lr: f64, mu: f64, nesterov: bool) -> f64 {
        let (mut theta, mut m, mut v, mut b) = (theta0, 0.0, 0.0, 0.0);
        for t in 1..=3 {
            let g = theta;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            let u = (m / (1.0 - 0.9f64.powi(t))) / ((v / (1.0 - 0.999f64.powi(t))).sqrt() + 1e-8);
            b = mu * b + u;
            theta -= lr * if nesterov { u + mu * b } else { b };
        }
        theta
    }

    #[test]
    fn adam_adamw_rmsprop_and_the_custom_optimizer_match_hand_computation() {
        let adam = trajectory(&spec(OptimizerKind::Adam, 0.0, false, 0.0), 0.1);
        assert_close(
            &adam,
            &[
                custom_by_hand(1.0, 0.1, 0.0, false),
                custom_by_hand(-2.0, 0.1, 0.0, false),
            ],
        );
        let custom = trajectory(&spec(OptimizerKind::Custom, 0.0, false, 0.0), 0.1);
        assert_close(&custom, &adam.iter().map(|v| *v as f64).collect::<Vec<_>>());
        for nesterov in [false, true] {
            let got = trajectory(&spec(OptimizerKind::Custom, 0.5, nesterov, 0.0), 0.1);
            assert_close(
                &got,
                &[
                    custom_by_hand(1.0, 0.1, 0.5, nesterov),
                    custom_by_hand(-2.0, 0.1, 0.5, nesterov),
                ],
            );
        }
        // AdamW: θ ← θ − lr·(adam step) − lr·λ·θ (decoupled), here checked on its first step.
        let adamw = trajectory(&spec(OptimizerKind::Adamw, 0.0, false, 0.5), 0.1);
        assert!(
            adamw[0] < adam[0] && adamw[1] > adam[1],
            "decay pulls towards 0: {adamw:?} {adam:?}"
        );
        // RMSprop without momentum: v ← 0.99v + 0.01g², θ ← θ − lr·g/(√v + ε).
        let rms = trajectory(&spec(OptimizerKind::Rmsprop, 0.0, false, 0.0), 0.01);
        let by_hand = |theta0: f64| {
            let (mut theta, mut v) = (theta0, 0.0);
            for _ in 0..3 {
                v = 0.99 * v + 0.01 * theta * theta;
                theta -= 0.01 * theta / (v.sqrt() + 1e-8);
            }
            theta
        };
        assert_close(&rms, &[by_hand(1.0), by_hand(-2.0)]);
    }

    /// Every parameter's values, by id.
    fn values<M: Module>(m: &M) -> std::collections::HashMap<ParamId, Vec<f32>> {
        struct Values(std::collections::HashMap<ParamId, Vec<f32>>);
        impl ModuleVisitor for Values {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let v = param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap();
                self.0.insert(param.id, v);
            }
        }
        let mut values = Values(Default::default());
        m.visit(&mut values);
        values.0
    }

    #[test]
    fn the_classifier_gets_its_own_optimizer_and_rate() {
        let device = Device::flex().autodiff();
        let config =
            model::ModelConfig::from_name("basic-cnn", &model::ModelOptions::default()).unwrap();
        let net = config.init(&device).unwrap();
        let linear = linear_param_ids(&net);
        assert_eq!(linear.len(), 4, "fc1 and fc2, weight and bias");
        let before = values(&net);
        let sgd = spec(OptimizerKind::Sgd, 0.0, false, 0.0);
        // The classifier's rate is 0 × the base rate: only the convolutions move.
        let mut optimizer = build(&net, &sgd, Some((&sgd, 0.0)), 1.0);
        let loss = net
            .forward(Tensor::<4>::ones([2, 3, 32, 32], &device))
            .powi_scalar(2)
            .sum();
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let after = values(&optimizer.step(0.1, net, grads));
        let moved: Vec<bool> = before.keys().map(|id| before[id] != after[id]).collect();
        let moved_linear = linear.iter().filter(|id| before[*id] != after[*id]).count();
        assert_eq!(moved_linear, 0);
        assert_eq!(
            moved.iter().filter(|m| **m).count(),
            6,
            "three convolutions, weight and bias"
        );
    }

    #[test]
    fn batch_norm_shifts_learn_faster_by_the_bias_scale() {
        let device = Device::flex().autodiff();
        let config =
            model::ModelConfig::from_name("tiny-cnn", &model::ModelOptions::default()).unwrap();
        let net = config.init(&device).unwrap();
        let betas = param_ids(&net, |path| {
            matches!(path.last(), Some(("beta", "Struct:BatchNorm")))
        });
        assert_eq!(betas.len(), 2, "tiny-cnn's two batch norms");
        let before = values(&net);
        let step = |scale: f64| {
            device.seed(7); // the same dropout masks in both runs
            let sgd = spec(OptimizerKind::Sgd, 0.0, false, 0.0);
            let mut optimizer = build(&net, &sgd, None, scale);
            let loss = net
                .forward(Tensor::<4>::ones([2, 3, 32, 32], &device))
                .powi_scalar(2)
                .sum();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            values(&optimizer.step(0.01, net.clone(), grads))
        };
        let (plain, scaled) = (step(1.0), step(8.0));
        // Batch norm's running statistics move in the forward pass, not by the optimizer.
        let trained = param_ids(&net, |path| {
            !path
                .last()
                .is_some_and(|(name, _)| name.starts_with("running_"))
        });
        for id in &trained {
            let old = &before[id];
            let moved = |after: &std::collections::HashMap<ParamId, Vec<f32>>| -> Vec<f32> {
                after[id].iter().zip(old).map(|(a, b)| a - b).collect()
            };
            let factor = if betas.contains(id) { 8.0 } else { 1.0 };
            for (p, s) in moved(&plain).iter().zip(moved(&scaled)) {
                assert!(
                    (s - factor * p).abs() <= 1e-4 * (1.0 + p.abs()),
                    "{s} vs {factor} × {p}"
                );
            }
        }
        assert!(
            betas.iter().any(|id| plain[id] != before[id]),
            "the shifts moved"
        );
    }
}
