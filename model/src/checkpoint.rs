//! Checkpoints of a run folder:
//!
//! ```text
//! runs/<name>/config.json                      the run: model config, training options, data statistics
//! runs/<name>/checkpoints/step-00001000/       model.bpk, optimizer.bpk, state.json, config.json, checksums.json
//! runs/<name>/checkpoints/latest               the name of the newest complete checkpoint
//! ```
//!
//! A checkpoint folder is written under a temporary name, every file synced,
//! then renamed into place; `latest` is replaced atomically afterwards. Just
//! before the rename, `checkpoints/pending` names the step being committed,
//! and it is removed once `latest` names it: a kill between the rename and
//! the new `latest` leaves `pending` naming a complete folder, which readers
//! take as the newest checkpoint. A kill at any point leaves a run that
//! `--resume` continues, from the newest complete checkpoint.
//!
//! `checksums.json` holds the SHA-256 of the weights and optimizer files as
//! written; loading checks them, so a damaged file (a flipped bit on disk or
//! in a copy) is an error rather than a model with a wrong weight.
//! Checkpoints from before it load unchecked.

use std::fs;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};
use serde::{Deserialize, Serialize};
use videogpt_pipeline::atomic::write_bytes_atomic;
use videogpt_pipeline::shards::format::sha256_hex;

use crate::error::{IoContext, ModelError, Result};
use crate::vqvae::VqVae;

pub use crate::run_config::{TrainState, VqVaeRunConfig};

pub const MODEL_FILE: &str = "model.bpk";
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
pub const STATE_FILE: &str = "state.json";
pub const CONFIG_FILE: &str = "config.json";
pub const LATEST_FILE: &str = "latest";
/// Names the checkpoint being committed (see the module's documentation).
pub const PENDING_FILE: &str = "pending";
pub const CHECKSUMS_FILE: &str = "checksums.json";

pub fn checkpoints_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

pub fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_vec_pretty(value).expect("serialisable");
    write_bytes_atomic(path, &text).at(path)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path).at(path)?;
    serde_json::from_slice(&bytes).map_err(|e| ModelError::format(path, e.to_string()))
}

pub fn write_run_config(run: &Path, config: &VqVaeRunConfig) -> Result<()> {
    write_json(&run.join(CONFIG_FILE), config)
}

/// Saves a VQ-VAE checkpoint and points `latest` at it; returns its folder.
pub fn save(
    run: &Path,
    config: &VqVaeRunConfig,
    state: &TrainState,
    model: &VqVae,
    optimizer: &ModuleOptimizer,
) -> Result<PathBuf> {
    // `valid()` first: it settles BatchNorm's running statistics, which
    // otherwise lag one update behind in the record.
    save_module(run, config, state, model.valid(), optimizer)
}

/// Saves any module's checkpoint (weights, optimizer, state, config) under
/// `run/checkpoints/step-NNNNNNNN` atomically and points `latest` at it.
pub fn save_module<M: Module, C: Serialize>(
    run: &Path,
    config: &C,
    state: &TrainState,
    model: M,
    optimizer: &ModuleOptimizer,
) -> Result<PathBuf> {
    let dir = checkpoints_dir(run);
    let name = step_name(state.step);
    let staging = dir.join(format!(".tmp-{name}"));
    let final_dir = dir.join(&name);
    if staging.exists() {
        fs::remove_dir_all(&staging).at(&staging)?;
    }
    fs::create_dir_all(&staging).at(&staging)?;
    let pending = dir.join(PENDING_FILE);
    let committed = write_checkpoint_files(&staging, config, state, model, optimizer).and_then(|()| {
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir).at(&final_dir)?;
        }
        write_bytes_atomic(&pending, name.as_bytes()).at(&dir)?;
        fs::rename(&staging, &final_dir).at(&final_dir)
    });
    if committed.is_err() {
        // A full disk or a failed write leaves no half checkpoint behind.
        let _ = fs::remove_dir_all(&staging);
        let _ = fs::remove_file(&pending);
    }
    committed?;
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    write_bytes_atomic(&dir.join(LATEST_FILE), name.as_bytes()).at(&dir)?;
    fs::remove_file(&pending).at(&pending)?;
    Ok(final_dir)
}

