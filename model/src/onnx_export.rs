//! A checkpoint as an ONNX model (opset 17), for ONNX Runtime, OpenCV's DNN module, Netron
//! and the rest of the ONNX world.
//!
//! * Input `image`: `[batch, 3, 32, 32]` float RGB pixels in `[0, 1]`, channel-major (NCHW).
//!   The checkpoint's normalisation is the graph's first two nodes (`Sub` mean, `Div` std),
//!   so callers feed plain pixels; the metadata states it too.
//! * Outputs `logits` `[batch, classes]` and `probabilities` (their softmax).
//! * The network in evaluation mode: batch norm with its running statistics, no dropout.
//! * Weights carry the names the PyTorch export gives them (`model::pytorch`), linear
//!   weights in PyTorch's `[out, in]` layout (`Gemm` with `transB = 1`).
//! * Metadata (`metadata_props`): `model`, `net_config`, `classes`, `normalization` (JSON),
//!   `input`.

use prost::Message;

use crate::checkpoint::Checkpoint;
use crate::cifar::IMAGE_SIZE;
use crate::error::ModelError;
use crate::onnx::proto::{
    self, Dimension, DimensionValue, GraphProto, ModelProto, OperatorSetIdProto,
    StringStringEntryProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use crate::onnx::{Emit, Graph, int};

/// The ONNX operator set the export targets.
pub const OPSET: i64 = 17;

/// The ONNX IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 8;

impl Checkpoint {
    /// The checkpoint as an ONNX model file (see the module documentation).
    pub fn to_onnx(&self) -> Result<Vec<u8>, ModelError> {
        onnx_model(self)
    }
}

fn onnx_model(checkpoint: &Checkpoint) -> Result<Vec<u8>, ModelError> {
    let config = checkpoint.model.config();
    let info = &checkpoint.info;
    let mut g = Graph::default();
    let n = &info.normalization;
    let mean = g.constant("normalization.mean", &[1, 3, 1, 1], &n.mean);
    let std = g.constant("normalization.std", &[1, 3, 1, 1], &n.std);
    let centred = g.node("Sub", &["image", &mean], Vec::new());
    let x = g.node("Div", &[&centred, &std], Vec::new());
    let logits = checkpoint.model.net().emit(&mut g, &x, "")?;
    rename_output(&mut g, &logits, "logits");
    g.named_node(
        "Softmax",
        &["logits"],
        vec![int("axis", 1)],
        "probabilities",
    );

    let json = |v: serde_json::Result<String>| v.map_err(|e| ModelError::Checkpoint(e.to_string()));
    let classes = info.classes.len();
    let side = IMAGE_SIZE;
    let model = ModelProto {
        ir_version: IR_VERSION,
        producer_name: "cifar-burn".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!(
            "{} for {classes} classes ({}), exported from a cifar-burn checkpoint",
            config.name,
            info.classes.join(", ")
        ),
        graph: Some(GraphProto {
            node: g.nodes,
            name: config.name.clone(),
            initializer: g.initializers,
            input: vec![value_info(
                "image",
                &[None, Some(3), Some(side), Some(side)],
                "RGB pixels in [0, 1], NCHW; normalised inside the graph",
            )],
            output: vec![
                value_info("logits", &[None, Some(classes)], "class scores"),
                value_info(
                    "probabilities",
                    &[None, Some(classes)],
                    "softmax of the logits",
                ),
            ],
        }),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        metadata_props: [
            ("model", config.name.clone()),
            ("net_config", json(serde_json::to_string(&config.net))?),
            ("classes", json(serde_json::to_string(&info.classes))?),
            ("normalization", json(serde_json::to_string(n))?),
            (
                "input",
                format!(
                    "image: float32 [batch, 3, {side}, {side}], RGB in [0, 1]; the graph \
                     subtracts `normalization.mean` and divides by `normalization.std`"
                ),
            ),
        ]
        .into_iter()
        .map(|(key, value)| StringStringEntryProto {
            key: key.to_string(),
            value,
        })
        .collect(),
    };
    Ok(model.encode_to_vec())
}

/// Renames the value `from` (the output of the last node that wrote it) to `to`.
fn rename_output(g: &mut Graph, from: &str, to: &str) {
    for node in g.nodes.iter_mut().rev() {
        if let Some(out) = node.output.iter_mut().find(|o| *o == from) {
            *out = to.to_string();
            return;
        }
    }
}

/// A float tensor's name, shape (`None`: the batch, named `batch`) and description.
fn value_info(name: &str, dims: &[Option<usize>], doc: &str) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Some(size) => DimensionValue::DimValue(*size as i64),
                None => DimensionValue::DimParam("batch".into()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: proto::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
        doc_string: doc.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use burn::tensor::Device;
    use safetensors::SafeTensors;

    use super::*;
    use crate::checkpoint::CheckpointInfo;
    use crate::preprocess::Normalization;
    use crate::pytorch;
    use crate::registry::{ModelConfig, ModelOptions, NetConfig};

    fn checkpoint(config: ModelConfig) -> Checkpoint {
        let model = config.init(&Device::flex()).unwrap();
        Checkpoint {
            model,
            info: CheckpointInfo::cifar10(Normalization {
                mean: [0.5, 0.4, 0.3],
                std: [0.2, 0.25, 0.3],
            }),
        }
    }

    /// One small network of every family and block kind.
    fn zoo() -> Vec<ModelConfig> {
        let named = |name: &str, options: ModelOptions| ModelConfig::from_name(name, &options);
        let json = |name: &str, net: &str| ModelConfig {
            name: name.into(),
            net: serde_json::from_str::<NetConfig>(net).unwrap(),
        };
        vec![
            named(
                "mlp",
                ModelOptions {
                    hidden: Some(16),
                    activation: Some(crate::activation::Activation::Gelu),
                    ..Default::default()
                },
            )
            .unwrap(),
            named("tiny-cnn", ModelOptions::default()).unwrap(),
            named(
                "configurable-cnn",
                ModelOptions {
                    filters: Some("4,8".into()),
                    fc: Some("12".into()),
                    batch_norm: Some(true),
                    activation: Some(crate::activation::Activation::Mish),
                    ..Default::default()
                },
            )
            .unwrap(),
            named("resnet20", ModelOptions::default()).unwrap(),
            json(
                "bottleneck",
                r#"{"kind":"resnet","widths":[4,8],"blocks":[1,2],"bottleneck":true}"#,
            ),
            json(
                "wrn",
                r#"{"kind":"wide-resnet","depth":10,"widen":1,"dropout":0.3}"#,
            ),
            json(
                "resnet9",
                r#"{"kind":"resnet9","width":4,"logit_scale":0.125}"#,
            ),
            json(
                "airbench",
                r#"{"kind":"airbench","widths":[4,8,8],"logit_scale":0.125}"#,
            ),
        ]
    }

    #[test]
    fn every_family_exports_a_closed_graph_with_the_pytorch_names() {
        for config in zoo() {
            let name = config.name.clone();
            let checkpoint = checkpoint(config);
            let bytes = checkpoint.to_onnx().unwrap();
            let model = ModelProto::decode(bytes.as_slice()).unwrap();
            assert_eq!(model.opset_import[0].version, OPSET);
            let graph = model.graph.unwrap();

            // Every node reads the input, a weight or an earlier node's output.
            let mut known: HashSet<String> =
                graph.initializer.iter().map(|t| t.name.clone()).collect();
            known.insert("image".into());
            for node in &graph.node {
                for input in &node.input {
                    assert!(
                        known.contains(input),
                        "{name}: {} reads unknown `{input}`",
                        node.name
                    );
                }
                known.extend(node.output.iter().cloned());
            }
            for output in ["logits", "probabilities"] {
                assert!(known.contains(output), "{name}: no `{output}`");
            }

            // The weights are the checkpoint's tensors under the PyTorch export's names, with
            // the same number of values; the rest are the graph's own constants.
            let saved = checkpoint.to_bytes().unwrap();
            let tensors = SafeTensors::deserialize(&saved).unwrap();
            let expected: HashSet<(String, usize)> = tensors
                .tensors()
                .into_iter()
                .map(|(n, v)| (pytorch::torch_name(&n), v.shape().iter().product()))
                .collect();
            let exported: HashSet<(String, usize)> = graph
                .initializer
                .iter()
                .filter(|t| !t.name.starts_with("normalization.") && !t.name.contains("gelu_"))
                .filter(|t| t.name != "logit_scale")
                .map(|t| (t.name.clone(), t.raw_data.len() / 4))
                .collect();
            assert_eq!(exported, expected, "{name}");
        }
    }
}
