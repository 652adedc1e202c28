//! Choosing the device: CUDA or wgpu when a real GPU exists, otherwise Flex on the CPU.
//!
//! CUDA (`--features cuda`) and wgpu pinned to Vulkan with SPIR-V kernels (`--features
//! vulkan`) are cargo features, off by default: the default build stays as small as it was.

use std::fmt;

use anyhow::{Result, bail};
use burn::tensor::{Device, DeviceKind, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::option_name::option_name;

/// Which backend runs the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// The first GPU backend compiled in that finds a hardware GPU (CUDA, then Vulkan with
    /// SPIR-V, then wgpu: the expected order of speed, not yet measured), Flex when none does.
    #[default]
    Auto,
    /// wgpu (Vulkan, Metal, DX12 or GL), on whatever adapter it finds, software ones included.
    Wgpu,
    /// wgpu pinned to Vulkan, with SPIR-V kernels (built with `--features vulkan`).
    Vulkan,
    /// CUDA through CubeCL, on the first NVIDIA GPU (built with `--features cuda`).
    Cuda,
    /// Flex, Burn's pure-Rust CPU backend.
    Flex,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&option_name(self))
    }
}

/// A chosen device, what it is, and why it was chosen.
pub struct Selected {
    /// The device.
    pub device: Device,
    /// Backend and adapter, e.g. `Flex (CPU)` or `wgpu on NVIDIA H100`.
    pub name: String,
    /// Why `auto` chose it, when it did.
    pub reason: Option<String>,
    /// The backend alone, as `--backend` names it (`flex`, `wgpu`).
    pub backend: Backend,
}

impl Selected {
    /// The name, with the reason when there is one.
    pub fn description(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{} ({reason})", self.name),
            None => self.name.clone(),
        }
    }
}

/// Adapter names of software (CPU) implementations of Vulkan/WebGPU.
const SOFTWARE_ADAPTERS: [&str; 4] = ["llvmpipe", "lavapipe", "swiftshader", "software"];

/// Opens the default wgpu adapter and runs one tiny operation; returns its name, or `None`
/// when wgpu has no adapter here.
fn probe_wgpu() -> Option<(Device, String)> {
    probe(|| Device::wgpu(DeviceKind::DefaultDevice))
}

/// As [`probe_wgpu`], pinned to Vulkan (SPIR-V kernels).
#[cfg(feature = "vulkan")]
fn probe_vulkan() -> Option<(Device, String)> {
    probe(|| Device::vulkan(DeviceKind::DefaultDevice))
}

/// Opens the first CUDA device (the driver and NVRTC are loaded at run time) and runs one tiny
/// operation; `None` when there is no NVIDIA driver or GPU.
#[cfg(feature = "cuda")]
fn probe_cuda() -> Option<(Device, String)> {
    probe(|| Device::cuda(0))
}

/// Opens a device with `open` and runs one tiny operation on it; returns the device and its
/// adapter's name, or `None` when that fails. Panics inside the backend are caught and kept
/// quiet.
fn probe(open: fn() -> Device) -> Option<(Device, String)> {
    // wgpu asks every graphics API, and on a machine without a display Wayland's client
    // library prints "XDG_RUNTIME_DIR is invalid" while the GL one is asked: not our error.
    let _quiet = QuietStderr::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| {
        let device = open();
        let sum = Tensor::<1>::ones([4], &device).sum().into_scalar::<f32>();
        let name = device
            .identity()
            .map(|i| i.name)
            .unwrap_or_else(|| "unknown adapter".into());
        (sum == 4.0).then_some((device, name))
    });
    std::panic::set_hook(hook);
    result.ok().flatten()
}

/// Standard error sent to /dev/null while it lives (Unix; elsewhere it does nothing).
struct QuietStderr {
    #[cfg(unix)]
    saved: Option<i32>,
}

impl QuietStderr {
    fn new() -> Self {
        #[cfg(unix)]
        {
            // SAFETY: plain descriptor calls; 2 is restored from `saved` on drop, and a
            // failed call leaves standard error as it was.
            let saved = unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                if null < 0 {
                    return Self { saved: None };
                }
                let saved = libc::dup(2);
                if saved >= 0 && libc::dup2(null, 2) < 0 {
                    libc::close(saved);
                    libc::close(null);
                    return Self { saved: None };
                }
                libc::close(null);
                (saved >= 0).then_some(saved)
            };
            Self { saved }
        }
        #[cfg(not(unix))]
        Self {}
    }
}