fn write_checkpoint_files<M: Module, C: Serialize>(
    staging: &Path,
    config: &C,
    state: &TrainState,
    model: M,
    optimizer: &ModuleOptimizer,
) -> Result<()> {
    let model_bytes = model
        .into_record()
        .into_bytes()
        .map_err(|e| ModelError::format(staging, format!("serialising the model: {e}")))?;
    write_bytes_atomic(&staging.join(MODEL_FILE), &model_bytes).at(staging)?;
    let optimizer_bytes = optimizer
        .into_bytes()
        .map_err(|e| ModelError::format(staging, format!("serialising the optimizer: {e}")))?;
    write_bytes_atomic(&staging.join(OPTIMIZER_FILE), &optimizer_bytes).at(staging)?;
    let checksums: std::collections::BTreeMap<&str, String> = [
        (MODEL_FILE, sha256_hex(&model_bytes)),
        (OPTIMIZER_FILE, sha256_hex(&optimizer_bytes)),
    ]
    .into_iter()
    .collect();
    write_json(&staging.join(CHECKSUMS_FILE), &checksums)?;
    write_json(&staging.join(STATE_FILE), state)?;
    write_json(&staging.join(CONFIG_FILE), config)
}

/// The bytes of the checkpoint file `name`, checked against the SHA-256
/// `checksums.json` recorded for it (where the checkpoint has one).
fn read_checked(checkpoint: &Path, name: &str) -> Result<Vec<u8>> {
    let path = checkpoint.join(name);
    let bytes = fs::read(&path).at(&path)?;
    let sums_path = checkpoint.join(CHECKSUMS_FILE);
    if !sums_path.exists() {
        return Ok(bytes);
    }
    let sums: std::collections::BTreeMap<String, String> = read_json(&sums_path)?;
    let Some(expected) = sums.get(name) else {
        return Err(ModelError::format(&sums_path, format!("has no checksum for {name}")));
    };
    let found = sha256_hex(&bytes);
    if &found != expected {
        let short = |s: &str| s.chars().take(12).collect::<String>();
        return Err(ModelError::format(
            &path,
            format!(
                "damaged: its SHA-256 is {}..., the checkpoint recorded {}... when it was written",
                short(&found),
                short(expected)
            ),
        ));
    }
    Ok(bytes)
}

/// A checkpoint's weights file as a module record.
pub fn read_record(checkpoint: &Path) -> Result<ModuleRecord> {
    let path = checkpoint.join(MODEL_FILE);
    let bytes = read_checked(checkpoint, MODEL_FILE)?;
    ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(|e| ModelError::format(&path, e.to_string()))
}

/// The newest complete checkpoint of a run, if any: the step folder that
/// `checkpoints/latest` names. A pointer that is not a step folder's name,
/// or step folders without a pointer, are errors: a run is never silently
/// started over on top of its checkpoints.
pub fn latest(run: &Path) -> Result<Option<PathBuf>> {
    let dir = checkpoints_dir(run);
    if let Some(committed) = pending_commit(&dir) {
        return Ok(Some(committed));
    }
    let pointer = dir.join(LATEST_FILE);
    if !pointer.exists() {
        let steps = step_folders(&dir);
        if let Some(newest) = steps.last() {
            return Err(ModelError::format(
                &pointer,
                format!(
                    "is missing, but {} holds {} checkpoint(s) ({}); write the one to continue from into it (e.g. `{}`) or choose another --run",
                    dir.display(),
                    steps.len(),
                    summarise(&steps),
                    newest
                ),
            ));
        }
        return Ok(None);
    }
    let name = read_pointer(&pointer)?;
    let name = name.as_str();
    if let Some(problem) = videogpt_pipeline::names::name_problem(name) {
        return Err(ModelError::format(
            &pointer,
            format!(
                "{} {problem}; it must name a step folder beside it",
                videogpt_pipeline::names::quote(name)
            ),
        ));
    }
    let found = dir.join(name);
    if !found.join(MODEL_FILE).is_file() {
        return Err(ModelError::format(
            &pointer,
            format!("points at {}, which has no {MODEL_FILE}", found.display()),
        ));
    }
    Ok(Some(found))
}

