//! Lookahead with an exponential moving average, as airbench94 trains: every `every` steps an
//! average of every float tensor of the network (weights and batch-norm statistics) moves
//! towards the network's values and is copied back into the network; at the end of each epoch
//! the network is set to the average. The average's decay grows over the run,
//! `0.95^every · (step / steps)³`: the network moves freely early and is averaged strongly at
//! the end.
//!
//! Because the network equals the average at every epoch's end, a resumed run starts the
//! average from the network it loads and continues exactly.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::Tensor;
use model::Model;
use model::replace_value;

/// Per-step decay base of the average (airbench94's).
const DECAY_BASE: f64 = 0.95;
/// Power of the run's progress in the decay (airbench94's).
const DECAY_POWER: i32 = 3;

/// The average, by parameter.
#[derive(Default)]
pub struct Lookahead {
    average: HashMap<ParamId, Tensor<1>>,
}

impl Lookahead {
    /// An average that starts as `model`.
    pub fn new(model: Model) -> (Self, Model) {
        let mut lookahead = Self::default();
        let model = lookahead.blend(model, 0.0);
        (lookahead, model)
    }

    /// The decay after global step `step` of `steps`, with an update every `every` steps.
    pub fn decay(every: usize, step: usize, steps: usize) -> f64 {
        DECAY_BASE.powi(every as i32) * (step as f64 / steps.max(1) as f64).powi(DECAY_POWER)
    }

    /// Moves the average to `decay · average + (1 − decay) · network` and returns the network
    /// set to it (`decay` 1 sets the network to the average as it is).
    pub fn update(&mut self, model: Model, decay: f64) -> Model {
        self.blend(model, decay)
    }

    fn blend(&mut self, model: Model, decay: f64) -> Model {
        let mut mapper = Blend {
            average: &mut self.average,
            decay,
        };
        model.map(&mut mapper)
    }
}

/// The mapper behind [`Lookahead::update`]; a parameter it has not seen starts the average.
struct Blend<'a> {
    average: &'a mut HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = param.id;
        let decay = self.decay;
        let average = &mut *self.average;
        replace_value(param, |tensor| {
            let shape = tensor.shape();
            let current = tensor.detach().flatten::<1>(0, D - 1);
            let blended = match average.remove(&id) {
                Some(old) if decay >= 1.0 => old,
                Some(old) => old * decay + current * (1.0 - decay),
                None => current,
            };
            average.insert(id, blended.clone());
            blended.reshape(shape)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::ModuleVisitor;
    use burn::tensor::Device;

    /// Every float tensor of `model`, flattened, in visiting order.
    fn values(model: &Model) -> Vec<Vec<f32>> {
        struct Collect(Vec<Vec<f32>>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(
                    param
                        .val()
                        .into_data()
                        .convert::<f32>()
                        .try_to_vec::<f32>()
                        .unwrap(),
                );
            }
        }
        let mut collect = Collect(Vec::new());
        model.visit(&mut collect);
        collect.0
    }

    fn net(seed: u64, device: &Device) -> Model {
        device.seed(seed);
        model::ModelConfig::from_name("tiny-cnn", &Default::default())
            .unwrap()
            .init(device)
            .unwrap()
    }

    /// Adds a constant to every float tensor, keeping the parameters' ids.
    struct Shift(f32);

    impl ModuleMapper for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let by = self.0;
            param.map(|t| t + by)
        }
    }

    #[test]
    fn the_average_blends_and_is_copied_back() {
        let device = Device::flex().autodiff();
        let a = net(1, &device);
        let va = values(&a);
        let (mut lookahead, started) = Lookahead::new(a);
        assert_eq!(values(&started), va, "it starts as the network");
        // The network moved by +1 everywhere: the average moves 3/4 of the way.
        let blended = lookahead.update(started.map(&mut Shift(1.0)), 0.25);
        for (x, z) in va.iter().flatten().zip(values(&blended).iter().flatten()) {
            assert!((z - (x + 0.75)).abs() < 1e-5, "{z} vs {x} + 0.75");
        }
        // Decay 1 keeps the average and sets the network back to it.
        let before = values(&blended);
        let reset = lookahead.update(blended.map(&mut Shift(10.0)), 1.0);
        assert_eq!(values(&reset), before);
    }

    #[test]
    fn the_decay_grows_with_the_run() {
        assert_eq!(Lookahead::decay(5, 0, 100), 0.0);
        assert!((Lookahead::decay(5, 100, 100) - 0.95f64.powi(5)).abs() < 1e-12);
        assert!((Lookahead::decay(5, 50, 100) - 0.95f64.powi(5) / 8.0).abs() < 1e-12);
    }
}
