//! `train-prior`: the GPT prior from token tables (never the clips). AdamW
//! with warm-up, cosine decay and gradient clipping at 1; train and test
//! bits/dim (cross-entropy / ln 2 per token) logged to metrics.jsonl;
//! atomic checkpoints; `--resume` continues exactly: the batch stream
//! depends only on (seed, sample counter) and the device RNG (dropout) is
//! reseeded from (seed, step) before every step.
//!
//! Data-parallel under MPI ([`crate::distributed`]): `--batch-size` is the
//! global batch, each rank trains on its slice, gradients are averaged, and
//! dropout masks follow each value's place in the global batch, so on the
//! CPU a run's numbers do not depend on its rank count (up to the order of
//! sums). Rank 0 alone evaluates and writes the log and checkpoints.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::ops::Precision;
use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::tokens::{TableManifest, TokenBatch, TokenBatches, TokenExpectation, TokenRows, TokenTable, TokenTableMeta};

use super::context::frames_tensor;
use super::{Condition, Prior, PriorConfig};
use crate::backend::BackendKind;
use crate::checkpoint::{self, TrainState};
use crate::distributed::gradients::{Compared, average_gradients, check_ranks_agree};
use crate::distributed::{AGREEMENT_EVERY, mean_over_ranks};
use crate::error::{IoContext, ModelError, Result};
use crate::schedule::{LrSchedule, learning_rate};

/// What conditions the prior.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conditioning {
    #[default]
    None,
    /// The table's `label` column, one-hot.
    Class,
    /// The table's `actions` column, flattened.
    Action,
    /// The table's `frames` column (the first k frames of every clip,
    /// `encode-latents --context-frames K`): frame encoder + cross-attention.
    Frames,
}

