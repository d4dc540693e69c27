//! `just bench`: prepare throughput (clips/s, MB/s of raw pixels) and shard
//! compression ratio, on 1 and 2 threads, for Moving MNIST generated from the
//! real MNIST digits and for BAIR-layout TFRecords. Prints a table and writes
//! target/bench/prepare.json. Each figure is the median of 3 runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use videogpt_pipeline::sources::ClipSource;
use videogpt_pipeline::sources::bair::Bair;
use videogpt_pipeline::sources::moving_mnist::{self, GeneratorConfig, MovingMnist};
use videogpt_pipeline::{PrepareConfig, prepare_split};

#[derive(serde::Serialize)]
struct Row {
    case: String,
    threads: usize,
    clips: u64,
    seconds: f64,
    clips_per_s: f64,
    raw_mb_per_s: f64,
    compressed_mb: f64,
    compression_ratio: f64,
}

fn measure(case: &str, source: &dyn ClipSource, threads: usize, config: &PrepareConfig) -> Row {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut runs: Vec<_> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let summary = pool
                .install(|| prepare_split(source, &dir.path().join("split"), config))
                .unwrap();
            (start.elapsed().as_secs_f64(), summary)
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (seconds, s) = &runs[1];
    Row {
        case: case.into(),
        threads,
        clips: s.num_clips,
        seconds: *seconds,
        clips_per_s: s.num_clips as f64 / seconds,
        raw_mb_per_s: s.raw_bytes as f64 / 1e6 / seconds,
        compressed_mb: s.compressed_bytes as f64 / 1e6,
        compression_ratio: s.compression_ratio(),
    }
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = PrepareConfig {
        progress: false,
        ..Default::default()
    };
    let mut rows = Vec::new();

    let raw = workspace.join("datasets/moving-mnist/raw");
    match moving_mnist::discover(&raw) {
        Ok(digits) => {
            let generator = GeneratorConfig {
                sequences: 4000,
                ..Default::default()
            };
            let source = MovingMnist::generated(&digits, "train", generator, 0).unwrap();
            for threads in [1, 2] {
                rows.push(measure(
                    "moving-mnist 4000 seq, 16x64x64x1",
                    &source,
                    threads,
                    &config,
                ));
            }
        }
        Err(e) => eprintln!("skipping Moving MNIST: {e}"),
    }

    let fixtures = tempfile::tempdir().unwrap();
    let dir: PathBuf = fixtures.path().join("train");
    videogpt_pipeline::testing::write_bair_split(&dir, 8, 64, 30, 7).unwrap();
    let source = Bair::open(&dir, "train").unwrap();
    let bair_config = PrepareConfig {
        videos_per_shard: 64,
        ..config.clone()
    };
    for threads in [1, 2] {
        for (label, start) in [("sliding:16", "sliding:16"), ("all starts", "all")] {
            let sampling = videogpt_pipeline::ClipSampling {
                start: start.parse().unwrap(),
                ..Default::default()
            };
            let config = PrepareConfig {
                sampling,
                ..bair_config.clone()
            };
            let case = format!("bair-layout 512 traj, {label} -> 16x64x64x3");
            rows.push(measure(&case, &source, threads, &config));
        }
    }

    println!(
        "{:<48} {:>7} {:>7} {:>8} {:>9} {:>10} {:>7}",
        "case", "threads", "clips", "s", "clips/s", "raw MB/s", "ratio"
    );
    for r in &rows {
        println!(
            "{:<48} {:>7} {:>7} {:>8.3} {:>9.0} {:>10.1} {:>6.1}x",
            r.case,
            r.threads,
            r.clips,
            r.seconds,
            r.clips_per_s,
            r.raw_mb_per_s,
            r.compression_ratio
        );
    }
    let out = workspace.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("prepare.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
