//! `vgpt-data prepare ucf101 | tgif | vizdoom` on small trees in the upstream
//! layouts, built from real video files (setup.sh fetches them) and, for
//! ViZDoom, gameplay recorded with the real engine.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::videos::{ffmpeg_frames, psnr, video};
use common::{run, text};
use videogpt_pipeline::shards::{ClipShards, read_clips_table};
use videogpt_pipeline::sources::video_files::in_test_split;

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

/// (source, label, text, start) of every clip of a split, and its rejects.tsv lines.
fn split_rows(dir: &Path) -> (Vec<(String, Option<i32>, Option<String>)>, Vec<String>) {
    let rows = read_clips_table(&dir.join("clips.parquet")).unwrap();
    let rejects = std::fs::read_to_string(dir.join("rejects.tsv")).unwrap();
    let mut lines: Vec<String> = rejects.lines().skip(1).map(str::to_owned).collect();
    lines.sort();
    (
        rows.into_iter()
            .map(|r| (r.source, r.label, r.text))
            .collect(),
        lines,
    )
}

#[test]
fn ucf101_labels_splits_rejects_and_pixels() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let v = raw.join("UCF-101");
    // Upstream spells the class HandstandPushups and its files HandStandPushups.
    copy(
        &video("opencv-doc/Megamind.avi"),
        &v.join("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"),
    );
    copy(
        &video("opencv-doc/Megamind_bugy.avi"),
        &v.join("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"),
    );
    // tree.avi (Cinepak) declares 444 frames and stores 376 of them as empty
    // "repeat the previous frame" chunks: 68 decode, and it is whole.
    copy(
        &video("opencv-doc/tree.avi"),
        &v.join("HandstandPushups/v_HandStandPushups_g01_c01.avi"),
    );
    copy(
        &video("opencv-doc/vtest.avi"),
        &v.join("HandstandPushups/v_HandStandPushups_g08_c01.avi"),
    );
    std::fs::create_dir_all(v.join("YoYo")).unwrap();
    std::fs::write(v.join("YoYo/v_YoYo_g01_c01.avi"), b"").unwrap();
    std::fs::write(v.join("YoYo/v_YoYo_g08_c01.avi"), vec![7u8; 30_000]).unwrap();
    let whole = std::fs::read(video("opencv-doc/vtest.avi")).unwrap();
    std::fs::write(
        v.join("YoYo/v_YoYo_g09_c01.avi"),
        &whole[..whole.len() / 10],
    )
    .unwrap();
    let lists = raw.join("ucfTrainTestlist");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(
        lists.join("classInd.txt"),
        "1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n3 YoYo\r\n",
    )
    .unwrap();
    std::fs::write(
        lists.join("trainlist01.txt"),
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n\
         HandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n\
         YoYo/v_YoYo_g08_c01.avi 3\r\nYoYo/v_YoYo_g09_c01.avi 3\r\nYoYo/v_YoYo_g10_c01.avi 3\r\n",
    )
    .unwrap();
    std::fs::write(
        lists.join("testlist01.txt"),
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n\
         HandstandPushups/v_HandStandPushups_g01_c01.avi\r\nYoYo/v_YoYo_g01_c01.avi\r\n",
    )
    .unwrap();
    let root = tmp.path().join("datasets");
    let args = [
        "prepare",
        "ucf101",
        raw.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ];
    // The default start policy (random:1) decodes whole videos, so a
    // truncation is seen (`first` stops after one clip's frames).
    let out = run(&[&args[..], &["--seq-len", "8", "--no-progress"]].concat());
    assert_eq!(
        out.status.code(),
        Some(2),
        "rejects give exit status 2: {}",
        text(&out)
    );
    assert!(text(&out).contains("4 inputs rejected"), "{}", text(&out));

    // `prepare ucf101` wrote `ucf101-64/`; the name the user typed finds it.
    for cmd in ["info", "verify"] {
        let out = run(&[cmd, "ucf101", "--root", root.to_str().unwrap()]);
        assert!(out.status.success() && text(&out).contains("ucf101-64"), "{cmd}: {}", text(&out));
    }
    let out = run(&["info", "bair", "--root", root.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("ucf101-64"), "{}", text(&out));

    let train = root.join("ucf101-64/clips/train");
    let (rows, rejects) = split_rows(&train);
    assert_eq!(
        rows,
        [
            (
                "UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi".into(),
                Some(0),
                None
            ),
            (
                "UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi".into(),
                Some(1),
                None
            ),
        ]
    );
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert!(
        rejects[0].starts_with("UCF-101/YoYo/v_YoYo_g08_c01.avi\t\tFFmpeg cannot open it"),
        "{rejects:?}"
    );
    assert!(
        rejects[1].starts_with("UCF-101/YoYo/v_YoYo_g09_c01.avi\t\ttruncated"),
        "{rejects:?}"
    );
    assert!(
        rejects[2].contains("v_YoYo_g10_c01.avi\t5\tlisted in trainlist01.txt but not found"),
        "{rejects:?}"
    );

    let test = root.join("ucf101-64/clips/test");
    let (rows, rejects) = split_rows(&test);
    let sources: Vec<_> = rows.iter().map(|r| (r.0.as_str(), r.1)).collect();
    assert_eq!(
        sources,
        [
            ("UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", Some(0)),
            ("UCF-101/HandstandPushups/v_HandStandPushups_g01_c01.avi", Some(1)),
        ]
    );
    assert_eq!(rejects, ["UCF-101/YoYo/v_YoYo_g01_c01.avi\t\tempty file (0 bytes)"]);

    // The stored pixels are the CLI's decode of the same frames.
    let shards = ClipShards::open(&test).unwrap();
    assert_eq!(shards.clip_shape(), [8, 64, 64, 3]);
    let clip = shards.clip(0).unwrap();
    let start = read_clips_table(&test.join("clips.parquet")).unwrap()[0].start_frame as usize;
    let cli = ffmpeg_frames(&video("opencv-doc/Megamind.avi"), 64, start + 8);
    let cli = &cli[start * 64 * 64 * 3..];
    assert!(psnr(&clip, cli) >= 35.0, "PSNR {}", psnr(&clip, cli));

    // Another split number needs its own lists, and the error names the file.
    let out = run(&[&args[..], &["--split-number", "2", "--no-progress"]].concat());
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("trainlist02.txt"), "{}", text(&out));
}

