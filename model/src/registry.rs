//! The model registry: every network by name, its serialisable configuration, and the built
//! [`Model`] that the trainer, the checkpoints and the web demo pass around.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[cfg(feature = "onnx")]
use crate::onnx::{Emit, Graph};
use crate::zoo::Staged;
use crate::zoo::airbench::{Airbench, AirbenchConfig};
use crate::zoo::cnn::{Cnn, CnnConfig, LayerSpec};
use crate::zoo::mlp::{Mlp, MlpConfig};
use crate::zoo::resnet::{ResNet, ResNetConfig};
use crate::zoo::resnet9::{ResNet9, ResNet9Config};
use crate::zoo::wide_resnet::{WideResNet, WideResNetConfig};
use crate::{Activation, MAX_CLASSES, ModelError, NUM_CLASSES};

/// The registered model names with a one-line description, in the order `trainer models`
/// lists them. `resnet<6n+2>` and `wrn-<depth>-<width>` accept other depths and widths too.
pub const MODELS: [(&str, &str); 17] = [
    ("mlp", "seed 001: 3072 → h → h → 10 perceptron (h = 512)"),
    (
        "tiny-cnn",
        "seed 004: 2 × (conv-BN-ReLU-pool), dropout 0.3, FC",
    ),
    (
        "basic-cnn",
        "seeds 000/002: conv 32-64-128 + pool, FC 512 → 10",
    ),
    (
        "configurable-cnn",
        "seed 000: filter/FC presets, BN, dropout, activation",
    ),
    (
        "improved-cnn",
        "seed 002: 6 conv with BN, FC 1024 with BN and dropout 0.5",
    ),
    (
        "resnet20",
        "seed 000: CIFAR ResNet, 3 × 3 blocks, stages 16/32/64",
    ),
    (
        "resnet32",
        "seed 000: CIFAR ResNet, 3 × 5 blocks, stages 16/32/64",
    ),
    (
        "resnet56",
        "seed 000: CIFAR ResNet, 3 × 9 blocks, stages 16/32/64",
    ),
    ("resnet18", "seed 003: ResNet-18, 3 × 3 stem, no max-pool"),
    ("resnet34", "seed 003: ResNet-34, 3 × 3 stem, no max-pool"),
    (
        "resnet50",
        "seed 003: ResNet-50 (bottleneck), 3 × 3 stem, no max-pool",
    ),
    (
        "vgg11",
        "seed 002: VGG-A 64-128-256-256-512-512-512-512, no BN",
    ),
    ("vgg11-bn", "seed 002: VGG-A with batch norm"),
    (
        "wrn-28-10",
        "seed 003: Wide-ResNet 28-10, dropout 0.3 in blocks",
    ),
    ("resnet9", "fast ResNet-9 (DAWNBench/airbench line)"),
    (
        "airbench94",
        "airbench94: whitening conv, GELU conv groups 64/256/256",
    ),
    (
        "airbench93",
        "airbench93: airbench94 with conv groups 64/128/128",
    ),
];

/// Seed 000's filter presets for `configurable-cnn`.
pub const FILTER_PRESETS: [(&str, &[usize]); 5] = [
    ("small", &[16, 32, 64]),
    ("medium", &[32, 64, 128]),
    ("large", &[64, 128, 256]),
    ("wide", &[32, 128, 256]),
    ("deep", &[32, 64, 128, 256]),
];

/// Seed 000's classifier presets (hidden widths before the 10 outputs).
pub const FC_PRESETS: [(&str, &[usize]); 4] = [
    ("default", &[512]),
    ("simplified", &[256]),
    ("complex", &[1024, 512]),
    ("none", &[]),
];