/// Removes temp files (`*.tmp-<pid>`, the pipeline's atomic-write rule) and
/// staging folders (`.tmp-*`) under `dir`.
fn remove_stale_temps(dir: &Path) -> Result<()> {
    videogpt_pipeline::atomic::remove_stale_temps(dir).at(dir)?;
    for entry in fs::read_dir(dir).at(dir)?.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            fs::remove_dir_all(&path).at(&path)?;
        } else {
            remove_stale_temps(&path)?;
        }
    }
    Ok(())
}

/// The trimmed text of a pointer file (`latest`, `pending`), read up to
/// 300 bytes: a step folder's name, if it is well-formed.
fn read_pointer(path: &Path) -> Result<String> {
    let bytes = fs::read(path).at(path)?;
    Ok(String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).trim().to_owned())
}

/// The step folder `pending` names, when the kill came after its rename:
/// it is complete (the rename is the commit), only `latest` was not yet
/// moved to it.
fn pending_commit(dir: &Path) -> Option<PathBuf> {
    let name = read_pointer(&dir.join(PENDING_FILE)).ok()?;
    if videogpt_pipeline::names::name_problem(&name).is_some() || !name.starts_with("step-") {
        return None;
    }
    let found = dir.join(name);
    found.join(MODEL_FILE).is_file().then_some(found)
}

/// The complete step folders of a checkpoints folder, oldest first
/// (staging folders start with `.tmp-` and are not complete).
fn step_folders(dir: &Path) -> Vec<String> {
    let mut steps: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-") && dir.join(n).join(MODEL_FILE).is_file())
        .collect();
    steps.sort();
    steps
}

/// At most three names of a list, then how many more.
fn summarise(names: &[String]) -> String {
    let mut shown = names.iter().rev().take(3).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > 3 {
        shown.push_str(&format!(" and {} older", names.len() - 3));
    }
    shown
}

/// A checkpoint folder from a path that is either a checkpoint folder or a
/// run folder (its latest checkpoint).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.join(MODEL_FILE).is_file() {
        return Ok(path.to_owned());
    }
    latest(path)?.ok_or_else(|| {
        ModelError::format(
            path,
            "is neither a checkpoint folder (with model.bpk) nor a run folder with checkpoints",
        )
    })
}

/// Loads a checkpoint's model on `device`.
pub fn load_model(checkpoint: &Path, device: &Device) -> Result<(VqVae, VqVaeRunConfig, TrainState)> {
    let config_path = checkpoint.join(CONFIG_FILE);
    let config: VqVaeRunConfig = read_json(&config_path)?;
    config.model.validate().map_err(|e| ModelError::format(&config_path, format!("not a model this tool builds: {e}")))?;
    let state: TrainState = read_json(&checkpoint.join(STATE_FILE))?;
    let path = checkpoint.join(MODEL_FILE);
    let record = read_record(checkpoint)?;
    let model = config
        .model
        .init(device)
        .try_load_record(record)
        .map_err(|e| record_mismatch(&path, &e))?;
    Ok((model, config, state))
}

/// A weights file that does not fit its config, in one short line: how
/// many tensors differ and the first of them (burn lists them all).
pub fn record_mismatch(weights: &Path, error: &burn::store::RecordError) -> ModelError {
    let text = error.to_string();
    let (kind, list) = match text.find(": [") {
        Some(at) => (&text[..at], &text[at + 3..]),
        None => (text.as_str(), ""),
    };
    let kind = kind.rsplit(": ").next().unwrap_or(kind).to_lowercase();
    let items = top_level_items(list);
    let first = items.first().map_or("", |s| s.trim());
    let mut first: String = first.chars().take(120).collect();
    if first.len() < items.first().map_or(0, |s| s.trim().len()) {
        first.push_str("...");
    }
    ModelError::format(
        weights,
        format!(
            "does not fit the config beside it ({kind}: {} tensor(s), first: {first})",
            items.len()
        ),
    )
}

/// The top-level comma-separated items of a Debug-printed list body
/// (`a, B { x: [1, 2] }, "c"]`), up to its closing bracket.
fn top_level_items(list: &str) -> Vec<&str> {
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let mut items = Vec::new();
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' if depth == 0 => {
                items.push(&list[start..i]);
                return items.into_iter().filter(|s| !s.trim().is_empty()).collect();
            }
            ']' | '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&list[start..]);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

#[cfg(test)]
mod mismatch_tests {
    use super::*;

