//! End to end on real Moving MNIST clips (tiny preset): training lowers the
//! loss, a killed-and-resumed run equals an uninterrupted one, checkpoints
//! and previews are written, eval reports NMSE, a fresh run refuses a folder
//! with checkpoints.

mod common;

use std::path::Path;

use videogpt_model::backend::BackendKind;
use videogpt_model::checkpoint;
use videogpt_model::eval::eval_vqvae;
use burn::module::Module;
use videogpt_model::train::{RunMode, StepMetrics, TrainOptions, reconstruct, train_vqvae};
use videogpt_model::vqvae::VqVaeConfig;

fn options(clips: &Path, steps: u64) -> TrainOptions {
    TrainOptions {
        preview_split: Some(clips.join("test")),
        batch_size: 4,
        steps,
        learning_rate: 1e-3,
        seed: 5,
        checkpoint_every: 10,
        log_every: 1,
        backend: BackendKind::Flex,
        ..TrainOptions::new(clips.join("train"), "tiny")
    }
}

fn metrics(run: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_lowers_the_loss_resumes_exactly_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let clips = common::prepare_moving_mnist(dir.path(), 48, 8, 8);
    let config = VqVaeConfig::preset("tiny").unwrap();

    // Uninterrupted: 30 steps.
    let straight = dir.path().join("straight");
    let summary = train_vqvae(&straight, config.clone(), options(&clips, 30), RunMode::Fresh, false).unwrap();
    assert_eq!(summary.step, 30);
    let log = metrics(&straight);
    assert_eq!(log.len(), 30);
    let first = log[..3].iter().map(|m| m.loss).sum::<f64>() / 3.0;
    let last = log[27..].iter().map(|m| m.loss).sum::<f64>() / 3.0;
    assert!(last < 0.7 * first, "loss did not fall: {first:.4} -> {last:.4}");
    assert!(log.iter().all(|m| m.loss.is_finite() && m.perplexity >= 1.0));

    // Interrupted after the step-10 checkpoint, resumed to 30.
    let resumed = dir.path().join("resumed");
    train_vqvae(&resumed, config.clone(), options(&clips, 10), RunMode::Fresh, false).unwrap();
    // A fresh run into a folder with checkpoints refuses and keeps them.
    let refused = train_vqvae(&resumed, config.clone(), options(&clips, 30), RunMode::Fresh, false)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("--resume"), "{refused}");
    let summary = train_vqvae(&resumed, config, options(&clips, 30), RunMode::Resume, false).unwrap();
    assert_eq!(summary.step, 30);

    let a = checkpoint::latest(&straight).unwrap().unwrap();
    let b = checkpoint::latest(&resumed).unwrap().unwrap();
    assert!(a.ends_with("step-00000030") && b.ends_with("step-00000030"));
    // Same weights, codebook and BatchNorm statistics: same codes and the
    // same reconstruction, bit for bit, on the test clips.
    let device = burn::tensor::Device::flex();
    let (ma, _, sa) = checkpoint::load_model(&a, &device).unwrap();
    let (mb, _, sb) = checkpoint::load_model(&b, &device).unwrap();
    assert_eq!(sa, sb);
    let shards = videogpt_pipeline::shards::ClipShards::open(&clips.join("test")).unwrap();
    let batch = videogpt_model::data::read_batch(&shards, &[0, 1, 2, 3]).unwrap();
    let ra = reconstruct(&ma.valid(), &batch, &device);
    let rb = reconstruct(&mb.valid(), &batch, &device);
    assert!(ra == rb, "a resumed run must reconstruct exactly as an uninterrupted one");
    let (la, lb) = (metrics(&straight), metrics(&resumed));
    assert_eq!(lb.len(), 30);
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!((x.step, x.loss.to_bits()), (y.step, y.loss.to_bits()));
    }

    // Previews and eval.
    for ext in ["png", "gif"] {
        assert!(straight.join(format!("previews/step-00000030.{ext}")).is_file());
    }
    let report = eval_vqvae(&straight, &clips.join("test"), 4, None, BackendKind::Flex, false).unwrap();
    assert_eq!(report.clips, 8);
    assert!(report.nmse.is_finite() && report.nmse > 0.0 && report.nmse < 2.0, "{report:?}");
    assert!(report.codes_used >= 2, "{report:?}");

    // Clips of another shape are refused, naming the shape and the split.
    // (In this test, not a parallel one: flex splits its parallel reductions
    // by how rayon's workers steal, so a training running beside another in
    // the same process is not bit-reproducible; one at a time, it is.)
    let other = tempfile::tempdir().unwrap();
    let other_clips = common::prepare_moving_mnist(other.path(), 4, 4, 16);
    let err = eval_vqvae(&straight, &other_clips.join("test"), 4, None, BackendKind::Flex, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("16x64x64x1") && err.contains("test"), "{err}");
}
