//! `index.json`: the manifest of one split's clip shards.
//!
//! Owns the manifest's schema and its (de)serialisation. It is written last,
//! atomically, so its presence means the split is complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::clip_sampling::ClipSampling;
use crate::error::{IoContext, PipelineError, Result};

pub const INDEX_FILE: &str = "index.json";
pub const CLIPS_TABLE_FILE: &str = "clips.parquet";
pub const FORMAT_NAME: &str = "videogpt-clip-shards";
pub const FORMAT_VERSION: u32 = 1;

/// How frames were brought to the target resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Output frame size `[height, width]`.
    pub resolution: [usize; 2],
    /// Resize filter, or `none` when the source already has the resolution.
    pub resize: String,
    /// Crop after resizing (`center`), or `none`.
    pub crop: String,
    pub sampling: ClipSampling,
    /// Frame rate of the clips in frames/s, when the source defines one.
    pub fps: Option<f64>,
    /// Seed of every random choice (clip starts, generated content).
    pub seed: u64,
    /// What the stored bytes mean.
    pub value_range: String,
}

pub const VALUE_RANGE_U8: &str = "uint8 0..=255 (models map to [-0.5, 0.5] as x/255 - 0.5)";

/// One shard file of the split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name relative to the split folder.
    pub file: String,
    pub clips: usize,
    /// Global clip id of the shard's first clip.
    pub first_clip: u64,
    /// Size of the shard file in bytes.
    pub bytes: u64,
    /// Uncompressed pixel bytes of its clips.
    pub raw_bytes: u64,
    /// Hex SHA-256 of the whole shard file.
    pub sha256: String,
}

/// An input that could not be turned into clips, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub file: String,
    /// Record or item index inside the file, where the file holds several.
    pub record: Option<u64>,
    pub reason: String,
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.record {
            Some(r) => write!(f, "{} (record {r}): {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipIndex {
    pub format: String,
    pub format_version: u32,
    pub dataset: String,
    pub split: String,
    /// `[T, H, W, C]`.
    pub clip_shape: [usize; 4],
    pub dtype: String,
    pub layout: String,
    pub compression: String,
    pub zstd_level: i32,
    pub preprocessing: Preprocessing,
    /// Source-specific description (where the data came from).
    pub source: serde_json::Value,
    /// SHA-256 over everything that decides the shards' contents; a rerun
    /// with another fingerprint must not mix its shards with these.
    pub plan_fingerprint: String,
    pub num_videos: usize,
    pub num_clips: u64,
    pub shards: Vec<ShardEntry>,
    pub rejects: Vec<Reject>,
    /// Hex SHA-256 of clips.parquet, checked whenever it is read (Parquet
    /// pages carry no checksum of their own); absent in older splits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clips_table_sha256: Option<String>,
}

impl ClipIndex {
    pub fn clip_len(&self) -> usize {
        self.clip_shape.iter().product()
    }

    /// One line: what the split holds and how well it compressed.
    pub fn summary(&self) -> String {
        let bytes: u64 = self.shards.iter().map(|s| s.bytes).sum();
        let raw: u64 = self.shards.iter().map(|s| s.raw_bytes).sum();
        format!(
            "{}/{}: {} clips of {:?} (THWC uint8) from {} videos in {} shards, {:.1} MB ({:.1}x compressed), {} rejects",
            self.dataset,
            self.split,
            self.num_clips,
            self.clip_shape,
            self.num_videos,
            self.shards.len(),
            bytes as f64 / 1e6,
            raw as f64 / bytes.max(1) as f64,
            self.rejects.len()
        )
    }

    pub fn read(split_dir: &Path) -> Result<Self> {
        let path = split_dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).at(&path)?;
        let index: Self = serde_json::from_str(&text)
            .map_err(|e| PipelineError::format(&path, format!("not a clip index: {e}")))?;
        if index.format != FORMAT_NAME || index.format_version > FORMAT_VERSION {
            return Err(PipelineError::format(
                &path,
                format!(
                    "format {} v{} is not readable by this version ({FORMAT_NAME} v{FORMAT_VERSION})",
                    index.format, index.format_version
                ),
            ));
        }
        index.check_shards(&path)?;
        Ok(index)
    }

    /// The clips are what this version reads (uint8 THWC in zstd frames, of
    /// a sane shape); every shard is a file of the split folder, and the
    /// shards' clip counts and first clip ids add up to `num_clips`.
    fn check_shards(&self, path: &Path) -> Result<()> {
        let storage = (self.dtype.as_str(), self.layout.as_str(), self.compression.as_str());
        if storage != ("uint8", "THWC", "zstd") {
            return Err(PipelineError::format(
                path,
                format!(
                    "clips stored as {} {} {}; this version reads uint8 THWC zstd",
                    crate::names::quote(&self.dtype),
                    crate::names::quote(&self.layout),
                    crate::names::quote(&self.compression)
                ),
            ));
        }
        check_clip_shape(path, self.clip_shape)?;
        let shards = self.shards.iter().map(|s| (s.file.as_str(), s.first_clip, s.clips as u64));
        let held = check_consecutive_files(path, "shard", shards)?;
        if held != self.num_clips {
            return Err(PipelineError::format(
                path,
                format!("its shards hold {held} clips, but num_clips says {}", self.num_clips),
            ));
        }
        Ok(())
    }

    pub fn write(&self, split_dir: &Path) -> Result<()> {
        let path = split_dir.join(INDEX_FILE);
        let json = serde_json::to_vec_pretty(self).expect("index serialises");
        crate::atomic::write_bytes_atomic(&path, &json).at(&path)
    }
}

