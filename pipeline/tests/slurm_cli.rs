//! The sbatch examples in docs/slurm: valid bash with their `#SBATCH`
//! directives ahead of the first command, and the job-array prepare run
//! through a real `sbatch` on a private one-node Slurm cluster (Debian's
//! slurmctld/slurmd/munged), where it writes the bytes one process writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{real_mnist_raw, text, vgpt_data};
use videogpt_pipeline::testing::assert_same_tree;
use videogpt_pipeline::testing::slurm::{LocalCluster, runs_as_root};

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/slurm");
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sbatch"))
        .collect();
    scripts.sort();
    scripts
}

/// sbatch reads directives only up to the first command; each must be a
/// `--long-option[=value]`, and the job needs a name and a time limit.
#[test]
fn sbatch_scripts_parse() {
    let scripts = scripts();
    assert_eq!(scripts.len(), 3, "{scripts:?}");
    for script in &scripts {
        let syntax = Command::new("bash").arg("-n").arg(script).output().unwrap();
        assert!(
            syntax.status.success(),
            "{}: {}",
            script.display(),
            text(&syntax)
        );
        let body = std::fs::read_to_string(script).unwrap();
        assert!(body.starts_with("#!/bin/bash\n"), "{}", script.display());
        let mut directives = Vec::new();
        let mut commands_started = false;
        for line in body.lines().skip(1) {
            let line = line.trim();
            if let Some(directive) = line.strip_prefix("#SBATCH ") {
                assert!(
                    !commands_started,
                    "{}: `{line}` after the first command is ignored",
                    script.display()
                );
                assert!(
                    directive.starts_with("--") && !directive.contains(' '),
                    "{}: `{line}`",
                    script.display()
                );
                directives.push(directive.split('=').next().unwrap().to_string());
            } else if !line.is_empty() && !line.starts_with('#') {
                commands_started = true;
            }
        }
        for needed in ["--job-name", "--time", "--output"] {
            assert!(
                directives.iter().any(|d| d == needed),
                "{}: no {needed}",
                script.display()
            );
        }
    }
}

#[test]
fn a_prepare_job_array_through_real_sbatch_writes_the_single_process_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    if !runs_as_root() {
        eprintln!("skipped: a private Slurm cluster's slurmd must run as root");
        return;
    }
    let cluster = LocalCluster::start(&tmp.path().join("cluster")).unwrap();
    let raw = real_mnist_raw();
    let args = |root: &Path| -> Vec<String> {
        [
            "moving-mnist",
            "--raw",
            raw.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
            "--train-sequences",
            "60",
            "--test-sequences",
            "20",
            "--seq-len",
            "8",
            "--videos-per-shard",
            "6",
        ]
        .map(String::from)
        .to_vec()
    };
    let one = tmp.path().join("one");
    let out = vgpt_data()
        .arg("prepare")
        .args(args(&one))
        .arg("--no-progress")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let array = tmp.path().join("array");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/slurm/prepare-array.sbatch");
    let bin = Path::new(env!("CARGO_BIN_EXE_vgpt-data"))
        .parent()
        .unwrap()
        .to_path_buf();
    let job = cluster.run_job(
        &script,
        &["--array=0-2", "--cpus-per-task=1"],
        &args(&array),
        &[("VGPT_BIN", &bin)],
        tmp.path(),
    );
    let logs = job.outputs;
    assert!(job.succeeded, "sbatch: {}\n{}", job.sbatch, logs.join("\n"));
    // Three tasks ran, and one of them wrote the tables.
    assert_eq!(logs.len(), 3, "{logs:?}");
    assert!(logs.iter().any(|log| log.contains("wrote ")), "{logs:?}");
    assert_same_tree(
        &one.join("moving-mnist"),
        &array.join("moving-mnist"),
        "the job array",
    );
    drop(cluster);
}
