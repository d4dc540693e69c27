//! GPT prior benchmark at the configuration the official PyTorch code was
//! timed at: 4x16x16 = 1024 tokens, 512 codes, hidden 192, 4 heads,
//! 4 layers, full attention (dropout 0.2 / attention dropout 0.3).
//!
//! - train step (forward + backward + AdamW) at batch 4: median of 5 steps
//!   after 2 warm-ups; reference 3.56 s.
//! - sampling with the KV cache (on flex the whole step runs on the host,
//!   the kernels crate's `decode::step`), a whole 1024-token grid at batch 1 and 8,
//!   with the cache in f16 (the default) and in f32 (exact): tokens/s
//!   (batch x 1024 / seconds), median of 5 grids after a warm-up;
//!   reference 628 and 2,115 tokens/s (f32).
//!
//! Writes target/bench/prior.json and prints a table. `--train-step` times
//! only the train step and prints it as one JSON line (for
//! `model/scripts/reference_bench.py`, which alternates it with the
//! official PyTorch code), with the FLOPs of its products. `--precision
//! bf16` runs the products in bf16 (the default is f32); `--peak` prints
//! this CPU's measured f32 FMA and AMX bf16 peak rates.
//! Environment: PRIOR_BENCH_BACKEND=flex|wgpu (default flex),
//! PRIOR_BENCH_SAMPLE_BATCHES=1,8, PRIOR_BENCH_KV=f16,f32,
//! PRIOR_BENCH_REPEATS=5, PRIOR_BENCH_SKIP_TRAIN=1 (sampling only).

mod common;

use common::median;

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;
use videogpt_model::backend::BackendKind;
use videogpt_model::prior::{Condition, PriorConfig};
use videogpt_model::ops::KvPrecision;
use videogpt_model::prior::sample::{SampleOptions, sample};
use videogpt_model::prior::train::{PriorTrainOptions, optimizer};
use videogpt_pipeline::rng::SplitMix64;

const GRID: [usize; 3] = [4, 16, 16];
const CODES: usize = 512;

#[derive(Debug, Serialize)]
struct BenchResult {
    case: String,
    backend: String,
    /// `--precision`, and the CPU path its products ran on.
    precision: String,
    cpu_path: String,
    batch: usize,
    tokens_per_sample: usize,
    /// Seconds per train step, or per whole sampled grid.
    median_s: f64,
    /// Train: steps/s. Sampling: tokens/s over the batch.
    rate: f64,
    unit: &'static str,
    reference: f64,
    /// ours / reference in the same unit (> 1: we are faster).
    speedup_vs_reference: f64,
    /// Train step: the FLOPs of its products (forward and backward), and
    /// their rate at the median step.
    #[serde(skip_serializing_if = "Option::is_none")]
    gflop_per_step: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gflops: Option<f64>,
}

/// The products of one train step: forward projections, the MLP, both
/// attention products over the full grid (as the reference computes them)
/// and the head; the backward pass twice the forward's.
fn train_step_gflop(config: &PriorConfig, batch: usize) -> f64 {
    let (n, d) = (config.tokens() as f64, config.hidden as f64);
    let rows = batch as f64 * n;
    let input = config.codebook_dim.map_or(0.0, |dim| 2.0 * rows * dim as f64 * d);
    let per_layer = 2.0 * rows * d * (3.0 * d + d + 8.0 * d) + 4.0 * batch as f64 * n * n * d;
    let head = 2.0 * rows * d * config.codes as f64;
    3.0 * (input + config.layers as f64 * per_layer + head) / 1e9
}


fn config() -> PriorConfig {
    PriorConfig::preset("reference-bench", GRID, CODES).expect("preset")
}

