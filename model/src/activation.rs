//! Activation functions that the seed reports let the user choose.

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Tensor, activation};
use serde::{Deserialize, Serialize};

/// An element-wise activation function, chosen by name (`relu`, `leaky-relu`, `sigmoid`,
/// `tanh`, `swish`, `mish`, `selu`, `gelu`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `max(0.01·x, x)`, PyTorch's default slope.
    #[serde(alias = "leaky_relu")]
    LeakyRelu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// `x · sigmoid(x)` (also called SiLU).
    #[serde(alias = "silu")]
    Swish,
    /// `x · tanh(softplus(x))`.
    Mish,
    /// Scaled exponential linear unit.
    Selu,
    /// Gaussian error linear unit (exact form).
    Gelu,
}

impl Activation {
    /// Every activation, in the order the CLI lists them.
    pub const ALL: [Activation; 8] = [
        Activation::Relu,
        Activation::LeakyRelu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Swish,
        Activation::Mish,
        Activation::Selu,
        Activation::Gelu,
    ];

    /// The name used in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu => "leaky-relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Swish => "swish",
            Activation::Mish => "mish",
            Activation::Selu => "selu",
            Activation::Gelu => "gelu",
        }
    }

    /// Applies the function element-wise.
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Relu => activation::relu(x),
            Activation::LeakyRelu => activation::leaky_relu(x, 0.01),
            Activation::Sigmoid => activation::sigmoid(x),
            Activation::Tanh => activation::tanh(x),
            Activation::Swish => activation::silu(x),
            Activation::Mish => activation::mish(x),
            Activation::Selu => activation::selu(x),
            Activation::Gelu => activation::gelu(x),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        let wanted = if wanted == "silu" {
            "swish".to_string()
        } else {
            wanted
        };
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Activation::ALL.iter().map(|a| a.name()).collect();
                format!(
                    "unknown activation `{s}`; choose one of {}",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn every_activation_round_trips_through_its_name() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>().unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Activation>(&json).unwrap(), a);
        }
        assert_eq!("SiLU".parse::<Activation>().unwrap(), Activation::Swish);
        assert!("softmax".parse::<Activation>().is_err());
    }

    #[test]
    fn activations_compute_their_functions() {
        let device = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::from([-2.0f32, 0.0, 1.5]), &device);
        let get = |a: Activation| a.apply(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(get(Activation::Relu), vec![0.0, 0.0, 1.5]);
        let leaky = get(Activation::LeakyRelu);
        assert!((leaky[0] + 0.02).abs() < 1e-6);
        let sig = get(Activation::Sigmoid);
        assert!((sig[1] - 0.5).abs() < 1e-6);
        let swish = get(Activation::Swish);
        assert!((swish[2] - 1.5 / (1.0 + (-1.5f32).exp())).abs() < 1e-5);
        let selu = get(Activation::Selu);
        assert!((selu[2] - 1.050_700_9 * 1.5).abs() < 1e-5);
        let mish = get(Activation::Mish);
        assert!((mish[2] - 1.5 * (1.0 + 1.5f32.exp()).ln().tanh()).abs() < 1e-5);
    }
}
