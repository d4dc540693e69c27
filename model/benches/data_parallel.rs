//! Data-parallel scaling on this machine: train-step throughput of the
//! VQ-VAE and the prior at one global batch as 1 rank x 1 thread, 1 rank x
//! 2 threads and 2 ranks x 1 thread (`mpirun`), alternated over rounds, with
//! the gradient all-reduce's time per step; and the all-reduce's size for
//! the paper's models, with its time at stated bandwidths.
//!
//! Cases (the configurations the official code was timed at, see
//! docs/performance.md): the VQ-VAE `reference-64` at global batch 4 and the
//! prior `reference-bench` (1024 tokens, hidden 192, 4 layers) at global
//! batch 4. Each configuration runs in fresh processes: this binary with
//! `--worker`, under `mpirun` for 2 ranks (a build with the `mpi` feature).
//! Writes target/bench/data_parallel.json and prints a table.
//! Environment: DATA_PARALLEL_ROUNDS=3.

mod common;

use std::process::Command;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use videogpt_model::backend::BackendKind;
use videogpt_model::data::Batch;
use videogpt_model::distributed;
use videogpt_model::distributed::gradients::{Compared, average_gradients, value_count};
use videogpt_model::prior::train::{PriorTrainOptions, host_clipping, optimizer_for_ranks};
use videogpt_model::prior::{Condition, PriorConfig};
use videogpt_model::train::{TrainOptions, Trainer, VqVaeRunConfig};
use videogpt_model::vqvae::VqVaeConfig;
use videogpt_pipeline::rng::SplitMix64;

const GLOBAL_BATCH: usize = 4;
const CASES: [&str; 2] = ["vqvae-reference-64", "prior-reference-bench"];
/// (ranks, threads per rank).
const LAYOUTS: [(usize, usize); 3] = [(1, 1), (1, 2), (2, 1)];

/// What a worker measured (rank 0 reports).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Measured {
    case: String,
    ranks: usize,
    threads: usize,
    median_step_s: f64,
    median_all_reduce_s: f64,
    gradient_values: usize,
}

fn reference_64() -> VqVaeConfig {
    VqVaeConfig::new()
        .with_input_shape([16, 64, 64])
        .with_channels(3)
        .with_hidden(64)
        .with_residual_blocks(2)
        .with_embedding_dim(64)
        .with_codes(512)
        .with_downsample([4, 4, 4])
}

fn prior_config() -> PriorConfig {
    PriorConfig::preset("reference-bench", [4, 16, 16], 512).expect("preset")
}

/// (step seconds, all-reduce seconds, gradient values) of each measured step
/// of the VQ-VAE on this rank's share of a random global batch.
fn vqvae_steps(warmup: usize, measured: usize) -> Vec<(f64, f64, usize)> {
    let model = reference_64();
    let [t, h, w] = model.input_shape;
    let (first, count) = distributed::take_share(GLOBAL_BATCH).expect("batch splits");
    let per_clip = model.channels * t * h * w;
    let mut rng = SplitMix64::new(1);
    let data: Vec<f32> = (0..GLOBAL_BATCH * per_clip)
        .map(|_| rng.next_f64() as f32 - 0.5)
        .collect();
    let batch = Batch {
        data: data[first * per_clip..(first + count) * per_clip].to_vec(),
        shape: [count, model.channels, t, h, w],
        clips: (first as u64..(first + count) as u64).collect(),
    };
    let config = VqVaeRunConfig {
        model,
        train: TrainOptions {
            batch_size: GLOBAL_BATCH,
            ..TrainOptions::new("unused".into(), "reference-64")
        },
        data_mean: 0.0,
        data_variance: 0.06,
    };
    let mut trainer = Trainer::new(config);
    let values = value_count(trainer.model(), Compared::Trainable);
    (0..warmup + measured)
        .map(|_| {
            let started = Instant::now();
            let m = trainer.step(&batch);
            (
                started.elapsed().as_secs_f64(),
                m.all_reduce_seconds.unwrap_or(0.0),
                values,
            )
        })
        .skip(warmup)
        .collect()
}

