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
//! [`from_state_dict`] reads such a state dict back into a checkpoint, and also the names
//! other PyTorch code gives the same tensors (see [`twin_name`]; the seed projects' CNN names are mapped too). The
//! SafeTensors metadata of an export says what the file is: the network configuration (the
//! JSON that `torch_models.from_net_config` takes), the normalisation and the class names.

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

/// Wrappers that training code puts around a state dict's names: a checkpoint's
/// `state_dict.` / `model_state_dict.` / `model.` / `net.` key, DataParallel's `module.`.
const WRAPPERS: [&str; 5] = ["state_dict", "model_state_dict", "model", "net", "module"];

/// `name` without the wrappers ([`WRAPPERS`]) that training code puts in front of it.
fn unwrapped(name: &str) -> &str {
    let mut rest = name;
    while let Some((head, tail)) = rest.split_once('.') {
        if !WRAPPERS.contains(&head) {
            break;
        }
        rest = tail;
    }
    rest
}

/// The number in a name segment such as `layer3` (prefix `layer`), if it is one.
fn numbered(segment: &str, prefix: &str) -> Option<usize> {
    segment.strip_prefix(prefix)?.parse().ok()
}

/// The twin's name of a tensor named the way other PyTorch code names it: wrapper prefixes
/// ([`WRAPPERS`]) dropped, and torchvision's ResNet names (which the popular CIFAR ResNets
/// and the seed projects' `ResNet` share) mapped onto the twins': `conv1.`/`bn1.` at the top →
/// `stem.`/`stem_bn.`, `layer<k>.<b>.` → `stages.<k-1>.<b>.`, `downsample.0/1` or
/// `shortcut.0/1` → `shortcut.conv/bn`, a top-level `linear.` → `fc.`.
pub fn twin_name(name: &str) -> String {
    let rest = unwrapped(name);
    let mut parts: Vec<String> = rest.split('.').map(str::to_string).collect();
    match parts.first().map(String::as_str) {
        Some("conv1") if parts.len() == 2 => parts[0] = "stem".into(),
        Some("bn1") if parts.len() == 2 => parts[0] = "stem_bn".into(),
        Some("linear") if parts.len() == 2 => parts[0] = "fc".into(),
        Some(first) => {
            let stage = numbered(first, "layer");
            let block_follows = parts.get(1).is_some_and(|b| b.parse::<usize>().is_ok());
            if let (Some(k), true) = (stage.filter(|&k| k > 0), block_follows) {
                parts.splice(0..1, ["stages".to_string(), (k - 1).to_string()]);
            }
        }
        None => {}
    }
    for i in 1..parts.len().saturating_sub(1) {
        if matches!(parts[i].as_str(), "downsample" | "shortcut") {
            let renamed = match parts[i + 1].as_str() {
                "0" => "conv",
                "1" => "bn",
                _ => continue,
            };
            parts[i] = "shortcut".into();
            parts[i + 1] = renamed.into();
        }
    }
    parts.join(".")
}

/// Where the seed projects' PyTorch CNNs keep what the twin's `Cnn` keeps: their numbered
/// layers (`BasicCNN`'s `conv<k>`, `bn<k>`, `fc<k>`; `ConfigurableCNN`'s `convs.<i>`,
/// `bns.<i>`, `fc<k>`) against the twin's `layers.<i>` (where pooling and dropout count too),
/// `hidden.<j>.linear` and `output`.
struct SeedCnnLayout {
    /// The twin's `layers` index of each convolution, in order.
    convs: Vec<usize>,
    /// How many `fc<k>` layers the state dict has: the last one is the classifier.
    linears: usize,
}

