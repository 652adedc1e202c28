//! A checkpoint as a PyTorch `state_dict`: the same tensors under the names and layouts of the
//! PyTorch twins in `export/torch_models.py`, so that
//! `twin.load_state_dict(state, strict=True)` takes them:
//!
//! * the `net.<Family>.` prefix and the enum variant segments (`.Conv.`, `.Basic.`,
//!   `.Bottleneck.`) dropped:
//!   `net.ResNet.stages.1.0.Basic.conv1.weight` → `stages.1.0.conv1.weight`;
//! * batch norm's `gamma` / `beta` renamed `weight` / `bias`, and each batch norm given the
//!   `num_batches_tracked` counter PyTorch keeps (0: it only matters for momentum-free
//!   running averages, which these networks do not use);
//! * linear weights transposed (Burn stores `[in, out]`, PyTorch `[out, in]`).
//!
//! [`from_state_dict`] reads such a state dict back into a checkpoint. The SafeTensors
//! metadata of an export says what the file is: the network configuration (the JSON that
//! `torch_models.from_net_config` takes), the normalisation and the class names.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensors, serialize};

use crate::{Checkpoint, ModelError, Normalization};

/// The PyTorch twin's name of a checkpoint tensor.
pub fn torch_name(burn_name: &str) -> String {
    let rest = burn_name
        .strip_prefix("net.")
        .and_then(|r| r.split_once('.'))
        .map_or(burn_name, |(_, rest)| rest);
    let mut parts: Vec<&str> = rest
        .split('.')
        .filter(|p| !matches!(*p, "Conv" | "Basic" | "Bottleneck"))
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = match *last {
            "gamma" => "weight",
            "beta" => "bias",
            other => other,
        };
    }
    parts.join(".")
}

/// A checkpoint file's bytes as a PyTorch `state_dict` in SafeTensors form (see the module
/// documentation for the names and layouts).
pub fn state_dict(checkpoint: &[u8]) -> Result<Vec<u8>, ModelError> {
    let bad = |e: safetensors::SafeTensorError| ModelError::Checkpoint(e.to_string());
    let (config, info) = Checkpoint::read_header(checkpoint)?;
    let tensors = SafeTensors::deserialize(checkpoint).map_err(bad)?;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::Checkpoint(format!(
                "tensor `{name}` is {:?}; this exporter writes float32 checkpoints",
                view.dtype()
            )));
        }
        let torch = torch_name(&name);
        let shape = view.shape().to_vec();
        let data = view.data();
        if torch.ends_with(".weight") && shape.len() == 2 {
            let transposed = transpose4(data, shape[0], shape[1]);
            out.push((torch, Dtype::F32, vec![shape[1], shape[0]], transposed));
        } else {
            if let Some(prefix) = torch.strip_suffix("running_mean") {
                out.push((
                    format!("{prefix}num_batches_tracked"),
                    Dtype::I64,
                    Vec::new(),
                    0i64.to_le_bytes().to_vec(),
                ));
            }
            out.push((torch, Dtype::F32, shape, data.to_vec()));
        }
    }
    let json = |v: serde_json::Result<String>| v.map_err(|e| ModelError::Checkpoint(e.to_string()));
    let metadata = HashMap::from([
        ("format".to_string(), "pytorch-state-dict".to_string()),
        ("producer".to_string(), "cifar-burn".to_string()),
        ("model".to_string(), config.name.clone()),
        (
            "net_config".to_string(),
            json(serde_json::to_string(&config.net))?,
        ),
        (
            "normalization".to_string(),
            json(serde_json::to_string(&info.normalization))?,
        ),
        (
            "classes".to_string(),
            json(serde_json::to_string(&info.classes))?,
        ),
    ]);
    let views = out
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    serialize(views, Some(metadata)).map_err(bad)
}

