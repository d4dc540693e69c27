//! The `vgpt` binary as a cluster job and a newcomer run it: with stderr
//! going to a file it writes plain progress lines (step, rate, ETA, loss)
//! with no escape codes; a dataset prepared under a resolution-suffixed
//! folder is found by its base name; a prior run samples from any working
//! directory, because run folders and token tables record absolute paths.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vgpt(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vgpt"))
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("vgpt runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Seconds since midnight of a tracing line's RFC 3339 timestamp.
fn seconds_of(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':').map(|p| p.parse::<f64>().ok());
    Some(parts.next()?? * 3600.0 + parts.next()?? * 60.0 + parts.next()??)
}

#[test]
fn a_log_file_gets_plain_progress_lines_without_escape_codes() {
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 16, 4, 16);
    let run = dir.path().join("runs/v");
    let out = ok(vgpt(
        dir.path(),
        &[
            "train-vqvae", "moving-mnist", "tiny", "--root", "root", "--run", run.to_str().unwrap(),
            "--steps", "60", "--batch-size", "4", "--checkpoint-every", "1000", "--log-every", "5",
            "--progress-every", "1",
        ],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\x1b'), "escape codes in a non-terminal log: {stderr:?}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(" steps (") && l.contains("ETA")).collect();
    assert!(!lines.is_empty(), "no progress line: {stderr}");
    let last = lines.last().unwrap();
    assert!(last.contains("60/60 steps (100%)") && last.contains("loss"), "{last}");
    // At most `--progress-every` apart (plus one step), and never 30 s.
    let times: Vec<f64> = lines.iter().filter_map(|l| seconds_of(l)).collect();
    assert_eq!(times.len(), lines.len(), "timestamps: {lines:?}");
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] < 30.0, "{lines:?}");
    }
}

#[test]
fn a_base_dataset_name_finds_its_prepared_folder_and_sampling_works_from_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    common::prepare_moving_mnist(&root, 16, 8, 16);
    // As `prepare ucf101` writes `ucf101-64/`.
    std::fs::rename(root.join("moving-mnist"), root.join("moving-mnist-64")).unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    ok(vgpt(&cwd, &with_quiet(&["train-vqvae", "moving-mnist", "tiny", "--root", "../root", "--run", "runs/v", "--steps", "2", "--batch-size", "4"])));
    ok(vgpt(&cwd, &with_quiet(&["encode-latents", "moving-mnist", "runs/v", "--root", "../root"])));
    assert!(root.join("moving-mnist-64/tokens/v-step-00000002/data/train/part-00000.parquet").is_file());
    ok(vgpt(&cwd, &with_quiet(&["train-prior", "moving-mnist", "tiny", "--root", "../root", "--run", "runs/p", "--steps", "2", "--batch-size", "4", "--eval-every", "100"])));
    // A missing dataset says where it looked and what is there.
    let out = vgpt(&cwd, &with_quiet(&["train-prior", "bair", "--root", "../root"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("root/bair") && err.contains("moving-mnist-64"), "{err}");

    // Sample from another folder, naming the run by its absolute path.
    let elsewhere = tempfile::tempdir().unwrap();
    let prior = cwd.join("runs/p");
    let out = ok(vgpt(elsewhere.path(), &with_quiet(&["sample", prior.to_str().unwrap(), "--batch", "1", "--out", "s", "--no-mp4"])));
    assert!(elsewhere.path().join("s").is_dir(), "{}", String::from_utf8_lossy(&out.stdout));
}

fn with_quiet<'a>(args: &[&'a str]) -> Vec<&'a str> {
    [args, &["--no-progress"][..]].concat()
}
