//! A split made of video files on disk, decoded with FFmpeg: what UCF-101,
//! TGIF and ViZDoom have in common once their listings are read.

use crate::shards::metadata::Conditioning;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ClipSource, DecodedVideo, FrameSpec, Streamed, VideoItem};
use crate::error::{PipelineError, Result};
use crate::shards::Reject;
use crate::video::{DamagePolicy, DecodeOptions, decode_video};

/// One listed video file with what the dataset knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFile {
    pub path: PathBuf,
    pub label: Option<i32>,
    pub text: Option<String>,
    /// Per-frame action vectors `[frames, D]` (ViZDoom).
    pub actions: Option<Vec<f32>>,
}

pub struct VideoFiles {
    dataset: String,
    split: String,
    raw: PathBuf,
    options: DecodeOptions,
    files: Vec<VideoFile>,
    items: Vec<VideoItem>,
    columns: Conditioning,
    plan_rejects: Vec<Reject>,
    describe: serde_json::Value,
}

impl VideoFiles {
    /// `files` in their fixed order; `raw` is the folder that paths are
    /// reported relative to; `describe` goes to index.json.
    pub fn new(
        dataset: &str,
        split: &str,
        raw: &Path,
        options: DecodeOptions,
        files: Vec<VideoFile>,
        columns: Conditioning,
        plan_rejects: Vec<Reject>,
        describe: serde_json::Value,
    ) -> Self {
        let items = files
            .iter()
            .map(|f| VideoItem {
                source: relative_name(raw, &f.path),
                label: f.label,
                text: f.text.clone(),
            })
            .collect();
        Self {
            dataset: dataset.into(),
            split: split.into(),
            raw: raw.into(),
            options,
            files,
            items,
            columns,
            plan_rejects,
            describe,
        }
    }

    pub fn files(&self) -> &[VideoFile] {
        &self.files
    }
}

/// The reject reason of a video FFmpeg reported `reports` problems in.
fn damage_reason(reports: usize, first: Option<&str>) -> String {
    let first: String = first.unwrap_or("").chars().take(160).collect();
    format!(
        "damaged: FFmpeg reported {reports} decode error(s) it concealed (first: {first:?}); --on-damage keep prepares it anyway"
    )
}

