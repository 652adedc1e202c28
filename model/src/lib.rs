//! The `model` crate: every CIFAR-10 network of cifar-burn, written once for every Burn device,
//! plus what the trainer and the web demo share: class names, input normalisation,
//! image preprocessing and checkpoint loading/saving.
//!
//! Nothing here touches the file system or the DOM: callers hand in bytes and get tensors,
//! models and bytes back.

pub mod activation;
pub mod cam;
pub mod checkpoint;
pub mod error;
mod layers;
pub mod manifest;
pub mod onnx;
pub mod preprocess;
pub mod pytorch;
pub mod registry;
pub mod zoo;

pub use activation::Activation;
pub use checkpoint::{Checkpoint, CheckpointInfo};
pub use error::ModelError;
pub use layers::replace_value;
pub use preprocess::Normalization;
pub use registry::{Model, ModelConfig, ModelOptions};

/// The ten CIFAR-10 classes, in label order (label byte `i` names `CLASSES[i]`).
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The CIFAR-10 class names as owned strings (what data and checkpoints carry).
pub fn cifar10_class_names() -> Vec<String> {
    CLASSES.map(String::from).to_vec()
}

/// Number of CIFAR-10 classes: what a network predicts unless its data has other classes.
pub const NUM_CLASSES: usize = CLASSES.len();

/// Most classes a network may predict (a CIFAR-format record's label is one byte).
pub const MAX_CLASSES: usize = 256;

/// Side of the square CIFAR-10 images, in pixels.
pub const IMAGE_SIZE: usize = 32;

/// Number of values in one preprocessed image (3 × 32 × 32, channel-major).
pub const IMAGE_VALUES: usize = 3 * IMAGE_SIZE * IMAGE_SIZE;
