//! Clips that already exist in memory (decoded samples, reconstructions),
//! one "video" per clip, so that `prepare_split` can store them as an
//! ordinary clip-shard split that every reader (FVD, encode-latents, the
//! notebooks) understands.

use crate::shards::Reject;
use crate::{ClipSampling, PrepareConfig, PrepareSummary, Result, StartPolicy, prepare_split};

use super::{ClipSource, DecodedVideo, FrameSpec, VideoItem};

pub struct MemoryClips {
    dataset: String,
    split: String,
    /// `[T, H, W, C]`.
    clip_shape: [usize; 4],
    fps: Option<f64>,
    clips: Vec<Vec<u8>>,
    items: Vec<VideoItem>,
    description: serde_json::Value,
}

impl MemoryClips {
    /// `clips`: uint8 `[T, H, W, C]` each; `names` (one per clip) become
    /// the clips' `source` column; `description` goes to index.json.
    pub fn new(
        dataset: &str,
        split: &str,
        clip_shape: [usize; 4],
        fps: Option<f64>,
        clips: Vec<Vec<u8>>,
        names: Vec<String>,
        description: serde_json::Value,
    ) -> std::result::Result<Self, String> {
        let len: usize = clip_shape.iter().product();
        if let Some(i) = clips.iter().position(|c| c.len() != len) {
            return Err(format!(
                "clip {i} has {} bytes, not {len} ({clip_shape:?})",
                clips[i].len()
            ));
        }
        if names.len() != clips.len() {
            return Err(format!("{} names for {} clips", names.len(), clips.len()));
        }
        let items = names
            .into_iter()
            .map(|source| VideoItem {
                source,
                label: None,
                text: None,
            })
            .collect();
        Ok(Self {
            dataset: dataset.into(),
            split: split.into(),
            clip_shape,
            fps,
            clips,
            items,
            description,
        })
    }

    /// Writes the clips, in order (clip id = position), as the split
    /// `split_dir`, replacing whatever split was there.
    pub fn write(&self, split_dir: &std::path::Path) -> Result<PrepareSummary> {
        let config = PrepareConfig {
            sampling: ClipSampling {
                seq_len: self.clip_shape[0] as u32,
                frame_stride: 1,
                start: StartPolicy::First,
            },
            overwrite: true,
            progress: false,
            ..Default::default()
        };
        prepare_split(self, split_dir, &config)
    }
}

impl ClipSource for MemoryClips {
    fn dataset(&self) -> &str {
        &self.dataset
    }

    fn split(&self) -> &str {
        &self.split
    }

    fn frame_spec(&self) -> FrameSpec {
        let [_, h, w, c] = self.clip_shape;
        FrameSpec {
            shape: [h, w, c],
            resize: "none".into(),
            crop: "none".into(),
            fps: self.fps,
            action_dim: None,
        }
    }

    fn videos(&self) -> &[VideoItem] {
        &self.items
    }

    fn decode(&self, index: usize) -> std::result::Result<DecodedVideo, Reject> {
        Ok(DecodedVideo {
            frames: self.clips[index].clone(),
            num_frames: self.clip_shape[0],
            actions: None,
        })
    }

    fn describe(&self) -> serde_json::Value {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::ClipShards;

    #[test]
    fn clips_come_back_in_order_from_the_written_split() {
        let shape = [3, 4, 5, 1];
        let clips: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i * 10; 60]).collect();
        let names = (0..5).map(|i| format!("sample-{i}")).collect();
        let source = MemoryClips::new(
            "moving-mnist",
            "samples",
            shape,
            None,
            clips.clone(),
            names,
            serde_json::json!({"kind": "test"}),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let split = dir.path().join("samples");
        let summary = source.write(&split).unwrap();
        assert_eq!(summary.num_clips, 5);
        let shards = ClipShards::open(&split).unwrap();
        assert_eq!(shards.clip_shape(), shape);
        for (i, clip) in clips.iter().enumerate() {
            assert_eq!(&shards.clip(i as u64).unwrap(), clip);
        }
        // Rewriting with other clips replaces the split.
        let other = MemoryClips::new(
            "moving-mnist",
            "samples",
            shape,
            None,
            vec![vec![7; 60]],
            vec!["x".into()],
            serde_json::json!({"kind": "test2"}),
        )
        .unwrap();
        other.write(&split).unwrap();
        let shards = ClipShards::open(&split).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards.clip(0).unwrap(), vec![7; 60]);
        assert!(
            MemoryClips::new(
                "m",
                "s",
                shape,
                None,
                vec![vec![0; 59]],
                vec!["a".into()],
                serde_json::json!({})
            )
            .is_err()
        );
    }
}
