//! The error type of the `model` crate.

use thiserror::Error;

/// Everything that can go wrong when building, loading or feeding a model.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A model name that the registry does not know.
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// Every registered name, comma-separated.
        known: String,
    },
    /// A model option that does not apply to the chosen model, or has a bad value.
    #[error("{0}")]
    BadOption(String),
    /// A layer name that the model does not have.
    #[error("model `{model}` has no layer `{layer}`; its layers are: {known}")]
    UnknownLayer {
        /// The model's architecture name.
        model: String,
        /// The layer asked for.
        layer: String,
        /// The layers it does have.
        known: String,
    },
    /// A checkpoint file that cannot be read or does not fit the network it describes.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
    /// An image that cannot be decoded or is not acceptable.
    #[error("{0}")]
    Image(String),
}
