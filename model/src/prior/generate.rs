//! `sample`: videos from a trained prior. Samples token grids with the KV
//! cache, decodes them with the VQ-VAE that made the prior's token tables
//! (found from the table metadata and checked by its SHA-256), and writes a
//! GIF, an MP4 (through FFmpeg) and a PNG frame grid.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;
use videogpt_pipeline::shards::format::sha256_file;
use videogpt_pipeline::sources::memory::MemoryClips;

use super::context::frames_tensor;
use super::sample::{SampleOptions, sample};
use super::train::{Conditioning, PriorRunConfig, checked_rows, load_prior};
use videogpt_pipeline::tokens::TokenTable;
use super::{Condition, Prior};
use crate::backend::BackendKind;
use crate::checkpoint;
use crate::data;
use crate::error::{IoContext, ModelError, Result};
use crate::preview;

/// Where in the output folder the samples are stored as clip shards.
pub const SAMPLE_CLIPS_DIR: &str = "clips";
/// Samples shown in the GIF, PNG and MP4; every sample goes to the clips.
pub const PREVIEW_SAMPLES: usize = 16;
/// Token grids decoded by the VQ-VAE at once (bounds the decoder's memory).
const DECODE_BATCH: usize = 16;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub batch: usize,
    pub sample: SampleOptions,
    /// Class of every sample (class-conditional priors).
    pub label: Option<i32>,
    /// Flattened `[T * D]` actions of every sample (action-conditional priors).
    pub actions: Option<Vec<f32>>,
    /// Frame-conditioned priors: the clip of `context_split` whose frames
    /// condition every sample; `None`: the split's first `batch` clips.
    pub context_clip: Option<u64>,
    pub context_split: String,
    /// The VQ-VAE checkpoint; default: the one named in the token tables.
    pub vqvae: Option<PathBuf>,
    /// Draw every token independently from the code frequencies of the
    /// prior's train tokens instead of from the prior: the floor a sample
    /// FVD is judged against (no structure beyond which codes are common).
    pub unigram: bool,
    pub out: PathBuf,
    pub mp4: bool,
    pub backend: BackendKind,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GenerateSummary {
    pub gif: PathBuf,
    pub png: PathBuf,
    pub mp4: Option<PathBuf>,
    /// The decoded samples as a clip-shard split (what `vgpt fvd` reads).
    pub clips: PathBuf,
    pub samples: usize,
    pub tokens: usize,
    pub sampling_seconds: f64,
    pub tokens_per_second: f64,
}

