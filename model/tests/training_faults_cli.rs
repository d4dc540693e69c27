//! Faults during `train-vqvae`, `train-prior` and `encode-latents`: each is
//! killed with SIGKILL at seeded moments (after the n-th new file under its
//! output), then run again (`--resume` for training). A resumed run logs the
//! same losses at every step as a run that was never stopped, and a rerun
//! encode writes the same token table byte for byte; no temp file is left.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::testing::assert_same_tree;
use videogpt_pipeline::testing::faults::{run_killed_after_files, temp_files};

const KILLS: u64 = 2;

fn vgpt(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vgpt"));
    command
        .current_dir(cwd)
        .args(args)
        .args(["--no-progress", "--threads", "1"])
        .env("RUST_LOG", "warn")
        .env("VIDEOGPT_CPU_PATH", "f32");
    command
}

fn ok(mut command: Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// metrics.jsonl by step, without the fields that measure time.
fn metrics(run: &Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let map = value.as_object_mut().unwrap();
            map.retain(|k, _| !(k.contains("second") || k.contains("per_s") || k.contains("time")));
            (map["step"].as_u64().unwrap(), serde_json::to_string(map).unwrap())
        })
        .collect()
}

/// Trains `args` straight into `runs/straight`, and for each seed into
/// `runs/killed-<seed>` killed after 1 to `files` new files there, then
/// resumed: each step's metrics equal the straight run's.
fn killed_training_resumes_to_the_same_metrics(cwd: &Path, args: &[&str], files: u64) {
    let with_run = |run: &str| -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["--run".into(), run.into(), "--resume".into()]);
        a
    };
    let strs = |a: &[String]| a.iter().map(String::as_str).collect::<Vec<_>>().join("\u{1}");
    let command = |a: &[String]| vgpt(cwd, &a.iter().map(String::as_str).collect::<Vec<_>>());
    ok(command(&with_run("runs/straight")));
    let expected = metrics(&cwd.join("runs/straight"));
    let mut kills = 0;
    for seed in 0..KILLS {
        let run = format!("runs/killed-{seed}");
        let nth = 1 + SplitMix64::for_item(seed, &strs(&with_run("x")), files).below(files) as usize;
        std::fs::create_dir_all(cwd.join(&run)).unwrap();
        let killed = run_killed_after_files(command(&with_run(&run)), &cwd.join(&run), nth, Duration::from_secs(300));
        kills += killed as usize;
        ok(command(&with_run(&run)));
        assert_eq!(metrics(&cwd.join(&run)), expected, "{run}: killed after file {nth}, then resumed");
        assert!(temp_files(&cwd.join(&run)).is_empty(), "{run}: {:?}", temp_files(&cwd.join(&run)));
    }
    assert!(kills > 0, "every run finished before its kill point");
}

#[test]
fn killed_training_and_encoding_resume_to_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    common::prepare_moving_mnist(&cwd.join("root"), 24, 8, 8);

    let vqvae = [
        "train-vqvae", "moving-mnist", "tiny", "--root", "root", "--steps", "6", "--batch-size", "4",
        "--checkpoint-every", "2", "--log-every", "1",
    ];
    killed_training_resumes_to_the_same_metrics(cwd, &vqvae, 12);

    // Encoding: the straight table, then a copy of the clips encoded with kills.
    let encode = |root: &str| vgpt(cwd, &["encode-latents", "moving-mnist", "runs/straight", "--root", root, "--rows-per-part", "4", "--batch-size", "4"]);
    ok(encode("root"));
    let mut kills = 0;
    for seed in 0..KILLS {
        let root = format!("copy-{seed}");
        let clips = cwd.join(&root).join("moving-mnist/clips");
        std::fs::create_dir_all(&clips).unwrap();
        assert!(Command::new("cp").arg("-r").arg(cwd.join("root/moving-mnist/clips")).arg(clips.parent().unwrap()).status().unwrap().success());
        let tokens = cwd.join(&root).join("moving-mnist/tokens");
        let nth = 1 + SplitMix64::for_item(seed, "encode", 8).below(8) as usize;
        kills += run_killed_after_files(encode(&root), &tokens, nth, Duration::from_secs(300)) as usize;
        ok(encode(&root));
        assert_same_tree(&cwd.join("root/moving-mnist/tokens"), &tokens, &format!("encode killed after file {nth}, rerun"));
        assert!(temp_files(&tokens).is_empty(), "{:?}", temp_files(&tokens));
    }
    assert!(kills > 0, "every encode finished before its kill point");

    let prior = [
        "train-prior", "moving-mnist", "tiny", "--root", "root", "--steps", "6", "--batch-size", "4", "--lr", "1e-3",
        "--warmup", "0", "--dropout", "0.2", "--eval-every", "100", "--checkpoint-every", "2", "--log-every", "1",
    ];
    let prior_cwd = cwd.join("prior");
    std::fs::create_dir_all(&prior_cwd).unwrap();
    std::os::unix::fs::symlink(cwd.join("root"), prior_cwd.join("root")).unwrap();
    killed_training_resumes_to_the_same_metrics(&prior_cwd, &prior, 12);
}
