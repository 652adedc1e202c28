//! The page's interface to Rust (wasm32 only): `Demo` picks the device, loads a model (shipped
//! or the user's own checkpoint), takes an image and answers with the top classes and a heat
//! map by the chosen class activation map method.
//!
//! Typed both ways: options arrive as string enums ([`Method`], [`Framing`]), answers leave as
//! plain JavaScript objects (serde structs through `serde-wasm-bindgen`, their shapes declared
//! in the TypeScript section below) and every picture as an `ImageData` of its own width and
//! height.

use burn::tensor::{Device, Tensor};
use model::cam::CamMethod;
use serde::{Serialize, Serializer};
use wasm_bindgen::prelude::*;
use web_sys::ImageData;

use crate::classify::{self, Answer, Classifier, FileKind, ModelSummary, Prepared, prepare};
use crate::render::{heat_rgba, rgba, strongest_maps};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** A loaded model. */
export interface ModelSummary {
  architecture: string; parameters: number; classes: string[];
  /** The layer the heat maps explain; null for a network without spatial layers (the MLP). */
  camLayer: string | null; layers: string[];
  epoch: number | null; valAccuracy: number | null;
}
/** A decoded image: its size, what was done to fit it, and what the network sees. */
export interface ImageInfo { width: number; height: number; notes: string[]; view: ImageData; }
export interface Ranked { index: number; name: string; probability: number; }
/** A prediction and, when the network can be explained, one method's heat map. */
export interface Explained {
  top: Ranked[]; explained: number; layer: string | null; hasHeat: boolean;
  heat: ImageData | null; method: Method | null; methodTitle: string | null;
}
export interface MethodInfo { name: Method; title: string; classSpecific: boolean; }
export interface FeatureMap { channel: number; mean: number; image: ImageData; }
export interface Layer { name: string; channels: number; height: number; width: number; maps: FeatureMap[]; }
"#;

/// Makes Rust panics readable in the browser console.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The bytes of this module's linear memory (it grows and never shrinks): the browser test
/// checks that 1,000 classifications in a row keep it within a bound.
#[wasm_bindgen]
pub fn memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size::<0>() * 65_536) as f64
}

/// Switches the CPU backend between the patched NCHW kernels for convolution and batch norm
/// (`true`, the default) and Flex's own route (`false`): the page's `?flex-kernels=generic`
/// measures its CPU path before the patch (`patches/README.md`).
#[wasm_bindgen]
pub fn set_flex_kernels(nchw: bool) {
    burn_flex::set_nchw_kernels(nchw);
}

/// The largest file the page reads, in bytes: the page refuses larger ones by their size.
#[wasm_bindgen]
pub fn max_file_bytes() -> f64 {
    classify::MAX_FILE_BYTES as f64
}

/// What a file holds, told by its first bytes (see [`FileKind`]).
#[wasm_bindgen]
pub enum Upload {
    /// A picture to classify (or junk, which the image decoder refuses with its reason).
    Image = "image",
    /// A SafeTensors file: a checkpoint to load as the user's model.
    Checkpoint = "checkpoint",
}

/// Sniffs a file's first bytes (9 are enough): an image or a checkpoint, whatever its name
/// says.
#[wasm_bindgen]
pub fn upload_kind(head: &[u8]) -> Upload {
    match FileKind::of(head) {
        FileKind::Image => Upload::Image,
        FileKind::Checkpoint => Upload::Checkpoint,
    }
}

/// A class activation map method, by the name the manifest and the address (`?method=`) use.
#[wasm_bindgen]
#[derive(Clone, Copy, PartialEq)]
pub enum Method {
    /// Grad-CAM.
    GradCam = "gradcam",
    /// HiResCAM.
    HiResCam = "hirescam",
    /// Grad-CAM++.
    GradCamPlusPlus = "gradcam++",
    /// XGrad-CAM.
    XGradCam = "xgradcam",
    /// LayerCAM.
    LayerCam = "layercam",
    /// Eigen-CAM.
    EigenCam = "eigencam",
    /// Score-CAM.
    ScoreCam = "scorecam",
}

