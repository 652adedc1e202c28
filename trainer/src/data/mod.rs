//! Getting CIFAR-10 into memory and into batches: the binary-format reader, image folders
//! (cached as binary batches), locating or downloading the data set, the train/validation split and the background batcher.

pub mod augment;
pub mod batcher;
pub mod cifar;
pub mod download;
pub mod folder;
pub mod locate;

pub use cifar::CifarSet;
