//! Which clips to cut from a video: sequence length, frame stride and the
//! start policy.
//!
//! A clip of `seq_len` frames taken every `frame_stride` frames spans
//! `(seq_len - 1) * frame_stride + 1` source frames, so a video of `n` frames
//! has the valid starts `0..=n - span`. Every one of them is reachable: the
//! reference VideoGPT samples `randint(0, n - seq_len)` and so never picks the
//! last valid start; that bug is not copied here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// How clip start frames are chosen within one video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartPolicy {
    /// One clip starting at frame 0.
    First,
    /// `per_video` distinct starts drawn uniformly from all valid starts
    /// (fewer when the video has fewer), seeded per video.
    Random { per_video: u32 },
    /// Starts 0, step, 2*step, ... while the clip fits.
    Sliding { step: u32 },
}

impl Default for StartPolicy {
    fn default() -> Self {
        StartPolicy::Random { per_video: 1 }
    }
}

impl fmt::Display for StartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartPolicy::First => write!(f, "first"),
            StartPolicy::Random { per_video } => write!(f, "random:{per_video}"),
            StartPolicy::Sliding { step } => write!(f, "sliding:{step}"),
        }
    }
}

impl FromStr for StartPolicy {
    type Err = String;

    /// `first`, `all` (= `sliding:1`), `random[:N]`, `sliding:STEP`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let number = |default: Option<u32>| -> Result<u32, String> {
            match arg {
                None => default
                    .ok_or_else(|| format!("start policy `{s}` needs a number, e.g. `{kind}:4`")),
                Some(a) => match a.parse::<u32>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(format!(
                        "start policy `{s}`: `{a}` is not a positive integer"
                    )),
                },
            }
        };
        match kind {
            "first" if arg.is_none() => Ok(StartPolicy::First),
            "all" if arg.is_none() => Ok(StartPolicy::Sliding { step: 1 }),
            "random" => Ok(StartPolicy::Random {
                per_video: number(Some(1))?,
            }),
            "sliding" => Ok(StartPolicy::Sliding {
                step: number(None)?,
            }),
            _ => Err(format!(
                "unknown start policy `{s}`; expected first, all, random[:N] or sliding:STEP"
            )),
        }
    }
}

/// Longest clip, in frames (VideoGPT's are 16).
pub const MAX_SEQ_LEN: u32 = 1024;
/// Largest frame stride.
pub const MAX_FRAME_STRIDE: u32 = 1024;
/// Most random clips drawn from one video.
pub const MAX_CLIPS_PER_VIDEO: u32 = 10_000;

/// Everything that decides which frames make up the clips of a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClipSampling {
    /// Frames per clip (VideoGPT: 16).
    pub seq_len: u32,
    /// Take every `frame_stride`-th source frame.
    pub frame_stride: u32,
    pub start: StartPolicy,
}

impl Default for ClipSampling {
    fn default() -> Self {
        Self {
            seq_len: 16,
            frame_stride: 1,
            start: StartPolicy::default(),
        }
    }
}

impl ClipSampling {
    /// Source frames covered by one clip.
    pub fn span(&self) -> usize {
        (self.seq_len as usize - 1) * self.frame_stride as usize + 1
    }

    /// Number of valid start frames in a video of `num_frames` frames.
    pub fn valid_starts(&self, num_frames: usize) -> usize {
        (num_frames + 1).saturating_sub(self.span())
    }

    /// The chosen start frames, ascending. `rng` is the video's own stream;
    /// it is used only by the random policy. The same choices as a
    /// [`StartStream`] fed the video frame by frame, so a decoder that
    /// streams (and never learns the length up front) cuts the same clips.
    pub fn starts(&self, num_frames: usize, rng: &mut SplitMix64) -> Vec<usize> {
        let mut stream = StartStream::new(*self, rng.clone());
        let mut slots: Vec<usize> = Vec::new();
        for start in 0..self.valid_starts(num_frames) {
            match stream.offer() {
                StartDecision::Keep { slot } => keep_in_slot(&mut slots, slot, start),
                StartDecision::Skip => {}
                StartDecision::Stop => break,
            }
        }
        *rng = stream.rng;
        slots.sort_unstable();
        slots
    }

