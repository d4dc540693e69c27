//! Upstream-layout fixtures for tests and benchmarks. Real BAIR TFRecords
//! cannot be downloaded here, so tests write files in exactly the upstream
//! layout (TFRecord framing, tf.train.Example keys) with frames that look
//! like video: a textured background with a moving, shaded square. Also the
//! `ffprobe`/`ffmpeg` CLI helpers that video tests and benchmarks compare with.

use std::path::{Path, PathBuf};

use crate::rng::SplitMix64;
use crate::sources::bair::{self, ACTION_DIM, FRAME_BYTES, FRAME_SIDE};
use crate::sources::tfrecord;

/// One trajectory as written, for comparing against what `prepare` stored.
#[derive(Debug, Clone)]
pub struct Trajectory {
    pub file: PathBuf,
    pub record: u64,
    /// `[n, 64, 64, 3]`.
    pub frames: Vec<u8>,
    /// `[n, 4]`.
    pub actions: Vec<f32>,
}

/// Frames of a square moving over a fixed textured background.
pub fn synthetic_frames(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    let background: Vec<u8> = (0..FRAME_BYTES)
        .map(|_| 90 + (rng.next_u64() % 24) as u8)
        .collect();
    let (mut y, mut x) = (rng.below(48) as i64, rng.below(48) as i64);
    let (dy, dx) = (rng.below(5) as i64 - 2, rng.below(5) as i64 - 2);
    let colour = [
        rng.below(256) as u8,
        rng.below(256) as u8,
        rng.below(256) as u8,
    ];
    let mut frames = Vec::with_capacity(n * FRAME_BYTES);
    for _ in 0..n {
        let mut f = background.clone();
        for r in y..y + 16 {
            for c in x..x + 16 {
                let p = ((r as usize) * FRAME_SIDE + c as usize) * 3;
                f[p..p + 3].copy_from_slice(&colour);
            }
        }
        frames.extend_from_slice(&f);
        y = (y + dy).clamp(0, 48);
        x = (x + dx).clamp(0, 48);
    }
    frames
}

/// Writes `files` TFRecord files of `per_file` trajectories of `frames`
/// steps into `dir` (named like upstream: `traj_<a>_to_<b>.tfrecords`).
pub fn write_bair_split(
    dir: &Path,
    files: usize,
    per_file: usize,
    frames: usize,
    seed: u64,
) -> std::io::Result<Vec<Trajectory>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    for f in 0..files {
        let path = dir.join(format!(
            "traj_{}_to_{}.tfrecords",
            f * per_file,
            (f + 1) * per_file - 1
        ));
        let mut bytes = Vec::new();
        for record in 0..per_file {
            let mut rng = SplitMix64::for_item(seed, &path.display().to_string(), record as u64);
            let pixels = synthetic_frames(&mut rng, frames);
            let actions: Vec<f32> = (0..frames * ACTION_DIM)
                .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
                .collect();
            let states: Vec<f32> = (0..frames * 3).map(|_| rng.next_f64() as f32).collect();
            tfrecord::write_record(
                &mut bytes,
                &bair::encode_trajectory(&pixels, &actions, &states),
            )?;
            out.push(Trajectory {
                file: path.clone(),
                record: record as u64,
                frames: pixels,
                actions,
            });
        }
        std::fs::write(&path, bytes)?;
    }
    Ok(out)
}

/// Writes a NumPy v1 `.npy` file of a C-order uint8 array, as numpy does
/// (header padded so the data starts on a 64-byte boundary).
pub fn write_npy_u8(path: &Path, shape: &[usize], data: &[u8]) -> std::io::Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '|u1', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ")
    );
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes)
}

/// Width and height of a file's first video stream, from the `ffprobe` CLI.
pub fn ffprobe_size(path: &Path) -> std::io::Result<(u32, u32)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.trim().split(',').map(|v| v.parse::<u32>());
    match (it.next(), it.next()) {
        (Some(Ok(w)), Some(Ok(h))) => Ok((w, h)),
        _ => Err(std::io::Error::other(format!(
            "ffprobe found no video size in {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ))),
    }
}

/// The `ffmpeg -vf` chain that resizes and crops `path` as our decoder does.
pub fn ffmpeg_filter_for(path: &Path, resolution: u32) -> std::io::Result<String> {
    let (w, h) = ffprobe_size(path)?;
    Ok(crate::video::CropGeometry::new(w, h, resolution)
        .ffmpeg_filter(crate::video::ResizeFilter::Bilinear))
}

/// Panics, naming `what` and the file, unless `one` and `other` hold the same
/// files (by their paths below them) with the same bytes.
pub fn assert_same_tree(one: &Path, other: &Path, what: &str) {
    let (a, b) = (tree_files(one).unwrap(), tree_files(other).unwrap());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}: other files");
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{what}: {name} differs");
    }
}

/// Every file under `dir`, by its path below `dir`, with its bytes (to
/// compare two outputs byte for byte).
pub fn tree_files(dir: &Path) -> std::io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap_or(&path).display().to_string();
                out.insert(name, std::fs::read(&path)?);
            }
        }
    }
    Ok(out)
}
pub mod slurm;
pub mod faults;
