//! `train-vqvae`: the VQ-VAE training loop over clip shards.
//!
//! Adam (3e-4, as the reference; [`HostAdam`] computes it on the CPU),
//! loss = MSE / data variance + commitment, EMA codebook step after every
//! optimiser step. Logs every `log_every`
//! steps to `metrics.jsonl`, checkpoints every `checkpoint_every` steps and
//! at the end (with reconstruction previews), and resumes from the latest
//! checkpoint at the same step with the same batches.
//!
//! Data-parallel under MPI ([`crate::distributed`]): `--batch-size` is the
//! global batch, each rank trains on its slice, gradients are averaged and
//! the codebook update and batch norm see the whole batch, so a run's
//! numbers do not depend on its rank count (up to the order of sums). Rank 0
//! alone writes the log, checkpoints and previews.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::shards::{ClipIndex, ClipShards};
use videogpt_pipeline::shards::index::INDEX_FILE;

use crate::backend::BackendKind;
use crate::checkpoint;
use crate::data::{self, Batch, Loader};
use crate::distributed::gradients::{Compared, average_gradients, check_ranks_agree};
use crate::distributed::{Collective, mean_over_ranks};
use crate::error::{IoContext, ModelError, Result};
use crate::ops::HostAdam;
use crate::preview;
use crate::resume::resumed_data;
use crate::schedule::learning_rate;
use crate::vqvae::codebook::{code_counts, usage_of_counts};
use crate::vqvae::{VqVae, VqVaeConfig};

pub use crate::run_config::{TrainOptions, TrainState, VqVaeRunConfig};

/// One logged step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: u64,
    pub loss: f64,
    pub mse: f64,
    /// MSE / training-data variance.
    pub nmse: f64,
    pub commitment: f64,
    /// exp(entropy) of the batch's code histogram.
    pub perplexity: f64,
    /// Distinct codes used in the batch.
    pub codes_used: usize,
    /// Codes restarted by this step's EMA update.
    pub restarted: usize,
    /// The step's learning rate (absent in older logs).
    #[serde(default)]
    pub learning_rate: f64,
    pub seconds: f64,
    /// Seconds of the step spent averaging gradients over the ranks
    /// (data-parallel runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_seconds: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub run: PathBuf,
    pub checkpoint: PathBuf,
    pub step: u64,
    pub last: Option<StepMetrics>,
    pub steps_per_second: f64,
}

pub struct Trainer {
    /// Always `Some` between calls; taken while the optimiser owns it.
    model: Option<VqVae>,
    pub optimizer: ModuleOptimizer,
    pub config: VqVaeRunConfig,
    pub state: TrainState,
    device: Device,
    /// The data-parallel ranks (this process alone by default).
    ranks: &'static dyn Collective,
}

impl Trainer {
    /// A fresh model for `config` on the training device.
    pub fn new(config: VqVaeRunConfig) -> Self {
        let device = config.train.backend.training_device();
        let ranks = crate::distributed::world();
        let model = crate::backend::init_with_seed(&device, config.train.seed, || config.model.init(&device));
        // The same start on every rank, whatever the device's generator does.
        let model = crate::distributed::gradients::from_rank_zero(ranks, model);
        Self {
            model: Some(model),
            optimizer: HostAdam::module_optimizer(),
            config,
            state: TrainState {
                step: 0,
                samples_seen: 0,
            },
            device,
            ranks,
        }
    }

    /// Continues from a checkpoint folder.
    pub fn resume(checkpoint: &Path, backend: BackendKind) -> Result<Self> {
        let device = backend.training_device();
        let (model, mut config, state) = checkpoint::load_model(checkpoint, &device)?;
        config.train.backend = backend;
        let optimizer = checkpoint::load_optimizer(checkpoint, HostAdam::module_optimizer())?;
        Ok(Self {
            model: Some(model),
            optimizer,
            config,
            state,
            device,
            ranks: crate::distributed::world(),
        })
    }

