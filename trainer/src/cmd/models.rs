//! `trainer models`: the registry with parameter counts.

use anyhow::Result;
use burn::tensor::Device;
use model::registry::MODELS;
use model::{ModelConfig, ModelOptions};

/// One line per registered model: name, parameters, description.
pub fn table() -> Result<String> {
    let device = Device::flex();
    let mut out = format!("{:<18} {:>12}  {}\n", "model", "parameters", "description");
    for (name, description) in MODELS {
        let params = ModelConfig::from_name(name, &ModelOptions::default())?
            .init(&device)?
            .parameter_count();
        out.push_str(&format!("{name:<18} {params:>12}  {description}\n"));
    }
    Ok(out)
}