impl SeedCnnLayout {
    /// The layout for loading a state dict with `state` names into a twin with `twin` names.
    fn new<'a>(
        twin: impl IntoIterator<Item = &'a str>,
        state: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut convs: Vec<usize> = twin
            .into_iter()
            .filter_map(|n| {
                let (index, rest) = n.strip_prefix("layers.")?.split_once('.')?;
                rest.starts_with("conv.").then(|| index.parse().ok())?
            })
            .collect();
        convs.sort_unstable();
        convs.dedup();
        let linears = state
            .into_iter()
            .filter_map(|n| numbered(unwrapped(n).split('.').next()?, "fc"))
            .max()
            .unwrap_or(0);
        Self { convs, linears }
    }

    /// The twin's name of a seed CNN's tensor, wrapper prefixes dropped: the `k`-th
    /// convolution's `conv<k>.`/`bn<k>.` (from 1) or `convs.<k-1>.`/`bns.<k-1>.` → its
    /// `layers.<i>.conv.`/`.bn.`, `fc<k>.` → `hidden.<k-1>.linear.`, the last `fc<k>.` →
    /// `output.`. Other names are returned unwrapped.
    fn twin_name(&self, name: &str) -> String {
        let rest = unwrapped(name);
        let Some((first, tail)) = rest.split_once('.') else {
            return rest.to_string();
        };
        let layer = |ordinal: usize, part: &str, tail: &str| {
            let index = self.convs.get(ordinal)?;
            Some(format!("layers.{index}.{part}.{tail}"))
        };
        let listed = |part: &str| {
            let (ordinal, tail) = tail.split_once('.')?;
            layer(ordinal.parse().ok()?, part, tail)
        };
        let mapped = match first {
            "convs" => listed("conv"),
            "bns" => listed("bn"),
            _ => {
                if let Some(k) = numbered(first, "conv").filter(|&k| k > 0) {
                    layer(k - 1, "conv", tail)
                } else if let Some(k) = numbered(first, "bn").filter(|&k| k > 0) {
                    layer(k - 1, "bn", tail)
                } else {
                    numbered(first, "fc").filter(|&k| k > 0).map(|k| {
                        if k == self.linears {
                            format!("output.{tail}")
                        } else {
                            format!("hidden.{}.linear.{tail}", k - 1)
                        }
                    })
                }
            }
        };
        mapped.unwrap_or_else(|| rest.to_string())
    }
}

/// A float tensor's values as float32 little-endian bytes: as stored, or widened from half
/// precision (`trainer ship --f16` files, PyTorch's `.half()` state dicts); the twins, the
/// exporter and the importer work in float32.
fn f32_bytes(name: &str, view: &TensorView<'_>) -> Result<Vec<u8>, ModelError> {
    match view.dtype() {
        Dtype::F32 => Ok(view.data().to_vec()),
        Dtype::F16 => Ok(view
            .data()
            .chunks_exact(2)
            .flat_map(|b| {
                half::f16::from_le_bytes([b[0], b[1]])
                    .to_f32()
                    .to_le_bytes()
            })
            .collect()),
        other => Err(ModelError::Checkpoint(format!(
            "tensor `{name}` is {other:?}; only float32 and float16 weights are read"
        ))),
    }
}

