//! Which burn backend runs the models, chosen at the command line.
//!
//! burn 0.22 dispatches on the runtime [`Device`]: the same modules run on
//! `flex` (burn's CPU backend; the default, ~65x faster than `ndarray` on
//! this model) or `wgpu` (any Vulkan, Metal or DX12 GPU, and Mesa's lavapipe
//! software Vulkan on a machine without one).

use std::fmt;
use std::str::FromStr;

use burn::tensor::{Device, DeviceKind};

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

/// Makes the calling thread (the binary's main thread) worker 0 of rayon's
/// global pool, with the other workers one per remaining core, so that the
/// parallel ops it calls (every host convolution, projection and norm on
/// flex) split their work in place and run part of it themselves. Called
/// from outside the pool, each op was queued to the pool's threads, which
/// had to wake up first, while the caller slept until the last one woke it
/// again: a training step makes hundreds of such ops. Measured here (2
/// cores), a reference-64 step went from 0.198-0.209 s to 0.174-0.184 s and
/// the cores' busy share of a reference-240 run from 1.72-1.75 to 1.79-1.80
/// of 2. Call it first thing in `main`, before anything uses the pool; if
/// the pool exists already it is left as it is. Work that other threads
/// hand to the pool runs on the other workers, and on the caller only
/// while it is inside a rayon call itself: the clip loader does not use
/// rayon, and sampling's extra threads (one per further core) find those
/// workers free.
pub fn make_calling_thread_a_worker() {
    if let Err(e) = rayon::ThreadPoolBuilder::new()
        .use_current_thread()
        .build_global()
    {
        tracing::debug!("rayon's global pool was already built: {e}");
    }
}

/// Keeps freed tensor buffers in the process heap instead of handing them
/// back to the kernel. glibc serves blocks above a (dynamic) threshold with
/// fresh `mmap`s and trims the heap eagerly, so every step that allocates a
/// few megabytes (the KV cache grows by one position per sampled token)
/// pays page faults and page zeroing: measured here, sampling 8 x 1024
/// tokens took 24 s with the defaults and 7 s with this. No-op elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only adjusts allocator parameters; called before
        // any worker threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
