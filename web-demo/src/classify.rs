//! Loading a shipped model, preparing a user's image and explaining the prediction, written
//! once for every device. Reading results back is left to the caller because a browser's
//! WebGPU device may only be read asynchronously.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use image::{ColorType, RgbImage};
use model::cam::{Cam, CamInputs, CamMethod, PendingCam, cam_tensors};
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
pub struct ModelSummary {
    /// Architecture name.
    pub architecture: String,
    /// Trainable parameters.
    pub parameters: usize,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// The layer Grad-CAM explains.
    pub cam_layer: String,
}

impl Classifier {
    /// Loads a checkpoint (SafeTensors bytes written by `trainer`) on `device`. Models without
    /// a convolutional layer are refused: the page needs a Grad-CAM.
    pub fn load(bytes: &[u8], device: &Device) -> Result<Self, ModelError> {
        let checkpoint = Checkpoint::from_bytes(bytes, device)?;
        if checkpoint.model.cam_layer().is_none() {
            return Err(ModelError::Checkpoint(format!(
                "`{}` has no convolutional layer, so the page cannot explain it",
                checkpoint.model.config().name
            )));
        }
        Ok(Self {
            model: checkpoint.model.valid(),
            info: checkpoint.info,
            device: device.clone(),
        })
    }

    /// Name, size and classes of the model.
    pub fn summary(&self) -> ModelSummary {
        ModelSummary {
            architecture: self.model.config().name.clone(),
            parameters: self.model.parameter_count(),
            classes: self.info.classes.clone(),
            cam_layer: self.model.cam_layer().unwrap_or_default(),
        }
    }

    /// The normalised input tensor of a prepared image, `[1, 3, 32, 32]`.
    pub fn input(&self, prepared: &Prepared) -> Tensor<4> {
        self.info
            .normalization
            .tensor(&prepared.pixels, &self.device)
    }

    /// Runs the network and the backward pass of a class activation map for `class`
    /// (default: the predicted one); read the returned tensors and call
    /// [`PendingCam::finish`], or use [`Self::explain`].
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

    /// The layers whose feature maps can be shown, input to output.
    pub fn layers(&self) -> Vec<String> {
        self.model.layer_names()
    }

    /// The activations `[1, channels, h, w]` of every layer for the prepared image, input to
    /// output, from one forward pass.
    pub fn all_activations(&self, prepared: &Prepared) -> Vec<(String, Tensor<4>)> {
        self.model.all_activations(self.input(prepared))
    }

    /// Class names in label order.
    pub fn classes(&self) -> &[String] {
        &self.info.classes
    }
}

/// The answer the page draws: ranked classes and the heat map.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// `(class index, name, probability)`, most likely first, five at most.
    pub top: Vec<(usize, String, f32)>,
    /// The class the heat map explains.
    pub explained: usize,
    /// The layer explained.
    pub layer: String,
    /// Maximum of the heat map before scaling was positive (false: nothing to show).
    pub has_heat: bool,
}

impl Answer {
    /// Ranks the probabilities of a class activation map's result.
    pub fn new(cam: &Cam, classes: &[String]) -> Self {
        let mut ranked: Vec<(usize, String, f32)> = cam
            .probabilities
            .iter()
            .enumerate()
            .map(|(i, &p)| (i, classes.get(i).cloned().unwrap_or_default(), p))
            .collect();
        ranked.sort_by(|a, b| b.2.total_cmp(&a.2));
        ranked.truncate(5);
        Self {
            top: ranked,
            explained: cam.class,
            layer: cam.layer.clone(),
            has_heat: cam.heat.iter().any(|&v| v > 0.0),
        }
    }
}
