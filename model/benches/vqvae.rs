//! VQ-VAE training-step benchmark: steps/s and peak memory per preset and
//! batch size, and the two configurations the official PyTorch code was
//! timed at (median of 5 steps after 2 warm-ups, random clips 3x16x64x64).
//!
//! Each case runs in its own child process so that its peak RSS (VmHWM) is
//! its own. Writes target/bench/vqvae.json and prints a table.
//!
//! `--precision bf16` runs the products in bf16 (the default is f32);
//! `--peak` prints this CPU's measured f32 FMA and AMX bf16 peak rates.
//!
//! Environment: VQVAE_BENCH_BACKEND=flex|wgpu (default flex),
//! VQVAE_BENCH_PRESETS=a,b (default all architectures),
//! VQVAE_BENCH_BATCHES=1,2,4,8, VQVAE_BENCH_STEPS (measured steps, default 3
//! for the preset grid; the reference cases always use 5 after 2 warm-ups).

mod common;

use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use videogpt_model::backend::BackendKind;
use videogpt_model::checkpoint::VqVaeRunConfig;
use videogpt_model::data::Batch;
use videogpt_model::train::{TrainOptions, Trainer};
use videogpt_model::vqvae::VqVaeConfig;
use videogpt_pipeline::rng::SplitMix64;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CaseResult {
    case: String,
    backend: String,
    /// `--precision`, and the CPU path its products ran on.
    precision: String,
    cpu_path: String,
    batch: usize,
    input: [usize; 4],
    warmup: usize,
    measured: usize,
    median_step_s: f64,
    /// The fastest measured step: on a machine whose other tenants take
    /// CPU time away at random, the steadiest figure for comparing builds.
    fastest_step_s: f64,
    steps_per_s: f64,
    peak_rss_mb: f64,
    /// The PyTorch reference's seconds per step at this configuration (timed once on this machine kind), if timed.
    reference_step_s: Option<f64>,
    /// reference / ours (> 1: we are faster).
    speedup_vs_reference: Option<f64>,
}

fn case_config(case: &str) -> Option<(VqVaeConfig, Option<f64>)> {
    let reference = VqVaeConfig::new().with_input_shape([16, 64, 64]).with_channels(3);
    Some(match case {
        "reference-64" => (
            reference
                .with_hidden(64)
                .with_residual_blocks(2)
                .with_embedding_dim(64)
                .with_codes(512)
                .with_downsample([4, 4, 4]),
            Some(0.161),
        ),
        "reference-240" => (reference.with_downsample([4, 4, 4]), Some(1.435)),
        preset => (VqVaeConfig::preset(preset)?, None),
    })
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn run_case(case: &str, batch: usize, warmup: usize, measured: usize, backend: BackendKind) -> CaseResult {
    let (precision, cpu_path) = common::precision_from_args();
    let (model, reference) = case_config(case).expect("known case");
    let [t, h, w] = model.input_shape;
    let c = model.channels;
    let mut rng = SplitMix64::new(1);
    let data: Vec<f32> = (0..batch * c * t * h * w)
        .map(|_| rng.next_f64() as f32 - 0.5)
        .collect();
    let batch_data = Batch {
        data,
        shape: [batch, c, t, h, w],
        clips: (0..batch as u64).collect(),
    };
    let config = VqVaeRunConfig {
        model,
        train: TrainOptions {
            backend,
            ..TrainOptions::new("unused".into(), case)
        },
        data_mean: 0.0,
        data_variance: 0.06,
    };
    let mut trainer = Trainer::new(config);
    for _ in 0..warmup {
        trainer.step(&batch_data);
    }
    let times: Vec<f64> = (0..measured)
        .map(|_| {
            let started = Instant::now();
            trainer.step(&batch_data); // ends in host reads: the step is complete
            started.elapsed().as_secs_f64()
        })
        .collect();
    let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
    let median = common::median(times);
    CaseResult {
        case: case.to_owned(),
        backend: backend.to_string(),
        precision,
        cpu_path,
        batch,
        input: [c, t, h, w],
        warmup,
        measured,
        median_step_s: median,
        fastest_step_s: fastest,
        steps_per_s: 1.0 / median,
        peak_rss_mb: peak_rss_mb(),
        reference_step_s: reference.filter(|_| batch == 2),
        speedup_vs_reference: reference.filter(|_| batch == 2).map(|r| r / median),
    }
}

fn env_list(name: &str, default: &[&str]) -> Vec<String> {
    std::env::var(name)
        .map(|v| v.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|_| default.iter().map(|s| s.to_string()).collect())
}

fn main() {
    videogpt_model::ops::tune_allocator();
    videogpt_model::ops::make_calling_thread_a_worker();
    let args: Vec<String> = std::env::args().collect();
    let backend: BackendKind = std::env::var("VQVAE_BENCH_BACKEND")
        .unwrap_or_else(|_| "flex".into())
        .parse()
        .expect("VQVAE_BENCH_BACKEND");
    if args.iter().any(|a| a == "--peak") {
        println!("{}", serde_json::to_string(&common::peak::measure()).unwrap());
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let case = &args[i + 1];
        let batch: usize = args[i + 2].parse().unwrap();
        let warmup: usize = args[i + 3].parse().unwrap();
        let measured: usize = args[i + 4].parse().unwrap();
        let result = run_case(case, batch, warmup, measured, backend);
        println!("{}", serde_json::to_string(&result).unwrap());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let measured: usize = std::env::var("VQVAE_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut cases: Vec<(String, usize, usize, usize)> = vec![
        ("reference-64".into(), 2, 2, 5),
        ("reference-240".into(), 2, 2, 5),
    ];
    // tgif and vizdoom share ucf101-64's and bair's architectures.
    for preset in env_list(
        "VQVAE_BENCH_PRESETS",
        &["tiny", "moving-mnist", "bair", "ucf101-64", "ucf101-128"],
    ) {
        for batch in env_list("VQVAE_BENCH_BATCHES", &["1", "2", "4", "8"]) {
            cases.push((preset.clone(), batch.parse().expect("batch"), 1, measured));
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut results = Vec::new();
    println!(
        "{:<14} {:>5} {:>12} {:>12} {:>10} {:>12} {:>14}",
        "case", "batch", "s/step", "fastest s", "steps/s", "peak MB", "vs reference"
    );
    for (case, batch, warmup, measured) in cases {
        let out = Command::new(&exe)
            .args(["--case", &case, &batch.to_string(), &warmup.to_string(), &measured.to_string()])
            .output()
            .expect("run a case");
        let line = String::from_utf8_lossy(&out.stdout);
        let Some(result) = line
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<CaseResult>(l).ok())
        else {
            eprintln!("{case} batch {batch} failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        };
        println!(
            "{:<14} {:>5} {:>12.3} {:>12.3} {:>10.2} {:>12.0} {:>14}",
            result.case,
            result.batch,
            result.median_step_s,
            result.fastest_step_s,
            result.steps_per_s,
            result.peak_rss_mb,
            result
                .speedup_vs_reference
                .map(|s| format!("{s:.2}x"))
                .unwrap_or_default()
        );
        results.push(result);
    }
    common::write_results("vqvae", &results);
}