pub fn generate(prior_checkpoint_or_run: &Path, options: &GenerateOptions) -> Result<GenerateSummary> {
    crate::limits::check_batch("--batch", options.batch)?;
    let device = options.backend.device();
    let checkpoint = checkpoint::resolve(prior_checkpoint_or_run)?;
    let (prior, config, _) = load_prior(&checkpoint, &device)?;
    let prior = prior.valid();
    let vqvae_path = options
        .vqvae
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.tokens.checkpoint));
    let vqvae_path = checkpoint::resolve(&vqvae_path)?;
    let sha = sha256_file(&vqvae_path.join(checkpoint::MODEL_FILE))?;
    if sha != config.tokens.checkpoint_sha256 {
        return Err(ModelError::format(
            &vqvae_path,
            format!(
                "its weights (SHA-256 {sha}) are not the ones that made the prior's tokens ({})",
                config.tokens.checkpoint_sha256
            ),
        ));
    }
    let (vqvae, vq_config, _) = checkpoint::load_model(&vqvae_path, &device)?;
    let vqvae = vqvae.valid();

    let b = options.batch;
    let n = config.model.tokens();
    // The floor needs only the code counts, not the prior's condition.
    let counts = options.unigram.then(|| train_code_counts(&config)).transpose()?;
    let (condition, context_clips) = match &counts {
        Some(_) => (Condition::default(), None),
        None => sampling_condition(&config, options, &device)?,
    };
    let bar = videogpt_pipeline::progress::bar(n as u64, "tokens", options.progress);
    let started = Instant::now();
    let tokens = match &counts {
        Some(counts) => {
            bar.inc(n as u64);
            draw_unigram(counts, n, b, options.sample.seed)
        }
        None => sample(&prior, n, b, &condition, &options.sample, &device, |_| bar.inc(1)),
    };
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();

    let [t, h, w] = config.model.latent_grid;
    let [ct, ch, cw] = vq_config.model.input_shape;
    let c = vq_config.model.channels;
    let mut clips = Vec::with_capacity(b);
    for rows in tokens.chunks(DECODE_BATCH * n) {
        let k = rows.len() / n;
        let values: Vec<i64> = rows.iter().map(|&x| x as i64).collect();
        let grid = Tensor::<4, Int>::from_data(TensorData::new(values, [k, t, h, w]), &device);
        let video = data::float_values(vqvae.decode(grid));
        clips.extend(data::clips_from_channels_first(&video, [k, c, ct, ch, cw]));
    }
    let shape = [ct, ch, cw, c];
    std::fs::create_dir_all(&options.out).at(&options.out)?;
    let refs: Vec<&[u8]> = clips.iter().take(PREVIEW_SAMPLES).map(|c| c.as_slice()).collect();
    let columns = (refs.len() as f64).sqrt().ceil() as usize;
    let grid: Vec<Vec<&[u8]>> = refs.chunks(columns).map(|r| r.to_vec()).collect();
    let gif = options.out.join("samples.gif");
    preview::write_grid_gif(&gif, &grid, shape, 8).at(&gif)?;
    let png = options.out.join("samples.png");
    preview::write_frame_grid_png(&png, &refs, shape).at(&png)?;
    let mp4 = if options.mp4 {
        let path = options.out.join("samples.mp4");
        preview::write_grid_mp4(&path, &grid, shape, 8).at(&path)?;
        Some(path)
    } else {
        None
    };
    let clips_dir = options.out.join(SAMPLE_CLIPS_DIR);
    let names = (0..b).map(|i| format!("sample-{i}")).collect();
    let description = serde_json::json!({
        "kind": "samples",
        "prior": checkpoint,
        "vqvae": vqvae_path,
        "sample": options.sample,
        "unigram": options.unigram,
    });
    MemoryClips::new("samples", "samples", shape, None, clips.clone(), names, description)
        .map_err(ModelError::Config)?
        .write(&clips_dir)?;
    let tokens_json = options.out.join("tokens.json");
    let text = serde_json::to_vec(&serde_json::json!({
        "latent_grid": config.model.latent_grid,
        "sample": options.sample,
        "unigram": options.unigram,
        "context_clips": context_clips,
        "tokens": tokens.chunks(n).collect::<Vec<_>>(),
    }))
    .expect("serialisable");
    videogpt_pipeline::atomic::write_bytes_atomic(&tokens_json, &text).at(&tokens_json)?;
    Ok(GenerateSummary {
        gif,
        png,
        mp4,
        clips: clips_dir,
        samples: b,
        tokens: b * n,
        sampling_seconds: seconds,
        tokens_per_second: (b * n) as f64 / seconds.max(1e-9),
    })
}

/// What every sample is conditioned on: a class or actions from the
/// options, or the first frames of clips of the token table (their ids are
/// returned too).
fn sampling_condition(
    config: &PriorRunConfig,
    options: &GenerateOptions,
    device: &burn::tensor::Device,
) -> Result<(Condition, Option<Vec<u64>>)> {
    let b = options.batch;
    let vector = match config.train.conditioning {
        Conditioning::None | Conditioning::Frames => None,
        Conditioning::Class => {
            let label = options.label.ok_or_else(|| {
                ModelError::Config("this prior is class-conditional: pass --label".into())
            })?;
            let classes = config.model.classes.unwrap_or(0) as i32;
            if !(0..classes).contains(&label) {
                return Err(ModelError::Config(format!("--label {label} is not in 0..{classes}")));
            }
            Prior::condition(&config.model, Some(&vec![label; b]), None, b, device)
        }
        Conditioning::Action => {
            let actions = options.actions.clone().ok_or_else(|| {
                ModelError::Config("this prior is action-conditional: pass --actions FILE".into())
            })?;
            let want = config.model.action_values.unwrap_or(0);
            if actions.len() != want {
                return Err(ModelError::Config(format!(
                    "--actions has {} values, the prior expects {want} (T x D)",
                    actions.len()
                )));
            }
            Prior::condition(&config.model, None, Some(&vec![actions; b]), b, device)
        }
    };
    let mut context_clips = None;
    let frames = match (&config.model.context, config.train.conditioning) {
        (Some(context), Conditioning::Frames) => {
            let (ids, bytes) = context_frames(config, options)?;
            context_clips = Some(ids);
            Some(frames_tensor(&bytes, b, context.shape, device))
        }
        _ => None,
    };
    Ok((Condition { vector, frames }, context_clips))
}