/// Options that change a registered model, where the seeds made them selectable. Unset
/// options keep the model's defaults; setting one the model does not have is an error.
///
/// With the `clap` feature it is also the command line's group of these options (the
/// trainer's `--activation`, `--dropout`, …), and its keys are the flags' names
/// (`batch-norm`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelOptions {
    /// Activation function: relu, leaky-relu, sigmoid, tanh, swish, mish, selu, gelu
    /// (mlp and the plain CNNs).
    #[cfg_attr(feature = "clap", arg(long))]
    pub activation: Option<Activation>,
    /// Dropout probability (mlp, plain CNNs, wrn-*).
    #[cfg_attr(feature = "clap", arg(long))]
    pub dropout: Option<f64>,
    /// Hidden width of the MLP.
    #[cfg_attr(feature = "clap", arg(long))]
    pub hidden: Option<usize>,
    /// Convolution widths: small, medium, large, wide, deep, or a list like 32,64
    /// (configurable-cnn, tiny-cnn); the three group widths of airbench93/94, like 64,144,144.
    #[cfg_attr(feature = "clap", arg(long))]
    pub filters: Option<String>,
    /// Classifier hidden widths: default, simplified, complex, none, or a list like 512,512
    /// (configurable-cnn, vgg11, vgg11-bn).
    #[cfg_attr(feature = "clap", arg(long))]
    pub fc: Option<String>,
    /// Batch norm after each convolution: true or false (configurable-cnn).
    #[cfg_attr(feature = "clap", arg(long))]
    pub batch_norm: Option<bool>,
}

impl ModelOptions {
    /// Fails when an option outside `allowed` is set.
    fn only(&self, model: &str, allowed: &[&str]) -> Result<(), ModelError> {
        let set = [
            ("activation", self.activation.is_some()),
            ("dropout", self.dropout.is_some()),
            ("hidden", self.hidden.is_some()),
            ("filters", self.filters.is_some()),
            ("fc", self.fc.is_some()),
            ("batch-norm", self.batch_norm.is_some()),
        ];
        match set.iter().find(|(name, on)| *on && !allowed.contains(name)) {
            None => Ok(()),
            Some((name, _)) => Err(ModelError::BadOption(format!(
                "model `{model}` has no `{name}` option (it takes: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ))),
        }
    }
}

/// Parses a preset name or a comma-separated list of positive widths.
fn widths(value: &str, presets: &[(&str, &[usize])], what: &str) -> Result<Vec<usize>, ModelError> {
    if let Some((_, w)) = presets.iter().find(|(name, _)| *name == value) {
        return Ok(w.to_vec());
    }
    let names: Vec<_> = presets.iter().map(|(n, _)| *n).collect();
    value
        .split(',')
        .map(|part| part.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            ModelError::BadOption(format!(
                "bad {what} `{value}`: give a preset ({}) or widths like 32,64,128",
                names.join(", ")
            ))
        })
}

/// The architecture of a network, enough to rebuild it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NetConfig {
    /// Multi-layer perceptron.
    Mlp(MlpConfig),
    /// Plain CNN (tiny, basic, configurable, improved, VGG).
    Cnn(CnnConfig),
    /// Residual network.
    Resnet(ResNetConfig),
    /// Wide residual network.
    WideResnet(WideResNetConfig),
    /// Fast ResNet-9.
    Resnet9(ResNet9Config),
    /// airbench94's network.
    Airbench(AirbenchConfig),
}

impl NetConfig {
    /// The `kind` of every family of networks this build can rebuild, as configurations and
    /// checkpoints name them.
    pub const KINDS: [&'static str; 6] =
        ["mlp", "cnn", "resnet", "wide-resnet", "resnet9", "airbench"];
}

/// A registered model: its name and its full architecture.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The registry name it was made from (`basic-cnn`, `wrn-28-10`, …).
    pub name: String,
    /// The architecture.
    pub net: NetConfig,
}

impl ModelConfig {
    /// The configuration of the registered model `name`, changed by `options`.
    pub fn from_name(name: &str, options: &ModelOptions) -> Result<Self, ModelError> {
        let net = build_net(name, options)?;
        let config = Self {
            name: name.to_string(),
            net,
        };
        config.validate()?;
        Ok(config)
    }