    pub fn model(&self) -> &VqVae {
        self.model.as_ref().expect("model present between steps")
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The rate of 0-based `step` under the run's schedule.
    pub fn learning_rate(&self, step: u64) -> f64 {
        let t = &self.config.train;
        learning_rate(t.learning_rate, t.lr_schedule, t.warmup_steps, step, t.steps)
    }

    /// One optimiser step and one EMA codebook step on `batch`. On the CPU
    /// the thread pool's workers are kept awake throughout
    /// ([`ops::with_workers_awake`](crate::ops::with_workers_awake)).
    pub fn step(&mut self, batch: &Batch) -> StepMetrics {
        if self.config.train.backend == BackendKind::Flex {
            crate::ops::with_workers_awake(|| self.step_here(batch))
        } else {
            self.step_here(batch)
        }
    }

    fn step_here(&mut self, batch: &Batch) -> StepMetrics {
        let started = Instant::now();
        let x = batch.tensor(&self.device);
        let step = self.state.step;
        let mut rng = SplitMix64::for_item(self.config.train.seed, "codebook", step);
        let mut model = self.model.take().expect("model present between steps");
        if !model.codebook.is_initialised() {
            // Initialise the codes from this batch's encoder outputs first,
            // so the very first quantisation is meaningful.
            model = model.initialise_codebook(x.clone(), &mut rng, self.ranks);
        }
        let out = model.forward(x.clone());
        let mse = (out.reconstruction - x).square().mean();
        let variance = self.config.data_variance.max(1e-8);
        let loss = mse.clone().div_scalar(variance) + out.commitment_loss.clone();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (grads, reduced) = average_gradients(self.ranks, &model, grads, None);
        let mut model = self
            .optimizer
            .step(self.learning_rate(step), model, grads);
        let indices_host = data::int_values(out.indices.clone());
        let (codebook, update) = model.codebook.ema_update(out.latents, out.indices, &mut rng, self.ranks);
        model.codebook = codebook;
        self.model = Some(model);
        self.state.step += 1;
        self.state.samples_seen += (batch.shape[0] * self.ranks.size()) as u64;

        // The global batch's numbers: means of the ranks' means, codes
        // counted over every rank.
        let mut means = [
            mse.into_scalar::<f32>() as f64,
            out.commitment_loss.into_scalar::<f32>() as f64,
            loss.into_scalar::<f32>() as f64,
        ];
        mean_over_ranks(self.ranks, &mut means);
        let [mse, commitment, loss] = means;
        let mut counts = code_counts(&indices_host, self.config.model.codes);
        self.ranks.sum_f64(&mut counts);
        let (perplexity, codes_used) = usage_of_counts(&counts);
        StepMetrics {
            step: self.state.step,
            loss,
            mse,
            nmse: mse / variance,
            commitment,
            perplexity,
            codes_used,
            restarted: update.restarted,
            learning_rate: self.learning_rate(step),
            seconds: started.elapsed().as_secs_f64(),
            all_reduce_seconds: (self.ranks.size() > 1).then(|| reduced.elapsed.as_secs_f64()),
        }
    }

    /// Fails, naming the step, unless every rank holds the same parameters
    /// and codebook. On the CPU batch norm's running statistics too; other
    /// devices normalise each rank's batch with its own statistics (burn's
    /// `BatchNorm`, as the reference under DDP), so theirs differ.
    pub fn check_ranks_agree(&self) -> Result<()> {
        let (model, step) = (self.model(), self.state.step);
        if self.config.train.backend == BackendKind::Flex {
            return check_ranks_agree(self.ranks, model, Compared::All, step);
        }
        check_ranks_agree(self.ranks, model, Compared::Trainable, step)?;
        check_ranks_agree(self.ranks, &model.codebook, Compared::All, step)
    }

    /// Reconstructions of `batch` by the current model in inference mode,
    /// as uint8 clips.
    pub fn reconstruct(&self, batch: &Batch) -> Vec<Vec<u8>> {
        reconstruct(&self.model().valid(), batch, &self.device)
    }
}

/// Reconstructions of `batch` by `model` (already in inference mode).
pub fn reconstruct(model: &VqVae, batch: &Batch, device: &Device) -> Vec<Vec<u8>> {
    let codes = model.encode(batch.tensor(device).without_autodiff());
    data::clips_from_channels_first(&data::float_values(model.decode(codes)), batch.shape)
}

/// Writes `previews/<name>.png` (originals over reconstructions) and `.gif`.
pub fn write_previews(run: &Path, name: &str, batch: &Batch, recon: &[Vec<u8>]) -> Result<PathBuf> {
    let [_, c, t, h, w] = batch.shape;
    let shape = [t, h, w, c];
    let originals = data::clips_from_channels_first(&batch.data, batch.shape);
    let mut rows: Vec<&[u8]> = Vec::new();
    for (o, r) in originals.iter().zip(recon) {
        rows.push(o);
        rows.push(r);
    }
    let dir = run.join("previews");
    let png = dir.join(format!("{name}.png"));
    preview::write_frame_grid_png(&png, &rows, shape).at(&png)?;
    let grid: Vec<Vec<&[u8]>> = originals
        .iter()
        .zip(recon)
        .map(|(o, r)| vec![o.as_slice(), r.as_slice()])
        .collect();
    let gif = dir.join(format!("{name}.gif"));
    preview::write_grid_gif(&gif, &grid, shape, 8).at(&gif)?;
    Ok(png)
}

/// What `train_vqvae` should do with the run folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// A new run; refuses a folder that already has checkpoints.
    Fresh,
    /// Continue from the latest checkpoint (a fresh start when there is none).
    Resume,
}

