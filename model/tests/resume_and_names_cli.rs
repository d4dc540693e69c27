//! The `vgpt` binary on bad names, pointers and resumes, over real Moving
//! MNIST clips: names never write outside the root, `checkpoints/latest` is
//! a step folder's name or an error, a missing `latest` never restarts a run
//! on top of its checkpoints, `--resume` reads the data given only when it is
//! the data the run started with, a weights/config mismatch is one short
//! line, and a failed checkpoint write leaves no staging folder. Every error
//! is one line of at most 300 characters.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use videogpt_model::checkpoint::{self, TrainState};
use videogpt_model::ops::HostAdam;

fn vgpt(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vgpt"))
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("vgpt runs")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", text(&out));
    out
}

/// The one `error:` line of a failed run, checked to be short.
fn error_line(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].chars().count() <= 300, "error line over 300 characters: {}", lines[0]);
    lines[0].to_owned()
}

fn train_vqvae(cwd: &Path, root: &str, steps: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train-vqvae", "moving-mnist", "tiny", "--root", root, "--run", "runs/v", "--steps", steps,
        "--batch-size", "4", "--checkpoint-every", "1", "--no-progress",
    ];
    args.extend_from_slice(extra);
    vgpt(cwd, &args)
}

fn train_prior(cwd: &Path, root: &str, steps: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "train-prior", "moving-mnist", "tiny", "--root", root, "--run", "runs/p", "--steps", steps,
        "--batch-size", "4", "--checkpoint-every", "1", "--eval-every", "100", "--no-progress",
    ];
    args.extend_from_slice(extra);
    vgpt(cwd, &args)
}

