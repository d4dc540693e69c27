//! End to end: `vgpt-data prepare moving-mnist` on the real MNIST digits,
//! `verify`, corruption detection, determinism and kill -9 resumption.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use videogpt_pipeline::shards::{ClipShards, read_clips_table};

fn prepare(root: &Path, extra: &[&str]) -> std::process::Output {
    let raw = real_mnist_raw();
    let mut args = vec![
        "prepare",
        "moving-mnist",
        "--root",
        root.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
        "--train-sequences",
        "120",
        "--test-sequences",
        "30",
        "--videos-per-shard",
        "25",
        "--no-progress",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn prepare_then_verify_then_a_flipped_byte_is_named() {
    let root = tempfile::tempdir().unwrap();
    let out = prepare(root.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let train = root.path().join("moving-mnist/clips/train");
    let shards = ClipShards::open(&train).unwrap();
    assert_eq!(shards.len(), 120, "one random-start clip per sequence");
    assert_eq!(shards.clip_shape(), [16, 64, 64, 1]);
    assert_eq!(shards.index().shards.len(), 5);
    let rows = read_clips_table(&train.join("clips.parquet")).unwrap();
    assert_eq!(rows.len(), 120);
    assert!(
        rows.iter().all(|r| r.start_frame <= 4),
        "20 frames, 16 per clip: starts 0..=4"
    );
    let clip = shards.clip(77).unwrap();
    let lit = clip.iter().filter(|&&p| p > 30).count() as f64 / clip.len() as f64;
    assert!(
        (0.03..0.5).contains(&lit),
        "frames should show digits on black, lit fraction {lit}"
    );

    let ok = run(&["verify", train.to_str().unwrap(), "--deep"]);
    assert!(ok.status.success(), "{}", text(&ok));

    let victim = train.join("shard-00003.clips");
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let bad = run(&[
        "verify",
        "moving-mnist",
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    let report = text(&bad);
    assert!(
        report.contains("shard-00003.clips") && report.contains("SHA-256 mismatch"),
        "{report}"
    );
    assert_eq!(report.matches("CORRUPT").count(), 1, "{report}");
}

#[test]
fn same_seed_same_shards_whatever_the_thread_count() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    assert!(prepare(a.path(), &["--threads", "1"]).status.success());
    assert!(prepare(b.path(), &["--threads", "2"]).status.success());
    assert!(prepare(c.path(), &["--seed", "1"]).status.success());
    for split in ["train", "test"] {
        let dir = |r: &Path| r.join("moving-mnist/clips").join(split);
        assert_eq!(
            shard_checksums(&dir(a.path())),
            shard_checksums(&dir(b.path()))
        );
        assert_ne!(
            shard_checksums(&dir(a.path())),
            shard_checksums(&dir(c.path()))
        );
    }
}

#[test]
fn rerun_with_other_settings_refuses_and_keeps_the_earlier_output() {
    let root = tempfile::tempdir().unwrap();
    assert!(prepare(root.path(), &[]).status.success());
    let train = root.path().join("moving-mnist/clips/train");
    let before = shard_checksums(&train);
    let again = prepare(root.path(), &[]);
    assert!(again.status.success());
    assert!(
        text(&again).contains("0/5"),
        "a rerun skips all 5 finished shards: {}",
        text(&again)
    );
    let other = prepare(root.path(), &["--seq-len", "8"]);
    assert!(!other.status.success());
    assert!(text(&other).contains("--overwrite"), "{}", text(&other));
    assert_eq!(shard_checksums(&train), before);
    assert!(run(&["verify", train.to_str().unwrap()]).status.success());
    let replaced = prepare(root.path(), &["--seq-len", "8", "--overwrite"]);
    assert!(replaced.status.success(), "{}", text(&replaced));
    assert_eq!(
        ClipShards::open(&train).unwrap().clip_shape(),
        [8, 64, 64, 1]
    );
}

#[test]
fn kill_9_midway_then_rerun_equals_an_uninterrupted_run() {
    let raw = real_mnist_raw();
    let args = |root: &Path| -> Vec<String> {
        [
            "prepare",
            "moving-mnist",
            "--root",
            root.to_str().unwrap(),
            "--raw",
            raw.to_str().unwrap(),
            "--splits",
            "train",
            "--train-sequences",
            "600",
            "--videos-per-shard",
            "20",
            // Slow compression so the kill lands midway.
            "--zstd-level",
            "19",
            "--threads",
            "1",
            "--no-progress",
        ]
        .map(String::from)
        .to_vec()
    };
    let whole = tempfile::tempdir().unwrap();
    let out = vgpt_data().args(args(whole.path())).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let killed = tempfile::tempdir().unwrap();
    let split = killed.path().join("moving-mnist/clips/train");
    let mut child = vgpt_data().args(args(killed.path())).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed = |dir: &Path| {
        std::fs::read_dir(dir).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".meta.json")
            })
            .count()
        })
    };
    while committed(&split) < 3 {
        assert!(Instant::now() < deadline, "no shard committed in time");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !split.join("index.json").exists(),
        "killed before the split was finished"
    );
    let done_before = committed(&split);
    assert!(
        done_before < 30,
        "the kill should land midway ({done_before}/30 shards done)"
    );

    let rerun = vgpt_data().args(args(killed.path())).output().unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert!(
        text(&rerun).contains(&format!("{}/{}", 30 - done_before, done_before)),
        "{}",
        text(&rerun)
    );
    let whole_split = whole.path().join("moving-mnist/clips/train");
    assert_eq!(shard_checksums(&split), shard_checksums(&whole_split));
    let (a, b) = (
        ClipShards::open(&split).unwrap(),
        ClipShards::open(&whole_split).unwrap(),
    );
    assert_eq!(a.len(), 600);
    assert_eq!(a.len(), b.len());
    assert!(
        std::fs::read_dir(&split).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp-"))
    );
    assert!(
        run(&["verify", split.to_str().unwrap(), "--deep"])
            .status
            .success()
    );
}

