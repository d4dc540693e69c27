//! `encode-latents`: the VQ-VAE's codes for every clip of every split,
//! cached as token tables (`videogpt_pipeline::tokens`).
//!
//! The table folder is named after the checkpoint (`<run>-step-NNNNNNNN`),
//! so another checkpoint writes another folder; the SHA-256 of its weights
//! is in every part's metadata. Parts are written atomically and kept on a
//! rerun when they match, so an interrupted run continues and a repeated
//! one does nothing.
//!
//! Split over tasks (a job array, MPI ranks: [`TaskSlice`]), task `I` of `N`
//! encodes parts `I, I + N, ...` of every split; whichever task finds all
//! parts written when it is done writes the manifest and the cards (or
//! `--merge` does, later), the bytes one process would write.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use serde::Serialize;
use videogpt_pipeline::shards::format::sha256_file;
use videogpt_pipeline::shards::{ClipIndex, ClipShards};
use videogpt_pipeline::tasks::TaskSlice;
use videogpt_pipeline::tokens::{TablePlan, TokenTableMeta};

use crate::backend::BackendKind;
use crate::checkpoint::{self, MODEL_FILE};
use crate::data;
use crate::error::{IoContext, ModelError, Result};

#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Splits to encode (those prepared are taken when empty).
    pub splits: Vec<String>,
    pub batch_size: usize,
    pub backend: BackendKind,
    pub rows_per_part: usize,
    /// Replace a table folder written by another checkpoint.
    pub overwrite: bool,
    /// Keep the first this many frames of every clip in a `frames` column
    /// (for frame-conditioned priors); 0: none. Such a table gets its own
    /// folder (`<table name>-context-K`).
    pub context_frames: usize,
    pub progress: bool,
    /// This process's share of the parts.
    pub task: TaskSlice,
    /// Encode nothing: write the manifests from the parts the tasks wrote
    /// (an error naming the missing ones if any are).
    pub merge: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        Self {
            splits: Vec::new(),
            batch_size: 16,
            backend: BackendKind::Flex,
            rows_per_part: videogpt_pipeline::tokens::ROWS_PER_PART,
            overwrite: false,
            context_frames: 0,
            progress: true,
            task: TaskSlice::WHOLE,
            merge: false,
        }
    }
}

/// What one split's encoding did.
#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub split: String,
    pub table: PathBuf,
    pub clips: u64,
    /// Clips encoded now (0 when the table was already complete).
    pub encoded: u64,
    pub parts: usize,
    pub bytes: u64,
    pub seconds: f64,
    /// Parts other tasks have not written yet; the manifest is written once
    /// there are none.
    pub parts_pending: usize,
}

/// The table folder name for a checkpoint: `<run>-<step folder>`.
pub fn table_name(checkpoint: &Path) -> String {
    let step = checkpoint.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint");
    let run = checkpoint
        .parent()
        .and_then(|p| p.parent())
        .and_then(|r| r.file_name())
        .and_then(|n| n.to_str());
    match run {
        Some(run) => format!("{run}-{step}"),
        None => step.to_string(),
    }
}

