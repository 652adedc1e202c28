//! Building ONNX graphs (opset 17): the protobuf messages (`proto`), a [`Graph`] that the
//! networks' layers append their nodes and weights to, and [`Emit`], implemented by every
//! layer and network. A leaf: it knows layers, not networks or checkpoints
//! ([`crate::Checkpoint::to_onnx`] is the exporter).

mod graph;
pub mod proto;

pub(crate) use graph::{Emit, Graph, int, join};
