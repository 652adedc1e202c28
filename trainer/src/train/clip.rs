//! Gradient clipping by the global L2 norm over every parameter (Burn's own clipping works
//! per tensor).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// Scales all gradients by `max_norm / norm` when their global norm exceeds `max_norm`;
/// returns the gradients and the norm before clipping.
pub fn clip_global_norm<M: Module>(
    model: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.powi_scalar(2).sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    struct Scale {
        grads: GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g * self.factor);
            }
        }
    }

    let mut sum = SumSquares {
        grads: &grads,
        total: None,
    };
    model.visit(&mut sum);
    let norm = sum
        .total
        .map_or(0.0, |t| (t.into_scalar::<f32>() as f64).sqrt());
    if norm <= max_norm || norm == 0.0 {
        return (grads, norm);
    }
    let mut scale = Scale {
        grads,
        factor: max_norm / norm,
    };
    model.visit(&mut scale);
    (scale.grads, norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn clips_to_the_global_norm_across_parameters() {
        let device = Device::flex().autodiff();
        let layer = LinearConfig::new(2, 1).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![3f32, 4.0], [1, 2]), &device);
        // d(out)/dW = x = (3, 4), d(out)/db = 1: global norm √26.
        let grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
        let (grads, norm) = clip_global_norm(&layer, grads, 1.0);
        assert!((norm - 26f64.sqrt()).abs() < 1e-5);
        let w = grads
            .get::<2>(layer.weight.id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = grads
            .get::<1>(layer.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let clipped: f32 = w.iter().chain(&b).map(|v| v * v).sum::<f32>().sqrt();
        assert!((clipped - 1.0).abs() < 1e-5, "{clipped}");
        assert!((w[0] / w[1] - 0.75).abs() < 1e-5, "direction kept");
        let (_, norm) = clip_global_norm(&layer, grads, 10.0);
        assert!((norm - 1.0).abs() < 1e-5, "below the limit nothing changes");
    }
}
