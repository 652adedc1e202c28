//! Loading a model (shipped, or the user's own checkpoint), preparing a user's image and
//! explaining the prediction, written once for every device. Reading results back is left to
//! the caller because a browser's WebGPU device may only be read asynchronously.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use image::{ColorType, RgbImage};
use model::cam::{Cam, CamInputs, CamMethod, PendingCam, argmax, cam_tensors};
use model::preprocess::{
    DecodeLimits, Framing, decode_image_with, is_animated, square_view, to_cifar_pixels,
};
use model::{Checkpoint, CheckpointInfo, Model, ModelError};
use serde::Serialize;

/// What the page accepts: a browser tab has less memory to spare than the trainer.
pub const BROWSER_LIMITS: DecodeLimits = DecodeLimits {
    max_side: 8_192,
    max_bytes: 256 * 1024 * 1024,
};

/// Side of the square picture of what the network saw, drawn under the heat map.
pub const VIEW_SIDE: u32 = 256;

/// The largest file the page takes (an image or a checkpoint), in bytes (100 MB): larger
/// ones are refused by their size, before they are read.
pub const MAX_FILE_BYTES: u64 = 100_000_000;

/// What a file given to the page holds, told by its content rather than its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Anything that is not a checkpoint: a picture, or junk that the image decoder then
    /// refuses with its reason.
    Image,
    /// A SafeTensors file: an 8-byte little-endian header length (at most
    /// [`MAX_FILE_BYTES`]), then a JSON object. No image format starts so: their magic bytes
    /// read as a far larger length, or leave no `{` at byte 8. Whether it is a cifar-burn
    /// checkpoint of a network this build knows is up to [`Classifier::load`].
    Checkpoint,
}

impl FileKind {
    /// Sniffs the first bytes of a file (9 are enough).
    pub fn of(bytes: &[u8]) -> Self {
        match bytes.split_first_chunk::<8>() {
            Some((length, [b'{', ..]))
                if (2..=MAX_FILE_BYTES).contains(&u64::from_le_bytes(*length)) =>
            {
                Self::Checkpoint
            }
            _ => Self::Image,
        }
    }
}

/// A user's image, decoded and reduced to what the network sees.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The CIFAR-sized input, channel-major `u8` (3 × 32 × 32).
    pub pixels: Vec<u8>,
    /// The same square at [`VIEW_SIDE`] pixels, for display.
    pub view: RgbImage,
    /// The decoded image's size (after EXIF rotation).
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// What was done to fit the image to the network, in words for the user.
    pub notes: Vec<String>,
}

/// Decodes an image file and prepares it, made square as `framing` says; errors name what is
/// wrong with the file.
pub fn prepare(bytes: &[u8], framing: Framing) -> Result<Prepared, ModelError> {
    if bytes.is_empty() {
        return Err(ModelError::Image("the file is empty".into()));
    }
    let image = decode_image_with(bytes, BROWSER_LIMITS)?;
    let (width, height) = (image.width(), image.height());
    let mut notes = Vec::new();
    if is_animated(bytes) {
        notes.push("animated image: its first frame was classified".to_string());
    }
    notes.extend(colour_note(image.color()));
    notes.extend(framing.note(width, height));
    if width.max(height) > 32 {
        notes.push("shrunk to 32×32, the size the network was trained on".to_string());
    }
    Ok(Prepared {
        pixels: to_cifar_pixels(&image, framing),
        view: square_view(&image, VIEW_SIDE, framing),
        width,
        height,
        notes,
    })
}