/// Refuses a clip shape that is empty or over 2^30 values (a GB per clip).
pub fn check_clip_shape(path: &Path, clip_shape: [usize; 4]) -> Result<()> {
    let values = clip_shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if values.is_none_or(|v| v == 0 || v > 1 << 30) {
        return Err(PipelineError::format(
            path,
            format!("clip_shape {clip_shape:?} is empty or over 2^30 values"),
        ));
    }
    Ok(())
}

/// Checks the files a manifest (`path`) lists as `(file, first clip id,
/// clips)`, each a `kind` (shard, part): every file is a name in the
/// manifest's folder, and the files hold consecutive clip ids from 0.
/// Returns how many clips they hold together.
pub fn check_consecutive_files<'a>(
    path: &Path,
    kind: &str,
    files: impl Iterator<Item = (&'a str, u64, u64)>,
) -> Result<u64> {
    let mut next_clip = 0u64;
    for (file, first_clip, clips) in files {
        if let Some(problem) = crate::names::name_problem(file) {
            return Err(PipelineError::format(
                path,
                format!("{kind} file {} {problem}", crate::names::quote(file)),
            ));
        }
        if first_clip != next_clip {
            return Err(PipelineError::format(
                path,
                format!(
                    "{kind} {file} starts at clip {first_clip}, but the {kind}s before it end at clip {next_clip}"
                ),
            ));
        }
        next_clip = next_clip.saturating_add(clips);
    }
    Ok(next_clip)
}

/// Split folders named by `target`: a split folder, a clips folder, a
/// dataset folder, or a dataset name under `root`.
pub fn find_split_dirs(target: &str, root: &Path) -> Result<Vec<PathBuf>> {
    let path = PathBuf::from(target);
    let mut candidates = vec![path.clone(), path.join("clips")];
    // A bare name is a dataset under `root` (`ucf101` finds `ucf101-64`).
    let as_name = crate::names::check_name("dataset", target).is_ok() && !path.is_dir();
    if as_name {
        candidates.push(crate::datasets::dataset_dir(root, target)?.join("clips"));
    }
    for c in candidates {
        if c.join(INDEX_FILE).is_file() {
            return Ok(vec![c]);
        }
        if c.is_dir() {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&c)
                .at(&c)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(INDEX_FILE).is_file())
                .collect();
            if !dirs.is_empty() {
                dirs.sort();
                return Ok(dirs);
            }
        }
    }
    Err(PipelineError::Config {
        what: format!(
            "{target}: no prepared split found (no index.json there, in {target}/clips/*{})",
            if as_name { format!(", or in its clips/* under {}", root.display()) } else { String::new() }
        ),
    })
}