/// How often each code occurs in the prior's train tokens (the split and
/// the checks the trainer used).
fn train_code_counts(config: &PriorRunConfig) -> Result<Vec<u64>> {
    let table = TokenTable::open_split(&config.train.table, &config.train.train_split)?;
    let rows = checked_rows(&table, &config.model)?;
    let mut counts = vec![0u64; config.model.codes];
    for &code in &rows.tokens {
        // In range: the table's codebook is the model's, and the reader
        // checks every token against it.
        counts[code as usize] += 1;
    }
    Ok(counts)
}

/// `b` rows of `n` codes, each drawn independently with probability
/// proportional to `counts`; row `r` draws from its own stream (seed, r).
pub fn draw_unigram(counts: &[u64], n: usize, b: usize, seed: u64) -> Vec<u16> {
    let total: u64 = counts.iter().sum();
    let cumulative: Vec<u64> = counts
        .iter()
        .scan(0u64, |acc, &c| {
            *acc += c;
            Some(*acc)
        })
        .collect();
    let mut tokens = Vec::with_capacity(b * n);
    for row in 0..b {
        let mut rng = videogpt_pipeline::rng::SplitMix64::for_item(seed, "unigram", row as u64);
        for _ in 0..n {
            let u = rng.below(total);
            tokens.push(cumulative.partition_point(|&c| c <= u) as u16);
        }
    }
    tokens
}

/// The conditioning frames of `batch` samples from the prior's token table
/// (split `context_split`): the clip `context_clip` for all, or the split's
/// first clips, one per sample. Returns the clip ids and the frame bytes.
fn context_frames(config: &PriorRunConfig, options: &GenerateOptions) -> Result<(Vec<u64>, Vec<u8>)> {
    videogpt_pipeline::names::check_name("--context-split", &options.context_split)?;
    let dir = videogpt_pipeline::tokens::layout::split_dir(&config.train.table, &options.context_split);
    let rows = videogpt_pipeline::tokens::TokenTable::open(&dir)?.read(None)?;
    if rows.frames.is_none() || rows.rows() == 0 {
        return Err(ModelError::format(&dir, "holds no conditioning frames for this frame-conditioned prior"));
    }
    let picks: Vec<usize> = match options.context_clip {
        Some(id) => {
            let row = rows.clip_ids.iter().position(|&c| c == id).ok_or_else(|| {
                ModelError::Config(format!("--context-clip {id} is not a clip of {}", dir.display()))
            })?;
            vec![row; options.batch]
        }
        None => (0..options.batch).map(|i| i % rows.rows()).collect(),
    };
    let batch = rows.pick(&picks);
    Ok((batch.clip_ids, batch.frames.expect("checked")))
}

/// The flattened T x D actions of an action-conditional sample, from a JSON
/// list of numbers.
pub fn read_actions(path: &Path) -> Result<Vec<f32>> {
    let text = std::fs::read_to_string(path).at(path)?;
    serde_json::from_str(&text).map_err(|e| ModelError::format(path, format!("expected a JSON list of numbers: {e}")))
}

#[cfg(test)]
mod tests {
    use super::draw_unigram;

    #[test]
    fn unigram_draws_follow_the_counts_and_the_seed() {
        let counts = [0u64, 10, 30, 60, 0];
        let draws = draw_unigram(&counts, 25_000, 4, 7);
        assert_eq!(draws.len(), 100_000);
        let mut seen = [0f64; 5];
        draws.iter().for_each(|&t| seen[t as usize] += 1.0 / 100_000.0);
        assert_eq!((seen[0], seen[4]), (0.0, 0.0), "codes never seen in training were drawn");
        for (code, want) in [(1, 0.1), (2, 0.3), (3, 0.6)] {
            assert!((seen[code] - want).abs() < 0.01, "code {code}: {} against {want}", seen[code]);
        }
        // Same seed, same draws; a row does not depend on the batch size.
        assert_eq!(draws, draw_unigram(&counts, 25_000, 4, 7));
        assert_eq!(draws[..25_000], draw_unigram(&counts, 25_000, 1, 7)[..]);
        assert_ne!(draws, draw_unigram(&counts, 25_000, 4, 8));
    }
}