#[test]
fn tgif_text_missing_gifs_and_a_stable_split() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let gifs = [
        ("houghlinesdemo.gif", "lines are found in a picture"),
        ("camshift_face.gif", "a face is tracked"),
        ("meanshift_face.gif", "a man moves his head"),
        (
            "convolution-example-matrix.gif",
            "a kernel slides over a matrix",
        ),
        ("morph12.gif", "a still shape"),
    ];
    let mut tsv = String::new();
    for (name, description) in gifs {
        copy(
            &video(&format!("opencv-doc/{name}")),
            &raw.join("gifs").join(name),
        );
        tsv += &format!("https://38.media.tumblr.com/x/{name}\t{description}\n");
    }
    // A download cut at 56%: it still decodes, but is no whole GIF.
    let whole = std::fs::read(video("opencv-doc/camshift_face.gif")).unwrap();
    std::fs::write(raw.join("gifs/cut_face.gif"), &whole[..whole.len() * 56 / 100]).unwrap();
    tsv += "https://38.media.tumblr.com/x/cut_face.gif\ta face, cut short\n";
    tsv += "https://38.media.tumblr.com/x/houghlinesdemo.gif\tlines light up one by one\n";
    tsv += "https://38.media.tumblr.com/y/tumblr_gone.gif\ta link that died\n";
    std::fs::write(raw.join("tgif-v1.0.tsv"), tsv).unwrap();
    let root = tmp.path().join("datasets");
    let out = run(&[
        "prepare",
        "tgif",
        raw.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--test-percent",
        "50",
        "--seq-len",
        "8",
        "--start",
        "first",
        "--no-progress",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let mut seen = BTreeMap::new();
    let mut all_rejects = Vec::new();
    for split in ["train", "test"] {
        let (rows, rejects) = split_rows(&root.join("tgif/clips").join(split));
        for (source, label, text) in rows {
            let name = source.trim_start_matches("gifs/").to_owned();
            assert_eq!(
                in_test_split(&name, 50),
                split == "test",
                "{name} in {split}"
            );
            assert_eq!(label, None);
            seen.insert(name, text.unwrap());
        }
        all_rejects.extend(rejects);
    }
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "camshift_face.gif",
            "convolution-example-matrix.gif",
            "houghlinesdemo.gif",
            "meanshift_face.gif"
        ]
    );
    assert_eq!(
        seen["houghlinesdemo.gif"],
        "lines are found in a picture\nlines light up one by one"
    );
    all_rejects.sort();
    assert_eq!(all_rejects.len(), 3, "{all_rejects:?}");
    assert!(
        all_rejects[0].starts_with("gifs/cut_face.gif\t\ttruncated GIF"),
        "{all_rejects:?}"
    );
    assert!(
        all_rejects[1].starts_with("gifs/morph12.gif\t\t1 frames, shorter than one clip"),
        "{all_rejects:?}"
    );
    assert!(
        all_rejects[2].starts_with("gifs/tumblr_gone.gif\t8\tmissing on disk"),
        "{all_rejects:?}"
    );

    // Every split has the same clips.parquet schema, an empty one too: with
    // no test GIFs the test split still has `split` and `text`.
    let schema = |root: &Path, split: &str| {
        let file = std::fs::File::open(root.join("tgif/clips").join(split).join("clips.parquet")).unwrap();
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        builder.schema().fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect::<Vec<_>>()
    };
    assert_eq!(schema(&root, "train"), schema(&root, "test"));
    let root_empty = tmp.path().join("empty-test");
    let out = run(&[
        "prepare", "tgif", raw.to_str().unwrap(), "--root", root_empty.to_str().unwrap(),
        "--test-percent", "0", "--seq-len", "8", "--start", "first", "--no-progress",
    ]);
    assert!(out.status.code() == Some(2) || out.status.success(), "{}", text(&out));
    let names: Vec<String> = schema(&root_empty, "test").into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"text".to_string()) && names.contains(&"split".to_string()), "{names:?}");
    assert_eq!(schema(&root_empty, "train"), schema(&root_empty, "test"));
}