    /// Number of classes the network predicts.
    pub fn classes(&self) -> usize {
        match &self.net {
            NetConfig::Mlp(c) => c.classes,
            NetConfig::Cnn(c) => c.classes,
            NetConfig::Resnet(c) => c.classes,
            NetConfig::WideResnet(c) => c.classes,
            NetConfig::Resnet9(c) => c.classes,
            NetConfig::Airbench(c) => c.classes,
        }
    }

    /// The same network predicting `classes` classes (the class count follows the data).
    pub fn with_classes(mut self, classes: usize) -> Result<Self, ModelError> {
        match &mut self.net {
            NetConfig::Mlp(c) => c.classes = classes,
            NetConfig::Cnn(c) => c.classes = classes,
            NetConfig::Resnet(c) => c.classes = classes,
            NetConfig::WideResnet(c) => c.classes = classes,
            NetConfig::Resnet9(c) => c.classes = classes,
            NetConfig::Airbench(c) => c.classes = classes,
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks that the architecture can be built.
    pub fn validate(&self) -> Result<(), ModelError> {
        let classes = self.classes();
        if !(2..=MAX_CLASSES).contains(&classes) {
            return Err(ModelError::BadOption(format!(
                "a network predicts 2 to {MAX_CLASSES} classes, not {classes}"
            )));
        }
        match &self.net {
            NetConfig::Cnn(c) => c.validate(),
            NetConfig::WideResnet(c) => c.validate(),
            NetConfig::Mlp(c) if c.hidden == 0 || !(0.0..1.0).contains(&c.dropout) => Err(
                ModelError::BadOption("the MLP needs hidden ≥ 1 and dropout in [0, 1)".into()),
            ),
            NetConfig::Resnet(c)
                if c.widths.is_empty()
                    || c.widths.len() != c.blocks.len()
                    || c.widths.contains(&0) =>
            {
                Err(ModelError::BadOption(
                    "a ResNet needs one positive width per stage".into(),
                ))
            }
            NetConfig::Airbench(c) if c.widths.contains(&0) => Err(ModelError::BadOption(
                "airbench needs three positive group widths".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Builds the network on `device` (parameters are initialised lazily, on first use).
    pub fn init(&self, device: &Device) -> Result<Model, ModelError> {
        self.validate()?;
        let net = match &self.net {
            NetConfig::Mlp(c) => Net::Mlp(c.init(device)),
            NetConfig::Cnn(c) => Net::Cnn(c.init(device)),
            NetConfig::Resnet(c) => Net::ResNet(c.init(device)),
            NetConfig::WideResnet(c) => Net::WideResNet(c.init(device)),
            NetConfig::Resnet9(c) => Net::ResNet9(c.init(device)),
            NetConfig::Airbench(c) => Net::Airbench(c.init(device)),
        };
        Ok(Model {
            net,
            config: self.clone(),
        })
    }
}

fn unknown(name: &str) -> ModelError {
    let known: Vec<_> = MODELS.iter().map(|(n, _)| *n).collect();
    ModelError::UnknownModel {
        name: name.to_string(),
        known: known.join(", "),
    }
}

fn plain_cnn(layers: Vec<LayerSpec>, batch_norm: bool, classifier: Vec<usize>) -> CnnConfig {
    CnnConfig {
        layers,
        batch_norm,
        activation: Activation::Relu,
        classifier,
        classifier_batch_norm: false,
        classifier_dropout: 0.0,
        classes: NUM_CLASSES,
    }
}

/// `conv, pool` for each width, with `extra` after each pool.
fn conv_pool(filters: &[usize], extra: Option<LayerSpec>) -> Vec<LayerSpec> {
    filters
        .iter()
        .flat_map(|&f| [Some(LayerSpec::Conv(f)), Some(LayerSpec::Pool), extra])
        .flatten()
        .collect()
}

/// VGG-A's feature extractor: `M` marks a pool.
fn vgg_a() -> Vec<LayerSpec> {
    use LayerSpec::{Conv as C, Pool as M};
    vec![
        C(64),
        M,
        C(128),
        M,
        C(256),
        C(256),
        M,
        C(512),
        C(512),
        M,
        C(512),
        C(512),
        M,
    ]
}

fn build_net(name: &str, o: &ModelOptions) -> Result<NetConfig, ModelError> {
    let cnn_opts = |c: &mut CnnConfig| {
        if let Some(a) = o.activation {
            c.activation = a;
        }
    };
    let net = match name {
        "mlp" => {
            o.only(name, &["activation", "dropout", "hidden"])?;
            let d = MlpConfig::default();
            NetConfig::Mlp(MlpConfig {
                hidden: o.hidden.unwrap_or(d.hidden),
                activation: o.activation.unwrap_or(d.activation),
                dropout: o.dropout.unwrap_or(d.dropout),
                classes: NUM_CLASSES,
            })
        }
        "tiny-cnn" => {
            o.only(name, &["activation", "dropout", "filters"])?;
            let filters = match &o.filters {
                Some(f) => widths(f, &[], "filters")?,
                None => vec![32, 32],
            };
            if filters.len() != 2 {
                return Err(ModelError::BadOption(
                    "tiny-cnn takes two filter widths, like 32,64".into(),
                ));
            }
            let dropout = LayerSpec::Dropout(o.dropout.unwrap_or(0.3));
            let mut layers = conv_pool(&filters, None);
            layers.push(dropout);
            let mut c = plain_cnn(layers, true, vec![]);
            cnn_opts(&mut c);
            NetConfig::Cnn(c)
        }
        "basic-cnn" => {
            o.only(name, &["activation", "dropout"])?;
            let mut c = plain_cnn(conv_pool(&[32, 64, 128], None), false, vec![512]);
            c.classifier_dropout = o.dropout.unwrap_or(0.25);
            cnn_opts(&mut c);
            NetConfig::Cnn(c)
        }
        "configurable-cnn" => {
            o.only(
                name,
                &["activation", "dropout", "filters", "fc", "batch-norm"],
            )?;
            let filters = widths(
                o.filters.as_deref().unwrap_or("medium"),
                &FILTER_PRESETS,
                "filters",
            )?;
            let fc = widths(o.fc.as_deref().unwrap_or("default"), &FC_PRESETS, "fc")?;
            let p = o.dropout.unwrap_or(0.25);
            let mut c = plain_cnn(
                conv_pool(&filters, Some(LayerSpec::Dropout(p))),
                o.batch_norm.unwrap_or(true),
                fc,
            );
            c.classifier_dropout = p;
            cnn_opts(&mut c);
            NetConfig::Cnn(c)
        }
        "improved-cnn" => {
            o.only(name, &["activation", "dropout"])?;
            use LayerSpec::{Conv as C, Pool as M};
            let layers = vec![C(64), C(128), M, C(256), C(256), M, C(512), C(512), M];
            let mut c = plain_cnn(layers, true, vec![1024]);
            c.classifier_batch_norm = true;
            c.classifier_dropout = o.dropout.unwrap_or(0.5);
            cnn_opts(&mut c);
            NetConfig::Cnn(c)
        }
        "vgg11" | "vgg11-bn" => {
            o.only(name, &["activation", "dropout", "fc"])?;
            let fc = widths(o.fc.as_deref().unwrap_or("none"), &FC_PRESETS, "fc")?;
            let mut c = plain_cnn(vgg_a(), name == "vgg11-bn", fc);
            c.classifier_dropout = o.dropout.unwrap_or(0.5);
            cnn_opts(&mut c);
            NetConfig::Cnn(c)
        }
        "resnet9" => {
            o.only(name, &[])?;
            NetConfig::Resnet9(ResNet9Config::default())
        }
        "airbench94" | "airbench93" => {
            o.only(name, &["filters"])?;
            let widths = match &o.filters {
                Some(f) => widths(f, &[], "filters")?.try_into().map_err(|_| {
                    ModelError::BadOption(
                        "airbench takes three group widths, like 64,144,144".into(),
                    )
                })?,
                None if name == "airbench93" => [64, 128, 128],
                None => AirbenchConfig::default().widths,
            };
            NetConfig::Airbench(AirbenchConfig {
                widths,
                ..AirbenchConfig::default()
            })
        }
        _ => return parametric(name, o),
    };
    Ok(net)
}

/// `resnet<depth>` and `wrn-<depth>-<width>`.
fn parametric(name: &str, o: &ModelOptions) -> Result<NetConfig, ModelError> {
    if let Some(depth) = name
        .strip_prefix("resnet")
        .and_then(|d| d.parse::<usize>().ok())
    {
        o.only(name, &[])?;
        let config = match depth {
            18 | 34 | 50 | 101 | 152 => ResNetConfig::imagenet(depth)?,
            _ => ResNetConfig::cifar(depth)?,
        };
        return Ok(NetConfig::Resnet(config));
    }
    if let Some(rest) = name.strip_prefix("wrn-") {
        let mut parts = rest.splitn(2, '-').map(|p| p.parse::<usize>().ok());
        if let (Some(Some(depth)), Some(Some(widen))) = (parts.next(), parts.next()) {
            o.only(name, &["dropout"])?;
            let dropout = o.dropout.unwrap_or(0.3);
            return Ok(NetConfig::WideResnet(WideResNetConfig {
                depth,
                widen,
                dropout,
                classes: NUM_CLASSES,
            }));
        }
    }
    Err(unknown(name))
}

/// The network of a [`Model`], one variant per family.
// A handful of these exist per network, built once: boxing the larger variants would buy
// nothing but indirection.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    /// Multi-layer perceptron.
    Mlp(Mlp),
    /// Plain CNN.
    Cnn(Cnn),
    /// Residual network.
    ResNet(ResNet),
    /// Wide residual network.
    WideResNet(WideResNet),
    /// Fast ResNet-9.
    ResNet9(ResNet9),
    Airbench(Airbench),
}

impl Net {
    fn staged(&self) -> &dyn Staged {
        match self {
            Net::Mlp(m) => m,
            Net::Cnn(m) => m,
            Net::ResNet(m) => m,
            Net::WideResNet(m) => m,
            Net::ResNet9(m) => m,
            Net::Airbench(m) => m,
        }
    }
}

#[cfg(feature = "onnx")]
impl Emit for Net {
    fn emit(&self, g: &mut Graph, x: &str, scope: &str) -> Result<String, ModelError> {
        match self {
            Net::Mlp(m) => m.emit(g, x, scope),
            Net::Cnn(m) => m.emit(g, x, scope),
            Net::ResNet(m) => m.emit(g, x, scope),
            Net::WideResNet(m) => m.emit(g, x, scope),
            Net::ResNet9(m) => m.emit(g, x, scope),
            Net::Airbench(m) => m.emit(g, x, scope),
        }
    }
}

/// A built network together with the configuration it was built from.
#[derive(Module, Debug)]
pub struct Model {
    net: Net,
    #[module(skip)]
    config: ModelConfig,
}

impl Model {
    /// The configuration the network was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Whether the network has a whitening layer to set from training images
    /// ([`Model::whiten`]).
    pub fn has_whitening(&self) -> bool {
        matches!(self.net, Net::Airbench(_))
    }

    /// Sets the whitening layer (see [`Airbench::whiten`]) from normalised training images
    /// `[n, 3, h, w]`; a network without one is returned unchanged.
    pub fn whiten(self, images: Tensor<4>) -> Result<Self, ModelError> {
        let net = match self.net {
            Net::Airbench(a) => Net::Airbench(a.whiten(images)?),
            other => other,
        };
        Ok(Self { net, ..self })
    }

    /// Folds the batch norms' pending running statistics into their values. Burn keeps the
    /// statistics of a training forward pass pending (per thread) until the next forward pass
    /// or `valid()` reads them, while visiting or mapping the module sees the value before
    /// them: call this before reading or rewriting every tensor of a network in training (an
    /// average of its weights, a saved state).
    pub fn sync_running_stats(&self) {
        // `valid()` syncs every running state it copies, and the copies share their state
        // with this network's.
        let _ = self.valid();
    }

    /// The network with its whitening layer's bias frozen: it gets no gradient, so the
    /// optimizer leaves it as it is (airbench trains it for the first epochs only). A network
    /// without a whitening layer is returned unchanged.
    pub fn freeze_whitening_bias(self) -> Self {
        let net = match self.net {
            Net::Airbench(a) => Net::Airbench(a.freeze_whitening_bias()),
            other => other,
        };
        Self { net, ..self }
    }

    /// The network itself.
    #[cfg(feature = "onnx")]
    pub(crate) fn net(&self) -> &Net {
        &self.net
    }

    /// Number of trainable parameters, as PyTorch counts them: weights, biases and batch-norm
    /// γ/β, but not the batch-norm running statistics (which Burn's `num_params` includes).
    pub fn parameter_count(&self) -> usize {
        let mut counter = TrainableCounter::default();
        self.visit(&mut counter);
        counter.count
    }

    /// Class logits `[batch, 10]` for normalised images `[batch, 3, 32, 32]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let net = self.net.staged();
        let x = (0..net.stage_names().len()).fold(images, |x, i| net.stage(i, x));
        net.head(x)
    }

    /// The names of the layers whose activations can be read, input to output.
    pub fn layer_names(&self) -> Vec<String> {
        self.net.staged().stage_names()
    }

    /// The layer Grad-CAM explains by default (the last convolutional stage); `None` for the
    /// MLP, which has no spatial layers.
    pub fn cam_layer(&self) -> Option<String> {
        let net = self.net.staged();
        net.cam_stage().map(|i| net.stage_names()[i].clone())
    }

    fn layer_index(&self, layer: &str) -> Result<usize, ModelError> {
        let names = self.layer_names();
        names
            .iter()
            .position(|n| n == layer)
            .ok_or_else(|| ModelError::UnknownLayer {
                model: self.config.name.clone(),
                layer: layer.to_string(),
                known: if names.is_empty() {
                    "(none)".into()
                } else {
                    names.join(", ")
                },
            })
    }

    /// The activations `[batch, channels, h, w]` of `layer` for normalised images.
    pub fn activations(&self, images: Tensor<4>, layer: &str) -> Result<Tensor<4>, ModelError> {
        let end = self.layer_index(layer)?;
        let net = self.net.staged();
        Ok((0..=end).fold(images, |x, i| net.stage(i, x)))
    }

    /// The activations of every layer (named as [`Model::layer_names`]) for normalised images,
    /// input to output, from one forward pass.
    pub fn all_activations(&self, images: Tensor<4>) -> Vec<(String, Tensor<4>)> {
        let net = self.net.staged();
        let mut x = images;
        net.stage_names()
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                x = net.stage(i, x.clone());
                (name, x.clone())
            })
            .collect()
    }

    /// Runs the rest of the network on activations of `layer` (as returned by
    /// [`Model::activations`]) and returns the class logits.
    pub fn forward_from(
        &self,
        activations: Tensor<4>,
        layer: &str,
    ) -> Result<Tensor<2>, ModelError> {
        let start = self.layer_index(layer)? + 1;
        let net = self.net.staged();
        let x = (start..net.stage_names().len()).fold(activations, |x, i| net.stage(i, x));
        Ok(net.head(x))
    }
}

/// Counts float parameters outside batch-norm running statistics, without initialising them.
#[derive(Default)]
struct TrainableCounter {
    path: Vec<String>,
    count: usize,
}

impl ModuleVisitor for TrainableCounter {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if !self.path.last().is_some_and(|n| n.starts_with("running_")) {
            self.count += param.lazy_shape().num_elements();
        }
    }
}