impl std::str::FromStr for Conditioning {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "class" => Ok(Self::Class),
            "action" => Ok(Self::Action),
            "frames" => Ok(Self::Frames),
            o => Err(format!("unknown conditioning `{o}`; expected none, class, action or frames")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriorTrainOptions {
    /// The table folder `datasets/<dataset>/tokens/<table>` (splits inside).
    pub table: PathBuf,
    pub train_split: String,
    pub test_split: Option<String>,
    pub preset: String,
    pub conditioning: Conditioning,
    pub batch_size: usize,
    pub steps: u64,
    pub learning_rate: f64,
    pub lr_schedule: LrSchedule,
    pub warmup_steps: u64,
    pub weight_decay: f64,
    pub gradient_clip: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub log_every: u64,
    /// Test bits/dim every this many steps (and at the end).
    pub eval_every: u64,
    /// Test clips per evaluation (the first ones, in clip order).
    pub eval_clips: usize,
    pub backend: BackendKind,
    /// The products' arithmetic (`--precision`); runs that predate it are
    /// f32. `None` before a run starts: f32 fresh, the recorded one resumed.
    #[serde(default)]
    pub precision: Option<Precision>,
}

impl PriorTrainOptions {
    pub fn new(table: PathBuf, preset: &str) -> Self {
        Self {
            table,
            train_split: "train".into(),
            test_split: Some("test".into()),
            preset: preset.into(),
            conditioning: Conditioning::None,
            batch_size: 8,
            steps: 10_000,
            learning_rate: 3e-4,
            lr_schedule: LrSchedule::Cosine,
            warmup_steps: 200,
            weight_decay: 0.01,
            gradient_clip: 1.0,
            seed: 0,
            checkpoint_every: 1000,
            log_every: 10,
            eval_every: 500,
            eval_clips: 256,
            backend: BackendKind::Flex,
            precision: None,
        }
    }
}

/// Everything needed to rebuild the prior and check its tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriorRunConfig {
    pub model: PriorConfig,
    pub train: PriorTrainOptions,
    /// The train table's metadata (grid, codebook, VQ-VAE checkpoint hash).
    pub tokens: TokenTableMeta,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriorStepMetrics {
    pub step: u64,
    /// Train cross-entropy, bits per token.
    pub bits_per_dim: f64,
    pub learning_rate: f64,
    /// Test bits/dim, on evaluation steps.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_bits_per_dim: Option<f64>,
    pub seconds: f64,
    /// Seconds of the step spent averaging gradients over the ranks
    /// (data-parallel runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_reduce_seconds: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct PriorTrainSummary {
    pub run: PathBuf,
    pub checkpoint: PathBuf,
    pub step: u64,
    pub last: Option<PriorStepMetrics>,
    pub steps_per_second: f64,
}

/// Token batch -> `[b, n]` Int tensor and its condition.
pub fn batch_tensors(
    config: &PriorConfig,
    conditioning: Conditioning,
    batch: &TokenBatch,
    device: &Device,
) -> (Tensor<2, Int>, Condition) {
    let b = batch.clip_ids.len();
    let values: Vec<i64> = batch.tokens.iter().map(|&t| t as i64).collect();
    let tokens = Tensor::from_data(TensorData::new(values, [b, batch.len]), device);
    let vector = match conditioning {
        Conditioning::None | Conditioning::Frames => None,
        Conditioning::Class => {
            let labels: Vec<i32> = batch
                .labels
                .as_ref()
                .map(|l| l.iter().map(|x| x.unwrap_or(-1)).collect())
                .unwrap_or_default();
            Prior::condition(config, Some(&labels), None, b, device)
        }
        Conditioning::Action => {
            let actions: Vec<Vec<f32>> = batch
                .actions
                .as_ref()
                .map(|a| a.iter().map(|x| x.clone().unwrap_or_default()).collect())
                .unwrap_or_default();
            Prior::condition(config, None, Some(&actions), b, device)
        }
    };
    let frames = match (conditioning, &config.context, &batch.frames) {
        (Conditioning::Frames, Some(context), Some(bytes)) => Some(frames_tensor(bytes, b, context.shape, device)),
        (Conditioning::Frames, _, _) => panic!("frame conditioning needs a frame encoder and a table with frames"),
        _ => None,
    };
    (tokens, Condition { vector, frames })
}

/// Refuses a conditioning the table or model cannot give: frames without a
/// `frames` column or without a frame encoder of the same shape.
pub fn check_conditioning(model: &PriorConfig, conditioning: Conditioning, meta: &TokenTableMeta, table: &Path) -> Result<()> {
    if conditioning != Conditioning::Frames {
        return Ok(());
    }
    let Some(shape) = meta.context_shape() else {
        return Err(ModelError::format(
            table,
            "has no conditioning frames; encode with `encode-latents --context-frames K` for --condition frames",
        ));
    };
    match &model.context {
        Some(c) if c.shape == shape => Ok(()),
        other => Err(ModelError::Config(format!(
            "the prior's frame encoder expects frames {:?}, the table at {} holds {shape:?}",
            other.as_ref().map(|c| c.shape),
            table.display()
        ))),
    }
}

/// Loads an opened split's rows, checked against the model.
pub(crate) fn checked_rows(t: &TokenTable, config: &PriorConfig) -> Result<TokenRows> {
    t.check(&TokenExpectation {
        latent_grid: config.latent_grid,
        codebook_size: config.codes,
    })?;
    let rows = t.read(None)?;
    if rows.rows() == 0 {
        return Err(ModelError::format(t.dir(), "token table has no rows"));
    }
    Ok(rows)
}

/// Test bits/dim of `prior` (inference mode) on the first `clips` rows.
pub fn test_bits_per_dim(
    prior: &Prior,
    config: &PriorRunConfig,
    rows: &TokenRows,
    clips: usize,
    device: &Device,
) -> f64 {
    let n = rows.rows().min(clips.max(1));
    let batch = config.train.batch_size;
    let (mut total, mut count) = (0.0f64, 0usize);
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let batch = rows.batch(start, end);
        let (tokens, condition) = batch_tensors(&config.model, config.train.conditioning, &batch, device);
        let loss = prior.loss(tokens, &condition).into_scalar::<f32>() as f64;
        total += loss * (end - start) as f64;
        count += end - start;
        start = end;
    }
    total / count as f64 / std::f64::consts::LN_2
}

pub fn optimizer(options: &PriorTrainOptions) -> ModuleOptimizer {
    optimizer_for_ranks(options, 1)
}

/// The optimiser of a run on `ranks` ranks: with several, gradient
/// clipping is left to the gradient average ([`host_clipping`]).
pub fn optimizer_for_ranks(options: &PriorTrainOptions, ranks: usize) -> ModuleOptimizer {
    let in_optimizer = host_clipping(options, ranks)
        .is_none()
        .then(|| GradientClippingConfig::Norm(options.gradient_clip as f32));
    AdamWConfig::new()
        .with_weight_decay(options.weight_decay as f32)
        .with_grad_clipping(in_optimizer)
        .init()
}

/// The clipping norm [`average_gradients`] applies on `ranks` ranks: with
/// several every rank must clip the averaged gradient to the same bits,
/// which the host does and a GPU's reduction need not.
pub fn host_clipping(options: &PriorTrainOptions, ranks: usize) -> Option<f32> {
    (ranks > 1).then_some(options.gradient_clip as f32)
}

/// Refuses a prior and batch whose training step needs more memory than
/// this process may use. The bound is a lower one (the weights with Adam's
/// moments, the logits, one activation per layer), so a run it refuses
/// could never run.
fn check_step_memory(model: &PriorConfig, batch_size: usize) -> Result<()> {
    let hidden = model.hidden as u128;
    let parameters = model.layers as u128 * 12 * hidden * hidden;
    let per_row = model.tokens() as u128 * (model.codes as u128 + hidden * model.layers as u128);
    let bytes = 4 * (3 * parameters + batch_size as u128 * per_row);
    crate::limits::check_memory(&format!("a training step of batch {batch_size}"), bytes)
}

/// Loads a prior checkpoint on `device`.
pub fn load_prior(checkpoint: &Path, device: &Device) -> Result<(Prior, PriorRunConfig, TrainState)> {
    let config_path = checkpoint.join(checkpoint::CONFIG_FILE);
    let config: PriorRunConfig = checkpoint::read_json(&config_path)?;
    config.model.validate().map_err(|e| ModelError::format(&config_path, format!("not a prior this tool builds: {e}")))?;
    let state: TrainState = checkpoint::read_json(&checkpoint.join(checkpoint::STATE_FILE))?;
    let record = checkpoint::read_record(checkpoint)?;
    let path = checkpoint.join(checkpoint::MODEL_FILE);
    let prior = config
        .model
        .init(None, device)
        .try_load_record(record)
        .map_err(|e| checkpoint::record_mismatch(&path, &e))?;
    Ok((prior, config, state))
}

/// Trains to `options.steps` in `run`. `codebook` is the VQ-VAE's codebook
/// when the model embeds tokens with it.
pub fn train_prior(
    run: &Path,
    model: PriorConfig,
    options: PriorTrainOptions,
    codebook: Option<Tensor<2>>,
    resume: bool,
    progress: bool,
) -> Result<PriorTrainSummary> {
    crate::limits::check_schedule(options.batch_size, options.steps, options.learning_rate)?;
    let ranks = crate::distributed::world();
    let lead = ranks.rank() == 0;
    let (first_sample, per_rank) = crate::distributed::take_share(options.batch_size)?;
    let device = options.backend.training_device();
    let existing = checkpoint::latest(run)?;
    let (mut prior, config, mut state, mut optim) = match (resume, existing.clone()) {
        (false, Some(found)) => {
            return Err(ModelError::Config(format!(
                "{} already has checkpoints (latest {}); pass --resume to continue it or choose another --run",
                run.display(),
                found.display()
            )));
        }
        (true, Some(found)) => {
            let (prior, mut config, state) = load_prior(&found, &device)?;
            if config.train.batch_size != options.batch_size || config.train.seed != options.seed {
                return Err(ModelError::Config(format!(
                    "--batch-size {} / --seed {} differ from the run's {} / {}; a resumed run keeps them",
                    options.batch_size, options.seed, config.train.batch_size, config.train.seed
                )));
            }
            let split = config.train.train_split.clone();
            let identity = |table: &Path| {
                TableManifest::read(&videogpt_pipeline::tokens::layout::split_dir(table, &split))
                    .ok()
                    .map(|m| format!("{} {} {}", m.meta.checkpoint_sha256, m.meta.context_frames, m.rows))
            };
            config.train.table = crate::resume::resumed_data("token table", &config.train.table, &options.table, identity)?;
            config.train.steps = options.steps;
            config.train.checkpoint_every = options.checkpoint_every;
            config.train.log_every = options.log_every;
            config.train.eval_every = options.eval_every;
            config.train.precision = Some(crate::run_config::apply_precision(options.precision, config.train.precision));
            let optim = checkpoint::load_optimizer(&found, optimizer_for_ranks(&config.train, ranks.size()))?;
            (prior, config, state, optim)
        }
        (_, None) => {
            model.validate().map_err(|e| ModelError::Config(format!("prior preset {}: {e}", options.preset)))?;
            check_step_memory(&model, options.batch_size)?;
            // Refuse mismatched tables before anything is written.
            let table = TokenTable::open_split(&options.table, &options.train_split)?;
            table.check(&TokenExpectation {
                latent_grid: model.latent_grid,
                codebook_size: model.codes,
            })?;
            check_conditioning(&model, options.conditioning, table.meta(), table.dir())?;
            let tokens = table.meta().clone();
            let mut train = options.clone();
            train.precision = Some(crate::run_config::apply_precision(options.precision, None));
            let config = PriorRunConfig {
                model: model.clone(),
                train,
                tokens,
            };
            if lead {
                fs::create_dir_all(run).at(run)?;
                let text = serde_json::to_vec_pretty(&config).expect("serialisable");
                videogpt_pipeline::atomic::write_bytes_atomic(&run.join(checkpoint::CONFIG_FILE), &text)
                    .at(run)?;
            }
            let prior = crate::backend::init_with_seed(&device, options.seed, || model.init(codebook, &device));
            // The same start on every rank, whatever the device's generator does.
            let prior = crate::distributed::gradients::from_rank_zero(ranks, prior);
            (prior, config, TrainState { step: 0, samples_seen: 0 }, optimizer_for_ranks(&options, ranks.size()))
        }
    };

    let train_rows = checked_rows(&TokenTable::open_split(&config.train.table, &config.train.train_split)?, &config.model)?;
    let test_rows = match &config.train.test_split {
        Some(split) if videogpt_pipeline::tokens::layout::complete_splits(&config.train.table).contains(split) => {
            // An empty test split (TGIF's can be) means no evaluation, not a failed run.
            let test = TokenTable::open_split(&config.train.table, split)?;
            if test.rows() == 0 {
                tracing::warn!(split = %split, "the test token table has no rows: no test bits/dim");
                None
            } else {
                Some(checked_rows(&test, &config.model)?)
            }
        }
        _ => None,
    };
    let mut batches = TokenBatches::new(
        Arc::new(train_rows),
        config.train.batch_size,
        config.train.seed,
        state.samples_seen,
    )
    .slice(first_sample, per_rank);
    let metrics_path = run.join("metrics.jsonl");
    let mut metrics_file = lead.then(|| checkpoint::open_metrics(&metrics_path, state.step)).transpose()?;
    // burn's own dropout (devices other than the CPU) cannot place values
    // in the global batch: there each rank's masks get a seed of their own.
    let rank_seed = match (ranks.size(), config.train.backend) {
        (1, _) | (_, BackendKind::Flex) => 0,
        _ => SplitMix64::for_item(config.train.seed, "prior-dropout-rank", ranks.rank() as u64).next_u64(),
    };
    let host_clip = host_clipping(&config.train, ranks.size());
    let total = config.train.steps;
    let bar = videogpt_pipeline::progress::bar(total, "steps", progress && lead);
    bar.set_position(state.step);
    let started = Instant::now();
    let first_step = state.step;
    let mut last = None;
    let mut last_checkpoint = existing;
    let plain = options.backend.device();
    while state.step < total {
        let step_started = Instant::now();
        let step = state.step;
        let batch = batches.next().expect("endless");
        let (tokens, condition) = batch_tensors(&config.model, config.train.conditioning, &batch, &device);
        // Dropout masks depend on (seed, step) only, so resume is exact.
        let dropout_seed = SplitMix64::for_item(config.train.seed, "prior-dropout", step).next_u64() ^ rank_seed;
        let loss = crate::backend::with_seed(&device, dropout_seed, || prior.loss(tokens, &condition));
        let grads = GradientsParams::from_grads(loss.backward(), &prior);
        let (grads, reduced) = average_gradients(ranks, &prior, grads, host_clip);
        let lr = learning_rate(
            config.train.learning_rate,
            config.train.lr_schedule,
            config.train.warmup_steps,
            step,
            total,
        );
        prior = optim.step(lr, prior, grads);
        state.step += 1;
        state.samples_seen = batches.samples_seen();
        let mut bits = [loss.into_scalar::<f32>() as f64 / std::f64::consts::LN_2];
        mean_over_ranks(ranks, &mut bits);
        let [bits] = bits;
        let eval_now = lead
            && config.train.eval_every > 0
            && (state.step % config.train.eval_every == 0 || state.step == total);
        let test = match (&test_rows, eval_now) {
            (Some(rows), true) => Some(test_bits_per_dim(
                &prior.valid(),
                &config,
                rows,
                config.train.eval_clips,
                &plain,
            )),
            _ => None,
        };
        let m = PriorStepMetrics {
            step: state.step,
            bits_per_dim: bits,
            learning_rate: lr,
            test_bits_per_dim: test,
            seconds: step_started.elapsed().as_secs_f64(),
            all_reduce_seconds: (ranks.size() > 1).then(|| reduced.elapsed.as_secs_f64()),
        };
        bar.inc(1);
        let checkpoint_now = state.step % config.train.checkpoint_every.max(1) == 0 || state.step == total;
        if checkpoint_now || state.step % AGREEMENT_EVERY == 0 {
            check_ranks_agree(ranks, &prior, Compared::All, state.step)?;
        }
        let log_now = state.step % config.train.log_every.max(1) == 0 || state.step == total || test.is_some();
        if let Some(metrics_file) = metrics_file.as_mut().filter(|_| log_now) {
            writeln!(metrics_file, "{}", serde_json::to_string(&m).expect("serialisable")).at(&metrics_path)?;
            let rate = (state.step - first_step) as f64 / started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "bits/dim {bits:.3}{} | {rate:.2} steps/s",
                test.map(|t| format!(" test {t:.3}")).unwrap_or_default()
            ));
        }
        if let Some(metrics_file) = metrics_file.as_mut().filter(|_| checkpoint_now) {
            metrics_file.sync_data().at(&metrics_path)?;
            let dir = checkpoint::save_module(run, &config, &state, prior.valid(), &optim)?;
            tracing::info!(step = state.step, checkpoint = %dir.display(), "checkpoint");
            last_checkpoint = Some(dir);
        }
        last = Some(m);
    }
    bar.finish();
    let checkpoint = match last_checkpoint {
        // The other ranks name the checkpoint rank 0 wrote.
        _ if !lead => run.join("checkpoints").join(checkpoint::step_name(state.step)),
        Some(c) => c,
        None => checkpoint::save_module(run, &config, &state, prior.valid(), &optim)?,
    };
    Ok(PriorTrainSummary {
        run: run.to_owned(),
        checkpoint,
        step: state.step,
        last,
        steps_per_second: (state.step - first_step) as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// Changes to a prior preset asked for on the command line.
#[derive(Debug, Clone, Default)]
pub struct PriorOverrides {
    pub hidden: Option<usize>,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub dropout: Option<f64>,
    pub attention_dropout: Option<f64>,
    /// Width of the frame encoder (`Conditioning::Frames`; default 240 as
    /// the reference, 64 for the tiny and moving-mnist presets).
    pub frame_width: Option<usize>,
    /// Embed tokens with the VQ-VAE's frozen codebook (as the reference).
    pub codebook_embedding: bool,
}

/// A prior configured for a token table, ready for [`train_prior`].
pub struct PriorSetup {
    /// The token table folder (with its `train` split).
    pub table: PathBuf,
    pub model: PriorConfig,
    /// The VQ-VAE's codebook vectors, for `codebook_embedding`.
    pub codebook: Option<Tensor<2>>,
    /// The bound a prior has to beat: the train tokens' unigram entropy.
    pub unigram_bits: f64,
}

/// The prior `preset` with `overrides` for the token table `table` (default:
/// the newest) under `tokens_dir`, conditioned as `condition` asks: the
/// number of classes or the action width is read off the train split, the
/// frame encoder's input shape off the table's metadata.
pub fn prior_setup(
    tokens_dir: &Path,
    table: Option<&str>,
    preset: &str,
    condition: Conditioning,
    overrides: &PriorOverrides,
    backend: BackendKind,
) -> Result<PriorSetup> {
    let table = videogpt_pipeline::tokens::find_table(tokens_dir, table)?;
    let train_table = TokenTable::open_split(&table, "train")?;
    let meta = train_table.meta().clone();
    let Some(mut model) = PriorConfig::preset(preset, meta.latent_grid, meta.codebook_size) else {
        return Err(ModelError::Config(format!(
            "unknown prior preset `{preset}`; expected one of {}",
            super::PRIOR_PRESETS.join(", ")
        )));
    };
    if let Some(h) = overrides.hidden {
        model = model.with_hidden(h);
    }
    if let Some(l) = overrides.layers {
        model = model.with_layers(l);
    }
    if let Some(h) = overrides.heads {
        model = model.with_heads(h);
    }
    if let Some(d) = overrides.dropout {
        model = model.with_dropout(d);
    }
    if let Some(d) = overrides.attention_dropout {
        model = model.with_attention_dropout(d);
    }
    let rows = train_table.read(None)?;
    let missing = |column: &str| ModelError::Config(format!("{} has no {column} column", train_table.dir().display()));
    match condition {
        Conditioning::None => {}
        Conditioning::Class => {
            let labels = rows.labels.as_ref().ok_or_else(|| missing("label"))?;
            let max = labels.iter().flatten().max().copied().unwrap_or(-1);
            model = model.with_classes(Some((max + 1).max(1) as usize));
        }
        Conditioning::Action => {
            let actions = rows.actions.as_ref().ok_or_else(|| missing("actions"))?;
            let width = actions.iter().flatten().map(Vec::len).max().unwrap_or(0);
            model = model.with_action_values(Some(width));
        }
        Conditioning::Frames => {
            let shape = meta.context_shape().ok_or_else(|| {
                ModelError::Config(format!(
                    "{} has no conditioning frames; run `just encode-latents <dataset> --context-frames 1` and pass its --table",
                    train_table.dir().display()
                ))
            })?;
            let small = matches!(preset, "tiny" | "moving-mnist");
            let width = overrides.frame_width.unwrap_or(if small { 64 } else { 240 });
            model = model.with_context(Some(super::context::FrameEncoderConfig::new(shape).with_width(width)));
        }
    }
    let mut codebook = None;
    if overrides.codebook_embedding {
        let vq = checkpoint::resolve(Path::new(&meta.checkpoint))?;
        let (vqvae, _, _) = checkpoint::load_model(&vq, &backend.device())?;
        let vectors = vqvae.codebook.embeddings();
        model = model
            .with_embedding(super::TokenEmbedding::Codebook)
            .with_codebook_dim(Some(vectors.dims()[1]));
        codebook = Some(vectors);
    }
    // `TokenTable::read` refused tokens at or beyond the codebook size.
    let mut counts = vec![0u64; meta.codebook_size];
    for &t in &rows.tokens {
        counts[t as usize] += 1;
    }
    let unigram_bits = videogpt_pipeline::tokens::stats::entropy_bits(counts);
    Ok(PriorSetup {
        table,
        model,
        codebook,
        unigram_bits,
    })
}