impl Method {
    fn of(method: CamMethod) -> Self {
        match method {
            CamMethod::GradCam => Self::GradCam,
            CamMethod::HiResCam => Self::HiResCam,
            CamMethod::GradCamPlusPlus => Self::GradCamPlusPlus,
            CamMethod::XGradCam => Self::XGradCam,
            CamMethod::LayerCam => Self::LayerCam,
            CamMethod::EigenCam => Self::EigenCam,
            CamMethod::ScoreCam => Self::ScoreCam,
        }
    }

    fn cam(self) -> Result<CamMethod, JsError> {
        CamMethod::ALL
            .into_iter()
            .find(|&m| Method::of(m) == self)
            .ok_or_else(|| JsError::new("unknown method: use a name of cam_methods()"))
    }
}

impl Serialize for Method {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let name = self
            .cam()
            .map_err(|_| <S::Error as serde::ser::Error>::custom("invalid method"))?;
        serializer.serialize_str(name.name())
    }
}

/// How a picture that is not square is made square.
#[wasm_bindgen]
pub enum Framing {
    /// Its centre square.
    Crop = "crop",
    /// All of it, on grey.
    Pad = "pad",
}

/// One page's model, image and device.
#[wasm_bindgen]
pub struct Demo {
    device: Device,
    backend: String,
    classifier: Option<Classifier>,
    prepared: Option<Prepared>,
}

#[derive(Serialize)]
struct ImageInfo<'a> {
    width: u32,
    height: u32,
    notes: &'a [String],
    #[serde(with = "serde_wasm_bindgen::preserve")]
    view: ImageData,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Explained {
    #[serde(flatten)]
    answer: Answer,
    /// The heat map at the network's input size; `None` when the network cannot be explained.
    #[serde(serialize_with = "optional_image")]
    heat: Option<ImageData>,
    method: Option<Method>,
    method_title: Option<&'static str>,
}

/// One layer's strongest feature maps.
#[derive(Serialize)]
struct Layer {
    name: String,
    channels: usize,
    height: usize,
    width: usize,
    maps: Vec<FeatureMap>,
}

/// One channel of a layer, drawn in grey.
#[derive(Serialize)]
struct FeatureMap {
    channel: usize,
    mean: f32,
    #[serde(with = "serde_wasm_bindgen::preserve")]
    image: ImageData,
}

/// A method the page offers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MethodInfo {
    name: Method,
    title: &'static str,
    class_specific: bool,
}

fn optional_image<S: Serializer>(image: &Option<ImageData>, s: S) -> Result<S::Ok, S::Error> {
    match image {
        Some(image) => serde_wasm_bindgen::preserve::serialize(image, s),
        None => s.serialize_none(),
    }
}

/// A plain JavaScript object of `value` (`null` for `None`, objects for maps).
fn to_js(value: &impl Serialize) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&format!("cannot hand the answer to the page: {e}")))
}

/// An `ImageData` of `width × height` RGBA bytes, copied out of the module's memory.
fn image_data(rgba: &[u8], width: usize, height: usize) -> Result<ImageData, JsError> {
    let pixels = js_sys::Uint8ClampedArray::new_with_length(rgba.len() as u32);
    pixels.copy_from(rgba);
    ImageData::new_with_js_u8_clamped_array_and_sh(&pixels, width as u32, height as u32)
        .map_err(|e| JsError::new(&format!("cannot make a {width}×{height} picture: {e:?}")))
}

#[wasm_bindgen]
impl Demo {
    /// The CPU (Flex), in either module.
    pub fn cpu() -> Demo {
        Demo::new(Device::flex(), "CPU")
    }

