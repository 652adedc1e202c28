//! The browser demo (WebGPU, CPU fallback, Grad-CAM). This crate is a placeholder until the
//! web-demo issue fills it; it reuses the `model` crate.

pub use model::CLASSES;
