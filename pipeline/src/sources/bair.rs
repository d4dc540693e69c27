//! BAIR robot pushing (`softmotion30_44k`): TFRecord files of
//! `tf.train.Example`s, one trajectory each, with per time step i = 0..29
//! `{i}/image_aux1/encoded` (raw 64x64x3 RGB bytes, not an encoded image
//! despite the name), `{i}/action` (4 floats) and `{i}/endeffector_pos`
//! (3 floats). Frames are stored as they are (no resize); actions are kept
//! for action-conditional priors.
//!
//! Files are scanned in name order; a file whose framing breaks contributes
//! its records up to the break and a reject naming the file and record.

use std::fs::File;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::tf_example::{self, Feature};
use super::tfrecord::{self, RecordLocation};
use super::{ClipSource, DecodedVideo, FrameSpec, VideoItem};
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::Reject;

pub const FRAME_SIDE: usize = 64;
pub const FRAME_BYTES: usize = FRAME_SIDE * FRAME_SIDE * 3;
pub const ACTION_DIM: usize = 4;
pub const IMAGE_KEY: &str = "image_aux1/encoded";
pub const ACTION_KEY: &str = "action";
pub const STATE_KEY: &str = "endeffector_pos";

/// The folder holding a split's `*.tfrecords`: `raw/softmotion30_44k/<split>`
/// or `raw/<split>`.
pub fn find_split_dir(raw: &Path, split: &str) -> Result<PathBuf> {
    let candidates = [raw.join("softmotion30_44k").join(split), raw.join(split)];
    candidates
        .iter()
        .find(|d| d.is_dir())
        .cloned()
        .ok_or_else(|| {
            PipelineError::format(
                raw,
                format!(
                    "no BAIR `{split}` folder (looked for softmotion30_44k/{split}/ and {split}/)"
                ),
            )
        })
}

pub struct Bair {
    split: String,
    dir: PathBuf,
    files: Vec<PathBuf>,
    /// Per video: its file (index into `files`) and record location.
    records: Vec<(usize, RecordLocation)>,
    videos: Vec<VideoItem>,
    plan_rejects: Vec<Reject>,
}

impl Bair {
    /// Lists every record of `split_dir/*.tfrecords`.
    pub fn open(split_dir: &Path, split: &str) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(split_dir)
            .at(split_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "tfrecords" || x == "tfrecord")
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(PipelineError::format(split_dir, "no *.tfrecords files"));
        }
        let scans: Vec<_> = files
            .par_iter()
            .map(|f| tfrecord::scan(f))
            .collect::<Result<_>>()?;
        let (mut records, mut videos, mut plan_rejects) = (Vec::new(), Vec::new(), Vec::new());
        for (fi, (file, scan)) in files.iter().zip(scans).enumerate() {
            for loc in scan.records {
                videos.push(VideoItem {
                    source: format!("{}#{}", file.display(), loc.index),
                    label: None,
                    text: None,
                });
                records.push((fi, loc));
            }
            if let Some((record, reason)) = scan.broken {
                plan_rejects.push(Reject {
                    file: file.display().to_string(),
                    record: Some(record),
                    reason,
                });
            }
        }
        Ok(Self {
            split: split.into(),
            dir: split_dir.to_owned(),
            files,
            records,
            videos,
            plan_rejects,
        })
    }
}

/// Frames and actions of one trajectory Example.
pub fn decode_trajectory(example: &tf_example::Example) -> Result<DecodedVideo, String> {
    let mut frames = Vec::new();
    let mut actions = Vec::new();
    let mut n = 0;
    while let Some(feature) = example.get(&format!("{n}/{IMAGE_KEY}")) {
        match feature {
            Feature::Bytes(v) if v.len() == 1 && v[0].len() == FRAME_BYTES => {
                frames.extend_from_slice(&v[0])
            }
            Feature::Bytes(v) if v.len() == 1 => {
                return Err(format!(
                    "frame {n}: {} bytes, expected {FRAME_BYTES} (64x64x3)",
                    v[0].len()
                ));
            }
            _ => {
                return Err(format!(
                    "frame {n}: `{n}/{IMAGE_KEY}` is not a single bytes value"
                ));
            }
        }
        match example.get(&format!("{n}/{ACTION_KEY}")) {
            Some(Feature::Floats(a)) if a.len() == ACTION_DIM => actions.extend_from_slice(a),
            Some(_) => {
                return Err(format!(
                    "frame {n}: `{n}/{ACTION_KEY}` is not {ACTION_DIM} floats"
                ));
            }
            None => return Err(format!("frame {n}: `{n}/{ACTION_KEY}` missing")),
        }
        n += 1;
    }
    if n == 0 {
        return Err(format!("no `0/{IMAGE_KEY}` feature: not a BAIR trajectory"));
    }
    Ok(DecodedVideo {
        frames,
        num_frames: n,
        actions: Some(actions),
    })
}

/// Serializes one trajectory as the BAIR files do (for fixtures and
/// benchmarks): `frames` is `[n, 64, 64, 3]`, `actions` `[n, 4]`,
/// `states` `[n, 3]`.
pub fn encode_trajectory(frames: &[u8], actions: &[f32], states: &[f32]) -> Vec<u8> {
    let n = frames.len() / FRAME_BYTES;
    let mut features = Vec::with_capacity(3 * n);
    for i in 0..n {
        features.push((
            format!("{i}/{IMAGE_KEY}"),
            Feature::Bytes(vec![
                frames[i * FRAME_BYTES..(i + 1) * FRAME_BYTES].to_vec(),
            ]),
        ));
        features.push((
            format!("{i}/{ACTION_KEY}"),
            Feature::Floats(actions[i * ACTION_DIM..(i + 1) * ACTION_DIM].to_vec()),
        ));
        features.push((
            format!("{i}/{STATE_KEY}"),
            Feature::Floats(states[i * 3..(i + 1) * 3].to_vec()),
        ));
    }
    tf_example::encode_example(&features)
}

impl ClipSource for Bair {
    fn dataset(&self) -> &str {
        "bair"
    }

    fn split(&self) -> &str {
        &self.split
    }

    fn frame_spec(&self) -> FrameSpec {
        FrameSpec {
            shape: [FRAME_SIDE, FRAME_SIDE, 3],
            resize: "none".into(),
            crop: "none".into(),
            fps: None,
            action_dim: Some(ACTION_DIM),
        }
    }

    fn videos(&self) -> &[VideoItem] {
        &self.videos
    }

    fn plan_rejects(&self) -> Vec<Reject> {
        self.plan_rejects.clone()
    }

    fn decode(&self, index: usize) -> Result<DecodedVideo, Reject> {
        let (fi, loc) = self.records[index];
        let path = &self.files[fi];
        let reject = |reason: String| Reject {
            file: path.display().to_string(),
            record: Some(loc.index),
            reason,
        };
        let file = File::open(path).map_err(|e| reject(format!("cannot open: {e}")))?;
        let data = tfrecord::read_record(&file, &loc).map_err(reject)?;
        let example = tf_example::parse_example(&data)
            .map_err(|e| reject(format!("not a tf.train.Example: {e}")))?;
        decode_trajectory(&example).map_err(reject)
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "tfrecords",
            "dir": self.dir.display().to_string(),
            "files": self.files.iter().map(|f| f.file_name().unwrap_or_default().to_string_lossy()).collect::<Vec<_>>(),
            "image_key": IMAGE_KEY,
            "action_key": ACTION_KEY,
        })
    }
}