fn train_step(backend: BackendKind) -> BenchResult {
    let (precision, cpu_path) = common::precision_from_args();
    let device = backend.training_device();
    let config = config();
    let mut prior = videogpt_model::backend::with_seed(&device, 0, || config.init(None, &device));
    let options = PriorTrainOptions::new("unused".into(), "reference-bench");
    let mut optim = optimizer(&options);
    let batch = 4;
    let n = config.tokens();
    let mut rng = SplitMix64::new(3);
    let values: Vec<i64> = (0..batch * n).map(|_| rng.below(CODES as u64) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(values, [batch, n]), &device);
    let mut times = Vec::new();
    for step in 0..7 {
        let started = Instant::now();
        let loss = prior.loss(tokens.clone(), &Condition::default());
        let grads = GradientsParams::from_grads(loss.backward(), &prior);
        prior = optim.step(3e-4, prior, grads);
        let _ = loss.into_scalar::<f32>(); // a host read: the step is complete
        if step >= 2 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let s = median(times);
    BenchResult {
        case: "train step".into(),
        backend: backend.to_string(),
        precision,
        cpu_path,
        batch,
        tokens_per_sample: n,
        median_s: s,
        rate: 1.0 / s,
        unit: "steps/s",
        reference: 1.0 / 3.56,
        speedup_vs_reference: 3.56 / s,
        gflop_per_step: Some(train_step_gflop(&config, batch)),
        gflops: Some(train_step_gflop(&config, batch) / s),
    }
}

fn sampling(backend: BackendKind, batch: usize, kv_cache: KvPrecision, repeats: usize) -> BenchResult {
    let (precision, cpu_path) = common::precision_from_args();
    let device = backend.device();
    let config = config();
    let prior = videogpt_model::backend::with_seed(&device, 0, || config.init(None, &device)).valid();
    let n = config.tokens();
    let options = SampleOptions { kv_cache, ..SampleOptions::default() };
    // One warm-up grid at a quarter length, then `repeats` measured full
    // grids: this machine's memory bandwidth varies from run to run, and
    // sampling at batch 8 is bound by it.
    let _ = sample(&prior, n / 4, batch, &Condition::default(), &options, &device, |_| {});
    let times: Vec<f64> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            let _ = sample(&prior, n, batch, &Condition::default(), &options, &device, |_| {});
            started.elapsed().as_secs_f64()
        })
        .collect();
    let s = median(times);
    let reference = if batch == 1 { 628.0 } else if batch == 8 { 2115.0 } else { f64::NAN };
    let rate = (batch * n) as f64 / s;
    BenchResult {
        case: format!("sampling, {kv_cache} KV"),
        backend: backend.to_string(),
        precision,
        cpu_path,
        batch,
        tokens_per_sample: n,
        median_s: s,
        rate,
        unit: "tokens/s",
        reference,
        speedup_vs_reference: rate / reference,
        gflop_per_step: None,
        gflops: None,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    videogpt_model::ops::tune_allocator();
    videogpt_model::ops::make_calling_thread_a_worker();
    let backend: BackendKind = std::env::var("PRIOR_BENCH_BACKEND")
        .unwrap_or_else(|_| "flex".into())
        .parse()
        .expect("PRIOR_BENCH_BACKEND");
    if std::env::args().any(|a| a == "--peak") {
        println!("{}", serde_json::to_string(&common::peak::measure()).unwrap());
        return;
    }
    if std::env::args().any(|a| a == "--train-step") {
        println!("{}", serde_json::to_string(&train_step(backend)).unwrap());
        return;
    }
    let batches: Vec<usize> = std::env::var("PRIOR_BENCH_SAMPLE_BATCHES")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .map(|b| b.parse().expect("PRIOR_BENCH_SAMPLE_BATCHES"))
        .collect();
    let mut results = Vec::new();
    if std::env::var("PRIOR_BENCH_SKIP_TRAIN").map_or(true, |v| v != "1") {
        results.push(train_step(backend));
    }
    let precisions: Vec<KvPrecision> = std::env::var("PRIOR_BENCH_KV")
        .unwrap_or_else(|_| "f16,f32".into())
        .split(',')
        .map(|p| p.parse().expect("PRIOR_BENCH_KV"))
        .collect();
    let repeats: usize = std::env::var("PRIOR_BENCH_REPEATS")
        .map_or(5, |r| r.parse().expect("PRIOR_BENCH_REPEATS"));
    for b in batches {
        for &precision in &precisions {
            results.push(sampling(backend, b, precision, repeats));
        }
    }
    println!(
        "{:<20} {:>5} {:>10} {:>14} {:>14} {:>9}",
        "case", "batch", "seconds", "ours", "reference", "ratio"
    );
    for r in &results {
        println!(
            "{:<20} {:>5} {:>10.3} {:>14} {:>14} {:>8.2}x",
            r.case,
            r.batch,
            r.median_s,
            format!("{:.2} {}", r.rate, r.unit),
            format!("{:.2}", r.reference),
            r.speedup_vs_reference
        );
    }
    common::write_results("prior", &results);
}
