//! The `model` crate: every CIFAR-10 network of cifar-burn, written once for every Burn device,
//! plus what the trainer and the web demo share: class names, input normalisation,
//! image preprocessing and checkpoint loading/saving.
//!
//! Nothing here touches the file system or the DOM: callers hand in bytes and get tensors,
//! models and bytes back.

pub mod activation;
pub mod cam;
pub mod checkpoint;
pub mod cifar;
pub mod error;
mod layers;
pub mod manifest;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(feature = "onnx")]
mod onnx_export;
pub mod preprocess;
pub mod pytorch;
pub mod registry;
pub mod zoo;

pub use activation::Activation;
pub use checkpoint::{Checkpoint, CheckpointInfo};
pub use cifar::{CLASSES, IMAGE_SIZE, IMAGE_VALUES, MAX_CLASSES, NUM_CLASSES, cifar10_class_names};
pub use error::ModelError;
pub use layers::replace_value;
pub use preprocess::Normalization;
pub use registry::{Model, ModelConfig, ModelOptions};
