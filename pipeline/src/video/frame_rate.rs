//! Lowering a video's frame rate by dropping frames.
//!
//! Output frame `k` belongs at time `k / fps`. A decoded frame at time `t`
//! fills slot `floor(t * fps)` (with a microsecond of tolerance for
//! timestamps that land a rounding error short of a slot) when that slot is
//! still empty: each slot gets the first frame shown at or after its time.
//! Frames are never duplicated, so a source slower than the target keeps its
//! own rate.

#[derive(Debug, Clone)]
pub struct FrameRateFilter {
    fps: f64,
    next_slot: i64,
}

impl FrameRateFilter {
    pub fn new(fps: f64) -> Self {
        Self { fps, next_slot: 0 }
    }

    /// Whether to keep the frame shown at `seconds` after the first frame.
    pub fn keep(&mut self, seconds: f64) -> bool {
        let slot = (seconds * self.fps + 1e-6).floor() as i64;
        if slot >= self.next_slot {
            self.next_slot = slot + 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(source_fps: f64, target: f64, frames: usize) -> usize {
        let mut f = FrameRateFilter::new(target);
        (0..frames)
            .filter(|&i| f.keep(i as f64 / source_fps))
            .count()
    }

    #[test]
    fn thirty_to_ten_keeps_every_third_frame() {
        let mut f = FrameRateFilter::new(10.0);
        let picked: Vec<usize> = (0..12).filter(|&i| f.keep(i as f64 / 30.0)).collect();
        assert_eq!(picked, vec![0, 3, 6, 9]);
        assert_eq!(kept(29.97, 8.0, 300), 80, "slots 0..=79 in 9.98 s");
    }

    #[test]
    fn a_slower_source_keeps_all_its_frames() {
        assert_eq!(kept(10.0, 25.0, 50), 50);
    }
}
