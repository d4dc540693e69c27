//! `--precision`: without bf16 instructions (forced with
//! `VIDEOGPT_CPU_PATH=f32`) a bf16 run is the f32 run, bit for bit (every
//! logged loss); with
//! them it trains to nearly the same loss, records its precision in the
//! run, and a resumed run keeps it unless told otherwise.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vgpt(cwd: &Path, cpu_path: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vgpt"));
    command
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .args(args)
        .stdin(Stdio::null());
    if args != ["--version"] {
        command.arg("--no-progress");
    }
    match cpu_path {
        Some(path) => command.env("VIDEOGPT_CPU_PATH", path),
        None => command.env_remove("VIDEOGPT_CPU_PATH"),
    };
    let out = command.output().expect("vgpt runs");
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn latest_checkpoint(run: &Path) -> std::path::PathBuf {
    let name = std::fs::read_to_string(run.join("checkpoints/latest")).unwrap();
    run.join("checkpoints").join(name.trim())
}

/// metrics.jsonl without the timings: the losses of every logged step,
/// as exact decimal renderings of their f64 values.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value.as_object_mut().unwrap().remove("seconds");
            value
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn vqvae_args<'a>(run: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train-vqvae",
        "moving-mnist",
        "tiny",
        "--root",
        "root",
        "--run",
        run,
        "--steps",
        steps,
        "--batch-size",
        "4",
        "--checkpoint-every",
        "10",
        "--log-every",
        "1",
    ]
}

#[test]
fn bf16_without_bf16_instructions_is_the_f32_run() {
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 16, 4, 16);
    let cwd = dir.path();
    vgpt(cwd, Some("f32"), &vqvae_args("runs/f32", "20"));
    vgpt(
        cwd,
        Some("f32"),
        &[vqvae_args("runs/bf16", "20"), vec!["--precision", "bf16"]].concat(),
    );
    let f32_metrics = metrics(&cwd.join("runs/f32"));
    assert_eq!(f32_metrics.len(), 20);
    assert_eq!(
        f32_metrics,
        metrics(&cwd.join("runs/bf16")),
        "the VQ-VAE runs differ"
    );
    // The prior too (linears and attention).
    vgpt(
        cwd,
        Some("f32"),
        &[
            "encode-latents",
            "moving-mnist",
            "runs/f32",
            "--root",
            "root",
        ],
    );
    let prior = |run: &str, precision: &str| {
        vgpt(
            cwd,
            Some("f32"),
            &[
                "train-prior",
                "moving-mnist",
                "tiny",
                "--root",
                "root",
                "--run",
                run,
                "--steps",
                "10",
                "--batch-size",
                "4",
                "--eval-every",
                "100",
                "--log-every",
                "1",
                "--precision",
                precision,
            ],
        );
    };
    prior("runs/p-f32", "f32");
    prior("runs/p-bf16", "bf16");
    assert_eq!(
        metrics(&cwd.join("runs/p-f32")),
        metrics(&cwd.join("runs/p-bf16")),
        "the prior runs differ"
    );
}

#[test]
fn bf16_trains_like_f32_is_recorded_and_kept_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    common::prepare_moving_mnist(&dir.path().join("root"), 16, 4, 16);
    let cwd = dir.path();
    let version = String::from_utf8_lossy(&vgpt(cwd, None, &["--version"]).stdout).into_owned();
    let out = vgpt(
        cwd,
        None,
        &[vqvae_args("runs/bf16", "40"), vec!["--precision", "bf16"]].concat(),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("precision=bf16"), "{log}");
    let bf16_path = ["amx-bf16", "avx512-bf16"]
        .into_iter()
        .find(|path| version.contains(path));
    let Some(path) = bf16_path else {
        eprintln!("no bf16 instructions here ({version}): the bf16 comparison is the f32 test's");
        return;
    };
    assert!(log.contains(&format!("cpu_path={path}")), "{log}");
    vgpt(cwd, None, &vqvae_args("runs/f32", "40"));
    let bf16_run = cwd.join("runs/bf16");
    assert_eq!(
        json(&bf16_run.join("config.json"))["train"]["precision"],
        "bf16"
    );
    assert_eq!(
        json(&cwd.join("runs/f32/config.json"))["train"]["precision"],
        "f32"
    );
    let last_loss = |run: &Path| metrics(run).last().unwrap()["loss"].as_f64().unwrap();
    let (f32_loss, bf16_loss) = (last_loss(&cwd.join("runs/f32")), last_loss(&bf16_run));
    assert!(
        (bf16_loss - f32_loss).abs() <= 0.1 * f32_loss,
        "losses after 40 steps: f32 {f32_loss}, bf16 {bf16_loss}"
    );
    assert_ne!(
        metrics(&cwd.join("runs/f32")),
        metrics(&bf16_run),
        "bf16 ran the f32 products"
    );

    // Resumed without --precision: still bf16; with it: what it says.
    let out = vgpt(
        cwd,
        None,
        &[vqvae_args("runs/bf16", "50"), vec!["--resume"]].concat(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("precision=bf16"));
    assert_eq!(
        json(&latest_checkpoint(&bf16_run).join("config.json"))["train"]["precision"],
        "bf16"
    );
    let out = vgpt(
        cwd,
        None,
        &[
            vqvae_args("runs/bf16", "60"),
            vec!["--resume", "--precision", "f32"],
        ]
        .concat(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("precision=f32"));
    assert_eq!(
        json(&latest_checkpoint(&bf16_run).join("config.json"))["train"]["precision"],
        "f32"
    );
}