impl Drop for QuietStderr {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.saved {
            // SAFETY: `saved` is the descriptor `new` duplicated from 2.
            unsafe {
                libc::dup2(saved, 2);
                libc::close(saved);
            }
        }
    }
}

/// The GPU backends this build has, in the order `auto` tries them: CubeCL's CUDA runtime,
/// then wgpu pinned to Vulkan (SPIR-V kernels), then wgpu with WGSL.
const GPU_BACKENDS: &[Backend] = &[
    #[cfg(feature = "cuda")]
    Backend::Cuda,
    #[cfg(feature = "vulkan")]
    Backend::Vulkan,
    Backend::Wgpu,
];

/// Probes one of [`GPU_BACKENDS`].
fn probe_gpu(backend: Backend) -> Option<(Device, String)> {
    match backend {
        #[cfg(feature = "cuda")]
        Backend::Cuda => probe_cuda(),
        #[cfg(feature = "vulkan")]
        Backend::Vulkan => probe_vulkan(),
        _ => probe_wgpu(),
    }
}

/// What is missing when `backend`, compiled in, found no device.
fn not_found(backend: Backend) -> &'static str {
    match backend {
        Backend::Cuda => {
            "no CUDA device found (no NVIDIA driver, or libcuda/libnvrtc not on the library path)"
        }
        Backend::Vulkan => "no Vulkan adapter found (no Vulkan loader or driver here)",
        _ => "no wgpu adapter found (no GPU driver, Vulkan or GL here)",
    }
}

/// Picks the device for `backend`.
pub fn select(backend: Backend) -> Result<Selected> {
    let flex = |reason: Option<String>| Selected {
        device: Device::flex(),
        name: "Flex (CPU)".into(),
        reason,
        backend: Backend::Flex,
    };
    let gpu = |device, backend, adapter: String, reason| Selected {
        device,
        name: format!("{backend} on {adapter}"),
        reason,
        backend,
    };
    match backend {
        Backend::Flex => Ok(flex(None)),
        Backend::Auto => {
            let mut passed_over = Vec::new();
            for &candidate in GPU_BACKENDS {
                match probe_gpu(candidate) {
                    Some((_, adapter)) if is_software(&adapter) => passed_over
                        .push(format!("{candidate}: {adapter} emulates a GPU on the CPU")),
                    Some((device, adapter)) => {
                        let mut reason = format!("auto: {candidate} found a GPU");
                        if !passed_over.is_empty() {
                            reason += &format!(" ({})", passed_over.join("; "));
                        }
                        return Ok(gpu(device, candidate, adapter, Some(reason)));
                    }
                    None => passed_over.push(format!("{candidate}: {}", not_found(candidate))),
                }
            }
            Ok(flex(Some(format!("auto: {}", passed_over.join("; ")))))
        }
        _ if !GPU_BACKENDS.contains(&backend) => bail!(
            "--backend {backend}: this trainer was built without it; rebuild with \
             `cargo build --release -p trainer --features {backend}`"
        ),
        _ => match probe_gpu(backend) {
            Some((device, adapter)) => Ok(gpu(device, backend, adapter, None)),
            None => bail!("--backend {backend}: {}", not_found(backend)),
        },
    }
}

fn is_software(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SOFTWARE_ADAPTERS.iter().any(|s| lower.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_adapters_are_recognised() {
        assert!(is_software("llvmpipe (LLVM 15.0.6, 256 bits)"));
        assert!(is_software("SwiftShader Device (Subzero)"));
        assert!(!is_software("NVIDIA H100 80GB HBM3"));
    }

    #[test]
    fn a_backend_left_out_of_the_build_names_the_feature_that_brings_it() {
        for backend in [Backend::Cuda, Backend::Vulkan] {
            if GPU_BACKENDS.contains(&backend) {
                continue;
            }
            let err = select(backend).err().expect("not compiled in").to_string();
            assert!(err.contains(&format!("--features {backend}")), "{err}");
        }
    }

    #[test]
    fn flex_is_always_available_and_auto_never_fails() {
        assert_eq!(select(Backend::Flex).unwrap().description(), "Flex (CPU)");
        let auto = select(Backend::Auto).unwrap().description();
        assert!(auto.contains("(auto: "), "{auto}");
    }
}
