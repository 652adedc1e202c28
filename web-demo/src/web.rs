//! The page's interface to Rust (wasm32 only): `Demo` picks the device, loads a model, takes
//! an image and answers with the top classes and a coloured heat map by the chosen class
//! activation map method.

use burn::tensor::{Device, Tensor};
use model::cam::CamMethod;
use model::preprocess::Framing;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::classify::{Answer, Classifier, Prepared, VIEW_SIDE, prepare};
use crate::render::{FeatureMap, heat_rgba, rgba, strongest_maps};

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
    view_side: u32,
    notes: &'a [String],
}

#[derive(Serialize)]
struct Explained {
    #[serde(flatten)]
    answer: Answer,
    heat_rgba: Vec<u8>,
    /// The method's name (`gradcam`, …) and title (`Grad-CAM`, …).
    method: &'static str,
    method_title: &'static str,
}

/// One layer's strongest feature maps.
#[derive(Serialize)]
struct Layer {
    layer: String,
    channels: usize,
    height: usize,
    width: usize,
    maps: Vec<FeatureMap>,
}

/// A method the page offers.
#[derive(Serialize)]
struct MethodInfo {
    name: &'static str,
    title: &'static str,
    class_specific: bool,
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

    /// The class activation map methods, as JSON `[{name, title, class_specific}]`, Grad-CAM
    /// first.
    pub fn cam_methods() -> Result<String, JsError> {
        let methods: Vec<MethodInfo> = CamMethod::ALL
            .iter()
            .map(|m| MethodInfo {
                name: m.name(),
                title: m.title(),
                class_specific: m.is_class_specific(),
            })
            .collect();
        Ok(serde_json::to_string(&methods)?)
    }

    /// "WebGPU" or "CPU".
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Loads a checkpoint file; returns its summary as JSON. The previous model stays
    /// loaded when this fails.
    pub fn load_model(&mut self, bytes: &[u8]) -> Result<String, JsError> {
        let classifier = Classifier::load(bytes, &self.device)?;
        let summary = serde_json::to_string(&classifier.summary())?;
        self.classifier = Some(classifier);
        Ok(summary)
    }

    /// Decodes and prepares an image file, made square as `framing` says (`crop`, the
    /// default, or `pad`); returns its size and notes as JSON. The previous image stays when
    /// this fails.
    pub fn set_image(&mut self, bytes: &[u8], framing: Option<String>) -> Result<String, JsError> {
        let framing: Framing = framing.as_deref().unwrap_or("crop").parse()?;
        let prepared = prepare(bytes, framing)?;
        let info = serde_json::to_string(&ImageInfo {
            width: prepared.width,
            height: prepared.height,
            view_side: VIEW_SIDE,
            notes: &prepared.notes,
        })?;
        self.prepared = Some(prepared);
        Ok(info)
    }

    /// RGBA pixels of what the network sees, `VIEW_SIDE` square.
    pub fn view_rgba(&self) -> Vec<u8> {
        self.prepared
            .as_ref()
            .map(|p| rgba(&p.view))
            .unwrap_or_default()
    }

    /// Classifies the image and explains `class` (the top class when absent) by `method`
    /// (a name of [`Demo::cam_methods`]; Grad-CAM when absent). Resolves to JSON: `top`
    /// `[index, name, probability]`, `explained`, `layer`, `has_heat`, `method`,
    /// `method_title` and `heat_rgba` (32 × 32 RGBA).
    pub fn explain(&self, class: Option<u32>, method: Option<String>) -> js_sys::Promise {
        let methods = match method.as_deref().unwrap_or("gradcam").parse::<CamMethod>() {
            Ok(method) => vec![method],
            Err(e) => return js_sys::Promise::reject(&JsError::from(e).into()),
        };
        self.run(class, methods, |mut explained| {
            Ok(serde_json::to_string(&explained.remove(0))?)
        })
    }

    /// [`Demo::explain`] by every method at once, from one forward and backward pass (plus
    /// Score-CAM's). Resolves to a JSON array of what `explain` gives, in the order of
    /// [`Demo::cam_methods`].
    pub fn explain_all(&self, class: Option<u32>) -> js_sys::Promise {
        self.run(class, CamMethod::ALL.to_vec(), |explained| {
            Ok(serde_json::to_string(&explained)?)
        })
    }

    /// The feature maps of every layer for the current image, input to output, without
    /// blocking. Resolves to JSON `[{layer, channels, height, width, maps}]`, `maps` the
    /// `per_layer` channels with the highest mean activation, strongest first (`channel`,
    /// `mean`, `rgba`).
    pub fn feature_maps(&self, per_layer: u32) -> js_sys::Promise {
        let work = (self.classifier.clone(), self.prepared.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let (Some(classifier), Some(prepared)) = work else {
                return Err(JsError::new("load a model and an image first").into());
            };
            let mut layers = Vec::new();
            for (layer, activations) in classifier.all_activations(&prepared) {
                let [_, channels, height, width] = activations.dims();
                let values = read(activations).await?;
                layers.push(Layer {
                    maps: strongest_maps(&values, (channels, height, width), per_layer as usize),
                    layer,
                    channels,
                    height,
                    width,
                });
            }
            Ok(JsValue::from_str(
                &serde_json::to_string(&layers).map_err(JsError::from)?,
            ))
        })
    }

    /// Explains the current image by `methods` without blocking; `answer` turns the results
    /// into the JSON the promise resolves to.
    fn run(
        &self,
        class: Option<u32>,
        methods: Vec<CamMethod>,
        answer: impl FnOnce(Vec<Explained>) -> Result<String, JsError> + 'static,
    ) -> js_sys::Promise {
        // Own copies, so the page may change model or image while this runs.
        let work = (self.classifier.clone(), self.prepared.clone());
        let class = class.map(|c| c as usize);
        wasm_bindgen_futures::future_to_promise(async move {
            let (Some(classifier), Some(prepared)) = work else {
                return Err(JsError::new("load a model and an image first").into());
            };
            match explain(&classifier, &prepared, class, &methods).await {
                Ok(explained) => Ok(JsValue::from_str(&answer(explained)?)),
                Err(e) => Err(e.into()),
            }
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
                let scores = read(classifier.score_cam_tensor(prepared, &inputs)?).await?;
                inputs.score_cam(&scores)?
            }
            other => inputs.cam(other)?,
        };
        explained.push(Explained {
            answer: Answer::new(&cam, classifier.classes()),
            heat_rgba: heat_rgba(&cam.heat),
            method: method.name(),
            method_title: method.title(),
        });
    }
    Ok(explained)
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