/// Trains to `options.steps` in `run`, showing a progress bar when
/// `progress` is true.
pub fn train_vqvae(
    run: &Path,
    model_config: VqVaeConfig,
    options: TrainOptions,
    mode: RunMode,
    progress: bool,
) -> Result<TrainSummary> {
    crate::limits::check_schedule(options.batch_size, options.steps, options.learning_rate)?;
    let lead = crate::distributed::world().rank() == 0;
    let share = crate::distributed::take_share(options.batch_size)?;
    let existing = checkpoint::latest(run)?;
    let mut trainer = match (mode, existing.clone()) {
        (RunMode::Fresh, Some(found)) => {
            return Err(ModelError::Config(format!(
                "{} already has checkpoints (latest {}); pass --resume to continue it or choose another --run",
                run.display(),
                found.display()
            )));
        }
        (RunMode::Resume, Some(found)) => {
            let mut t = Trainer::resume(&found, options.backend)?;
            // The step target and logging cadence may change on resume; the
            // model, data and batch may not.
            let saved = &t.config.train;
            if saved.batch_size != options.batch_size || saved.seed != options.seed {
                return Err(ModelError::Config(format!(
                    "--batch-size {} / --seed {} differ from the run's {} / {}; a resumed run keeps them",
                    options.batch_size, options.seed, saved.batch_size, saved.seed
                )));
            }
            let identity = |split: &Path| {
                ClipIndex::read(split).ok().map(|i| format!("{} {}", i.plan_fingerprint, i.num_clips))
            };
            t.config.train.train_split =
                resumed_data("split", &saved.train_split, &options.train_split, identity)?;
            t.config.train.preview_split = options.preview_split.clone();
            t.config.train.steps = options.steps;
            t.config.train.checkpoint_every = options.checkpoint_every;
            t.config.train.log_every = options.log_every;
            t.config.train.precision = Some(crate::run_config::apply_precision(options.precision, t.config.train.precision));
            tracing::info!(step = t.state.step, checkpoint = %found.display(), "resuming");
            t
        }
        (_, None) => {
            let model_config = {
                let shards = ClipShards::open(&options.train_split)?;
                model_config.for_clips(shards.clip_shape())
            };
            model_config.validate().map_err(|e| {
                ModelError::Config(format!("preset {}: {e}", options.preset))
            })?;
            check_step_memory(&model_config, options.batch_size)?;
            let (mean, variance) = data::pixel_statistics(&options.train_split, 2000)?;
            tracing::info!(mean, variance, "training pixel statistics");
            let mut train = options.clone();
            train.precision = Some(crate::run_config::apply_precision(options.precision, None));
            let config = VqVaeRunConfig {
                model: model_config,
                train,
                data_mean: mean,
                data_variance: variance,
            };
            if lead {
                fs::create_dir_all(run).at(run)?;
                checkpoint::write_run_config(run, &config)?;
            }
            Trainer::new(config)
        }
    };

    let train = &trainer.config.train;
    let shards = Arc::new(ClipShards::open(&train.train_split)?);
    let preview_batch = {
        let split = train.preview_split.as_ref().unwrap_or(&train.train_split);
        let preview_shards = ClipShards::open(split)?;
        let ids: Vec<u64> = (0..preview_shards.len().min(4)).collect();
        data::read_batch(&preview_shards, &ids)?
    };
    let loader = Loader::spawn_slice(
        shards,
        train.batch_size,
        share,
        train.seed,
        trainer.state.samples_seen,
        4,
    );
    let metrics_path = run.join("metrics.jsonl");
    let mut metrics_file = lead
        .then(|| checkpoint::open_metrics(&metrics_path, trainer.state.step))
        .transpose()?;

    let total = trainer.config.train.steps;
    let bar = videogpt_pipeline::progress::bar(total, "steps", progress && lead);
    bar.set_position(trainer.state.step);
    let started = Instant::now();
    let first_step = trainer.state.step;
    let mut last = None;
    let mut last_checkpoint = existing;
    while trainer.state.step < total {
        let batch = loader.next_batch()?;
        let m = trainer.step(&batch);
        bar.inc(1);
        let log_every = trainer.config.train.log_every.max(1);
        let every = trainer.config.train.checkpoint_every.max(1);
        let checkpoint_now = m.step % every == 0 || m.step == total;
        if checkpoint_now || m.step % crate::distributed::AGREEMENT_EVERY == 0 {
            trainer.check_ranks_agree()?;
        }
        if let Some(metrics_file) = metrics_file.as_mut().filter(|_| m.step % log_every == 0 || m.step == total) {
            let line = serde_json::to_string(&m).expect("serialisable");
            writeln!(metrics_file, "{line}").at(&metrics_path)?;
            let rate = (m.step - first_step) as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.4} nmse {:.4} perplexity {:.0} codes {} | {:.2} steps/s",
                m.loss, m.nmse, m.perplexity, m.codes_used, rate
            ));
        }
        if let Some(metrics_file) = metrics_file.as_mut().filter(|_| checkpoint_now) {
            metrics_file.sync_data().at(&metrics_path)?;
            let dir = checkpoint::save(
                run,
                &trainer.config,
                &trainer.state,
                trainer.model(),
                &trainer.optimizer,
            )?;
            let recon = trainer.reconstruct(&preview_batch);
            write_previews(run, &checkpoint::step_name(m.step), &preview_batch, &recon)?;
            tracing::info!(step = m.step, checkpoint = %dir.display(), "checkpoint");
            last_checkpoint = Some(dir);
        }
        last = Some(m);
    }
    bar.finish();
    let done = trainer.state.step - first_step;
    let checkpoint = match last_checkpoint {
        // The other ranks name the checkpoint rank 0 wrote.
        _ if !lead => run.join("checkpoints").join(checkpoint::step_name(trainer.state.step)),
        Some(c) => c,
        None => checkpoint::save(
            run,
            &trainer.config,
            &trainer.state,
            trainer.model(),
            &trainer.optimizer,
        )?,
    };
    Ok(TrainSummary {
        run: run.to_owned(),
        checkpoint,
        step: trainer.state.step,
        last,
        steps_per_second: done as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// Changes to a VQ-VAE preset asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct VqVaeOverrides {
    /// Residual blocks without axial attention (the ablation).
    pub no_attention: bool,
    pub codes: Option<usize>,
    pub hidden: Option<usize>,
    /// Downsampling factors `[t, h, w]`.
    pub downsample: Option<Vec<usize>>,
}

/// The preset `preset` with `overrides` applied, checked.
pub fn model_config(preset: &str, overrides: &VqVaeOverrides) -> Result<VqVaeConfig> {
    let Some(mut model) = VqVaeConfig::preset(preset) else {
        return Err(ModelError::Config(format!(
            "unknown preset `{preset}`; expected one of {}",
            crate::vqvae::PRESETS.join(", ")
        )));
    };
    if overrides.no_attention {
        model = model.with_attention(false);
    }
    if let Some(codes) = overrides.codes {
        model = model.with_codes(codes);
    }
    if let Some(hidden) = overrides.hidden {
        model = model.with_hidden(hidden);
    }
    if let Some(d) = &overrides.downsample {
        let Ok(d) = <[usize; 3]>::try_from(d.as_slice()) else {
            return Err(ModelError::Config(format!(
                "--downsample takes three factors T,H,W (e.g. 2,2,2), got {d:?}"
            )));
        };
        model = model.with_downsample(d);
    }
    model
        .validate()
        .map_err(|e| ModelError::Config(format!("invalid model settings: {e}")))?;
    Ok(model)
}

/// The train split of `dataset` under `root` (which must be prepared; a
/// base name like `ucf101` finds its one `ucf101-*`) and its test split, if
/// prepared (for the previews).
pub fn dataset_splits(root: &Path, dataset: &str) -> Result<(PathBuf, Option<PathBuf>)> {
    let clips = videogpt_pipeline::datasets::dataset_dir(root, dataset)?.join("clips");
    let train = clips.join("train");
    if !train.join(INDEX_FILE).is_file() {
        return Err(ModelError::Config(format!(
            "{} has no prepared clips (run `just prepare {dataset}` first)",
            train.display()
        )));
    }
    // Previews come from the test split when it has clips (TGIF's can be empty).
    let test = clips.join("test");
    let has_clips = videogpt_pipeline::shards::ClipIndex::read(&test).is_ok_and(|index| index.num_clips > 0);
    Ok((train, has_clips.then_some(test)))
}

/// Refuses a model and batch whose training step needs more memory than
/// this process may use. The bound is a lower one (input and
/// reconstruction, the latent activations, one 3x3x3 convolution per
/// residual block with its Adam state), so a run it lets through may still
/// need more, but one it refuses could never run.
fn check_step_memory(model: &VqVaeConfig, batch_size: usize) -> Result<()> {
    let pixels = model.input_shape.iter().product::<usize>() as u128 * model.channels as u128;
    let latent_cells = model.latent_shape().iter().product::<usize>() as u128;
    let hidden = model.hidden as u128;
    let parameters = hidden * hidden * 27 * (model.residual_blocks.max(1) as u128);
    let batch = batch_size as u128;
    let bytes = 4 * (2 * batch * pixels + batch * latent_cells * hidden + 3 * parameters);
    crate::limits::check_memory(&format!("a training step of batch {batch_size}"), bytes)
}

/// `runs/vqvae-<dataset>-<preset>[-no-attention]`.
pub fn default_run_dir(dataset: &str, preset: &str, no_attention: bool) -> PathBuf {
    let suffix = if no_attention { "-no-attention" } else { "" };
    PathBuf::from("runs").join(format!("vqvae-{dataset}-{preset}{suffix}"))
}
