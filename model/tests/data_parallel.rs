//! Data-parallel training through a real `mpirun` (Open MPI): two ranks with
//! half the batch each train to the parameters one process reaches with
//! the whole batch (the VQ-VAE with its batch norm and EMA codebook, the
//! prior with dropout), a killed rank ends the job, and the run resumes on
//! another rank count.
#![cfg(feature = "mpi")]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use videogpt_model::distributed::gradients::parameter_values;
use videogpt_pipeline::testing::assert_same_tree;

fn vgpt_command<S: AsRef<OsStr>>(cwd: &Path, ranks: Option<usize>, args: &[S]) -> Command {
    let vgpt = env!("CARGO_BIN_EXE_vgpt");
    let mut command = match ranks {
        None => Command::new(vgpt),
        Some(n) => {
            let mut c = Command::new("mpirun");
            c.args(["-np", &n.to_string(), "--oversubscribe", vgpt]);
            c
        }
    };
    command
        .current_dir(cwd)
        .args(args)
        .args(["--no-progress", "--threads", "1"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("VIDEOGPT_CPU_PATH", "f32")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn vgpt<S: AsRef<OsStr> + std::fmt::Debug>(cwd: &Path, ranks: Option<usize>, args: &[S]) -> Output {
    let out = vgpt_command(cwd, ranks, args)
        .output()
        .expect("vgpt (or mpirun) runs");
    assert!(
        out.status.success(),
        "{ranks:?} ranks {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn latest_checkpoint(run: &Path) -> PathBuf {
    let name = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    run.join("checkpoints").join(name.trim())
}

fn vqvae_parameters(run: &Path) -> Vec<f32> {
    let (model, _, _) =
        videogpt_model::checkpoint::load_model(&latest_checkpoint(run), &Device::flex()).unwrap();
    parameter_values(&model)
}

fn prior_parameters(run: &Path) -> Vec<f32> {
    let (prior, _, _) =
        videogpt_model::prior::train::load_prior(&latest_checkpoint(run), &Device::flex()).unwrap();
    parameter_values(&prior)
}

/// `|a - b| / |a|` over all parameters (Euclidean norms).
fn relative_difference(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let norm = a.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let diff = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    diff / norm
}

/// Each logged metric of two runs, step by step (timings left out).
fn losses(run: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()[key]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// Summation order is all that may differ: two ranks sum a gradient as two
/// halves, one process in one pass, about 1e-7 relative per step. Adam turns
/// that into steps of up to the learning rate where the gradient is pure
/// rounding noise (a convolution's bias before batch norm has none), and a
/// latent that moves across the boundary between two codes changes the
/// codebook's counts: measured after 4 steps, 6e-6 of the parameters' norm
/// for the VQ-VAE and 2e-9 for the prior (after 8 steps of the VQ-VAE 8e-3:
/// such flips compound). A run that saw other data (half the batch) is 100x
/// further away.
const SAME_RUN: f64 = 1e-4;

/// A training command: `words`, then the run folder and the global batch.
fn train_args(words: &str, run: &str, batch: &str) -> Vec<String> {
    let tail = ["--run", run, "--batch-size", batch];
    words
        .split_whitespace()
        .chain(tail)
        .map(String::from)
        .collect()
}

fn vqvae_args(run: &str, batch: &'static str) -> Vec<String> {
    let words = "train-vqvae moving-mnist tiny --root root --steps 4 --lr 3e-3 --checkpoint-every 4 --log-every 1";
    train_args(words, run, batch)
}

fn prior_args(run: &str, batch: &'static str) -> Vec<String> {
    let words = "train-prior moving-mnist tiny --root root --steps 4 --lr 1e-3 --warmup 0 --dropout 0.2 \
                 --attention-dropout 0.2 --eval-every 100 --log-every 1 --checkpoint-every 4";
    train_args(words, run, batch)
}

/// Trains `model` three times (1 process x 4 samples, 2 ranks x 2, 1 process
/// x 2) into `runs/<model>-{one,two,half}` and checks that the first two end
/// with the same parameters and the third elsewhere.
fn same_as_one_process(
    cwd: &Path,
    model: &str,
    args: fn(&str, &'static str) -> Vec<String>,
    parameters: fn(&Path) -> Vec<f32>,
) {
    let run = |name: &str| format!("runs/{model}-{name}");
    for (name, ranks, batch) in [
        ("one", None, "4"),
        ("two", Some(2), "4"),
        ("half", None, "2"),
    ] {
        let args = args(&run(name), batch);
        vgpt(
            cwd,
            ranks,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    let [one, two, half] = ["one", "two", "half"].map(|name| parameters(&cwd.join(run(name))));
    let same = relative_difference(&one, &two);
    let other = relative_difference(&one, &half);
    eprintln!("{model}: 2 ranks vs 1 process {same:.2e}, half the batch {other:.2e}");
    assert!(
        same < SAME_RUN,
        "{model}: 2 ranks x half the batch end {same:.2e} away from 1 process"
    );
    assert!(
        other > 100.0 * same,
        "{model}: the comparison cannot tell runs apart ({other:.2e})"
    );
}

#[test]
fn two_ranks_with_half_the_batch_train_as_one_process_with_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 32, 4, 8);
    let cwd = dir.path();

    // The VQ-VAE: batch norm statistics and the codebook's counts, sums,
    // initial and restart vectors all come from the global batch.
    same_as_one_process(cwd, "VQ-VAE", vqvae_args, vqvae_parameters);
    // The logged numbers are the global batch's: codes restarted and used
    // exactly, losses to float rounding.
    for key in ["restarted", "codes_used"] {
        assert_eq!(
            losses(&cwd.join("runs/VQ-VAE-one"), key),
            losses(&cwd.join("runs/VQ-VAE-two"), key),
            "{key}"
        );
    }
    for (a, b) in losses(&cwd.join("runs/VQ-VAE-one"), "loss")
        .iter()
        .zip(losses(&cwd.join("runs/VQ-VAE-two"), "loss"))
    {
        assert!((a - b).abs() < 1e-5 * a.abs(), "loss {a} vs {b}");
    }
    let reduce = losses(&cwd.join("runs/VQ-VAE-two"), "all_reduce_seconds");
    assert!(
        reduce.len() == 4 && reduce.iter().all(|&s| s > 0.0),
        "all-reduce times {reduce:?}"
    );

    // The prior, from the one-process VQ-VAE's tokens, with dropout: masks
    // follow each value's place in the global batch.
    let encode = |ranks: Option<usize>, root: &str| {
        let args = [
            "encode-latents",
            "moving-mnist",
            "runs/VQ-VAE-one",
            "--root",
            root,
            "--rows-per-part",
            "8",
        ];
        vgpt(cwd, ranks, &args);
    };
    encode(None, "root");
    // Encoding as two MPI ranks (a task each) writes the same table bytes.
    let status = Command::new("cp")
        .args(["-r", "root", "root-ranks"])
        .current_dir(cwd)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(cwd.join("root-ranks/moving-mnist/tokens")).unwrap();
    encode(Some(2), "root-ranks");
    let tables = |root: &str| cwd.join(root).join("moving-mnist/tokens");
    assert_same_tree(&tables("root"), &tables("root-ranks"), "2 ranks' encode");
    same_as_one_process(cwd, "prior", prior_args, prior_parameters);
}

#[test]
fn a_killed_rank_ends_the_job_and_the_run_resumes_on_another_rank_count() {
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 32, 4, 8);
    let cwd = dir.path();
    let args = |steps: &str| {
        let words =
            "train-vqvae moving-mnist tiny --root root --checkpoint-every 2 --log-every 1 --resume";
        let mut args = train_args(words, "runs/killed", "4");
        args.extend(["--steps".to_string(), steps.to_string()]);
        args
    };
    let mut job = vgpt_command(cwd, Some(2), &args("100000")).spawn().unwrap();
    let run = cwd.join("runs/killed");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !run.join("checkpoints/step-00000004").is_dir() {
        assert!(
            Instant::now() < deadline,
            "no checkpoint at step 4 after 120 s"
        );
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Kill one rank (a child of mpirun) with SIGKILL.
    let children = Command::new("pgrep")
        .args(["-P", &job.id().to_string()])
        .output()
        .unwrap();
    let ranks: Vec<String> = String::from_utf8_lossy(&children.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(ranks.len(), 2, "mpirun's children: {ranks:?}");
    let killed_at = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-9", &ranks[1]])
            .status()
            .unwrap()
            .success()
    );
    let out = loop {
        if let Some(status) = job.try_wait().unwrap() {
            break (status, job.wait_with_output().unwrap());
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "the job still runs 30 s after a rank was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (status, output) = out;
    let message = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!status.success(), "the job succeeded with a rank killed");
    assert!(
        message.contains("signal 9") || message.contains("Killed"),
        "no word of the killed rank: {message}"
    );
    eprintln!(
        "job ended {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // The last checkpoint is whole; the run continues from it on one rank
    // (same global batch) and then on two.
    let resumed_from = latest_checkpoint(&run);
    let done = vgpt(cwd, None, &args("12"));
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(log.contains("resuming"), "{log}");
    assert!(resumed_from.is_dir());
    vgpt(cwd, Some(2), &args("14"));
    let steps = losses(&run, "step");
    assert_eq!(steps.last(), Some(&14.0));
    let expected: Vec<f64> = (1..=14).map(f64::from).collect();
    assert_eq!(steps, expected, "metrics.jsonl holds each step once");
}

/// docs/slurm/train.sbatch through a real `sbatch` on a private one-node
/// Slurm cluster: `srun --mpi=pmix` starts 2 ranks, which train as one
/// process with the whole batch does.
#[test]
fn the_training_sbatch_script_runs_two_ranks_through_srun() {
    use videogpt_pipeline::testing::slurm::{LocalCluster, runs_as_root};
    if !runs_as_root() {
        eprintln!("skipped: a private Slurm cluster's slurmd must run as root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 32, 4, 8);
    let cwd = dir.path();
    let cluster = LocalCluster::start(&cwd.join("cluster")).unwrap();
    vgpt(cwd, None, &vqvae_args("runs/one", "4"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/slurm/train.sbatch");
    let bin = Path::new(env!("CARGO_BIN_EXE_vgpt"))
        .parent()
        .unwrap()
        .to_path_buf();
    let chdir = format!("--chdir={}", cwd.display());
    let options = [
        "--nodes=1",
        "--ntasks-per-node=2",
        "--cpus-per-task=1",
        chdir.as_str(),
    ];
    let env = [
        ("VGPT_BIN", bin.as_path()),
        ("VIDEOGPT_CPU_PATH", Path::new("f32")),
    ];
    let job = cluster.run_job(&script, &options, &vqvae_args("runs/slurm", "4"), &env, cwd);
    let log = job.outputs.concat();
    assert!(job.succeeded, "sbatch: {}\n{log}", job.sbatch);
    assert!(log.contains("ranks=2"), "not 2 ranks: {log}");
    let same = relative_difference(
        &vqvae_parameters(&cwd.join("runs/one")),
        &vqvae_parameters(&cwd.join("runs/slurm")),
    );
    assert!(
        same < SAME_RUN,
        "2 ranks under srun end {same:.2e} away from 1 process"
    );
    drop(cluster);
}

/// On a GPU backend (wgpu; lavapipe here) kernels need not give the same
/// bits twice, so ranks start from rank 0's initial model and clip the
/// averaged gradient on the host: the ranks still agree (checked at the
/// step's checkpoint).
#[test]
fn ranks_agree_on_the_wgpu_backend() {
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 8, 4, 8);
    let cwd = dir.path();
    let gpu = |args: Vec<String>| {
        let mut command = vgpt_command(cwd, Some(2), &args);
        // lavapipe is a CPU device, not a discrete GPU per rank.
        command.env("CUBECL_WGPU_DEFAULT_DEVICE", "Cpu");
        let out = command.output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {log}");
    };
    let words =
        "train-vqvae moving-mnist tiny --root root --steps 1 --checkpoint-every 1 --backend wgpu";
    gpu(train_args(words, "runs/gpu", "2"));
    vgpt(
        cwd,
        None,
        &[
            "encode-latents",
            "moving-mnist",
            "runs/gpu",
            "--root",
            "root",
        ],
    );
    let words = "train-prior moving-mnist tiny --root root --steps 1 --checkpoint-every 1 --eval-every 100 --backend wgpu";
    gpu(train_args(words, "runs/gpu-prior", "2"));
}
