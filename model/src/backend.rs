//! Which burn backend runs the models, chosen at the command line.
//!
//! burn 0.22 dispatches on the runtime [`Device`]: the same modules run on
//! `flex` (burn's CPU backend; the default, ~65x faster than `ndarray` on
//! this model) or `wgpu` (any Vulkan, Metal or DX12 GPU, and Mesa's lavapipe
//! software Vulkan on a machine without one).

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, DeviceKind};

/// Points burn's `Device::default()` at the CPU unless `BURN_DEVICE` says
/// otherwise. The models always name their device; burn itself uses the
/// default only to hold optimizer state while a checkpoint loads (it moves
/// to the parameters' device on the next step), and with wgpu compiled in
/// that default would probe the Vulkan adapters of a CPU run and print
/// the driver's warnings. Call first thing in `main`, before any thread.
pub fn keep_default_device_on_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called at the start of `main`, while the process has one thread.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    #[default]
    Flex,
    Wgpu,
}

impl BackendKind {
    /// The device without autodiff (inference).
    pub fn device(self) -> Device {
        match self {
            BackendKind::Flex => Device::flex(),
            BackendKind::Wgpu => Device::wgpu(DeviceKind::DefaultDevice),
        }
    }

    /// The device with autodiff (training).
    pub fn training_device(self) -> Device {
        self.device().autodiff()
    }
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "flex" | "cpu" => Ok(BackendKind::Flex),
            "wgpu" | "gpu" => Ok(BackendKind::Wgpu),
            other => Err(format!("unknown backend `{other}` (expected flex or wgpu)")),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Flex => "flex",
            BackendKind::Wgpu => "wgpu",
        })
    }
}

/// Runs `f` right after seeding `device`'s random generator, holding a
/// process-wide lock, so that model initialisation and dropout masks depend
/// on `seed` alone even when several trainings share a process (tests): the
/// generator is global to the backend.
pub fn with_seed<T>(device: &Device, seed: u64, f: impl FnOnce() -> T) -> T {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    f()
}
