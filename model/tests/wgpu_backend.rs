//! The GPU code path: a few VQ-VAE training steps on burn's wgpu backend.
//! On a machine without a GPU this runs on Mesa's lavapipe (software
//! Vulkan, installed by setup.sh), so the path cannot rot unnoticed.

mod common;

use videogpt_model::backend::BackendKind;
use videogpt_model::checkpoint::VqVaeRunConfig;
use videogpt_model::data::read_batch;
use videogpt_model::train::{TrainOptions, Trainer};
use videogpt_model::vqvae::VqVaeConfig;
use videogpt_pipeline::shards::ClipShards;

#[test]
fn wgpu_training_steps_lower_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let clips = common::prepare_moving_mnist(dir.path(), 4, 1, 4);
    let shards = ClipShards::open(&clips.join("train")).unwrap();
    let batch = read_batch(&shards, &[0, 1]).unwrap();
    let model = VqVaeConfig::preset("tiny").unwrap().for_clips(shards.clip_shape());
    let config = VqVaeRunConfig {
        model,
        train: TrainOptions {
            learning_rate: 3e-3,
            backend: BackendKind::Wgpu,
            ..TrainOptions::new(clips.join("train"), "tiny")
        },
        data_mean: 0.0,
        data_variance: 0.05,
    };
    let mut trainer = Trainer::new(config);
    let losses: Vec<f64> = (0..8).map(|_| trainer.step(&batch).loss).collect();
    eprintln!("wgpu losses: {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(
        losses[7] < 0.8 * losses[0],
        "loss did not fall on wgpu: {losses:?}"
    );
}

/// I3D (FVD's feature network) on wgpu gives the logits it gives on flex,
/// for a batch of two 9-frame clips (the fewest frames I3D takes).
#[test]
fn wgpu_i3d_logits_match_flex() {
    use videogpt_model::fvd::Embedder;
    let weights = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../checkpoints/i3d/i3d-kinetics-400.safetensors");
    assert!(weights.is_file(), "{} missing: run ./setup.sh --no-demo", weights.display());
    let dir = tempfile::tempdir().unwrap();
    let clips = common::prepare_moving_mnist(dir.path(), 2, 1, 9);
    let shards = ClipShards::open(&clips.join("train")).unwrap();
    let clips: Vec<Vec<u8>> = (0..2).map(|i| shards.clip(i).unwrap()).collect();
    let refs: Vec<&[u8]> = clips.iter().map(|c| c.as_slice()).collect();
    let shape = shards.clip_shape();
    let logits = |backend| {
        let embedder = Embedder::new(&weights, backend, 2).unwrap();
        embedder.logits(&refs, shape, |_| {}).unwrap()
    };
    let (gpu, cpu) = (logits(BackendKind::Wgpu), logits(BackendKind::Flex));
    let max_err = gpu.iter().zip(&cpu).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!("I3D wgpu vs flex: max |difference| {max_err:.2e}");
    assert_eq!(gpu.len(), 800);
    assert!(max_err < 1e-2, "I3D logits on wgpu differ from flex by {max_err}");
}
