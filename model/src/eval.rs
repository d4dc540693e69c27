//! `eval-vqvae`: reconstruction quality on a split.
//!
//! NMSE = mean squared error / variance of that split's pixels (both on the
//! `x / 255 - 0.5` scale, decoder output unclamped), plus how the split uses
//! the codebook.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use serde::{Deserialize, Serialize};
use videogpt_pipeline::shards::ClipShards;

use crate::backend::BackendKind;
use crate::checkpoint;
use crate::data;
use crate::error::{IoContext, ModelError, Result};
use crate::vqvae::codebook::usage;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    pub checkpoint: PathBuf,
    pub step: u64,
    pub split: PathBuf,
    pub clips: u64,
    pub mse: f64,
    /// Variance of the split's pixels.
    pub data_variance: f64,
    pub nmse: f64,
    /// exp(entropy) of the split's code histogram.
    pub perplexity: f64,
    pub codes_used: usize,
    pub codes: usize,
    pub seconds: f64,
}

/// Evaluates the checkpoint (or run folder) on `split` (a clip-shard split
/// folder), over at most `max_clips` clips taken in order.
pub fn eval_vqvae(
    checkpoint_or_run: &Path,
    split: &Path,
    batch_size: usize,
    max_clips: Option<u64>,
    backend: BackendKind,
    progress: bool,
) -> Result<EvalReport> {
    let started = Instant::now();
    let checkpoint = checkpoint::resolve(checkpoint_or_run)?;
    let device = backend.device();
    let (model, config, state) = checkpoint::load_model(&checkpoint, &device)?;
    let model = model.valid();
    let shards = ClipShards::open(split)?;
    config.check_clip_shape(split, shards.clip_shape())?;
    let n = max_clips.map_or(shards.len(), |m| m.min(shards.len()));
    let bar = videogpt_pipeline::progress::bar(n, "clips", progress);
    let (mut sse, mut sum, mut sum_sq, mut count) = (0f64, 0f64, 0f64, 0u64);
    let mut codes = Vec::new();
    let mut id = 0;
    while id < n {
        let ids: Vec<u64> = (id..(id + batch_size as u64).min(n)).collect();
        id += ids.len() as u64;
        let batch = data::read_batch(&shards, &ids)?;
        for &v in &batch.data {
            sum += v as f64;
            sum_sq += (v as f64) * (v as f64);
        }
        count += batch.data.len() as u64;
        let x = batch.tensor(&device);
        let grid = model.encode(x.clone());
        codes.extend(data::int_values(grid.clone()));
        let y = model.decode(grid);
        sse += (y - x).square().sum().into_scalar::<f32>() as f64;
        bar.inc(ids.len() as u64);
    }
    bar.finish_and_clear();
    let count_f = count.max(1) as f64;
    let mse = sse / count_f;
    let mean = sum / count_f;
    let variance = (sum_sq / count_f - mean * mean).max(1e-12);
    let (perplexity, codes_used) = usage(&codes, config.model.codes);
    Ok(EvalReport {
        checkpoint,
        step: state.step,
        split: split.to_owned(),
        clips: n,
        mse,
        data_variance: variance,
        nmse: mse / variance,
        perplexity,
        codes_used,
        codes: config.model.codes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// [`eval_vqvae`] on the split named `split` beside the run's training
/// split, with the report written to `<run>/eval-<split>.json`; returns the
/// report and where it was written.
pub fn eval_split_and_write(
    checkpoint_or_run: &Path,
    split: &str,
    batch_size: usize,
    max_clips: Option<u64>,
    backend: BackendKind,
    progress: bool,
) -> Result<(EvalReport, PathBuf)> {
    crate::limits::check_batch("--batch-size", batch_size)?;
    let resolved = checkpoint::resolve(checkpoint_or_run)?;
    let config: checkpoint::VqVaeRunConfig = checkpoint::read_json(&resolved.join(checkpoint::CONFIG_FILE))?;
    let split_dir = config
        .train
        .train_split
        .parent()
        .ok_or_else(|| ModelError::Config(format!("{}: the training split has no parent folder", resolved.display())))?;
    // A split is a name: its report is written beside the run's checkpoints.
    let split_dir = videogpt_pipeline::names::join_name(split_dir, "--split", split)?;
    let report = eval_vqvae(&resolved, &split_dir, batch_size, max_clips, backend, progress)?;
    // <run>/checkpoints/step-N -> <run>
    let run_dir = resolved
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or_else(|| resolved.clone());
    let out = run_dir.join(format!("eval-{split}.json"));
    let json = serde_json::to_vec_pretty(&report).map_err(|e| ModelError::format(&out, e.to_string()))?;
    videogpt_pipeline::atomic::write_bytes_atomic(&out, &json).at(&out)?;
    Ok((report, out))
}
