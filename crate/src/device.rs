//! Choosing where tensors live: burn's Flex CPU backend, or wgpu (Vulkan,
//! Metal or DX12 natively; WebGPU in the browser).

use burn::tensor::Device;

use crate::error::{Error, Result};

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn's Flex CPU backend.
    Cpu,
    /// wgpu: the system's GPU (or a software Vulkan driver such as lavapipe).
    Gpu,
}

impl std::str::FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "gpu" => Ok(Self::Gpu),
            other => Err(Error::input("--device", format!("'{other}' is not a device (use cpu or gpu)"))),
        }
    }
}

/// The CPU device.
pub fn cpu() -> Device {
    Device::flex()
}

/// Initialises the default wgpu adapter natively (blocking). The runtime can
/// be initialised once per process, so the result is kept and shared.
#[cfg(all(feature = "gpu", not(target_family = "wasm")))]
pub fn gpu() -> Result<Device> {
    static GPU: std::sync::OnceLock<std::result::Result<Device, String>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Device::wgpu_options().init().map_err(|e| format!("{e:?}")))
        .clone()
        .map_err(|e| Error::device(format!("no usable GPU adapter: {e}")))
}

/// Initialises WebGPU (or any wgpu adapter) asynchronously, as browsers require.
#[cfg(feature = "gpu")]
pub async fn gpu_async() -> Result<Device> {
    Device::wgpu_options().init_async().await.map_err(|e| Error::device(format!("no usable GPU adapter: {e:?}")))
}

/// A device for `backend` (native).
#[cfg(not(target_family = "wasm"))]
pub fn native(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Cpu => Ok(cpu()),
        #[cfg(feature = "gpu")]
        Backend::Gpu => gpu(),
        #[cfg(not(feature = "gpu"))]
        Backend::Gpu => Err(Error::device("this build has no GPU support (enable the `gpu` feature)")),
    }
}