/// The same for the prior (forward, backward, gradient average, AdamW).
fn prior_steps(warmup: usize, measured: usize) -> Vec<(f64, f64, usize)> {
    let world = distributed::world();
    let device = BackendKind::Flex.training_device();
    let config = prior_config();
    let mut prior =
        videogpt_model::backend::init_with_seed(&device, 0, || config.init(None, &device));
    let options = PriorTrainOptions::new("unused".into(), "reference-bench");
    let (mut optim, clip) = (
        optimizer_for_ranks(&options, world.size()),
        host_clipping(&options, world.size()),
    );
    let (first, count) = distributed::take_share(GLOBAL_BATCH).expect("batch splits");
    let n = config.tokens();
    let mut rng = SplitMix64::new(3);
    let values: Vec<i64> = (0..GLOBAL_BATCH * n)
        .map(|_| rng.below(512) as i64)
        .collect();
    let local = values[first * n..(first + count) * n].to_vec();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(local, [count, n]), &device);
    let values = value_count(&prior, Compared::Trainable);
    (0..warmup + measured)
        .map(|step| {
            let started = Instant::now();
            let loss = videogpt_model::backend::with_seed(&device, step as u64, || {
                prior.loss(tokens.clone(), &Condition::default())
            });
            let grads = GradientsParams::from_grads(loss.backward(), &prior);
            let (grads, reduced) = average_gradients(world, &prior, grads, clip);
            prior = optim.step(3e-4, prior.clone(), grads);
            let _ = loss.into_scalar::<f32>(); // a host read: the step is complete
            (
                started.elapsed().as_secs_f64(),
                reduced.elapsed.as_secs_f64(),
                values,
            )
        })
        .skip(warmup)
        .collect()
}

/// `--worker CASE THREADS`: one configuration's measurement, printed by
/// rank 0 as one `RESULT {json}` line.
fn worker(case: &str, threads: usize) {
    let _world = distributed::init().expect("MPI");
    videogpt_model::ops::make_calling_thread_a_worker_of(Some(threads));
    let steps = match case {
        "vqvae-reference-64" => vqvae_steps(2, 8),
        "prior-reference-bench" => prior_steps(1, 4),
        other => panic!("unknown case {other}"),
    };
    let world = distributed::world();
    if world.rank() == 0 {
        let result = Measured {
            case: case.into(),
            ranks: world.size(),
            threads,
            median_step_s: common::median(steps.iter().map(|s| s.0).collect()),
            median_all_reduce_s: common::median(steps.iter().map(|s| s.1).collect()),
            gradient_values: steps[0].2,
        };
        println!("RESULT {}", serde_json::to_string(&result).unwrap());
    }
}

fn run_worker(case: &str, ranks: usize, threads: usize) -> Measured {
    let me = std::env::current_exe().unwrap();
    let mut command = if ranks == 1 {
        Command::new(&me)
    } else {
        let mut c = Command::new("mpirun");
        c.args([
            "-np",
            &ranks.to_string(),
            "--oversubscribe",
            "--bind-to",
            "none",
        ])
        .arg(&me);
        c
    };
    let out = command
        .args(["--worker", case, &threads.to_string()])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .output()
        .expect("the worker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "{case} {ranks}x{threads}: no result\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).unwrap()
}

#[derive(Debug, Serialize)]
struct Layout {
    ranks: usize,
    threads: usize,
    median_step_s: f64,
    samples_per_s: f64,
    median_all_reduce_s: f64,
    /// Throughput over 1 rank x 1 thread's.
    speedup_vs_one_thread: f64,
}

#[derive(Debug, Serialize)]
struct CaseSummary {
    case: String,
    global_batch: usize,
    gradient_values: usize,
    layouts: Vec<Layout>,
}

/// The all-reduce of one step of a paper-scale model on 8 GPUs.
#[derive(Debug, Serialize)]
struct Estimate {
    model: String,
    parameters: usize,
    /// Gradient bytes (f32).
    gradient_bytes: f64,
    /// What each rank sends (and receives) in a ring all-reduce over 8
    /// ranks: 2 * 7/8 of the gradient.
    ring_bytes_per_rank: f64,
    /// At 100 GB/s (NVLink within a node) and 12.5 GB/s (100 Gb/s
    /// InfiniBand between nodes), plus, for our host-buffer all-reduce, the
    /// gradient's copy to and from the host at 25 GB/s (PCIe 4 x16).
    ms_nvlink_100gbs: f64,
    ms_infiniband_12_5gbs: f64,
    ms_host_copies_25gbs: f64,
}

fn estimate(model: &str, parameters: usize) -> Estimate {
    let bytes = parameters as f64 * 4.0;
    let ring = 2.0 * 7.0 / 8.0 * bytes;
    Estimate {
        model: model.into(),
        parameters,
        gradient_bytes: bytes,
        ring_bytes_per_rank: ring,
        ms_nvlink_100gbs: ring / 100e9 * 1e3,
        ms_infiniband_12_5gbs: ring / 12.5e9 * 1e3,
        ms_host_copies_25gbs: 2.0 * bytes / 25e9 * 1e3,
    }
}

