//! Lookahead with an exponential moving average, as airbench trains: every `every` steps an
//! average of every float tensor of the network (weights and batch-norm statistics) moves
//! towards the network's values and is copied back into the network. The average's decay
//! grows over the run, `0.95^every · (step / steps)³`: the network moves freely early and is
//! averaged strongly at the end. After the run's last step the network is set to the average
//! (airbench94); with `--lookahead-epoch-end` also after every epoch's last step (the
//! library version of airbench that airbench93 trains with).
//!
//! The average is kept in the order Burn visits the network's float tensors, so it can be
//! saved as a network of its own ([`Lookahead::as_model`]) and read back from one
//! ([`Lookahead::from_model`]) when a run resumes.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use model::Model;
use model::replace_value;

use super::TrainConfig;

/// Per-step decay base of the average (airbench94's).
const DECAY_BASE: f64 = 0.95;
/// Power of the run's progress in the decay (airbench94's).
const DECAY_POWER: i32 = 3;

/// When the average is taken and copied back (from the `[optim]` options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookaheadPlan {
    /// Steps between updates; `None` turns lookahead off.
    pub every: Option<usize>,
    /// The first epoch (1-based) whose steps update the average; its first update starts it.
    pub from: usize,
    /// Also copy the average into the network after every epoch's last step.
    pub at_epoch_end: bool,
}

impl From<&TrainConfig> for LookaheadPlan {
    fn from(config: &TrainConfig) -> Self {
        Self {
            every: config.optim.lookahead_every,
            from: config.optim.lookahead_from,
            at_epoch_end: config.optim.lookahead_epoch_end,
        }
    }
}

/// The average: one flattened tensor per float tensor of the network, in visiting order.
#[derive(Default)]
pub struct Lookahead {
    average: Vec<Tensor<1>>,
}

impl Lookahead {
    /// An average that starts as `model`.
    pub fn new(model: Model) -> (Self, Model) {
        let mut lookahead = Self::default();
        let model = lookahead.blend(model, 0.0);
        (lookahead, model)
    }

    /// The average saved by [`Lookahead::as_model`].
    pub fn from_model(saved: &Model) -> Self {
        struct Collect(Vec<Tensor<1>>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.val().detach().flatten::<1>(0, D - 1));
            }
        }
        let mut collect = Collect(Vec::new());
        saved.visit(&mut collect);
        Self { average: collect.0 }
    }

    /// A copy of `model` holding the average's values, to save.
    pub fn as_model(&self, model: &Model) -> Model {
        model.sync_running_stats();
        struct Fill<'a> {
            average: std::slice::Iter<'a, Tensor<1>>,
        }
        impl ModuleMapper for Fill<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let value = self.average.next().expect("one average per tensor").clone();
                replace_value(param, |old| value.reshape(old.shape()))
            }
        }
        model.clone().map(&mut Fill {
            average: self.average.iter(),
        })
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
        model.sync_running_stats();
        let mut mapper = Blend {
            average: &mut self.average,
            next: 0,
            decay,
        };
        model.map(&mut mapper)
    }
}

/// The mapper behind [`Lookahead::update`]; a tensor it has not seen starts the average.
struct Blend<'a> {
    average: &'a mut Vec<Tensor<1>>,
    next: usize,
    decay: f64,
}

impl ModuleMapper for Blend<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (index, decay) = (self.next, self.decay);
        self.next += 1;
        let average = &mut *self.average;
        replace_value(param, |tensor| {
            let shape = tensor.shape();
            let current = tensor.detach().flatten::<1>(0, D - 1);
            let blended = match average.get(index) {
                Some(old) if decay >= 1.0 => old.clone(),
                Some(old) => old.clone() * decay + current * (1.0 - decay),
                None => current,
            };
            if index < average.len() {
                average[index] = blended.clone();
            } else {
                average.push(blended.clone());
            }
            blended.reshape(shape)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use burn::tensor::Device;

    /// Every float tensor of `model`, flattened, in visiting order.
    pub(crate) fn values(model: &Model) -> Vec<Vec<f32>> {
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
    fn the_average_saved_as_a_network_reads_back_the_same() {
        let device = Device::flex().autodiff();
        let (mut lookahead, started) = Lookahead::new(net(1, &device));
        let moved = lookahead.update(started.map(&mut Shift(2.0)), 0.5);
        let saved = lookahead.as_model(&moved.clone().map(&mut Shift(5.0)));
        assert_eq!(
            values(&saved),
            values(&moved),
            "the average, not the network"
        );
        let mut again = Lookahead::from_model(&saved);
        let a = lookahead.update(moved.clone().map(&mut Shift(1.0)), 0.5);
        let b = again.update(moved.map(&mut Shift(1.0)), 0.5);
        assert_eq!(values(&a), values(&b));
    }

    #[test]
    fn the_decay_grows_with_the_run() {
        assert_eq!(Lookahead::decay(5, 0, 100), 0.0);
        assert!((Lookahead::decay(5, 100, 100) - 0.95f64.powi(5)).abs() < 1e-12);
        assert!((Lookahead::decay(5, 50, 100) - 0.95f64.powi(5) / 8.0).abs() < 1e-12);
    }
}