/// Encodes the splits of `clips_root` (`datasets/<dataset>/clips`) with the
/// checkpoint (or a run folder's latest) into the table
/// `tokens_root/<table name>` (`data/<split>/` and `meta/`).
pub fn encode_latents(
    checkpoint_or_run: &Path,
    clips_root: &Path,
    tokens_root: &Path,
    options: &EncodeOptions,
) -> Result<Vec<SplitSummary>> {
    crate::limits::check_batch("--batch-size", options.batch_size)?;
    if !(1..=1_000_000).contains(&options.rows_per_part) {
        return Err(ModelError::Config(format!("--rows-per-part {}: must be 1 to 1000000", options.rows_per_part)));
    }
    let checkpoint = checkpoint::resolve(checkpoint_or_run)?;
    let device = options.backend.device();
    let (model, config, _) = checkpoint::load_model(&checkpoint, &device)?;
    let model = model.valid();
    let sha = sha256_file(&checkpoint.join(MODEL_FILE))?;
    let mut name = table_name(&checkpoint);
    if options.context_frames > 0 {
        name.push_str(&format!("-context-{}", options.context_frames));
    }
    let table = videogpt_pipeline::names::join_name(tokens_root, "token table name", &name)?;

    let splits = if options.splits.is_empty() {
        prepared_splits(clips_root)?
    } else {
        for split in &options.splits {
            videogpt_pipeline::names::check_name("--splits", split)?;
        }
        options.splits.clone()
    };
    if splits.is_empty() {
        return Err(ModelError::format(
            clips_root,
            "has no prepared splits (run `just prepare <dataset>` first)",
        ));
    }
    let mut summaries = Vec::new();
    // The plans of splits other tasks had not finished, to look at again.
    let mut unfinished = Vec::new();
    for split in splits {
        let started = Instant::now();
        let split_dir = clips_root.join(&split);
        let index = ClipIndex::read(&split_dir)?;
        config.check_clip_shape(&split_dir, index.clip_shape)?;
        if options.context_frames >= index.clip_shape[0] {
            return Err(ModelError::Config(format!(
                "--context-frames {} must be fewer than the {} frames of a clip in {}",
                options.context_frames,
                index.clip_shape[0],
                split_dir.display()
            )));
        }
        let meta = TokenTableMeta {
            dataset: index.dataset.clone(),
            split: split.clone(),
            table: name.clone(),
            latent_grid: config.model.latent_shape(),
            codebook_size: config.model.codes,
            checkpoint_sha256: sha.clone(),
            // Absolute, so that `sample` finds the VQ-VAE from any folder.
            checkpoint: std::path::absolute(&checkpoint).unwrap_or_else(|_| checkpoint.clone()).display().to_string(),
            clip_shape: index.clip_shape,
            preprocessing: index.preprocessing.clone(),
            context_frames: options.context_frames,
        };
        let out_dir = videogpt_pipeline::tokens::layout::data_dir(&table, &split);
        let shared = options.task.is_split() || options.merge;
        let plan = TablePlan::for_task(&split_dir, &out_dir, meta, options.rows_per_part, options.overwrite, shared)?;
        let pending: Vec<_> = plan
            .pending()
            .into_iter()
            .filter(|part| !options.merge && options.task.owns(part.index))
            .collect();
        let todo: u64 = pending.iter().map(|p| p.rows as u64).sum();
        let shards = ClipShards::open(&split_dir)?;
        let bar = videogpt_pipeline::progress::bar(todo, "clips", options.progress);
        bar.set_message(format!("{split}: encoding"));
        for part in &pending {
            let mut tokens: Vec<u16> = Vec::with_capacity(part.rows * plan.meta().tokens_per_clip());
            let mut frames: Vec<u8> = Vec::with_capacity(part.rows * plan.meta().context_len());
            let ids: Vec<u64> = part.clip_ids().collect();
            for chunk in ids.chunks(options.batch_size) {
                let batch = data::read_batch(&shards, chunk)?;
                if options.context_frames > 0 {
                    for clip in data::clips_from_channels_first(&batch.data, batch.shape) {
                        frames.extend_from_slice(&clip[..plan.meta().context_len()]);
                    }
                }
                let codes = data::int_values(model.encode(batch.tensor(&device)));
                tokens.extend(codes.into_iter().map(|c| c as u16));
                bar.inc(chunk.len() as u64);
            }
            let frames = (options.context_frames > 0).then_some(frames.as_slice());
            plan.write(part, &tokens, frames)?;
        }
        bar.finish_and_clear();
        let others = plan.pending();
        if !others.is_empty() {
            if options.merge {
                let names: Vec<String> = others.iter().map(|p| p.file_name()).collect();
                return Err(ModelError::format(
                    &out_dir,
                    format!(
                        "{} of {} parts are not encoded yet ({}); run the encode tasks that own them first",
                        others.len(),
                        plan.parts().len(),
                        videogpt_pipeline::tasks::first_ten(&names)
                    ),
                ));
            }
            tracing::info!(split = %split, pending = others.len(), "this task's parts are written; other tasks' to come");
            let (clips, parts) = (plan.clips(), plan.parts().len());
            unfinished.push((summaries.len(), plan));
            summaries.push(SplitSummary {
                split,
                table: out_dir,
                clips,
                encoded: todo,
                parts,
                bytes: 0,
                seconds: started.elapsed().as_secs_f64(),
                parts_pending: others.len(),
            });
            continue;
        }
        let manifest = plan.finish()?;
        tracing::info!(split = %split, table = %out_dir.display(), encoded = todo, "token table complete");
        summaries.push(SplitSummary {
            split,
            table: out_dir,
            clips: manifest.rows,
            encoded: todo,
            parts: manifest.parts.len(),
            bytes: manifest.parts.iter().map(|p| p.bytes).sum(),
            seconds: started.elapsed().as_secs_f64(),
            parts_pending: 0,
        });
    }
    // This task's parts are all written now: the task that finishes last
    // finds every split's parts and writes the manifests.
    for (i, plan) in unfinished {
        let pending = plan.pending().len();
        summaries[i].parts_pending = pending;
        if pending == 0 {
            let manifest = plan.finish()?;
            summaries[i].bytes = manifest.parts.iter().map(|p| p.bytes).sum();
        }
    }
    if summaries.iter().any(|s| s.parts_pending > 0) {
        return Ok(summaries);
    }
    videogpt_pipeline::card::write_table_card(&table)?;
    if let Some(dataset_dir) = tokens_root.parent() {
        videogpt_pipeline::card::write_dataset_card(dataset_dir)?;
    }
    Ok(summaries)
}

/// Splits under `clips_root` that have an index.json, train and test first.
fn prepared_splits(clips_root: &Path) -> Result<Vec<String>> {
    let mut splits = Vec::new();
    for entry in std::fs::read_dir(clips_root).at(clips_root)?.flatten() {
        if entry.path().join("index.json").is_file() {
            splits.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let rank = |s: &str| match s {
        "train" => 0,
        "test" => 1,
        _ => 2,
    };
    splits.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.cmp(b)));
    Ok(splits)
}
