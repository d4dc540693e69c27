//! Cuts clips out of a stream of frames as they are decoded.
//!
//! Keeps the last `span` frames in a ring buffer and asks a [`StartStream`]
//! about every start as its clip's last frame arrives, so a video of any
//! length is cut with memory for `span` frames plus the kept clips. Clips
//! that can never be replaced (first, sliding) are handed to `finish` at once
//! (prepare compresses them there); random picks stay raw until the end,
//! since a later start may replace them.

use crate::clip_sampling::{ClipSampling, StartDecision, StartStream, keep_in_slot};
use crate::rng::SplitMix64;

/// One cut clip: its start frame and its bytes (raw, or as `finish` left them).
#[derive(Debug, Clone, PartialEq)]
pub struct CutClip {
    pub start: usize,
    pub bytes: Vec<u8>,
}

pub struct ClipCutter<F: FnMut(Vec<u8>) -> Vec<u8>> {
    sampling: ClipSampling,
    frame_len: usize,
    span: usize,
    ring: Vec<u8>,
    seen: usize,
    starts: StartStream,
    clips: Vec<CutClip>,
    finish: F,
}

impl<F: FnMut(Vec<u8>) -> Vec<u8>> ClipCutter<F> {
    pub fn new(sampling: ClipSampling, frame_len: usize, rng: SplitMix64, finish: F) -> Self {
        let span = sampling.span();
        Self {
            sampling,
            frame_len,
            span,
            ring: vec![0; span * frame_len],
            seen: 0,
            starts: StartStream::new(sampling, rng),
            clips: Vec::new(),
            finish,
        }
    }

    /// Frames pushed so far.
    pub fn frames_seen(&self) -> usize {
        self.seen
    }

    /// Takes the next frame (`frame_len` bytes). Returns false once no
    /// later frame can be part of a kept clip.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        debug_assert_eq!(frame.len(), self.frame_len);
        let at = (self.seen % self.span) * self.frame_len;
        self.ring[at..at + self.frame_len].copy_from_slice(frame);
        self.seen += 1;
        if self.seen < self.span {
            return true;
        }
        let start = self.seen - self.span;
        match self.starts.offer() {
            StartDecision::Keep { slot } => {
                let mut bytes = Vec::with_capacity(self.sampling.seq_len as usize * self.frame_len);
                for f in self.sampling.frame_indices(start) {
                    let at = (f % self.span) * self.frame_len;
                    bytes.extend_from_slice(&self.ring[at..at + self.frame_len]);
                }
                if self.starts.keeps_are_final() {
                    bytes = (self.finish)(bytes);
                }
                keep_in_slot(&mut self.clips, slot, CutClip { start, bytes });
            }
            StartDecision::Skip => {}
            StartDecision::Stop => return false,
        }
        !self.starts.done()
    }

    /// The kept clips in start order, each passed through `finish`.
    pub fn into_clips(mut self) -> Vec<CutClip> {
        let mut clips = std::mem::take(&mut self.clips);
        clips.sort_by_key(|c| c.start);
        if !self.starts.keeps_are_final() {
            for c in &mut clips {
                c.bytes = (self.finish)(std::mem::take(&mut c.bytes));
            }
        }
        clips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip_sampling::StartPolicy;

    /// Frame `i` is two bytes `[i, i]`.
    fn cut(sampling: ClipSampling, frames: usize, seed: u64) -> (Vec<CutClip>, usize) {
        let mut cutter = ClipCutter::new(sampling, 2, SplitMix64::new(seed), |b| b);
        for i in 0..frames {
            if !cutter.push(&[i as u8, i as u8]) {
                break;
            }
        }
        let seen = cutter.frames_seen();
        (cutter.into_clips(), seen)
    }

    #[test]
    fn clips_hold_the_frames_of_their_starts_at_the_stride() {
        for start in [
            StartPolicy::First,
            StartPolicy::Sliding { step: 3 },
            StartPolicy::Random { per_video: 4 },
        ] {
            let s = ClipSampling {
                seq_len: 4,
                frame_stride: 2,
                start,
            };
            let (clips, _) = cut(s, 40, 7);
            let starts: Vec<usize> = clips.iter().map(|c| c.start).collect();
            assert_eq!(
                starts,
                s.starts(40, &mut SplitMix64::new(7)),
                "{start}: streaming picks the counted starts"
            );
            for c in &clips {
                let want: Vec<u8> = s
                    .frame_indices(c.start)
                    .flat_map(|f| [f as u8, f as u8])
                    .collect();
                assert_eq!(c.bytes, want, "{start}: clip at {}", c.start);
            }
        }
    }

    #[test]
    fn the_first_policy_stops_the_decoder_after_one_clip() {
        let s = ClipSampling {
            seq_len: 5,
            frame_stride: 1,
            start: StartPolicy::First,
        };
        let (clips, seen) = cut(s, 1000, 0);
        assert_eq!(clips.len(), 1);
        assert_eq!(seen, 5, "no frame decoded past the clip");
    }

    #[test]
    fn a_short_video_gives_no_clip() {
        let s = ClipSampling::default();
        let (clips, seen) = cut(s, 15, 0);
        assert!(clips.is_empty());
        assert_eq!(seen, 15);
    }
}
