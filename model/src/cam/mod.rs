//! Class activation maps: where a convolutional network looked. One forward and backward pass
//! gives a layer's activations and the gradient of a class score with respect to them
//! ([`CamInputs`]); each [`CamMethod`] turns them into a map at the layer's resolution
//! (Score-CAM with forward passes of masked images instead), which is upsampled to the input
//! size and scaled to 0–1. Works on every device that has autodiff.

mod method;
mod render;

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

pub use method::{CamMethod, LayerMaps};
use render::normalise;
pub use render::{Align, heat_color, overlay, upsample, upsample_aligned};

use crate::{IMAGE_SIZE, Model, ModelError};

/// A heat map and the prediction it explains.
#[derive(Clone, Debug, PartialEq)]
pub struct Cam {
    /// How the map was made.
    pub method: CamMethod,
    /// The class explained.
    pub class: usize,
    /// The layer whose activations were weighted.
    pub layer: String,
    /// `32 × 32` values in 0–1, row-major (1 where the evidence is strongest).
    pub heat: Vec<f32>,
    /// The model's class probabilities for the image.
    pub probabilities: Vec<f32>,
}

/// `method`'s map of one normalised image `[1, 3, 32, 32]` for `class` (default: the predicted
/// one) at `layer` (default: the model's last convolutional stage). The model runs in inference
/// mode; the image's device must support autodiff (every Burn device does). Reads the results
/// back synchronously; in a browser on WebGPU use [`cam_tensors`] and read them async.
pub fn explain(
    model: &Model,
    image: Tensor<4>,
    method: CamMethod,
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<Cam, ModelError> {
    let mut cams = explain_each(model, image, &[method], class, layer)?;
    Ok(cams.remove(0))
}

/// [`explain`] for several methods from one forward and backward pass, in the order given.
pub fn explain_each(
    model: &Model,
    image: Tensor<4>,
    methods: &[CamMethod],
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<Vec<Cam>, ModelError> {
    let inputs = cam_inputs(model, image.clone(), class, layer)?;
    methods
        .iter()
        .map(|&method| match method {
            CamMethod::ScoreCam => {
                let logits = inputs.score_cam_logits(model, image.clone())?;
                inputs.score_cam(&read(logits, "masked images' scores")?)
            }
            _ => inputs.cam(method),
        })
        .collect()
}

/// The activations and gradients of [`cam_tensors`], read back synchronously.
pub fn cam_inputs(
    model: &Model,
    image: Tensor<4>,
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<CamInputs, ModelError> {
    let pending = cam_tensors(model, image, class, layer)?;
    let probabilities = read(pending.probabilities.clone(), "probabilities")?;
    let activations = read(pending.activations.clone(), "activations")?;
    let gradients = read(pending.gradients.clone(), "gradients")?;
    pending.finish(&probabilities, activations, gradients)
}

/// The device tensors of a class activation map, computed but not yet read back to the host:
/// read [`probabilities`](Self::probabilities), [`activations`](Self::activations) and
/// [`gradients`](Self::gradients) (with `into_data`, or `into_data_async` where reads must not
/// block) and hand the values to [`finish`](Self::finish).
#[derive(Debug)]
pub struct PendingCam {
    /// Class probabilities `[1, classes]`.
    pub probabilities: Tensor<2>,
    /// The layer's activations `[1, channels, h, w]`.
    pub activations: Tensor<4>,
    /// The gradient of the class logit with respect to them, same shape.
    pub gradients: Tensor<4>,
    class: Option<usize>,
    layer: String,
}

/// Runs the forward and backward passes of a class activation map without reading anything
/// back (see [`explain`] for the arguments).
pub fn cam_tensors(
    model: &Model,
    image: Tensor<4>,
    class: Option<usize>,
    layer: Option<&str>,
) -> Result<PendingCam, ModelError> {
    let layer = match layer {
        Some(l) => l.to_string(),
        None => model.cam_layer().ok_or_else(|| {
            ModelError::BadOption(format!(
                "`{}` has no convolutional layer to explain",
                model.config().name
            ))
        })?,
    };
    // Inference mode without autodiff up to the layer; from there the activations are the one
    // tracked tensor, so the gradient reaches them with the parameters as constants.
    let model = model.valid();
    let activations = model
        .activations(image, &layer)?
        .detach()
        .autodiff()
        .require_grad();
    let logits = model.forward_from(activations.clone(), &layer)?;
    let [_, classes] = logits.dims();
    let scores = logits.clone().detach();
    let probabilities = softmax(scores.clone(), 1).inner();
    let target = match class {
        Some(c) if c >= classes => {
            return Err(ModelError::BadOption(format!(
                "class {c} does not exist (0–{})",
                classes - 1
            )));
        }
        Some(c) => logits.slice([0..1, c..c + 1]).sum(),
        // The top score, picked on the device so nothing is read back before the backward pass.
        None => {
            let top = scores.clone().max_dim(1).repeat_dim(1, classes);
            (logits * scores.equal(top).float()).sum()
        }
    };
    let grads = target.backward();
    let gradients = activations
        .grad(&grads)
        .ok_or_else(|| ModelError::BadOption(format!("no gradient reached layer `{layer}`")))?;
    Ok(PendingCam {
        probabilities,
        activations: activations.inner(),
        gradients,
        class,
        layer,
    })
}

impl PendingCam {
    /// The inputs of every method from the values read back, row-major: `probabilities` of
    /// [`Self::probabilities`], `activations` and `gradients` of the tensors of those names.
    pub fn finish(
        self,
        probabilities: &[f32],
        activations: Vec<f32>,
        gradients: Vec<f32>,
    ) -> Result<CamInputs, ModelError> {
        let [_, channels, h, w] = self.activations.dims();
        if probabilities.is_empty() {
            return Err(ModelError::BadOption("no probabilities were read".into()));
        }
        Ok(CamInputs {
            class: self.class.unwrap_or_else(|| argmax(probabilities)),
            layer: self.layer,
            probabilities: probabilities.to_vec(),
            maps: LayerMaps::new((channels, h, w), activations, gradients)?,
        })
    }
}

/// What every method works from: the prediction, the class explained, and the layer's
/// activations and gradients for it.
#[derive(Clone, Debug, PartialEq)]
pub struct CamInputs {
    /// The class explained.
    pub class: usize,
    /// The layer.
    pub layer: String,
    /// The model's class probabilities for the image.
    pub probabilities: Vec<f32>,
    /// The layer's activations and gradients.
    pub maps: LayerMaps,
}

impl CamInputs {
    /// `method`'s heat map; Score-CAM needs forward passes: [`Self::score_cam_logits`], then
    /// [`Self::score_cam`] (or [`explain`]).
    pub fn cam(&self, method: CamMethod) -> Result<Cam, ModelError> {
        let raw = self.maps.map(method)?;
        Ok(self.finish(method, &raw))
    }

    /// Score-CAM's forward passes on the device: the class logit `[channels]` of the image
    /// `[1, 3, 32, 32]` masked by each channel's map (in batches of 64).
    pub fn score_cam_logits(
        &self,
        model: &Model,
        image: Tensor<4>,
    ) -> Result<Tensor<1>, ModelError> {
        let (h, w) = (self.maps.height, self.maps.width);
        let masks = method::score_masks(&self.maps, |channel| {
            upsample_aligned(channel, h, w, Align::Corners)
        });
        let device = image.device();
        let side = IMAGE_SIZE;
        let model = model.valid();
        let scores: Vec<Tensor<1>> = masks
            .chunks(64)
            .map(|chunk| {
                let n = chunk.len();
                let values: Vec<f32> = chunk.concat();
                let masks =
                    Tensor::<4>::from_data(TensorData::new(values, [n, 1, side, side]), &device);
                let masked = image.clone().repeat_dim(0, n) * masks.repeat_dim(1, 3);
                let logits = model.forward(masked);
                logits
                    .slice([0..n, self.class..self.class + 1])
                    .reshape([n])
            })
            .collect();
        Ok(Tensor::cat(scores, 0))
    }

    /// Score-CAM's heat map from the logits of [`Self::score_cam_logits`], read back.
    pub fn score_cam(&self, logits: &[f32]) -> Result<Cam, ModelError> {
        let raw = self.score_cam_map(logits)?;
        Ok(self.finish(CamMethod::ScoreCam, &raw))
    }

    /// Score-CAM's map at the layer's resolution, after the ReLU (what
    /// [`LayerMaps::map`] gives for the other methods), from the logits of
    /// [`Self::score_cam_logits`].
    pub fn score_cam_map(&self, logits: &[f32]) -> Result<Vec<f32>, ModelError> {
        if logits.len() != self.maps.channels {
            return Err(ModelError::BadOption(format!(
                "Score-CAM needs one score per channel ({}), got {}",
                self.maps.channels,
                logits.len()
            )));
        }
        let weights = method::score_weights(logits);
        Ok(self
            .maps
            .weighted(&weights)
            .into_iter()
            .map(|v| v.max(0.0))
            .collect())
    }

    /// The map at the layer's resolution, upsampled and scaled.
    fn finish(&self, method: CamMethod, raw: &[f32]) -> Cam {
        Cam {
            method,
            class: self.class,
            layer: self.layer.clone(),
            heat: normalise(upsample(raw, self.maps.height, self.maps.width)),
            probabilities: self.probabilities.clone(),
        }
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> usize {
    (0..values.len()).fold(0, |b, c| if values[c] > values[b] { c } else { b })
}

fn read<const D: usize>(tensor: Tensor<D>, what: &str) -> Result<Vec<f32>, ModelError> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| ModelError::BadOption(format!("cannot read the {what}: {e:?}")))
}