    /// WebGPU, in the module built with the `webgpu` feature; fails with the reason when the
    /// browser gives no adapter.
    #[cfg(feature = "webgpu")]
    pub async fn webgpu() -> Result<Demo, JsError> {
        let device = Device::wgpu_options()
            .init_async()
            .await
            .map_err(|e| JsError::new(&format!("WebGPU failed to start ({e})")))?;
        Ok(Demo::new(device, "WebGPU"))
    }

    fn new(device: Device, backend: &str) -> Demo {
        Demo {
            device,
            backend: backend.to_string(),
            classifier: None,
            prepared: None,
        }
    }

    /// The class activation map methods, Grad-CAM first.
    #[wasm_bindgen(unchecked_return_type = "MethodInfo[]")]
    pub fn cam_methods() -> Result<JsValue, JsError> {
        let methods: Vec<MethodInfo> = CamMethod::ALL
            .iter()
            .map(|&m| MethodInfo {
                name: Method::of(m),
                title: m.title(),
                class_specific: m.is_class_specific(),
            })
            .collect();
        to_js(&methods)
    }

    /// "WebGPU" or "CPU".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Loads a checkpoint file (shipped, or the user's own: any network and classes the
    /// trainer makes). The previous model stays loaded when this fails, and the error says
    /// what is wrong with the file.
    #[wasm_bindgen(unchecked_return_type = "ModelSummary")]
    pub fn load_model(&mut self, bytes: &[u8]) -> Result<JsValue, JsError> {
        let classifier = Classifier::load(bytes, &self.device)?;
        let summary: ModelSummary = classifier.summary();
        let summary = to_js(&summary)?;
        self.classifier = Some(classifier);
        Ok(summary)
    }

    /// Decodes and prepares an image file, made square as `framing` says. The previous image
    /// stays when this fails.
    #[wasm_bindgen(unchecked_return_type = "ImageInfo")]
    pub fn set_image(&mut self, bytes: &[u8], framing: Framing) -> Result<JsValue, JsError> {
        let framing = match framing {
            Framing::Crop => model::preprocess::Framing::Crop,
            Framing::Pad => model::preprocess::Framing::Pad,
            _ => return Err(JsError::new("framing is \"crop\" or \"pad\"")),
        };
        let prepared = prepare(bytes, framing)?;
        let (width, height) = prepared.view.dimensions();
        let info = to_js(&ImageInfo {
            width: prepared.width,
            height: prepared.height,
            notes: &prepared.notes,
            view: image_data(&rgba(&prepared.view), width as usize, height as usize)?,
        })?;
        self.prepared = Some(prepared);
        Ok(info)
    }

    /// Classifies the image and explains `class` (the top class when absent) by `method`.
    /// A network without a layer to explain (the MLP) answers with the ranking alone.
    #[wasm_bindgen(unchecked_return_type = "Promise<Explained>")]
    pub fn explain(&self, class: Option<u32>, method: Method) -> js_sys::Promise {
        let methods = match method.cam() {
            Ok(method) => vec![method],
            Err(e) => return js_sys::Promise::reject(&e.into()),
        };
        self.run(class, methods, |mut explained| to_js(&explained.remove(0)))
    }

    /// [`Demo::explain`] by every method at once, from one forward and backward pass (plus
    /// Score-CAM's), in the order of [`Demo::cam_methods`].
    #[wasm_bindgen(unchecked_return_type = "Promise<Explained[]>")]
    pub fn explain_all(&self, class: Option<u32>) -> js_sys::Promise {
        self.run(class, CamMethod::ALL.to_vec(), |explained| {
            to_js(&explained)
        })
    }

