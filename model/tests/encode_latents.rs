//! `encode-latents` end to end on real Moving MNIST clips: the tokens in the
//! tables are exactly the encoder's argmin codes, the metadata names the
//! checkpoint's SHA-256, a rerun writes nothing, another checkpoint goes to
//! another folder.

mod common;

use burn::module::Module;
use videogpt_model::backend::BackendKind;
use videogpt_model::checkpoint;
use videogpt_model::data;
use videogpt_model::encode::{EncodeOptions, encode_latents, table_name};
use videogpt_model::train::{RunMode, TrainOptions, train_vqvae};
use videogpt_model::vqvae::VqVaeConfig;
use videogpt_pipeline::shards::ClipShards;
use videogpt_pipeline::shards::format::sha256_file;
use videogpt_pipeline::tasks::TaskSlice;
use videogpt_pipeline::testing::assert_same_tree;
use videogpt_pipeline::tokens::{TokenExpectation, TokenTable};

#[test]
fn tables_hold_the_encoders_codes_exactly_and_reruns_do_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clips = common::prepare_moving_mnist(dir.path(), 24, 10, 8);
    let run = dir.path().join("runs/vqvae-mm");
    let options = TrainOptions {
        batch_size: 4,
        steps: 4,
        learning_rate: 1e-3,
        checkpoint_every: 2,
        backend: BackendKind::Flex,
        ..TrainOptions::new(clips.join("train"), "tiny")
    };
    let config = VqVaeConfig::preset("tiny").unwrap();
    train_vqvae(&run, config, options, RunMode::Fresh, false).unwrap();
    let latest = checkpoint::latest(&run).unwrap().unwrap();
    let tokens_root = dir.path().join("tokens");
    let encode = EncodeOptions {
        batch_size: 3,
        rows_per_part: 4,
        progress: false,
        ..EncodeOptions::default()
    };
    let summaries = encode_latents(&run, &clips, &tokens_root, &encode).unwrap();
    assert_eq!(
        summaries.iter().map(|s| (s.split.as_str(), s.clips, s.encoded, s.parts)).collect::<Vec<_>>(),
        vec![("train", 24, 24, 6), ("test", 10, 10, 3)]
    );
    let name = table_name(&latest);
    assert_eq!(name, "vqvae-mm-step-00000004");

    // The codes, recomputed directly from the checkpoint.
    let device = burn::tensor::Device::flex();
    let (model, run_config, _) = checkpoint::load_model(&latest, &device).unwrap();
    let model = model.valid();
    for split in ["train", "test"] {
        let table = TokenTable::open_split(&tokens_root.join(&name), split).unwrap();
        let meta = table.meta();
        assert_eq!(meta.checkpoint_sha256, sha256_file(&latest.join("model.bpk")).unwrap());
        assert_eq!(meta.latent_grid, [4, 16, 16]);
        assert_eq!(meta.codebook_size, 128);
        table
            .check(&TokenExpectation {
                latent_grid: run_config.model.latent_shape(),
                codebook_size: run_config.model.codes,
            })
            .unwrap();
        let rows = table.read(None).unwrap();
        let shards = ClipShards::open(&clips.join(split)).unwrap();
        let ids: Vec<u64> = (0..shards.len()).collect();
        let batch = data::read_batch(&shards, &ids).unwrap();
        let codes: Vec<u16> = data::int_values(model.encode(batch.tensor(&device)))
            .into_iter()
            .map(|c| c as u16)
            .collect();
        assert_eq!(rows.clip_ids, ids);
        assert!(rows.tokens == codes, "{split}: stored tokens differ from the encoder's codes");
    }

    // Rerun: nothing to encode, part files untouched.
    let part = tokens_root.join(&name).join("data/train/part-00000.parquet");
    let before = std::fs::metadata(&part).unwrap().modified().unwrap();
    let again = encode_latents(&run, &clips, &tokens_root, &encode).unwrap();
    assert!(again.iter().all(|s| s.encoded == 0));
    assert_eq!(std::fs::metadata(&part).unwrap().modified().unwrap(), before);

    // An earlier checkpoint writes its own table folder.
    let earlier = checkpoint::checkpoints_dir(&run).join("step-00000002");
    encode_latents(&earlier, &clips, &tokens_root, &EncodeOptions { splits: vec!["test".into()], ..encode.clone() }).unwrap();
    let other = TokenTable::open_split(&tokens_root.join("vqvae-mm-step-00000002"), "test").unwrap();
    assert_ne!(other.meta().checkpoint_sha256, TokenTable::open_split(&tokens_root.join(&name), "test").unwrap().meta().checkpoint_sha256);
}

/// `--task I --tasks N`: each task encodes its parts, the last to finish (or
/// a merge) writes the manifests, and the table is byte for byte the one a
/// single process writes.
#[test]
fn tasks_encode_their_parts_and_merge_into_the_single_process_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let clips = common::prepare_moving_mnist(dir.path(), 20, 6, 8);
    let run = dir.path().join("runs/vqvae-mm");
    let options = TrainOptions {
        batch_size: 4,
        steps: 2,
        backend: BackendKind::Flex,
        ..TrainOptions::new(clips.join("train"), "tiny")
    };
    train_vqvae(
        &run,
        VqVaeConfig::preset("tiny").unwrap(),
        options,
        RunMode::Fresh,
        false,
    )
    .unwrap();
    let encode = EncodeOptions {
        batch_size: 3,
        rows_per_part: 4,
        progress: false,
        ..EncodeOptions::default()
    };
    // The same dataset folder name: the cards name it.
    let (one, two) = (
        dir.path().join("one/mm/tokens"),
        dir.path().join("two/mm/tokens"),
    );
    encode_latents(&run, &clips, &one, &encode).unwrap();
    let task = |index: usize, merge: bool| EncodeOptions {
        task: TaskSlice { index, count: 2 },
        merge,
        ..encode.clone()
    };
    let first = encode_latents(&run, &clips, &two, &task(1, false)).unwrap();
    // Train has 5 parts (task 1 owns 2), test 2 (task 1 owns 1).
    assert_eq!(
        first
            .iter()
            .map(|s| (s.encoded, s.parts_pending))
            .collect::<Vec<_>>(),
        vec![(8, 3), (2, 1)]
    );
    let early = encode_latents(&run, &clips, &two, &task(0, true))
        .unwrap_err()
        .to_string();
    assert!(
        early.contains("3 of 5 parts are not encoded yet (part-00000.parquet"),
        "{early}"
    );
    let last = encode_latents(&run, &clips, &two, &task(0, false)).unwrap();
    assert!(last.iter().all(|s| s.parts_pending == 0));
    assert_same_tree(&one, &two, "2 tasks");
    encode_latents(&run, &clips, &two, &task(0, true)).unwrap();
    assert_same_tree(&one, &two, "a merge after them");
}