/// `path` relative to `raw` with `/` separators, or the whole path when it
/// lies elsewhere.
pub fn relative_name(raw: &Path, path: &Path) -> String {
    let Ok(rel) = path.strip_prefix(raw) else {
        return path.display().to_string();
    };
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The documented deterministic split of datasets without an official one
/// (TGIF, collected ViZDoom episodes): an item is in the test split when the
/// first 8 bytes of SHA-256(name), big-endian, modulo 100 fall below
/// `test_percent`. It depends on the name alone, so adding or losing files
/// never moves another file across splits.
pub fn in_test_split(name: &str, test_percent: u32) -> bool {
    let digest = Sha256::digest(name.as_bytes());
    let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    head % 100 < test_percent as u64
}

/// One side of the [`in_test_split`] division, its arguments checked once
/// for every dataset that uses it (TGIF, ViZDoom).
#[derive(Debug, Clone, Copy)]
pub struct HashSplit {
    test: bool,
    test_percent: u32,
}

impl HashSplit {
    /// `split` must be "train" or "test"; `what` names the data in the error.
    pub fn new(what: &str, split: &str, test_percent: u32) -> Result<Self> {
        if split != "train" && split != "test" {
            return Err(PipelineError::config(format!(
                "{what} are split into train and test, not `{split}`"
            )));
        }
        if test_percent > 100 {
            return Err(PipelineError::config(format!(
                "--test-percent {test_percent}: must be 0 to 100"
            )));
        }
        Ok(Self {
            test: split == "test",
            test_percent,
        })
    }

    /// Whether the item called `name` belongs to this split.
    pub fn contains(&self, name: &str) -> bool {
        in_test_split(name, self.test_percent) == self.test
    }
}

impl ClipSource for VideoFiles {
    fn dataset(&self) -> &str {
        &self.dataset
    }

    fn split(&self) -> &str {
        &self.split
    }

    fn frame_spec(&self) -> FrameSpec {
        let r = self.options.resolution as usize;
        FrameSpec {
            shape: [r, r, 3],
            resize: format!("shorter side to {r}, swscale {}", self.options.filter),
            crop: "center".into(),
            fps: self.options.fps,
            action_dim: self.columns.action_dim,
        }
    }

    fn conditioning(&self) -> Conditioning {
        self.columns
    }

    fn videos(&self) -> &[VideoItem] {
        &self.items
    }

    fn plan_rejects(&self) -> Vec<Reject> {
        self.plan_rejects.clone()
    }

    fn decode(&self, index: usize) -> Result<DecodedVideo, Reject> {
        let mut frames = Vec::new();
        let streamed = self.stream(index, &mut |f| {
            frames.extend_from_slice(f);
            true
        })?;
        Ok(DecodedVideo {
            frames,
            num_frames: streamed.frames,
            actions: streamed.actions,
        })
    }

    fn stream(
        &self,
        index: usize,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Streamed, Reject> {
        let file = &self.files[index];
        let is_gif = file.path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gif"));
        if is_gif && !super::tgif::gif_is_complete(&file.path).unwrap_or(false) {
            return Err(Reject {
                file: self.items[index].source.clone(),
                record: None,
                reason: "truncated GIF: it does not end with the trailer byte 0x3B (a cut download)".into(),
            });
        }
        let summary = decode_video(&file.path, &self.options, sink).map_err(|e| Reject {
            file: self.items[index].source.clone(),
            record: None,
            reason: e.to_string(),
        })?;
        if summary.damage > 0 && self.options.on_damage == DamagePolicy::Reject {
            return Err(Reject {
                file: self.items[index].source.clone(),
                record: None,
                reason: damage_reason(summary.damage, summary.first_damage.as_deref()),
            });
        }
        Ok(Streamed {
            frames: summary.delivered,
            actions: file.actions.clone(),
            decode_errors: u32::try_from(summary.damage).unwrap_or(u32::MAX),
        })
    }

    fn describe(&self) -> serde_json::Value {
        let mut d = self.describe.clone();
        if let Some(map) = d.as_object_mut() {
            map.insert("raw".into(), self.raw.display().to_string().into());
            map.insert(
                "decoder".into(),
                serde_json::json!({
                    "library": "FFmpeg (ffmpeg-next)",
                    "options": self.options,
                }),
            );
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_split_is_stable_and_near_its_share() {
        let names: Vec<String> = (0..10_000).map(|i| format!("tumblr_{i:06}.gif")).collect();
        let test = names.iter().filter(|n| in_test_split(n, 10)).count();
        assert!((900..1100).contains(&test), "{test} of 10000 in test");
        assert_eq!(
            in_test_split("tumblr_abc.gif", 10),
            in_test_split("tumblr_abc.gif", 10)
        );
        assert!(!in_test_split("x", 0) && in_test_split("x", 100));
        assert!(HashSplit::new("GIFs", "test", 100).unwrap().contains("x"));
        let e = HashSplit::new("GIFs", "val", 10).unwrap_err().to_string();
        assert!(e.contains("GIFs") && e.contains("`val`"), "{e}");
        let e = HashSplit::new("GIFs", "test", 101).unwrap_err().to_string();
        assert!(e.contains("--test-percent 101"), "{e}");
    }

    #[test]
    fn names_are_relative_to_the_raw_folder() {
        assert_eq!(
            relative_name(Path::new("/d/raw"), Path::new("/d/raw/UCF-101/A/v.avi")),
            "UCF-101/A/v.avi"
        );
        assert_eq!(
            relative_name(Path::new("/d/raw"), Path::new("/e/v.avi")),
            "/e/v.avi"
        );
    }
}