#[test]
fn missing_raw_data_is_a_one_line_error_naming_the_folder() {
    let root = tempfile::tempdir().unwrap();
    let out = run(&[
        "prepare",
        "moving-mnist",
        "--root",
        root.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("moving-mnist/raw") && err.contains("mnist_test_seq.npy"),
        "{err}"
    );
}

#[test]
fn canonical_npy_layout_is_read_in_place_and_split_at_the_end() {
    // mnist_test_seq.npy is [20, N, 64, 64]: frame t of sequence n is at (t*N + n)*4096.
    let (frames, n) = (20usize, 12usize);
    let data: Vec<u8> = (0..frames * n * 4096)
        .map(|i| ((i / 4096) * 7 + i % 251) as u8)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir(&raw).unwrap();
    videogpt_pipeline::testing::write_npy_u8(
        &raw.join("mnist_test_seq.npy"),
        &[frames, n, 64, 64],
        &data,
    )
    .unwrap();
    let root = dir.path().join("datasets");
    let out = run(&[
        "prepare",
        "moving-mnist",
        "--root",
        root.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
        "--npy-test-sequences",
        "4",
        "--start",
        "first",
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for (split, first_seq, count) in [("train", 0, 8), ("test", 8, 4)] {
        let dir = root.join("moving-mnist/clips").join(split);
        let shards = ClipShards::open(&dir).unwrap();
        assert_eq!(shards.len(), count);
        for k in 0..count {
            let seq = first_seq + k as usize;
            let expect: Vec<u8> = (0..16)
                .flat_map(|t| data[(t * n + seq) * 4096..][..4096].to_vec())
                .collect();
            assert_eq!(
                shards.clip(k).unwrap(),
                expect,
                "{split} clip {k} = sequence {seq}"
            );
        }
        let rows = read_clips_table(&dir.join("clips.parquet")).unwrap();
        assert!(
            rows[0]
                .source
                .ends_with(&format!("mnist_test_seq.npy#{first_seq}")),
            "{}",
            rows[0].source
        );
    }
}

#[test]
fn generated_sequences_shorter_than_a_clip_are_refused_up_front() {
    let root = tempfile::tempdir().unwrap();
    let out = prepare(root.path(), &["--frames", "10"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--frames 10 is shorter than one clip"),
        "{}",
        text(&out)
    );
}
