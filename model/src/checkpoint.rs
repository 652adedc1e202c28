//! Checkpoints: a SafeTensors file (written with `burn::store`) whose metadata carries the
//! model configuration, the input normalisation and the class names, so that a network can be
//! rebuilt from the file alone.

use burn::store::{FloatCastAdapter, HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::{DType, Device};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::registry::NetConfig;
use crate::{Model, ModelConfig, ModelError, Normalization, cifar10_class_names};

/// The SafeTensors metadata key under which the header is stored.
pub const METADATA_KEY: &str = "cifar-burn";
/// Version of the header layout; files with another version are refused.
pub const FORMAT_VERSION: u32 = 1;

/// How a checkpoint's weights are stored. Either reads back as f32.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Every tensor in single precision.
    #[default]
    F32,
    /// Convolution and linear weights in half precision (half the bytes), batch norm kept in
    /// f32 (its running variance underflows in f16): burn-store's `HalfPrecisionAdapter`.
    F16,
}

/// What a checkpoint records besides the weights.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointInfo {
    /// The statistics the inputs were normalised with during training.
    pub normalization: Normalization,
    /// Class names, in label order.
    pub classes: Vec<String>,
    /// Free-form facts about the training run (epoch, accuracies, …).
    #[serde(default)]
    pub training: serde_json::Value,
}

impl CheckpointInfo {
    /// Info for a model of `classes` trained with `normalization`.
    pub fn new(normalization: Normalization, classes: Vec<String>) -> Self {
        Self {
            normalization,
            classes,
            training: serde_json::Value::Null,
        }
    }

    /// Info for a CIFAR-10 model trained with `normalization`.
    pub fn cifar10(normalization: Normalization) -> Self {
        Self::new(normalization, cifar10_class_names())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: u32,
    model: ModelConfig,
    info: CheckpointInfo,
}

/// A model together with what is needed to use it.
#[derive(Debug)]
pub struct Checkpoint {
    /// The network.
    pub model: Model,
    /// Normalisation, classes and training facts.
    pub info: CheckpointInfo,
}

impl Checkpoint {
    /// Serialises weights and header to SafeTensors bytes, in f32.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        self.to_bytes_as(Precision::F32)
    }

    /// Serialises weights and header to SafeTensors bytes, the weights stored in `precision`.
    pub fn to_bytes_as(&self, precision: Precision) -> Result<Vec<u8>, ModelError> {
        let header = Header {
            format: FORMAT_VERSION,
            model: self.model.config().clone(),
            info: self.info.clone(),
        };
        let json = serde_json::to_string(&header)
            .map_err(|e| ModelError::Checkpoint(format!("cannot encode the header: {e}")))?;
        let mut store = SafetensorsStore::from_bytes(None).metadata(METADATA_KEY, json);
        if precision == Precision::F16 {
            store = store.with_to_adapter(HalfPrecisionAdapter::new());
        }
        self.model
            .save_into(&mut store)
            .map_err(|e| ModelError::Checkpoint(format!("cannot write the weights: {e}")))?;
        store
            .get_bytes()
            .map_err(|e| ModelError::Checkpoint(format!("cannot write the weights: {e}")))
    }

    /// Reads only the header: the model configuration and the info.
    pub fn read_header(bytes: &[u8]) -> Result<(ModelConfig, CheckpointInfo), ModelError> {
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| ModelError::Checkpoint(format!("not a SafeTensors file ({e})")))?;
        let json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| {
                ModelError::Checkpoint(format!(
                    "a SafeTensors file without the `{METADATA_KEY}` header: not written by cifar-burn"
                ))
            })?;
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| ModelError::Checkpoint(format!("unreadable header: {e}")))?;
        let format = value.get("format").and_then(|f| f.as_u64());
        if format != Some(FORMAT_VERSION as u64) {
            return Err(ModelError::Checkpoint(format!(
                "header format {format:?}, this build reads format {FORMAT_VERSION}"
            )));
        }
        if let Some(kind) = value.pointer("/model/net/kind").and_then(|k| k.as_str())
            && !NetConfig::KINDS.contains(&kind)
        {
            let name = value.pointer("/model/name").and_then(|n| n.as_str());
            return Err(ModelError::Checkpoint(format!(
                "an unknown network: `{}` is of kind `{kind}`, and this build knows {} \
                 (a newer cifar-burn may have written it)",
                name.unwrap_or("?"),
                NetConfig::KINDS.join(", ")
            )));
        }
        let header: Header = serde_json::from_value(value)
            .map_err(|e| ModelError::Checkpoint(format!("unreadable header: {e}")))?;
        header.model.validate()?;
        let (names, predicted) = (header.info.classes.len(), header.model.classes());
        if names != predicted {
            return Err(ModelError::Checkpoint(format!(
                "the header names {names} classes but its network predicts {predicted}"
            )));
        }
        Ok((header.model, header.info))
    }

    /// Rebuilds the network described by the header and loads its weights on `device`, in
    /// f32 whatever precision they were stored in.
    pub fn from_bytes(bytes: &[u8], device: &Device) -> Result<Self, ModelError> {
        let (config, info) = Self::read_header(bytes)?;
        let mut model = config.init(device)?;
        let mut store = SafetensorsStore::from_bytes(Some(bytes.to_vec()))
            .with_from_adapter(FloatCastAdapter::to(DType::F32));
        let result = model.load_from(&mut store).map_err(|e| {
            ModelError::Checkpoint(format!("weights do not fit `{}`: {e}", config.name))
        })?;
        if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
            return Err(ModelError::Checkpoint(format!(
                "weights do not fit `{}`: {} errors, {} missing, {} unexpected tensors{}",
                config.name,
                result.errors.len(),
                result.missing.len(),
                result.unused.len(),
                result
                    .errors
                    .first()
                    .map(|e| format!(" (first: {e:?})"))
                    .unwrap_or_default()
            )));
        }
        Ok(Self { model, info })
    }
}
