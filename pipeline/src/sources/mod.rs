//! Dataset sources: one upstream format each. A source lists the videos of
//! one split (cheaply, at plan time) and decodes any one of them on request
//! into frames at the target resolution. It knows nothing of clips, shards or
//! compression; `prepare` owns those.

pub mod bair;
pub mod mnist_digits;
pub mod moving_mnist;
pub mod memory;
pub mod npy;
pub mod tf_example;
pub mod tfrecord;
pub mod tgif;
pub mod ucf101;
pub mod video_files;
pub mod vizdoom;

use crate::shards::metadata::Conditioning;
use crate::shards::Reject;

/// One video of a split, as listed at plan time.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoItem {
    /// Where it came from: a file path, `file#record`, or a generator name.
    pub source: String,
    pub label: Option<i32>,
    pub text: Option<String>,
}

/// A decoded video: `num_frames` frames of the source's frame shape.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedVideo {
    /// uint8 `[num_frames, H, W, C]`.
    pub frames: Vec<u8>,
    pub num_frames: usize,
    /// Per-frame action vectors `[num_frames, D]`, when the dataset has them.
    pub actions: Option<Vec<f32>>,
}

/// What [`ClipSource::stream`] reports once the sink has stopped or the
/// video has ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    /// Frames handed to the sink.
    pub frames: usize,
    /// Per-frame action vectors `[n, D]` for (at least) those frames.
    pub actions: Option<Vec<f32>>,
    /// Damage the decoder reported and concealed (kept by `--on-damage keep`).
    pub decode_errors: u32,
}

/// What a source says about its frames (recorded in index.json).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSpec {
    /// `[H, W, C]`.
    pub shape: [usize; 3],
    pub resize: String,
    pub crop: String,
    pub fps: Option<f64>,
    /// `D` of the per-frame action vectors, when the dataset has actions.
    pub action_dim: Option<usize>,
}

pub trait ClipSource: Sync {
    /// Dataset name as used in paths (`moving-mnist`, `bair`, ...).
    fn dataset(&self) -> &str;
    fn split(&self) -> &str;
    fn frame_spec(&self) -> FrameSpec;
    /// The conditioning columns of the dataset's tables. The same for every
    /// split, empty or not; sources whose videos all carry the same fields
    /// can let it follow from them.
    fn conditioning(&self) -> Conditioning {
        Conditioning {
            label: self.videos().iter().any(|v| v.label.is_some()),
            text: self.videos().iter().any(|v| v.text.is_some()),
            action_dim: self.frame_spec().action_dim,
        }
    }
    /// The split's videos, in a fixed order.
    fn videos(&self) -> &[VideoItem];
    /// Inputs found unusable while listing the videos.
    fn plan_rejects(&self) -> Vec<Reject> {
        Vec::new()
    }
    /// Decodes video `index` of `videos()`; an `Err` is a reject reason.
    fn decode(&self, index: usize) -> Result<DecodedVideo, Reject>;
    /// Feeds video `index`'s frames (`H * W * C` bytes each), in order, to
    /// `sink` until it returns false. Sources of long videos override this
    /// so that memory stays bounded; the default decodes the whole video.
    fn stream(
        &self,
        index: usize,
        sink: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<Streamed, Reject> {
        let video = self.decode(index)?;
        let frame_len: usize = self.frame_spec().shape.iter().product();
        if video.frames.len() != video.num_frames * frame_len {
            return Err(Reject {
                file: self.videos()[index].source.clone(),
                record: None,
                reason: format!(
                    "decoder returned {} bytes for {} frames of {frame_len} bytes",
                    video.frames.len(),
                    video.num_frames
                ),
            });
        }
        let mut delivered = 0;
        for frame in video.frames.chunks_exact(frame_len.max(1)) {
            delivered += 1;
            if !sink(frame) {
                break;
            }
        }
        Ok(Streamed {
            frames: delivered,
            actions: video.actions,
            decode_errors: 0,
        })
    }
    /// Where the data came from, for index.json (and the plan fingerprint).
    fn describe(&self) -> serde_json::Value;
}

/// The lines of a text file, whatever its line endings: `\n`, `\r\n`, or
/// the old Mac `\r` alone (a list saved that way would otherwise read as
/// one line).
pub fn text_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.find(['\n', '\r']) {
            None => {
                rest = None;
                (!current.is_empty()).then_some(current)
            }
            Some(i) => {
                let skip = if current[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&current[i + skip..]);
                Some(&current[..i])
            }
        }
    })
}

#[cfg(test)]
mod line_tests {
    #[test]
    fn every_line_ending_splits_lines() {
        let lines: Vec<&str> = super::text_lines("a\r\nb\rc\n\nd").collect();
        assert_eq!(lines, ["a", "b", "c", "", "d"]);
        assert_eq!(super::text_lines("x\n").collect::<Vec<_>>(), ["x"]);
    }
}