fn step_folders(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "latest")
        .collect();
    names.sort();
    names
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn names_pointers_and_resumes_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir_all(&cwd).unwrap();
    common::prepare_moving_mnist(&cwd.join("root"), 24, 8, 8);
    // The same clips under another root, and other clips under a third.
    copy_dir(&cwd.join("root"), &cwd.join("copy"));
    common::prepare_moving_mnist(&cwd.join("other"), 20, 8, 8);
    let run = cwd.join("runs/v");

    let first = ok(train_vqvae(&cwd, "root", "2", &[]));
    assert!(!text(&first).contains("XDG_RUNTIME_DIR"), "{}", text(&first));

    // --resume reads the root given when it holds the run's data ...
    let resumed = ok(train_vqvae(&cwd, "copy", "3", &["--resume"]));
    assert!(!text(&resumed).contains("XDG_RUNTIME_DIR"), "a CPU run probed the GPU: {}", text(&resumed));
    assert_eq!(step_folders(&run).last().unwrap(), "step-00000003");
    // ... and refuses other data, naming both folders.
    let line = error_line(&train_vqvae(&cwd, "other", "4", &["--resume"]));
    assert!(line.contains("--resume") && line.contains("copy/moving-mnist/clips/train") && line.contains("other/moving-mnist/clips/train"), "{line}");

    // A missing `latest` is an error naming the checkpoints, never a restart.
    let latest = run.join("checkpoints/latest");
    let pointer = std::fs::read(&latest).unwrap();
    std::fs::remove_file(&latest).unwrap();
    let before = step_folders(&run);
    for extra in [&["--resume"][..], &[]] {
        let line = error_line(&train_vqvae(&cwd, "root", "5", extra));
        assert!(line.contains("latest") && line.contains("step-00000003"), "{line}");
    }
    assert_eq!(step_folders(&run), before);
    let modified = std::fs::metadata(run.join("checkpoints/step-00000001/model.bpk")).unwrap().modified().unwrap();

    // `latest` naming a folder outside the run is refused by every reader.
    std::fs::write(&latest, "../../../../outside/ck").unwrap();
    for args in [
        vec!["encode-latents", "moving-mnist", "runs/v", "--root", "root", "--no-progress"],
        vec!["eval-vqvae", "runs/v", "--no-progress"],
        vec!["train-vqvae", "moving-mnist", "tiny", "--root", "root", "--run", "runs/v", "--resume", "--no-progress"],
    ] {
        let line = error_line(&vgpt(&cwd, &args));
        assert!(line.contains("latest") && line.contains("`../../../../outside/ck`"), "{args:?}: {line}");
    }
    std::fs::write(&latest, &pointer).unwrap();
    let after = std::fs::metadata(run.join("checkpoints/step-00000001/model.bpk")).unwrap().modified().unwrap();
    assert_eq!(modified, after, "a refused run touched a checkpoint");

    // Names given as arguments never reach outside the root or the run.
    for (args, quoted) in [
        (vec!["eval-vqvae", "runs/v", "--split", "test/../../../victim", "--no-progress"], "--split `test/../../../victim`"),
        (vec!["encode-latents", "../esc", "runs/v", "--root", "root", "--no-progress"], "dataset `../esc`"),
        (vec!["encode-latents", "moving-mnist", "runs/v", "--root", "root", "--splits", "../x", "--no-progress"], "--splits `../x`"),
        (vec!["train-prior", "../esc", "tiny", "--root", "root", "--no-progress"], "dataset `../esc`"),
        (vec!["train-vqvae", "../esc", "tiny", "--root", "root", "--run", "runs/esc", "--no-progress"], "dataset `../esc`"),
    ] {
        let line = error_line(&vgpt(&cwd, &args));
        assert!(line.contains(quoted), "{args:?}: {line}");
    }
    assert!(!dir.path().join("victim.json").exists() && !cwd.join("esc").exists() && !cwd.join("root/moving-mnist/x").exists());

    // The prior: tables from the run; --resume with a table of other tokens is refused.
    ok(vgpt(&cwd, &["encode-latents", "moving-mnist", "runs/v", "--root", "root", "--no-progress"]));
    ok(vgpt(&cwd, &["encode-latents", "moving-mnist", "runs/v", "--root", "other", "--no-progress"]));
    ok(train_prior(&cwd, "root", "1", &[]));
    ok(train_prior(&cwd, "root", "2", &["--resume"]));
    let line = error_line(&train_prior(&cwd, "other", "3", &["--resume"]));
    assert!(line.contains("token table") && line.contains("root/moving-mnist/tokens") && line.contains("other/moving-mnist/tokens"), "{line}");

    // Weights that do not fit the config beside them: one short line.
    let step = run.join("checkpoints/step-00000003");
    let config_path = step.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["model"]["hidden"] = 48.into();
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let line = error_line(&vgpt(&cwd, &["eval-vqvae", step.to_str().unwrap(), "--no-progress"]));
    assert!(line.contains("does not fit the config beside it") && line.contains("tensor(s), first:"), "{line}");
}

#[test]
fn a_failed_checkpoint_write_leaves_no_staging_folder() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let device = burn::tensor::Device::flex();
    let model = videogpt_model::vqvae::VqVaeConfig::preset("tiny").unwrap().init(&device);
    let state = TrainState { step: 2, samples_seen: 8 };
    // Where the finished folder must go, a file is in the way.
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::write(run.join("checkpoints/step-00000002"), b"in the way").unwrap();
    let result = checkpoint::save_module(&run, &"config", &state, model.clone(), &HostAdam::module_optimizer());
    assert!(result.is_err());
    let left: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(left, vec![run.join("checkpoints/step-00000002")], "staging folder left behind");
    // With the way clear, the same save succeeds and `latest` names it.
    std::fs::remove_file(run.join("checkpoints/step-00000002")).unwrap();
    checkpoint::save_module(&run, &"config", &state, model, &HostAdam::module_optimizer()).unwrap();
    assert_eq!(checkpoint::latest(&run).unwrap().unwrap(), run.join("checkpoints/step-00000002"));
}
