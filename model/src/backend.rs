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
            BackendKind::Wgpu => Device::wgpu(gpu_of_this_rank()),
        }
    }

    /// The device with autodiff (training).
    pub fn training_device(self) -> Device {
        self.device().autodiff()
    }
}

/// The GPU of this process: with several ranks on a node, rank `i` on it
/// takes discrete GPU `i` (one rank per device); else wgpu's default
/// device. `CUBECL_WGPU_DEFAULT_DEVICE` (e.g. `DiscreteGpu(3)`, `Cpu`)
/// overrides both.
fn gpu_of_this_rank() -> DeviceKind {
    let shared_node = videogpt_pipeline::tasks::launched().filter(|l| l.local_size.unwrap_or(1) > 1);
    match shared_node.and_then(|l| l.local_rank) {
        Some(local) if std::env::var_os("CUBECL_WGPU_DEFAULT_DEVICE").is_none() => DeviceKind::DiscreteGpu(local),
        _ => DeviceKind::DefaultDevice,
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

/// `init()` (a model's construction) with `device`'s generator seeded by
/// `seed`, every parameter drawn before the seed's lock is released. burn
/// draws a parameter's initial values lazily, on its first use, so without
/// this they would come from whatever the generator holds at that moment
/// (a training step's dropout seed).
pub fn init_with_seed<M: burn::module::Module>(device: &Device, seed: u64, init: impl FnOnce() -> M) -> M {
    struct Draw;
    impl burn::module::ModuleVisitor for Draw {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<D>>) {
            let _ = param.val();
        }
    }
    with_seed(device, seed, || {
        let module = init();
        module.visit(&mut Draw);
        module
    })
}
