//! Building an ONNX graph node by node, and the graph of each of Burn's layers that the zoo
//! uses (in evaluation mode: batch norm with its running statistics, dropout left out).

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::nn::{BatchNorm, Linear, PaddingConfig2d};
use burn::tensor::Tensor;

use super::proto::{AttributeProto, AttributeType, FLOAT, NodeProto, TensorProto};
use crate::{Activation, ModelError};

/// The nodes and constant tensors of a graph being built. Values are named by strings; each
/// node's output gets a fresh name.
#[derive(Default)]
pub struct Graph {
    /// The nodes, in the order they compute.
    pub(crate) nodes: Vec<NodeProto>,
    /// The weights and constants the nodes read.
    pub(crate) initializers: Vec<TensorProto>,
}

/// Something in the zoo that can write its evaluation-mode computation into a [`Graph`].
pub(crate) trait Emit {
    /// Adds the nodes that compute `self` on value `x` and returns the output's name.
    /// Weights are named `scope.<field>`, the names the PyTorch export gives them.
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError>;
}

/// `scope.field`, or `field` at the top level.
pub(crate) fn join(scope: &str, field: &str) -> String {
    if scope.is_empty() {
        field.to_string()
    } else {
        format!("{scope}.{field}")
    }
}

impl Graph {
    /// Adds a node and returns the name of its (single) output.
    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let output = format!("{}_{}", op.to_ascii_lowercase(), self.nodes.len());
        self.named_node(op, inputs, attribute, &output)
    }

    /// Adds a node whose output is called `output`, and returns that name.
    pub(crate) fn named_node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        output: &str,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: format!("{}_{}", op.to_ascii_lowercase(), self.nodes.len()),
            op_type: op.to_string(),
            attribute,
        });
        output.to_string()
    }

    /// Adds a constant float tensor and returns its name.
    pub(crate) fn constant(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            name: name.to_string(),
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        name.to_string()
    }

    /// Adds a tensor of the network as a constant named `name`.
    fn weight<const D: usize>(
        &mut self,
        name: &str,
        tensor: Tensor<D>,
    ) -> Result<String, ModelError> {
        let dims = tensor.shape().dims::<D>();
        let values = tensor
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| ModelError::Checkpoint(format!("tensor `{name}`: {e:?}")))?;
        Ok(self.constant(name, &dims, &values))
    }

    /// An optional bias parameter as a constant.
    fn bias(
        &mut self,
        name: &str,
        bias: &Option<Param<Tensor<1>>>,
    ) -> Result<Option<String>, ModelError> {
        bias.as_ref()
            .map(|b| self.weight(name, b.val()))
            .transpose()
    }

    /// `Flatten` to `[batch, rest]`.
    pub(crate) fn flatten(&mut self, x: &str) -> String {
        self.node("Flatten", &[x], vec![int("axis", 1)])
    }

    /// Element-wise sum.
    pub(crate) fn add(&mut self, a: &str, b: &str) -> String {
        self.node("Add", &[a, b], Vec::new())
    }

    /// `max(0, x)`.
    pub(crate) fn relu(&mut self, x: &str) -> String {
        self.node("Relu", &[x], Vec::new())
    }

    /// Average over the whole feature map, keeping `[batch, c, 1, 1]`.
    pub(crate) fn global_average_pool(&mut self, x: &str) -> String {
        self.node("GlobalAveragePool", &[x], Vec::new())
    }

    /// `x · factor`.
    pub(crate) fn scale(&mut self, x: &str, name: &str, factor: f32) -> String {
        let factor = self.constant(name, &[], &[factor]);
        self.node("Mul", &[x, &factor], Vec::new())
    }

    /// The activation function on `x`, from ONNX opset 17 operators (GELU and Mish, which
    /// arrived in later opsets, spelled out from their definitions).
    pub(crate) fn activation(&mut self, activation: Activation, x: &str) -> String {
        match activation {
            Activation::Relu => self.relu(x),
            Activation::LeakyRelu => self.node("LeakyRelu", &[x], vec![float("alpha", 0.01)]),
            Activation::Sigmoid => self.node("Sigmoid", &[x], Vec::new()),
            Activation::Tanh => self.node("Tanh", &[x], Vec::new()),
            Activation::Selu => self.node("Selu", &[x], Vec::new()),
            Activation::Swish => {
                let s = self.node("Sigmoid", &[x], Vec::new());
                self.node("Mul", &[x, &s], Vec::new())
            }
            Activation::Mish => {
                let sp = self.node("Softplus", &[x], Vec::new());
                let t = self.node("Tanh", &[&sp], Vec::new());
                self.node("Mul", &[x, &t], Vec::new())
            }
            Activation::Gelu => {
                // x · ½ · (1 + erf(x / √2)), the exact form Burn computes.
                let scaled = self.scale(
                    x,
                    &format!("gelu_{}.inv_sqrt2", self.nodes.len()),
                    std::f32::consts::FRAC_1_SQRT_2,
                );
                let erf = self.node("Erf", &[&scaled], Vec::new());
                let one = self.constant(&format!("gelu_{}.one", self.nodes.len()), &[], &[1.0]);
                let sum = self.node("Add", &[&erf, &one], Vec::new());
                let half = self.scale(&sum, &format!("gelu_{}.half", self.nodes.len()), 0.5);
                self.node("Mul", &[x, &half], Vec::new())
            }
        }
    }
}