fn colour_note(colour: ColorType) -> Option<String> {
    let mut parts = Vec::new();
    if matches!(
        colour,
        ColorType::L8 | ColorType::L16 | ColorType::La8 | ColorType::La16
    ) {
        parts.push("grayscale: fed as gray RGB");
    }
    if colour.bytes_per_pixel() / colour.channel_count() > 1 {
        parts.push("16-bit or float colour: reduced to 8 bits");
    }
    if colour.has_alpha() {
        parts.push("transparency: drawn over white");
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A loaded model ready to classify on one device.
#[derive(Debug, Clone)]
pub struct Classifier {
    model: Model,
    info: CheckpointInfo,
    device: Device,
}

/// What the page shows about a loaded model.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    /// Architecture name (the registry name it was made from).
    pub architecture: String,
    /// Trainable parameters.
    pub parameters: usize,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// The layer the class activation maps explain; `None` for a network without spatial
    /// layers (the MLP), which the page classifies with but cannot explain.
    pub cam_layer: Option<String>,
    /// The layers whose feature maps the layer explorer shows, input to output.
    pub layers: Vec<String>,
    /// The training epoch the checkpoint was saved after, when the trainer recorded it.
    pub epoch: Option<u64>,
    /// Its validation accuracy (0–1) then, when recorded.
    pub val_accuracy: Option<f64>,
}

impl Classifier {
    /// Loads a checkpoint (SafeTensors bytes written by `trainer`: any network of the registry,
    /// any classes) on `device`. Errors name what is wrong with the file.
    pub fn load(bytes: &[u8], device: &Device) -> Result<Self, ModelError> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(ModelError::Checkpoint(format!(
                "{:.0} MB, over the page's limit of {} MB",
                bytes.len() as f64 / 1e6,
                MAX_FILE_BYTES / 1_000_000
            )));
        }
        let checkpoint = Checkpoint::from_bytes(bytes, device)?;
        Ok(Self {
            model: checkpoint.model.valid(),
            info: checkpoint.info,
            device: device.clone(),
        })
    }

    /// Name, size, classes and layers of the model.
    pub fn summary(&self) -> ModelSummary {
        let training = &self.info.training;
        ModelSummary {
            architecture: self.model.config().name.clone(),
            parameters: self.model.parameter_count(),
            classes: self.info.classes.clone(),
            cam_layer: self.model.cam_layer(),
            layers: self.model.layer_names(),
            epoch: training.get("epoch").and_then(|e| e.as_u64()),
            val_accuracy: training.get("val_accuracy").and_then(|a| a.as_f64()),
        }
    }

    /// Whether the network has a layer to explain with class activation maps (every network
    /// but the MLP).
    pub fn can_explain(&self) -> bool {
        self.model.cam_layer().is_some()
    }

    /// The normalised input tensor of a prepared image, `[1, 3, 32, 32]`.
    pub fn input(&self, prepared: &Prepared) -> Tensor<4> {
        self.info
            .normalization
            .tensor(&prepared.pixels, &self.device)
    }

    /// The class probabilities `[1, classes]` of a prepared image: the prediction alone, for a
    /// network that cannot be explained ([`Self::can_explain`]).
    pub fn probabilities_tensor(&self, prepared: &Prepared) -> Tensor<2> {
        softmax(self.model.forward(self.input(prepared)), 1)
    }

    /// Runs the network and the backward pass of a class activation map for `class`
    /// (default: the predicted one); read the returned tensors and call
    /// [`PendingCam::finish`], or use [`Self::explain`]. Fails for a network without a layer
    /// to explain.
    pub fn explain_tensors(
        &self,
        prepared: &Prepared,
        class: Option<usize>,
    ) -> Result<PendingCam, ModelError> {
        cam_tensors(&self.model, self.input(prepared), class, None)
    }

    /// Score-CAM's forward passes for `inputs` (made from [`Self::explain_tensors`]): the
    /// class score of each masked image, to read and pass to [`CamInputs::score_cam`].
    pub fn score_cam_tensor(
        &self,
        prepared: &Prepared,
        inputs: &CamInputs,
    ) -> Result<Tensor<1>, ModelError> {
        inputs.score_cam_logits(&self.model, self.input(prepared))
    }

    /// Grad-CAM of [`Self::explain_tensors`], read back synchronously (every device but a
    /// browser's WebGPU).
    pub fn explain(&self, prepared: &Prepared, class: Option<usize>) -> Result<Cam, ModelError> {
        model::cam::explain(
            &self.model,
            self.input(prepared),
            CamMethod::GradCam,
            class,
            None,
        )
    }

    /// The page's answer for a prepared image, read back synchronously: Grad-CAM's when the
    /// network can be explained, else the prediction alone (see [`Answer::unexplained`]).
    pub fn answer(&self, prepared: &Prepared, class: Option<usize>) -> Result<Answer, ModelError> {
        if self.can_explain() {
            return Ok(Answer::new(&self.explain(prepared, class)?, self.classes()));
        }
        let probabilities = self
            .probabilities_tensor(prepared)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ModelError::BadOption(format!("cannot read the probabilities: {e:?}")))?;
        Answer::unexplained(&probabilities, class, self.classes())
    }

    /// The activations `[1, channels, h, w]` of every layer for the prepared image, input to
    /// output, from one forward pass (none for the MLP).
    pub fn all_activations(&self, prepared: &Prepared) -> Vec<(String, Tensor<4>)> {
        self.model.all_activations(self.input(prepared))
    }

    /// Class names in label order.
    pub fn classes(&self) -> &[String] {
        &self.info.classes
    }
}

/// One class of the ranking the page draws as bars.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ranked {
    /// The class's index (its label).
    pub index: usize,
    /// Its name.
    pub name: String,
    /// The model's probability for it.
    pub probability: f32,
}

/// The answer the page draws: ranked classes and what the heat map explains.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The five most likely classes (fewer when the model has fewer), most likely first.
    pub top: Vec<Ranked>,
    /// The class the heat map explains (the class asked for, else the top one).
    pub explained: usize,
    /// The layer explained; `None` when the network has none (no heat map).
    pub layer: Option<String>,
    /// Maximum of the heat map before scaling was positive (false: nothing to show, or no
    /// heat map at all).
    pub has_heat: bool,
}

impl Answer {
    /// Ranks the probabilities of a class activation map's result.
    pub fn new(cam: &Cam, classes: &[String]) -> Self {
        Self {
            top: rank(&cam.probabilities, classes),
            explained: cam.class,
            layer: Some(cam.layer.clone()),
            has_heat: cam.heat.iter().any(|&v| v > 0.0),
        }
    }

    /// The answer of a network without a layer to explain: the ranking alone, `class` (the
    /// top one when absent) marked as the one asked about.
    pub fn unexplained(
        probabilities: &[f32],
        class: Option<usize>,
        classes: &[String],
    ) -> Result<Self, ModelError> {
        let explained = match class {
            Some(c) if c >= probabilities.len() => {
                return Err(ModelError::BadOption(format!(
                    "class {c} does not exist (0–{})",
                    probabilities.len().saturating_sub(1)
                )));
            }
            Some(c) => c,
            None => argmax(probabilities),
        };
        Ok(Self {
            top: rank(probabilities, classes),
            explained,
            layer: None,
            has_heat: false,
        })
    }
}

/// The five most likely classes, most likely first.
fn rank(probabilities: &[f32], classes: &[String]) -> Vec<Ranked> {
    let mut ranked: Vec<Ranked> = probabilities
        .iter()
        .enumerate()
        .map(|(index, &probability)| Ranked {
            index,
            name: classes.get(index).cloned().unwrap_or_default(),
            probability,
        })
        .collect();
    ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    ranked.truncate(5);
    ranked
}
