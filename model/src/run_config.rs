//! What a VQ-VAE run records about itself: the training options, the model
//! config with the data statistics (`config.json`), and where training
//! stands (`state.json` in every checkpoint). Shared by [`crate::train`],
//! which writes them, and [`crate::checkpoint`], which stores and loads them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendKind;
use crate::error::{ModelError, Result};
use crate::ops::Precision;
use crate::schedule::LrSchedule;
use crate::vqvae::VqVaeConfig;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainOptions {
    /// Folder of the training split's clip shards.
    pub train_split: PathBuf,
    /// Folder of a split used for the previews (the test split when there is one).
    pub preview_split: Option<PathBuf>,
    pub preset: String,
    pub batch_size: usize,
    pub steps: u64,
    pub learning_rate: f64,
    /// Older runs have none: constant.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    #[serde(default)]
    pub warmup_steps: u64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    pub backend: BackendKind,
    /// The products' arithmetic (`--precision`); runs that predate it are f32.
    /// `None` before a run starts means "not given": f32 for a fresh run,
    /// the recorded one for a resumed run.
    #[serde(default)]
    pub precision: Option<Precision>,
}

impl TrainOptions {
    pub fn new(train_split: PathBuf, preset: &str) -> Self {
        Self {
            train_split,
            preview_split: None,
            preset: preset.to_owned(),
            batch_size: 8,
            steps: 10_000,
            learning_rate: 3e-4,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
            seed: 0,
            checkpoint_every: 1000,
            log_every: 10,
            backend: BackendKind::Flex,
            precision: None,
        }
    }
}

/// Where training stands; saved in every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    pub step: u64,
    /// Clips drawn from the shuffled stream so far (= step x batch).
    pub samples_seen: u64,
}

/// Everything needed to rebuild the model and its input scaling.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VqVaeRunConfig {
    pub model: VqVaeConfig,
    pub train: TrainOptions,
    /// Mean and variance of the training pixels (as `x / 255 - 0.5`); the
    /// reconstruction loss is MSE / variance.
    pub data_mean: f64,
    pub data_variance: f64,
}

impl VqVaeRunConfig {
    /// Refuses clips of `[T, H, W, C]` (from `split`) that the model was not
    /// trained on.
    pub fn check_clip_shape(&self, split: &Path, [t, h, w, c]: [usize; 4]) -> Result<()> {
        if self.model.input_shape != [t, h, w] || self.model.channels != c {
            return Err(ModelError::Config(format!(
                "{}: clips are {t}x{h}x{w}x{c}, the model was trained on {:?}x{}",
                split.display(),
                self.model.input_shape,
                self.model.channels
            )));
        }
        Ok(())
    }
}

/// Makes `precision` (given, else recorded, else f32) the process's, logs
/// which CPU path its products run on, and returns it for the run's config.
pub fn apply_precision(given: Option<Precision>, recorded: Option<Precision>) -> Precision {
    let precision = given.or(recorded).unwrap_or_default();
    crate::ops::set_precision(precision);
    let path = match precision {
        Precision::F32 => crate::ops::CpuPath::F32,
        Precision::Bf16 => crate::ops::cpu_path(),
    };
    if precision == Precision::Bf16 && path == crate::ops::CpuPath::F32 {
        tracing::warn!(
            "--precision bf16: this CPU has neither AMX nor AVX-512-BF16 (or {} caps it); products run in f32",
            crate::ops::CPU_PATH_VARIABLE
        );
    }
    tracing::info!(%precision, cpu_path = %path, "products");
    precision
}