/// Parameter counts of the paper's models, from our presets (initialised
/// on the CPU, so the count is the model's own).
fn paper_estimates() -> Vec<Estimate> {
    let device = burn::tensor::Device::flex();
    let bair = VqVaeConfig::preset("bair").expect("bair preset");
    let grid = bair.latent_shape();
    let vqvae = bair.init(&device).num_params();
    let mut out = vec![estimate(
        &format!("VQ-VAE bair (latent {grid:?}, {} codes)", bair.codes),
        vqvae,
    )];
    for (name, preset) in [
        ("gpt_small (bair prior)", "bair"),
        ("gpt_large (ucf101 prior)", "ucf101"),
    ] {
        let config = PriorConfig::preset(preset, grid, bair.codes).expect("prior preset");
        let parameters = config.init(None, &device).num_params();
        out.push(estimate(
            &format!("{name}: hidden {}, {} layers", config.hidden, config.layers),
            parameters,
        ));
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--worker") {
        return worker(&args[i + 1], args[i + 2].parse().expect("threads"));
    }
    let rounds: usize = std::env::var("DATA_PARALLEL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mpi = cfg!(feature = "mpi") && Command::new("mpirun").arg("--version").output().is_ok();
    if !mpi {
        println!(
            "no MPI (build with --features videogpt-model/mpi, install Open MPI): 1-rank layouts only"
        );
    }
    let layouts: Vec<(usize, usize)> = LAYOUTS
        .into_iter()
        .filter(|&(ranks, _)| ranks == 1 || mpi)
        .collect();
    let mut measured: Vec<Measured> = Vec::new();
    for round in 0..rounds {
        for case in CASES {
            for &(ranks, threads) in &layouts {
                let m = run_worker(case, ranks, threads);
                println!(
                    "round {round}: {case} {ranks} rank(s) x {threads} thread(s): {:.3} s/step, all-reduce {:.4} s",
                    m.median_step_s, m.median_all_reduce_s
                );
                measured.push(m);
            }
        }
    }
    let summaries: Vec<CaseSummary> = CASES
        .iter()
        .map(|&case| {
            let of = |ranks: usize, threads: usize| -> Vec<&Measured> {
                measured
                    .iter()
                    .filter(|m| m.case == case && m.ranks == ranks && m.threads == threads)
                    .collect()
            };
            let step = |ranks, threads| {
                common::median(of(ranks, threads).iter().map(|m| m.median_step_s).collect())
            };
            let base = step(1, 1);
            CaseSummary {
                case: case.into(),
                global_batch: GLOBAL_BATCH,
                gradient_values: of(1, 1)[0].gradient_values,
                layouts: layouts
                    .iter()
                    .map(|&(ranks, threads)| Layout {
                        ranks,
                        threads,
                        median_step_s: step(ranks, threads),
                        samples_per_s: GLOBAL_BATCH as f64 / step(ranks, threads),
                        median_all_reduce_s: common::median(
                            of(ranks, threads)
                                .iter()
                                .map(|m| m.median_all_reduce_s)
                                .collect(),
                        ),
                        speedup_vs_one_thread: base / step(ranks, threads),
                    })
                    .collect(),
            }
        })
        .collect();
    println!(
        "\n{:<24} {:>6} {:>8} {:>10} {:>10} {:>12} {:>9}",
        "case", "ranks", "threads", "s/step", "samples/s", "all-reduce s", "speedup"
    );
    for s in &summaries {
        for l in &s.layouts {
            println!(
                "{:<24} {:>6} {:>8} {:>10.3} {:>10.2} {:>12.4} {:>8.2}x",
                s.case,
                l.ranks,
                l.threads,
                l.median_step_s,
                l.samples_per_s,
                l.median_all_reduce_s,
                l.speedup_vs_one_thread
            );
        }
    }
    let estimates = paper_estimates();
    println!("\nall-reduce per step on 8 GPUs (ring, f32 gradients):");
    for e in &estimates {
        println!(
            "{:<48} {:>6.1} M params {:>7.1} MB/rank: {:>6.1} ms at 100 GB/s, {:>6.1} ms at 12.5 GB/s, + {:>5.1} ms host copies",
            e.model,
            e.parameters as f64 / 1e6,
            e.ring_bytes_per_rank / 1e6,
            e.ms_nvlink_100gbs,
            e.ms_infiniband_12_5gbs,
            e.ms_host_copies_25gbs
        );
    }
    #[derive(Serialize)]
    struct Report {
        rounds: usize,
        cases: Vec<CaseSummary>,
        measured: Vec<Measured>,
        paper_all_reduce_estimates: Vec<Estimate>,
    }
    common::write_results(
        "data_parallel",
        &Report {
            rounds,
            cases: summaries,
            measured,
            paper_all_reduce_estimates: estimates,
        },
    );
}