    #[test]
    fn a_long_mismatch_is_one_short_line() {
        let names: Vec<String> = (0..300).map(|i| format!("\"encoder.block{i}.weight\"")).collect();
        let error = burn::store::RecordError::Validation(format!("Missing tensors: [{}]", names.join(", ")));
        let line = record_mismatch(Path::new("run/model.bpk"), &error).to_string();
        assert!(line.len() < 200, "{line}");
        assert!(line.contains("missing tensors: 300 tensor(s), first: \"encoder.block0.weight\""), "{line}");
    }

    /// A flipped byte in the weights or the optimizer state is an error
    /// naming the file; a checkpoint without checksums (older) still loads.
    #[test]
    fn a_flipped_byte_in_a_checkpoint_file_is_refused() {
        use burn::nn::LinearConfig;
        let run = tempfile::tempdir().unwrap();
        let device = Device::flex().autodiff();
        let model = LinearConfig::new(8, 4).init(&device);
        let optimizer = crate::ops::HostAdam::module_optimizer();
        let state = TrainState { step: 3, samples_seen: 12 };
        let dir = save_module(run.path(), &serde_json::json!({}), &state, model, &optimizer).unwrap();
        read_record(&dir).unwrap();
        load_optimizer(&dir, crate::ops::HostAdam::module_optimizer()).unwrap();
        let flip = |name: &str| {
            let path = dir.join(name);
            let mut bytes = fs::read(&path).unwrap();
            let at = bytes.len() - 5;
            bytes[at] ^= 0x10;
            fs::write(&path, &bytes).unwrap();
        };
        flip(MODEL_FILE);
        let err = read_record(&dir).unwrap_err().to_string();
        assert!(err.contains("model.bpk: damaged: its SHA-256 is"), "{err}");
        flip(OPTIMIZER_FILE);
        let err = load_optimizer(&dir, crate::ops::HostAdam::module_optimizer()).err().unwrap().to_string();
        assert!(err.contains("optimizer.bpk: damaged"), "{err}");
        // Without checksums.json the weights are read as they are.
        fs::remove_file(dir.join(CHECKSUMS_FILE)).unwrap();
        flip(MODEL_FILE);
        read_record(&dir).unwrap();
    }
}

pub fn load_optimizer(checkpoint: &Path, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
    let path = checkpoint.join(OPTIMIZER_FILE);
    let bytes = read_checked(checkpoint, OPTIMIZER_FILE)?;
    optimizer
        .from_bytes(Bytes::from_bytes_vec(bytes))
        .map_err(|e| ModelError::format(&path, e.to_string()))
}

/// `metrics.jsonl` opened for appending, after the lines logged past `step`
/// are dropped ([`truncate_metrics_after`]).
/// (Also removes what a killed run left in the run folder: temp files of
/// atomic writes, `*.tmp-<pid>`, and checkpoint staging folders, `.tmp-*`;
/// one process writes a run folder, so any it finds at the start are stale.)
pub fn open_metrics(path: &Path, step: u64) -> Result<fs::File> {
    if let Some(run) = path.parent() {
        remove_stale_temps(run)?;
    }
    truncate_metrics_after(path, step)?;
    fs::OpenOptions::new().create(true).append(true).open(path).at(path)
}

/// Drops the lines of a `metrics.jsonl` logged after `step` (by a run killed
/// after its last checkpoint), so a resumed run's log has no duplicates.
pub fn truncate_metrics_after(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    if kept.len() != text.len() {
        write_bytes_atomic(path, kept.as_bytes()).at(path)?;
    }
    Ok(())
}

/// The run folder under `runs` named `<prefix>*` whose latest checkpoint is
/// newest.
pub fn newest_run(runs: &Path, prefix: &str) -> Result<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in fs::read_dir(runs).at(runs)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let latest = entry.path().join("checkpoints").join(LATEST_FILE);
        if let Ok(t) = fs::metadata(&latest).and_then(|m| m.modified())
            && best.as_ref().is_none_or(|(b, _)| t > *b)
        {
            best = Some((t, entry.path()));
        }
    }
    best.map(|(_, run)| run).ok_or_else(|| {
        ModelError::Config(format!(
            "no run {}/{prefix}* with checkpoints; train one with `just train-vqvae` or name the checkpoint",
            runs.display()
        ))
    })
}