/// An integer attribute.
pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        i: value,
        r#type: AttributeType::Int as i32,
        ..Default::default()
    }
}

/// A float attribute.
pub(crate) fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        f: value,
        r#type: AttributeType::Float as i32,
        ..Default::default()
    }
}

/// A list-of-integers attribute.
pub(crate) fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        ints: values.iter().map(|&v| v as i64).collect(),
        r#type: AttributeType::Ints as i32,
        ..Default::default()
    }
}

/// ONNX's `pads` (`[top, left, bottom, right]`, the order Burn uses too).
fn pads(padding: &PaddingConfig2d, what: &str) -> Result<[usize; 4], ModelError> {
    match *padding {
        PaddingConfig2d::Valid => Ok([0; 4]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => Ok([top, left, bottom, right]),
        PaddingConfig2d::Same => Err(ModelError::BadOption(format!(
            "{what}: `same` padding is not exported (the zoo pads explicitly)"
        ))),
    }
}

impl Emit for Conv2d {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let weight = g.weight(&join(scope, "weight"), self.weight.val())?;
        let bias = g.bias(&join(scope, "bias"), &self.bias)?;
        let mut inputs = vec![x, weight.as_str()];
        inputs.extend(bias.as_deref());
        let attributes = vec![
            ints("kernel_shape", &self.kernel_size),
            ints("strides", &self.stride),
            ints("dilations", &self.dilation),
            ints("pads", &pads(&self.padding, scope)?),
            int("group", self.groups as i64),
        ];
        Ok(g.node("Conv", &inputs, attributes))
    }
}

impl Emit for BatchNorm {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let scale = g.weight(&join(scope, "weight"), self.gamma.val())?;
        let shift = g.weight(&join(scope, "bias"), self.beta.val())?;
        let mean = g.weight(&join(scope, "running_mean"), self.running_mean.value())?;
        let var = g.weight(&join(scope, "running_var"), self.running_var.value())?;
        Ok(g.node(
            "BatchNormalization",
            &[x, &scale, &shift, &mean, &var],
            vec![float("epsilon", self.epsilon as f32)],
        ))
    }
}

impl Emit for Linear {
    /// `Gemm` with the weight stored `[out, in]` (`transB = 1`), PyTorch's layout.
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let weight = g.weight(&join(scope, "weight"), self.weight.val().transpose())?;
        let bias = g.bias(&join(scope, "bias"), &self.bias)?;
        let mut inputs = vec![x, weight.as_str()];
        inputs.extend(bias.as_deref());
        Ok(g.node("Gemm", &inputs, vec![int("transB", 1)]))
    }
}

impl Emit for MaxPool2d {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        let attributes = vec![
            ints("kernel_shape", &self.kernel_size),
            ints("strides", &self.stride),
            ints("pads", &pads(&self.padding, scope)?),
            ints("dilations", &self.dilation),
            int("ceil_mode", i64::from(self.ceil_mode)),
        ];
        Ok(g.node("MaxPool", &[x], attributes))
    }
}