/// A checkpoint built from a PyTorch `state_dict` (SafeTensors) of the twin of `template`'s
/// network: `template` is a checkpoint of that network (its weights are replaced; its header —
/// configuration, normalisation, classes — is kept). Every tensor must be there with the
/// twin's name and shape; `num_batches_tracked` counters are ignored. Otherwise the error lists
/// the missing, unexpected and mis-shaped tensors.
pub fn from_state_dict(state: &[u8], template: &[u8]) -> Result<Vec<u8>, ModelError> {
    let bad = |e: safetensors::SafeTensorError| ModelError::Checkpoint(e.to_string());
    let state = SafeTensors::deserialize(state)
        .map_err(|e| ModelError::Checkpoint(format!("not a SafeTensors file ({e})")))?;
    let (_, metadata) = SafeTensors::read_metadata(template).map_err(bad)?;
    let template = SafeTensors::deserialize(template).map_err(bad)?;
    let mut used = std::collections::HashSet::new();
    let (mut missing, mut misshaped) = (Vec::new(), Vec::new());
    let mut out: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in template.tensors() {
        let torch = torch_name(&name);
        let shape = view.shape().to_vec();
        let transposed = torch.ends_with(".weight") && shape.len() == 2;
        let expected: Vec<usize> = if transposed {
            vec![shape[1], shape[0]]
        } else {
            shape.clone()
        };
        let Ok(tensor) = state.tensor(&torch) else {
            missing.push(format!("{torch} {expected:?}"));
            continue;
        };
        used.insert(torch.clone());
        if tensor.shape() != expected || tensor.dtype() != Dtype::F32 {
            misshaped.push(format!(
                "{torch}: {:?} {:?}, expected F32 {expected:?}",
                tensor.dtype(),
                tensor.shape()
            ));
            continue;
        }
        let data = tensor.data();
        let data = if transposed {
            transpose4(data, expected[0], expected[1])
        } else {
            data.to_vec()
        };
        out.push((name, shape, data));
    }
    let unexpected: Vec<String> = state
        .names()
        .into_iter()
        .filter(|n| !used.contains(*n) && !n.ends_with("num_batches_tracked"))
        .map(str::to_string)
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() || !misshaped.is_empty() {
        let list = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            match v.len() {
                0 => "none".to_string(),
                n if n > 12 => format!("{} … and {} more", v[..12].join(", "), n - 12),
                _ => v.join(", "),
            }
        };
        return Err(ModelError::Checkpoint(format!(
            "the state dict does not fit this network ({} of {} tensors mapped): missing: {}; \
             unexpected: {}; wrong shape or type: {}",
            out.len(),
            template.len(),
            list(&missing),
            list(&unexpected),
            list(&misshaped)
        )));
    }
    let views = out
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    serialize(views, metadata.metadata().clone()).map_err(bad)
}

/// The normalisation an exported state dict records in its metadata, if it does.
pub fn recorded_normalization(state: &[u8]) -> Option<Normalization> {
    let (_, metadata) = SafeTensors::read_metadata(state).ok()?;
    let text = metadata.metadata().as_ref()?.get("normalization")?.clone();
    serde_json::from_str(&text).ok()
}

/// Transposes a row-major `rows × cols` matrix of 4-byte values.
fn transpose4(data: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut out = vec![0u8; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            let (from, to) = ((r * cols + c) * 4, (c * rows + r) * 4);
            out[to..to + 4].copy_from_slice(&data[from..from + 4]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_twins() {
        for (burn, torch) in [
            (
                "net.ResNet.stages.1.0.Basic.shortcut.conv.weight",
                "stages.1.0.shortcut.conv.weight",
            ),
            ("net.Cnn.layers.0.Conv.bn.gamma", "layers.0.bn.weight"),
            ("net.Cnn.layers.0.Conv.bn.beta", "layers.0.bn.bias"),
            ("net.Cnn.hidden.0.linear.weight", "hidden.0.linear.weight"),
            ("net.ResNet.stem.bn.running_var", "stem.bn.running_var"),
        ] {
            assert_eq!(torch_name(burn), torch);
        }
    }
}
