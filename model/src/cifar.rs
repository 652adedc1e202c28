//! The CIFAR-10 format every network is built for: its classes and its image size.

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