    /// The feature maps of every layer for the current image, input to output, without
    /// blocking: each layer's `per_layer` channels with the highest mean activation,
    /// strongest first. None for a network without spatial layers.
    #[wasm_bindgen(unchecked_return_type = "Promise<Layer[]>")]
    pub fn feature_maps(&self, per_layer: u32) -> js_sys::Promise {
        let work = (self.classifier.clone(), self.prepared.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let (Some(classifier), Some(prepared)) = work else {
                return Err(JsError::new("load a model and an image first").into());
            };
            let mut layers = Vec::new();
            for (name, activations) in classifier.all_activations(&prepared) {
                let [_, channels, height, width] = activations.dims();
                let values = read(activations).await?;
                let maps = strongest_maps(&values, (channels, height, width), per_layer as usize)
                    .into_iter()
                    .map(|map| {
                        Ok(FeatureMap {
                            channel: map.channel,
                            mean: map.mean,
                            image: image_data(&map.rgba, width, height)?,
                        })
                    })
                    .collect::<Result<_, JsError>>()?;
                layers.push(Layer {
                    name,
                    channels,
                    height,
                    width,
                    maps,
                });
            }
            Ok(to_js(&layers)?)
        })
    }

    /// Explains the current image by `methods` without blocking; `answer` turns the results
    /// into what the promise resolves to.
    fn run(
        &self,
        class: Option<u32>,
        methods: Vec<CamMethod>,
        answer: impl FnOnce(Vec<Explained>) -> Result<JsValue, JsError> + 'static,
    ) -> js_sys::Promise {
        // Own copies, so the page may change model or image while this runs.
        let work = (self.classifier.clone(), self.prepared.clone());
        let class = class.map(|c| c as usize);
        wasm_bindgen_futures::future_to_promise(async move {
            let (Some(classifier), Some(prepared)) = work else {
                return Err(JsError::new("load a model and an image first").into());
            };
            let explained = if classifier.can_explain() {
                explain(&classifier, &prepared, class, &methods).await?
            } else if methods.len() == 1 {
                vec![unexplained(&classifier, &prepared, class).await?]
            } else {
                let name = classifier.summary().architecture;
                return Err(JsError::new(&format!(
                    "`{name}` has no spatial layers, so no method can explain it"
                ))
                .into());
            };
            Ok(answer(explained)?)
        })
    }
}

/// `methods`' maps of the prepared image for `class`, reading results back asynchronously.
async fn explain(
    classifier: &Classifier,
    prepared: &Prepared,
    class: Option<usize>,
    methods: &[CamMethod],
) -> Result<Vec<Explained>, JsError> {
    let pending = classifier.explain_tensors(prepared, class)?;
    let probabilities = read(pending.probabilities.clone()).await?;
    let activations = read(pending.activations.clone()).await?;
    let gradients = read(pending.gradients.clone()).await?;
    let inputs = pending.finish(&probabilities, activations, gradients)?;
    let mut explained = Vec::with_capacity(methods.len());
    for &method in methods {
        let cam = match method {
            CamMethod::ScoreCam => {
                let logits = classifier.score_cam_tensor(prepared, &inputs)?;
                inputs.score_cam(&read(logits).await?)?
            }
            other => inputs.cam(other)?,
        };
        let side = model::IMAGE_SIZE;
        explained.push(Explained {
            answer: Answer::new(&cam, classifier.classes()),
            heat: Some(image_data(&heat_rgba(&cam.heat), side, side)?),
            method: Some(Method::of(method)),
            method_title: Some(method.title()),
        });
    }
    Ok(explained)
}

/// The prediction alone, for a network without a layer to explain.
async fn unexplained(
    classifier: &Classifier,
    prepared: &Prepared,
    class: Option<usize>,
) -> Result<Explained, JsError> {
    let probabilities = read(classifier.probabilities_tensor(prepared)).await?;
    Ok(Explained {
        answer: Answer::unexplained(&probabilities, class, classifier.classes())?,
        heat: None,
        method: None,
        method_title: None,
    })
}

/// Reads a tensor back without blocking (WebGPU in a browser cannot block).
async fn read<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, JsError> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(|e| JsError::new(&format!("reading the result failed: {e:?}")))?;
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| JsError::new(&format!("reading the result failed: {e:?}")))
}