    /// The source frame indices of the clip starting at `start`.
    pub fn frame_indices(&self, start: usize) -> impl Iterator<Item = usize> + use<> {
        let stride = self.frame_stride as usize;
        (0..self.seq_len as usize).map(move |k| start + k * stride)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.seq_len == 0 {
            return Err("--seq-len must be at least 1".into());
        }
        if self.frame_stride == 0 {
            return Err("--frame-stride must be at least 1".into());
        }
        if self.seq_len > MAX_SEQ_LEN || self.frame_stride > MAX_FRAME_STRIDE {
            return Err(format!(
                "--seq-len {} / --frame-stride {}: at most {MAX_SEQ_LEN} / {MAX_FRAME_STRIDE}",
                self.seq_len, self.frame_stride
            ));
        }
        if let StartPolicy::Random { per_video } = self.start
            && per_video > MAX_CLIPS_PER_VIDEO
        {
            return Err(format!("--start random:{per_video}: at most {MAX_CLIPS_PER_VIDEO} clips per video"));
        }
        Ok(())
    }
}

/// What to do with the clip that starts at the offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// Keep it in slot `slot`, replacing what was there (random policy).
    Keep { slot: usize },
    Skip,
    /// No later start will be kept: stop decoding.
    Stop,
}

/// Puts a kept item in `slot`: a new slot is always the next one, an older
/// one is replaced (the random policy's reservoir).
pub fn keep_in_slot<T>(slots: &mut Vec<T>, slot: usize, item: T) {
    if slot == slots.len() {
        slots.push(item);
    } else {
        slots[slot] = item;
    }
}

/// Chooses clip starts while a video streams past, without knowing its
/// length: the caller offers the starts 0, 1, 2, ... as each clip's last frame
/// arrives. The random policy is reservoir sampling (Vitter's algorithm R):
/// after `n` offers the kept starts are a uniform `per_video`-subset of the
/// `n`, so memory stays at `per_video` clips however long the video is.
#[derive(Debug, Clone)]
pub struct StartStream {
    sampling: ClipSampling,
    rng: SplitMix64,
    offered: usize,
}

impl StartStream {
    pub fn new(sampling: ClipSampling, rng: SplitMix64) -> Self {
        Self {
            sampling,
            rng,
            offered: 0,
        }
    }

    /// Decides on the next start (the `n`-th call offers start `n - 1`).
    pub fn offer(&mut self) -> StartDecision {
        let start = self.offered;
        self.offered += 1;
        match self.sampling.start {
            StartPolicy::First if start == 0 => StartDecision::Keep { slot: 0 },
            StartPolicy::First => StartDecision::Stop,
            StartPolicy::Sliding { step } if start % step as usize == 0 => StartDecision::Keep {
                slot: start / step as usize,
            },
            StartPolicy::Sliding { .. } => StartDecision::Skip,
            StartPolicy::Random { per_video } => {
                let k = per_video as usize;
                if start < k {
                    return StartDecision::Keep { slot: start };
                }
                let j = self.rng.below(start as u64 + 1) as usize;
                if j < k {
                    StartDecision::Keep { slot: j }
                } else {
                    StartDecision::Skip
                }
            }
        }
    }

    /// True once no later start can be kept (the first policy after start 0).
    pub fn done(&self) -> bool {
        matches!(self.sampling.start, StartPolicy::First) && self.offered > 0
    }

