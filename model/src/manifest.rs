//! `weights/manifest.json`: the models shipped with cifar-burn, as `trainer ship` records them
//! and the web page lists them.

use serde::{Deserialize, Serialize};

use crate::ModelConfig;
use crate::checkpoint::Precision;

/// The list of shipped models.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name of the model the page loads first.
    pub default: String,
    /// Every shipped model.
    pub models: Vec<ShippedModel>,
}

/// One shipped checkpoint and what was measured about it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShippedModel {
    /// Short unique name (also the file stem).
    pub name: String,
    /// Checkpoint file, relative to the manifest.
    pub file: String,
    /// The network, as stored in the checkpoint.
    pub config: ModelConfig,
    /// Trainable parameters (counted like PyTorch).
    pub parameters: usize,
    /// How the file stores the weights (`f32` when absent).
    #[serde(default)]
    pub precision: Precision,
    /// Top-1 accuracy of this file on the test set, measured by `trainer eval`'s code.
    pub test_accuracy: f64,
    /// For a file stored in `f16`: the test accuracy of the f32 weights it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f32_test_accuracy: Option<f64>,
    /// Top-5 accuracy on the same images.
    pub top5_accuracy: f64,
    /// Number of test images measured.
    pub test_images: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// Size after gzip (what a web server typically sends), in bytes.
    pub gzip_bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// How it was trained (command, data, epochs, machine, time).
    pub trained: String,
    /// The class activation map method most faithful to this model, as
    /// `trainer cam-eval --record` measured it (the page's default method); absent until
    /// measured, and dropped when the weights are shipped again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<Explanation>,
}

/// The most faithful single-pass explanation method of a shipped model, by ROAD's combined
/// score: the page's default, which must answer at interactive speed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Explanation {
    /// The method's name (`model::cam::CamMethod::name`).
    pub method: String,
    /// Its ROAD combined score (higher is more faithful).
    pub road: f64,
    /// The standard error of `road` over the images.
    pub road_error: f64,
    /// Test images measured.
    pub images: usize,
    /// A multi-pass method (Score-CAM) that scored higher still, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slower_but_better: Option<MethodScore>,
}

/// One method's ROAD score.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodScore {
    /// The method's name.
    pub method: String,
    /// Its ROAD combined score.
    pub road: f64,
    /// The standard error of `road`.
    pub road_error: f64,
}

impl Manifest {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&ShippedModel> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Adds or replaces the entry with the same name.
    pub fn upsert(&mut self, model: ShippedModel) {
        match self.models.iter_mut().find(|m| m.name == model.name) {
            Some(existing) => *existing = model,
            None => self.models.push(model),
        }
    }
}