/// A checkpoint file's bytes as a PyTorch `state_dict` in SafeTensors form (see the module
/// documentation for the names and layouts).
pub fn state_dict(checkpoint: &[u8]) -> Result<Vec<u8>, ModelError> {
    let bad = |e: safetensors::SafeTensorError| ModelError::Checkpoint(e.to_string());
    let (config, info) = Checkpoint::read_header(checkpoint)?;
    let tensors = SafeTensors::deserialize(checkpoint).map_err(bad)?;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        let torch = torch_name(&name);
        let shape = view.shape().to_vec();
        let data = &f32_bytes(&name, &view)?;
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
/// twin's name and shape; a name that is not the twin's is read as [`twin_name`] or the seed
/// projects' CNN names map it;
/// `num_batches_tracked` counters are ignored. Otherwise the error lists the missing,
/// unexpected and mis-shaped tensors.
pub fn from_state_dict(state: &[u8], template: &[u8]) -> Result<Vec<u8>, ModelError> {
    let bad = |e: safetensors::SafeTensorError| ModelError::Checkpoint(e.to_string());
    let state = SafeTensors::deserialize(state)
        .map_err(|e| ModelError::Checkpoint(format!("not a SafeTensors file ({e})")))?;
    let (_, metadata) = SafeTensors::read_metadata(template).map_err(bad)?;
    let template = SafeTensors::deserialize(template).map_err(bad)?;
    let wanted: std::collections::HashSet<String> =
        template.names().iter().map(|n| torch_name(n)).collect();
    let seed = SeedCnnLayout::new(wanted.iter().map(String::as_str), state.names());
    // The state dict's names as the twin's: kept when they are, else the first mapping that
    // gives one of the twin's names.
    let lookup: HashMap<String, String> = state
        .names()
        .into_iter()
        .map(|n| {
            let twin = [n.to_string(), twin_name(n), seed.twin_name(n)]
                .into_iter()
                .find(|candidate| wanted.contains(candidate))
                .unwrap_or_else(|| twin_name(n));
            (twin, n.to_string())
        })
        .collect();
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
        let Some(tensor) = lookup.get(&torch).and_then(|n| state.tensor(n).ok()) else {
            missing.push(format!("{torch} {expected:?}"));
            continue;
        };
        used.insert(lookup[&torch].clone());
        let floats = (tensor.shape() == expected).then(|| f32_bytes(&torch, &tensor));
        let Some(Ok(data)) = floats else {
            misshaped.push(format!(
                "{torch}: {:?} {:?}, expected F32 or F16 {expected:?}",
                tensor.dtype(),
                tensor.shape()
            ));
            continue;
        };
        let data = if transposed {
            transpose4(&data, expected[0], expected[1])
        } else {
            data
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

/// The class names an exported state dict records in its metadata (`classes`), if any.
pub fn recorded_classes(state: &[u8]) -> Option<Vec<String>> {
    let (_, metadata) = SafeTensors::read_metadata(state).ok()?;
    let text = metadata.metadata().as_ref()?.get("classes")?.clone();
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
    use burn::tensor::Device;

    use super::*;
    use crate::{CheckpointInfo, ModelConfig, ModelOptions};

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

    #[test]
    fn torchvision_and_wrapped_names_map_to_the_twins() {
        for (theirs, twin) in [
            ("module.conv1.weight", "stem.weight"),
            ("state_dict.module.bn1.running_var", "stem_bn.running_var"),
            ("layer1.0.conv2.weight", "stages.0.0.conv2.weight"),
            ("layer3.0.downsample.1.bias", "stages.2.0.shortcut.bn.bias"),
            (
                "layer2.0.shortcut.0.weight",
                "stages.1.0.shortcut.conv.weight",
            ),
            ("linear.bias", "fc.bias"),
            ("model.fc.weight", "fc.weight"),
            // Names that are already the twins' stay as they are.
            (
                "layer1.residual.0.conv.weight",
                "layer1.residual.0.conv.weight",
            ),
            ("stages.0.0.conv1.weight", "stages.0.0.conv1.weight"),
            ("layers.0.conv.weight", "layers.0.conv.weight"),
        ] {
            assert_eq!(twin_name(theirs), twin, "{theirs}");
        }
    }

    #[test]
    fn the_seed_cnns_names_map_to_the_twins() {
        // conv, pool, conv, pool, conv: the convolutions are layers 0, 2 and 4.
        let twin = [
            "layers.0.conv.weight",
            "layers.2.conv.bias",
            "layers.4.conv.weight",
            "layers.4.bn.weight",
        ];
        let layout = |state: &[&'static str]| SeedCnnLayout::new(twin, state.iter().copied());
        let two = layout(&["fc1.weight", "module.fc2.bias"]);
        let three = layout(&["fc3.weight"]);
        for (layout, theirs, twin) in [
            (&two, "conv1.weight", "layers.0.conv.weight"),
            (&two, "module.bn3.running_mean", "layers.4.bn.running_mean"),
            (&two, "convs.1.bias", "layers.2.conv.bias"),
            (&two, "bns.0.weight", "layers.0.bn.weight"),
            (&two, "fc1.weight", "hidden.0.linear.weight"),
            (&two, "fc2.bias", "output.bias"),
            (&three, "fc2.bias", "hidden.1.linear.bias"),
            // A fourth convolution the twin does not have, and names that are not seeds'.
            (&two, "conv4.weight", "conv4.weight"),
            (&two, "layers.0.conv.weight", "layers.0.conv.weight"),
        ] {
            assert_eq!(layout.twin_name(theirs), twin, "{theirs}");
        }
    }

    /// A state dict of `config`'s network under the names that `rename` gives the twin's
    /// names (told the twin's `layers` index of each convolution) imports into the same
    /// weights.
    fn imports_renamed(config: ModelConfig, rename: impl Fn(&str, &[usize]) -> String) {
        let model = config.init(&Device::flex()).unwrap();
        let info = CheckpointInfo::cifar10(Normalization {
            mean: [0.5; 3],
            std: [0.25; 3],
        });
        let saved = Checkpoint { model, info }.to_bytes().unwrap();
        let exported = state_dict(&saved).unwrap();
        let exported = SafeTensors::deserialize(&exported).unwrap();
        let names = exported.names();
        let convs = SeedCnnLayout::new(names.iter().copied(), []).convs;
        let tensors = exported.tensors();
        let renamed = tensors.iter().map(|(n, v)| (rename(n, &convs), v.clone()));
        let renamed = serialize(renamed, None).unwrap();
        let imported = from_state_dict(&renamed, &saved).unwrap();
        let (imported, saved) = (
            SafeTensors::deserialize(&imported).unwrap(),
            SafeTensors::deserialize(&saved).unwrap(),
        );
        assert_eq!(imported.len(), saved.len());
        for (name, view) in saved.tensors() {
            assert_eq!(
                imported.tensor(&name).unwrap().data(),
                view.data(),
                "{name}"
            );
        }
    }

    /// `layers.<i>.<part>.<rest>` as (`i`'s ordinal among the convolutions, part, rest).
    fn conv_layer<'a>(name: &'a str, convs: &[usize]) -> Option<(usize, &'a str, &'a str)> {
        let (index, rest) = name.strip_prefix("layers.")?.split_once('.')?;
        let (part, rest) = rest.split_once('.')?;
        let ordinal = convs.iter().position(|&c| c.to_string() == index)?;
        Some((ordinal, part, rest))
    }

    #[test]
    fn the_seed_cnns_state_dicts_import() {
        // Seed 002's `BasicCNN`: conv1..conv3 (with pooling between), fc1, fc2.
        let basic = ModelConfig::from_name("basic-cnn", &ModelOptions::default()).unwrap();
        imports_renamed(basic, |name, convs| match conv_layer(name, convs) {
            Some((k, _, rest)) => format!("conv{}.{rest}", k + 1),
            None => name
                .replace("hidden.0.linear.", "fc1.")
                .replace("output.", "fc2."),
        });
        // Seed 000's `ConfigurableCNN` with batch norm, saved from DataParallel.
        let configurable = ModelConfig::from_name(
            "configurable-cnn",
            &ModelOptions {
                filters: Some("4,8".into()),
                fc: Some("12,10".into()),
                batch_norm: Some(true),
                ..Default::default()
            },
        )
        .unwrap();
        imports_renamed(configurable, |name, convs| {
            let name = match conv_layer(name, convs) {
                Some((k, part, rest)) => format!("{part}s.{k}.{rest}"),
                None => name
                    .replace("hidden.0.linear.", "fc1.")
                    .replace("hidden.1.linear.", "fc2.")
                    .replace("output.", "fc3."),
            };
            format!("module.{name}")
        });
    }
}
