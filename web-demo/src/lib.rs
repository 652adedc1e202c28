//! The cifar-burn web page's Rust side: a photo's bytes in, top classes and a Grad-CAM heat
//! map out, on WebGPU (burn-wgpu) or on the CPU (Flex) when the browser has no WebGPU.
//!
//! [`classify`] holds everything that does not need a browser, so it is tested natively;
//! the `web` module (wasm32 only) exposes it to the page's script with wasm-bindgen.

pub mod classify;
pub mod render;
#[cfg(target_arch = "wasm32")]
mod web;
