//! Choosing the device: wgpu when a real GPU adapter exists, otherwise Flex on the CPU.

use std::fmt;

use anyhow::{Result, bail};
use burn::tensor::{Device, DeviceKind, Tensor};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Which backend runs the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// wgpu when a hardware GPU adapter is found, Flex otherwise.
    #[default]
    Auto,
    /// wgpu (Vulkan, Metal, DX12 or GL), on whatever adapter it finds, software ones included.
    Wgpu,
    /// Flex, Burn's pure-Rust CPU backend.
    Flex,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            self.to_possible_value()
                .expect("no skipped variants")
                .get_name(),
        )
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
/// when wgpu has no adapter here. Panics inside wgpu are caught and kept quiet.
fn probe_wgpu() -> Option<(Device, String)> {
    // wgpu asks every graphics API, and on a machine without a display Wayland's client
    // library prints "XDG_RUNTIME_DIR is invalid" while the GL one is asked: not our error.
    let _quiet = QuietStderr::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(|| {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
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

/// Picks the device for `backend`.
pub fn select(backend: Backend) -> Result<Selected> {
    let flex = |reason: Option<String>| Selected {
        device: Device::flex(),
        name: "Flex (CPU)".into(),
        reason,
        backend: Backend::Flex,
    };
    let wgpu = |device, adapter: String, reason| Selected {
        device,
        name: format!("wgpu on {adapter}"),
        reason,
        backend: Backend::Wgpu,
    };
    match backend {
        Backend::Flex => Ok(flex(None)),
        Backend::Wgpu => match probe_wgpu() {
            Some((device, adapter)) => Ok(wgpu(device, adapter, None)),
            None => {
                bail!("--backend wgpu: no wgpu adapter found (no GPU driver, Vulkan or GL here)")
            }
        },
        Backend::Auto => Ok(match probe_wgpu() {
            Some((_, adapter)) if is_software(&adapter) => flex(Some(format!(
                "auto: the only wgpu adapter, {adapter}, emulates a GPU on the CPU"
            ))),
            Some((device, adapter)) => wgpu(device, adapter, Some("auto: found a GPU".into())),
            None => flex(Some("auto: no wgpu adapter found".into())),
        }),
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
    fn flex_is_always_available_and_auto_never_fails() {
        assert_eq!(select(Backend::Flex).unwrap().description(), "Flex (CPU)");
        let auto = select(Backend::Auto).unwrap().description();
        assert!(auto.contains("(auto: "), "{auto}");
    }
}