fn python() -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        py.is_file(),
        "{} missing: run ./setup.sh --no-demo (it installs vizdoom)",
        py.display()
    );
    py
}

#[test]
fn vizdoom_collect_then_prepare_gives_moving_frames_with_their_actions() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/collect_vizdoom.py");
    let status = std::process::Command::new(python())
        .arg(&script)
        .args([
            "--out",
            raw.to_str().unwrap(),
            "--scenarios",
            "health_gathering_supreme,defend_the_center",
        ])
        .args(["--episodes", "3", "--max-steps", "40", "--seed", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    let root = tmp.path().join("datasets");
    let out = run(&[
        "prepare",
        "vizdoom",
        raw.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--test-percent",
        "30",
        "--seq-len",
        "8",
        "--start",
        "sliding:8",
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out));

    let actions =
        videogpt_pipeline::sources::vizdoom::read_actions(&raw.join("actions.parquet")).unwrap();
    assert_eq!(actions.dim, 7);
    let by_episode: BTreeMap<_, _> = actions.episodes.into_iter().collect();
    let mut clips = 0;
    for split in ["train", "test"] {
        let dir = root.join("vizdoom/clips").join(split);
        let rows = read_clips_table(&dir.join("clips.parquet")).unwrap();
        let shards = ClipShards::open(&dir).unwrap();
        let frame = 64 * 64 * 3;
        for (id, row) in rows.iter().enumerate() {
            let pixels = shards.clip(id as u64).unwrap();
            let moving = (1..8)
                .filter(|&k| {
                    pixels[(k - 1) * frame..k * frame] != pixels[k * frame..(k + 1) * frame]
                })
                .count();
            assert_eq!(
                moving, 7,
                "{}: only {moving} of 7 frame pairs differ",
                row.source
            );
            let want = &by_episode[&row.source];
            let start = row.start_frame as usize;
            assert_eq!(
                row.actions.as_deref(),
                Some(&want[start * 7..(start + 8) * 7]),
                "{}",
                row.source
            );
            clips += 1;
        }
    }
    // 6 episodes of at most 40 frames, cut into 8-frame clips at step 8.
    let expected: usize = by_episode.values().map(|a| a.len() / 7 / 8).sum();
    assert_eq!(clips, expected);
    assert!(clips >= 6, "{clips} clips");
}
