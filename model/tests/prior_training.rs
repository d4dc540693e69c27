//! The prior end to end on real Moving MNIST tokens: tables from a briefly
//! trained tiny VQ-VAE, the tiny prior's loss falls, an interrupted and
//! resumed run equals an uninterrupted one, sampling decodes to GIF/PNG/MP4,
//! and a table with another grid is refused.

mod common;

use std::path::{Path, PathBuf};

use burn::module::Module;
use videogpt_model::backend::BackendKind;
use videogpt_model::checkpoint;
use videogpt_model::encode::{EncodeOptions, encode_latents};
use videogpt_model::prior::context::FrameEncoderConfig;
use videogpt_model::prior::train::Conditioning;
use videogpt_model::prior::{Condition, PriorConfig};
use videogpt_model::prior::generate::{GenerateOptions, generate};
use videogpt_model::prior::sample::SampleOptions;
use videogpt_model::prior::train::{PriorStepMetrics, PriorTrainOptions, load_prior, train_prior};
use videogpt_model::schedule::LrSchedule;
use videogpt_model::train::{RunMode, TrainOptions, train_vqvae};
use videogpt_model::vqvae::VqVaeConfig;
use videogpt_pipeline::tokens::TokenTable;

/// Token tables of 40 train and 8 test clips; returns the table folder.
fn tables(dir: &Path) -> PathBuf {
    let clips = common::prepare_moving_mnist(dir, 40, 8, 8);
    let run = dir.join("runs/vqvae");
    let options = TrainOptions {
        batch_size: 4,
        steps: 6,
        learning_rate: 1e-3,
        checkpoint_every: 6,
        ..TrainOptions::new(clips.join("train"), "tiny")
    };
    train_vqvae(&run, VqVaeConfig::preset("tiny").unwrap(), options, RunMode::Fresh, false).unwrap();
    let tokens = dir.join("tokens");
    let encode = EncodeOptions { progress: false, ..EncodeOptions::default() };
    encode_latents(&run, &clips, &tokens, &encode).unwrap();
    // The same tokens plus each clip's first frame, in a table of its own.
    let with_frames = EncodeOptions { context_frames: 1, ..encode };
    encode_latents(&run, &clips, &tokens, &with_frames).unwrap();
    tokens.join("vqvae-step-00000006")
}

fn options(table: &Path, steps: u64) -> PriorTrainOptions {
    PriorTrainOptions {
        batch_size: 4,
        steps,
        learning_rate: 3e-3,
        warmup_steps: 2,
        // Constant, so a 10-step run is the first third of a 30-step one
        // (a cosine schedule follows the step target, which these differ in).
        lr_schedule: LrSchedule::Constant,
        checkpoint_every: 10,
        log_every: 1,
        eval_every: 10,
        eval_clips: 8,
        seed: 3,
        backend: BackendKind::Flex,
        ..PriorTrainOptions::new(table.to_path_buf(), "tiny")
    }
}

fn log(run: &Path) -> Vec<PriorStepMetrics> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two samples drawn from the prior into `out` on the CPU, without an MP4.
fn two_samples(out: &Path, sample: SampleOptions) -> GenerateOptions {
    GenerateOptions {
        batch: 2,
        sample,
        label: None,
        actions: None,
        context_clip: None,
        context_split: "test".into(),
        vqvae: None,
        unigram: false,
        out: out.to_path_buf(),
        mp4: false,
        backend: BackendKind::Flex,
        progress: false,
    }
}

