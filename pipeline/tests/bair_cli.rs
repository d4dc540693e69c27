//! End to end: `vgpt-data prepare bair` on TFRecords in the upstream layout.

mod common;

use std::path::Path;

use common::*;
use videogpt_pipeline::shards::{ClipShards, read_clips_table};
use videogpt_pipeline::sources::bair::{ACTION_DIM, FRAME_BYTES};
use videogpt_pipeline::testing::{Trajectory, write_bair_split};

fn fixture(raw: &Path) -> (Vec<Trajectory>, Vec<Trajectory>) {
    let base = raw.join("softmotion30_44k");
    let train = write_bair_split(&base.join("train"), 2, 3, 30, 1).unwrap();
    let test = write_bair_split(&base.join("test"), 1, 2, 30, 2).unwrap();
    (train, test)
}

#[test]
fn clips_equal_source_frames_and_actions_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let (train, test) = fixture(&raw);
    let root = dir.path().join("datasets");
    let out = run(&[
        "prepare",
        "bair",
        raw.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--start",
        "sliding:3",
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for (split, trajectories) in [("train", &train), ("test", &test)] {
        let dir = root.join("bair/clips").join(split);
        let shards = ClipShards::open(&dir).unwrap();
        let rows = read_clips_table(&dir.join("clips.parquet")).unwrap();
        // 30 frames, 16 per clip: starts 0, 3, ..., 12 (valid starts 0..=14).
        assert_eq!(rows.len(), trajectories.len() * 5);
        assert_eq!(shards.len(), rows.len() as u64);
        for row in &rows {
            let t = &trajectories[row.video as usize];
            assert_eq!(row.source, format!("{}#{}", t.file.display(), t.record));
            let s = row.start_frame as usize;
            assert_eq!(
                shards.clip(row.clip_id).unwrap(),
                t.frames[s * FRAME_BYTES..(s + 16) * FRAME_BYTES],
                "clip {}",
                row.clip_id
            );
            assert_eq!(
                row.actions.as_deref().unwrap(),
                &t.actions[s * ACTION_DIM..(s + 16) * ACTION_DIM]
            );
        }
    }
    let verify = run(&["verify", "bair", "--root", root.to_str().unwrap(), "--deep"]);
    assert!(verify.status.success(), "{}", text(&verify));
}

#[test]
fn bad_crc_and_truncation_name_file_and_record_and_the_rest_is_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    fixture(&raw);
    let train = raw.join("softmotion30_44k/train");
    // A third file: record 1's data corrupted, record 3 truncated.
    let bad = write_bair_split(&dir.path().join("bad"), 1, 4, 30, 3).unwrap();
    let mut bytes = std::fs::read(&bad[0].file).unwrap();
    let record_len = bytes.len() / 4;
    bytes[record_len + 500] ^= 0xff;
    bytes.truncate(bytes.len() - 100);
    let damaged = train.join("traj_zz_damaged.tfrecords");
    std::fs::write(&damaged, bytes).unwrap();

    let root = dir.path().join("datasets");
    let out = run(&[
        "prepare",
        "bair",
        raw.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--start",
        "first",
        "--no-progress",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rejects make the exit status non-zero: {}",
        text(&out)
    );
    let log = text(&out);
    let name = damaged.display().to_string();
    assert!(
        log.contains(&format!("{name} (record 1): data CRC mismatch")),
        "{log}"
    );
    assert!(
        log.contains(&format!("{name} (record 3): truncated")),
        "{log}"
    );
    // 6 good trajectories + records 0 and 2 of the damaged file.
    let shards = ClipShards::open(&root.join("bair/clips/train")).unwrap();
    assert_eq!(shards.len(), 8);
    assert_eq!(shards.index().rejects.len(), 2);
    assert!(
        run(&["verify", "bair", "--root", root.to_str().unwrap()])
            .status
            .success()
    );
}

#[test]
fn missing_split_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "prepare",
        "bair",
        dir.path().to_str().unwrap(),
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("softmotion30_44k/train"));
}