    /// Whether a kept clip can never be replaced (so it may be finished now).
    pub fn keeps_are_final(&self) -> bool {
        !matches!(self.sampling.start, StartPolicy::Random { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(seq_len: u32, stride: u32, start: StartPolicy) -> ClipSampling {
        ClipSampling {
            seq_len,
            frame_stride: stride,
            start,
        }
    }

    #[test]
    fn every_valid_start_including_the_last_is_reachable() {
        // 20 frames, 16 per clip: starts 0..=4, five of them.
        let s = sampling(16, 1, StartPolicy::Random { per_video: 1 });
        assert_eq!(s.valid_starts(20), 5);
        let mut seen = [false; 5];
        for video in 0..500 {
            let mut rng = SplitMix64::for_item(1, "test", video);
            let starts = s.starts(20, &mut rng);
            assert_eq!(starts.len(), 1);
            seen[starts[0]] = true;
        }
        assert_eq!(
            seen, [true; 5],
            "start 4 (the last valid one) must be drawn"
        );
    }

    #[test]
    fn stride_widens_the_span() {
        let s = sampling(16, 2, StartPolicy::Sliding { step: 1 });
        assert_eq!(s.span(), 31);
        assert_eq!(s.valid_starts(30), 0);
        assert_eq!(s.starts(31, &mut SplitMix64::new(0)), vec![0]);
        assert_eq!(s.frame_indices(3).collect::<Vec<_>>().last(), Some(&33));
    }

    #[test]
    fn policies_pick_the_documented_starts() {
        let mut rng = SplitMix64::new(5);
        assert_eq!(
            sampling(16, 1, StartPolicy::First).starts(30, &mut rng),
            vec![0]
        );
        assert_eq!(
            sampling(16, 1, StartPolicy::Sliding { step: 8 }).starts(30, &mut rng),
            vec![0, 8]
        );
        assert_eq!(
            sampling(16, 1, StartPolicy::Sliding { step: 1 }).starts(18, &mut rng),
            vec![0, 1, 2]
        );
        assert!(
            sampling(16, 1, StartPolicy::First)
                .starts(15, &mut rng)
                .is_empty()
        );
        let all = sampling(16, 1, StartPolicy::Random { per_video: 100 }).starts(30, &mut rng);
        assert_eq!(
            all,
            (0..15).collect::<Vec<_>>(),
            "more draws than starts gives each start once"
        );
        let some = sampling(4, 1, StartPolicy::Random { per_video: 3 }).starts(1000, &mut rng);
        assert_eq!(some.len(), 3);
        assert!(some.windows(2).all(|w| w[0] < w[1]) && some[2] <= 996);
    }

    #[test]
    fn same_seed_same_starts() {
        let s = sampling(8, 1, StartPolicy::Random { per_video: 3 });
        let a = s.starts(100, &mut SplitMix64::for_item(9, "v", 3));
        let b = s.starts(100, &mut SplitMix64::for_item(9, "v", 3));
        assert_eq!(a, b);
    }

    #[test]
    fn policy_strings_round_trip_and_bad_ones_explain() {
        for p in ["first", "random:3", "sliding:4"] {
            assert_eq!(p.parse::<StartPolicy>().unwrap().to_string(), p);
        }
        assert_eq!(
            "all".parse::<StartPolicy>().unwrap(),
            StartPolicy::Sliding { step: 1 }
        );
        assert_eq!(
            "random".parse::<StartPolicy>().unwrap(),
            StartPolicy::Random { per_video: 1 }
        );
        assert!(
            "sliding"
                .parse::<StartPolicy>()
                .unwrap_err()
                .contains("needs a number")
        );
        assert!(
            "random:0"
                .parse::<StartPolicy>()
                .unwrap_err()
                .contains("positive")
        );
        assert!(
            "middle"
                .parse::<StartPolicy>()
                .unwrap_err()
                .contains("unknown start policy")
        );
    }

    #[test]
    fn random_starts_are_uniform_over_all_valid_starts() {
        // 2 of 10 starts, 20k videos: each start is kept 2/10 of the time.
        let s = sampling(1, 1, StartPolicy::Random { per_video: 2 });
        let mut counts = [0u32; 10];
        for video in 0..20_000 {
            for start in s.starts(10, &mut SplitMix64::for_item(3, "uniform", video)) {
                counts[start] += 1;
            }
        }
        for (start, &c) in counts.iter().enumerate() {
            let share = c as f64 / 20_000.0;
            assert!((share - 0.2).abs() < 0.015, "start {start}: share {share}");
        }
    }

    #[test]
    fn streaming_choices_equal_the_counted_ones() {
        let s = sampling(4, 2, StartPolicy::Random { per_video: 3 });
        let counted = s.starts(50, &mut SplitMix64::for_item(4, "v", 1));
        let mut stream = StartStream::new(s, SplitMix64::for_item(4, "v", 1));
        let mut slots = Vec::new();
        for start in 0..s.valid_starts(50) {
            if let StartDecision::Keep { slot } = stream.offer() {
                keep_in_slot(&mut slots, slot, start);
            }
        }
        slots.sort_unstable();
        assert_eq!(slots, counted);
    }
}