#[test]
fn prior_learns_resumes_exactly_and_samples_video() {
    let dir = tempfile::tempdir().unwrap();
    let table = tables(dir.path());
    let meta = TokenTable::open_split(&table, "train").unwrap().meta().clone();
    let config = PriorConfig::preset("tiny", meta.latent_grid, meta.codebook_size).unwrap();

    let straight = dir.path().join("runs/prior-straight");
    train_prior(&straight, config.clone(), options(&table, 30), None, false, false).unwrap();
    let a = log(&straight);
    assert_eq!(a.len(), 30);
    let first = a[..3].iter().map(|m| m.bits_per_dim).sum::<f64>() / 3.0;
    let last = a[27..].iter().map(|m| m.bits_per_dim).sum::<f64>() / 3.0;
    // The zero head starts at log2(codes) bits; 30 steps must learn something.
    assert!((a[0].bits_per_dim - (meta.codebook_size as f64).log2()).abs() < 1e-3, "{}", a[0].bits_per_dim);
    assert!(last < first - 0.5, "bits/dim did not fall: {first:.3} -> {last:.3}");
    assert!(a[29].test_bits_per_dim.is_some() && a[9].test_bits_per_dim.is_some());

    // Interrupted at step 10, resumed to 30: the same log bit for bit.
    let resumed = dir.path().join("runs/prior-resumed");
    train_prior(&resumed, config.clone(), options(&table, 10), None, false, false).unwrap();
    let refused = train_prior(&resumed, config.clone(), options(&table, 30), None, false, false).unwrap_err();
    assert!(refused.to_string().contains("--resume"), "{refused}");
    train_prior(&resumed, config.clone(), options(&table, 30), None, true, false).unwrap();
    let b = log(&resumed);
    let bits = |l: &[PriorStepMetrics]| l.iter().map(|m| (m.step, m.bits_per_dim.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b), "a resumed run must train exactly as an uninterrupted one");

    // Sampling: tokens in range, decoded through the table's VQ-VAE.
    let sample_to = |out: &Path, mp4: bool| {
        let sample = SampleOptions { top_k: Some(50), seed: 1, ..Default::default() };
        generate(&straight, &GenerateOptions { mp4, ..two_samples(out, sample) }).unwrap()
    };
    let out = dir.path().join("samples");
    let summary = sample_to(&out, true);
    assert_eq!(summary.tokens, 2 * 4 * 16 * 16);
    for f in [&summary.gif, &summary.png, summary.mp4.as_ref().unwrap()] {
        assert!(std::fs::metadata(f).unwrap().len() > 500, "{}", f.display());
    }
    let read_tokens = |out: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join("tokens.json")).unwrap()).unwrap()
    };
    let saved = read_tokens(&out);
    let rows = saved["tokens"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().flat_map(|r| r.as_array().unwrap()).all(|t| t.as_u64().unwrap() < meta.codebook_size as u64));
    // Same seed, same samples.
    let again = dir.path().join("samples-again");
    sample_to(&again, false);
    assert_eq!(saved["tokens"], read_tokens(&again)["tokens"]);

    // The unigram floor: codes drawn only where the train tokens have them,
    // as often as there (5% of the total variation over 2 x 1,024 draws).
    let floor = dir.path().join("unigram");
    let sample = SampleOptions { seed: 3, ..Default::default() };
    let summary = generate(&straight, &GenerateOptions { unigram: true, ..two_samples(&floor, sample) }).unwrap();
    assert_eq!(summary.samples, 2);
    let drawn: Vec<u64> = read_tokens(&floor)["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|t| t.as_u64().unwrap()))
        .collect();
    let train = TokenTable::open_split(&table, "train").unwrap().read(None).unwrap();
    let mut want = vec![0f64; meta.codebook_size];
    train.tokens.iter().for_each(|&t| want[t as usize] += 1.0 / train.tokens.len() as f64);
    let mut got = vec![0f64; meta.codebook_size];
    drawn.iter().for_each(|&t| got[t as usize] += 1.0 / drawn.len() as f64);
    assert!(drawn.iter().all(|&t| want[t as usize] > 0.0), "a code the train tokens never use was drawn");
    let variation = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).sum::<f64>() / 2.0;
    assert!(variation < 0.05 + 0.5 * (meta.codebook_size as f64 / drawn.len() as f64).sqrt(), "total variation {variation:.3}");

    // Loaded weights give the same logits as the trained ones saved.
    let device = burn::tensor::Device::flex();
    let latest = checkpoint::latest(&straight).unwrap().unwrap();
    let (p1, _, _) = load_prior(&latest, &device).unwrap();
    let (p2, _, _) = load_prior(&latest, &device).unwrap();
    let x = burn::tensor::Tensor::<2, burn::tensor::Int>::zeros([1, 1024], &device);
    assert_eq!(
        videogpt_model::data::float_values(p1.valid().forward(x.clone(), &Condition::default())),
        videogpt_model::data::float_values(p2.valid().forward(x, &Condition::default()))
    );

    // Frame conditioning: the table with frames trains a prior whose
    // cross-attention reads the first frame, and samples follow the
    // frames of the test clips.
    let framed = table.with_file_name("vqvae-step-00000006-context-1");
    let framed_meta = TokenTable::open_split(&framed, "train").unwrap().meta().clone();
    assert_eq!(framed_meta.context_frames, 1);
    let context = FrameEncoderConfig::new(framed_meta.context_shape().unwrap()).with_width(16).with_blocks_per_stage(1);
    let frames_options = |table: &Path| PriorTrainOptions {
        conditioning: Conditioning::Frames,
        ..options(table, 6)
    };
    let refused = train_prior(
        &dir.path().join("runs/prior-no-frames"),
        config.clone().with_context(Some(context.clone())),
        frames_options(&table),
        None,
        false,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(refused.contains("--context-frames"), "{refused}");
    let framed_run = dir.path().join("runs/prior-frames");
    train_prior(&framed_run, config.clone().with_context(Some(context)), frames_options(&framed), None, false, false).unwrap();
    let f = log(&framed_run);
    assert_eq!(f.len(), 6);
    assert!(f[5].bits_per_dim < f[0].bits_per_dim, "{} -> {}", f[0].bits_per_dim, f[5].bits_per_dim);
    assert!(f[5].test_bits_per_dim.is_some());
    let framed_out = dir.path().join("framed-samples");
    let sample = SampleOptions { seed: 2, ..Default::default() };
    let summary = generate(&framed_run, &two_samples(&framed_out, sample)).unwrap();
    assert_eq!(summary.samples, 2);
    let saved = read_tokens(&framed_out);
    assert_eq!(saved["context_clips"].as_array().unwrap().len(), 2);

    // A prior built for another grid refuses the tables, naming both.
    let other = PriorConfig::preset("tiny", [8, 16, 16], meta.codebook_size).unwrap();
    let err = train_prior(&dir.path().join("runs/other"), other, options(&table, 2), None, false, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[4, 16, 16]") && err.contains("[8, 16, 16]"), "{err}");
}
