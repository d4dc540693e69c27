//! `verify`: re-checks a prepared split against its manifest and names every
//! shard that is missing, truncated or corrupt. Read-only.

use std::path::Path;

use rayon::prelude::*;

use super::format::{ShardReader, sha256_file};
use super::index::{CLIPS_TABLE_FILE, ClipIndex};
use super::metadata::read_split_clips;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File name relative to the split folder.
    pub file: String,
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub shards_checked: usize,
    pub clips_checked: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks size and SHA-256 of every shard, its footer and clip count, and
/// clips.parquet against the index (its SHA-256, rows, clip ids, shard
/// positions). With `deep`, every clip is also decompressed
/// (zstd frame checksums) and its size checked.
pub fn verify_split(split_dir: &Path, deep: bool) -> Result<VerifyReport> {
    let index = ClipIndex::read(split_dir)?;
    let mut problems: Vec<Problem> = index
        .shards
        .par_iter()
        .filter_map(|entry| {
            let path = split_dir.join(&entry.file);
            let what = check_shard(&path, entry, index.clip_len(), deep).err()?;
            Some(Problem {
                file: entry.file.clone(),
                what,
            })
        })
        .collect();
    if let Err(e) = read_split_clips(split_dir, &index) {
        let what = e.to_string();
        problems.push(Problem {
            file: CLIPS_TABLE_FILE.into(),
            what,
        });
    }
    let counted = index.num_clips;
    Ok(VerifyReport {
        shards_checked: index.shards.len(),
        clips_checked: counted,
        problems,
    })
}

fn check_shard(
    path: &Path,
    entry: &super::index::ShardEntry,
    clip_len: usize,
    deep: bool,
) -> Result<(), String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read: {e}"))?
        .len();
    if size != entry.bytes {
        return Err(format!(
            "{size} bytes, index.json says {} (truncated or replaced)",
            entry.bytes
        ));
    }
    let sha = sha256_file(path).map_err(|e| e.to_string())?;
    if sha != entry.sha256 {
        return Err(format!(
            "SHA-256 mismatch: file {sha}, index.json {}",
            entry.sha256
        ));
    }
    let reader = ShardReader::open(path).map_err(|e| e.to_string())?;
    if reader.num_clips() != entry.clips {
        return Err(format!(
            "{} clips in footer, index.json says {}",
            reader.num_clips(),
            entry.clips
        ));
    }
    if deep {
        for i in 0..reader.num_clips() {
            reader.read_clip(i, clip_len).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
