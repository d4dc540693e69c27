//! Token tables end to end: written over a real prepared split (BAIR layout,
//! with actions) and a labelled clips table, read back exactly, resumed,
//! refused on a checkpoint mismatch, and summarised with polars.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use videogpt_pipeline::shards::metadata::Conditioning;
use videogpt_pipeline::shards::{ClipIndex, ClipRecord, read_clips_table, write_clips_table};
use videogpt_pipeline::testing::write_bair_split;
use videogpt_pipeline::tokens::stats::entropy_bits;
use videogpt_pipeline::tokens::layout::{data_dir, manifest_path};
use videogpt_pipeline::tokens::{
    TablePlan, TokenBatches, TokenExpectation, TokenTable, TokenTableMeta, token_stats,
};

const GRID: [usize; 3] = [4, 4, 4];
const CODES: usize = 32;

/// A prepared BAIR-layout train split (with actions) under `dir`.
fn prepared_bair(dir: &Path) -> PathBuf {
    let raw = dir.join("raw");
    write_bair_split(&raw.join("softmotion30_44k/train"), 2, 3, 30, 1).unwrap();
    write_bair_split(&raw.join("softmotion30_44k/test"), 1, 1, 30, 2).unwrap();
    let root = dir.join("datasets");
    let out = run(&[
        "prepare", "bair", raw.to_str().unwrap(), "--root", root.to_str().unwrap(),
        "--start", "sliding:2", "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    root.join("bair/clips/train")
}

fn meta_for(split_dir: &Path, sha: &str) -> TokenTableMeta {
    let index = ClipIndex::read(split_dir).unwrap();
    TokenTableMeta {
        dataset: index.dataset,
        split: index.split,
        table: "test-table".into(),
        latent_grid: GRID,
        codebook_size: CODES,
        checkpoint_sha256: sha.into(),
        checkpoint: "runs/test/checkpoints/step-00000001".into(),
        clip_shape: index.clip_shape,
        preprocessing: index.preprocessing,
        context_frames: 0,
    }
}

/// Deterministic, skewed tokens for a clip (what an encoder would give).
fn tokens_of(clip: u64) -> Vec<u16> {
    let len: usize = GRID.iter().product();
    (0..len)
        .map(|p| (((clip as usize * 7 + p * 3) % 11 + (p % 5) * (p % 3)) % CODES) as u16)
        .collect()
}

fn write_all(plan: &TablePlan) -> usize {
    let pending = plan.pending();
    for part in &pending {
        let tokens: Vec<u16> = part.clip_ids().flat_map(tokens_of).collect();
        plan.write(part, &tokens, None).unwrap();
    }
    plan.finish().unwrap();
    pending.len()
}

#[test]
fn tokens_and_actions_round_trip_and_reruns_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let split = prepared_bair(dir.path());
    let clips = read_clips_table(&split.join("clips.parquet")).unwrap();
    assert!(clips.len() > 10, "{} clips", clips.len());
    let table_dir = data_dir(&dir.path().join("tokens/test-step-00000001"), "train");
    let meta = meta_for(&split, "aa");
    let plan = TablePlan::new(&split, &table_dir, meta.clone(), 4, false).unwrap();
    let parts = plan.parts().len();
    assert_eq!(parts, clips.len().div_ceil(4));
    assert_eq!(write_all(&plan), parts);

    let table = TokenTable::open(&table_dir).unwrap();
    assert_eq!(table.meta(), &meta);
    assert_eq!(table.rows(), clips.len() as u64);
    let rows = table.read(None).unwrap();
    assert_eq!(rows.len, 64);
    for (i, clip) in clips.iter().enumerate() {
        assert_eq!(rows.clip_ids[i], clip.clip_id);
        assert_eq!(rows.row(i), tokens_of(clip.clip_id).as_slice());
        assert_eq!(rows.actions.as_ref().unwrap()[i], clip.actions);
    }

    // A rerun with the same checkpoint: nothing pending, files untouched.
    let before = std::fs::metadata(table_dir.join("part-00000.parquet")).unwrap().modified().unwrap();
    let again = TablePlan::new(&split, &table_dir, meta.clone(), 4, false).unwrap();
    assert!(again.pending().is_empty());
    assert_eq!(write_all(&again), 0);
    let after = std::fs::metadata(table_dir.join("part-00000.parquet")).unwrap().modified().unwrap();
    assert_eq!(before, after);

    // Interrupted: one part and the manifest gone -> exactly that part is redone.
    std::fs::remove_file(table_dir.join("part-00001.parquet")).unwrap();
    std::fs::remove_file(manifest_path(&table_dir)).unwrap();
    assert!(TokenTable::open(&table_dir).unwrap_err().to_string().contains("meta/train.json"));
    let resumed = TablePlan::new(&split, &table_dir, meta, 4, false).unwrap();
    let pending = resumed.pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].index, 1);
    write_all(&resumed);
    assert_eq!(TokenTable::open(&table_dir).unwrap().read(None).unwrap().tokens, rows.tokens);
}

#[test]
fn context_frames_round_trip_in_their_own_column() {
    let dir = tempfile::tempdir().unwrap();
    let split = prepared_bair(dir.path());
    let clips = read_clips_table(&split.join("clips.parquet")).unwrap();
    let table_dir = data_dir(&dir.path().join("tokens/t-context-1"), "train");
    let meta = TokenTableMeta { context_frames: 1, ..meta_for(&split, "dd") };
    let frame_len = meta.context_len();
    let [_, h, w, c] = meta.clip_shape;
    assert_eq!(frame_len, h * w * c);
    let frame_of = |clip: u64| -> Vec<u8> { (0..frame_len).map(|i| ((i as u64 * 31 + clip * 7) % 251) as u8).collect() };
    let plan = TablePlan::new(&split, &table_dir, meta.clone(), 4, false).unwrap();
    for part in plan.pending() {
        let tokens: Vec<u16> = part.clip_ids().flat_map(tokens_of).collect();
        let frames: Vec<u8> = part.clip_ids().flat_map(frame_of).collect();
        // The wrong number of frame bytes is refused, naming the file.
        let err = plan.write(&part, &tokens, Some(&frames[1..])).unwrap_err().to_string();
        assert!(err.contains("context-frame bytes") && err.contains("part-"), "{err}");
        plan.write(&part, &tokens, Some(&frames)).unwrap();
    }
    plan.finish().unwrap();

    let table = TokenTable::open(&table_dir).unwrap();
    assert_eq!(table.meta().context_frames, 1);
    assert_eq!(table.meta().context_shape(), Some([1, h, w, c]));
    let rows = table.read(None).unwrap();
    assert_eq!(rows.frame_len, frame_len);
    for (i, clip) in clips.iter().enumerate() {
        assert_eq!(rows.frames_of(i).unwrap(), frame_of(clip.clip_id).as_slice());
        assert_eq!(rows.row(i), tokens_of(clip.clip_id).as_slice());
    }
    let batch = TokenBatches::new(Arc::new(rows), 3, 1, 0).next().unwrap();
    let frames = batch.frames.unwrap();
    for (k, id) in batch.clip_ids.iter().enumerate() {
        assert_eq!(&frames[k * frame_len..(k + 1) * frame_len], frame_of(*id).as_slice());
    }
}

#[test]
fn another_checkpoint_is_refused_until_overwrite_and_mismatched_grids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let split = prepared_bair(dir.path());
    let table_dir = data_dir(&dir.path().join("tokens/t"), "train");
    write_all(&TablePlan::new(&split, &table_dir, meta_for(&split, "aa"), 8, false).unwrap());

    let err = TablePlan::new(&split, &table_dir, meta_for(&split, "bb"), 8, false).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("--overwrite") && msg.contains("another checkpoint"), "{msg}");
    // Refusing kept the table.
    assert_eq!(TokenTable::open(&table_dir).unwrap().meta().checkpoint_sha256, "aa");
    let plan = TablePlan::new(&split, &table_dir, meta_for(&split, "bb"), 8, true).unwrap();
    assert_eq!(plan.pending().len(), plan.parts().len());
    write_all(&plan);
    let table = TokenTable::open(&table_dir).unwrap();
    assert_eq!(table.meta().checkpoint_sha256, "bb");

    table
        .check(&TokenExpectation { latent_grid: GRID, codebook_size: CODES })
        .unwrap();
    let msg = table
        .check(&TokenExpectation { latent_grid: [8, 4, 4], codebook_size: 1024 })
        .unwrap_err()
        .to_string();
    assert!(msg.contains("[4, 4, 4]") && msg.contains("[8, 4, 4]") && msg.contains("1024"), "{msg}");
}

/// A clips table with labels (as UCF-101 has) and an index of its 10 clips,
/// made from the BAIR index.
fn labelled_split(dir: &Path) -> (PathBuf, Vec<ClipRecord>) {
    let bair = prepared_bair(dir);
    let split = dir.join("labelled");
    std::fs::create_dir_all(&split).unwrap();
    let mut index = ClipIndex::read(&bair).unwrap();
    index.shards.truncate(1);
    index.shards[0].clips = 10;
    index.num_clips = 10;
    let records: Vec<ClipRecord> = (0..10)
        .map(|i| ClipRecord {
            clip_id: i,
            shard: 0,
            index_in_shard: i as u32,
            video: i,
            source: format!("v_{i}.avi"),
            start_frame: 0,
            label: Some((i % 3) as i32),
            text: None,
            actions: None,
            decode_errors: 0,
        })
        .collect();
    write_clips_table(&split.join("clips.parquet"), "labelled", &records, Conditioning { label: true, ..Conditioning::default() }).unwrap();
    // The index records the table it is written beside.
    index.clips_table_sha256 = Some(videogpt_pipeline::shards::format::sha256_file(&split.join("clips.parquet")).unwrap());
    index.write(&split).unwrap();
    (split, records)
}

#[test]
fn label_filter_shuffled_batches_and_polars_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let (split, records) = labelled_split(dir.path());
    let table_dir = data_dir(&dir.path().join("tokens/t"), "labelled");
    write_all(&TablePlan::new(&split, &table_dir, meta_for(&split, "cc"), 3, false).unwrap());
    let table = TokenTable::open(&table_dir).unwrap();

    let only = table.read(Some(&[1])).unwrap();
    assert_eq!(only.clip_ids, vec![1, 4, 7]);
    assert_eq!(only.labels.as_ref().unwrap(), &vec![Some(1); 3]);
    assert_eq!(only.row(1), tokens_of(4).as_slice());

    // Batches: each epoch visits every row once; the same seed, the same stream.
    let rows = Arc::new(table.read(None).unwrap());
    let stream = |seed| -> Vec<u64> {
        TokenBatches::new(rows.clone(), 5, seed, 0)
            .take(4)
            .flat_map(|b| {
                assert_eq!(b.tokens.len(), 5 * 64);
                b.clip_ids
            })
            .collect()
    };
    let a = stream(9);
    let mut epoch: Vec<u64> = a[..10].to_vec();
    epoch.sort();
    assert_eq!(epoch, (0..10).collect::<Vec<_>>());
    assert_eq!(a, stream(9));
    assert_ne!(a, stream(10));
    // Resuming at sample 10 continues the same stream.
    let resumed: Vec<u64> = TokenBatches::new(rows.clone(), 5, 9, 10).take(2).flat_map(|b| b.clip_ids).collect();
    assert_eq!(resumed, a[10..]);

    // Statistics from polars equal a direct count.
    let stats = token_stats(&table, 5).unwrap();
    let all: Vec<u16> = records.iter().flat_map(|r| tokens_of(r.clip_id)).collect();
    let mut hist = vec![0u64; CODES];
    for &t in &all {
        hist[t as usize] += 1;
    }
    assert_eq!(stats.code_counts, hist);
    assert_eq!(stats.tokens, 640);
    assert_eq!(stats.clips, 10);
    assert!((stats.entropy_bits - entropy_bits(hist.iter().copied())).abs() < 1e-12);
    assert_eq!(stats.dead_codes, hist.iter().filter(|&&n| n == 0).count());
    assert_eq!(stats.top_codes[0].count, *hist.iter().max().unwrap());
    // Position 0's code is (clip * 7) % 11 over 10 clips: 10 distinct codes.
    assert!((stats.entropy_per_position[0] - 10f64.log2()).abs() < 1e-9);
    assert_eq!(stats.entropy_per_position.len(), 64);
    assert_eq!(stats.entropy_per_time.len(), 4);
    let labels = stats.per_label.unwrap();
    assert_eq!(labels.iter().map(|l| (l.label, l.clips)).collect::<Vec<_>>(), vec![(0, 4), (1, 3), (2, 3)]);
}

#[test]
fn entropy_of_a_known_histogram() {
    assert!((entropy_bits([1u64, 1, 1, 1]) - 2.0).abs() < 1e-12);
    assert!((entropy_bits([5u64, 0, 0]) - 0.0).abs() < 1e-12);
    assert!((entropy_bits([1u64, 3]) - 0.811_278_124_459_132_8).abs() < 1e-12);
}

/// Rewrites the table of `split_dir` (today's layout) the way version 1
/// stored it: flat `tokens`, no `table` column, `table.json` in the split
/// folder `old_dir`.
fn write_version_1(split_dir: &Path, old_dir: &Path) {
    use arrow::array::{Array, AsArray, FixedSizeListArray, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::properties::WriterProperties;
    use videogpt_pipeline::tokens::TableManifest;

    std::fs::create_dir_all(old_dir).unwrap();
    let mut manifest = TableManifest::read(split_dir).unwrap();
    manifest.meta.table = String::new();
    manifest.format_version = 1;
    for part in &manifest.parts.clone() {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(split_dir.join(&part.file)).unwrap()).unwrap();
        let mut pairs = builder.metadata().file_metadata().key_value_metadata().unwrap().clone();
        pairs.retain(|kv| kv.key != "videogpt.table");
        for kv in &mut pairs {
            if kv.key == "videogpt.format_version" {
                kv.value = Some("1".into());
            }
        }
        let props = WriterProperties::builder().set_key_value_metadata(Some(pairs)).build();
        let mut writer = None;
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            let (mut fields, mut columns) = (Vec::new(), Vec::new());
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                match field.name().as_str() {
                    "table" => continue,
                    "tokens" => {
                        let mut values = column.clone();
                        while let Some(list) = values.as_fixed_size_list_opt() {
                            values = list.values().clone();
                        }
                        let len = (values.len() / column.len()) as i32;
                        let item = Arc::new(Field::new("item", DataType::UInt16, false));
                        let flat = FixedSizeListArray::try_new(item, len, values, None).unwrap();
                        fields.push(Field::new("tokens", flat.data_type().clone(), false));
                        columns.push(Arc::new(flat) as Arc<dyn Array>);
                    }
                    _ => {
                        fields.push(field.as_ref().clone());
                        columns.push(column.clone());
                    }
                }
            }
            let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
            let file = std::fs::File::create(old_dir.join(&part.file)).unwrap();
            let w = writer.get_or_insert_with(|| ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).unwrap());
            w.write(&batch).unwrap();
        }
        writer.unwrap().close().unwrap();
    }
    // Version 1 manifests recorded each part's size, not its SHA-256.
    for part in &mut manifest.parts {
        part.bytes = std::fs::metadata(old_dir.join(&part.file)).unwrap().len();
        part.sha256 = None;
    }
    std::fs::write(old_dir.join("table.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn tables_of_the_version_1_layout_still_read_and_give_the_same_rows_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let (split, _) = labelled_split(dir.path());
    let tokens = dir.path().join("tokens");
    let table_dir = data_dir(&tokens.join("new"), "labelled");
    write_all(&TablePlan::new(&split, &table_dir, meta_for(&split, "cc"), 3, false).unwrap());
    write_version_1(&table_dir, &tokens.join("old/labelled"));

    let new = TokenTable::open_split(&tokens.join("new"), "labelled").unwrap();
    let old = TokenTable::open_split(&tokens.join("old"), "labelled").unwrap();
    assert_eq!(old.dir(), tokens.join("old/labelled"));
    assert_eq!(old.manifest().format_version, 1);
    let (a, b) = (new.read(None).unwrap(), old.read(None).unwrap());
    assert_eq!((a.tokens, a.clip_ids, a.labels), (b.tokens, b.clip_ids, b.labels));
    let (sa, sb) = (token_stats(&new, 5).unwrap(), token_stats(&old, 5).unwrap());
    assert_eq!(sa.code_counts, sb.code_counts);
    assert_eq!(sa.entropy_per_position, sb.entropy_per_position);
    assert_eq!(videogpt_pipeline::tokens::table_splits(&tokens.join("old")).unwrap(), vec!["labelled"]);
    assert_eq!(videogpt_pipeline::tokens::layout::stats_path(old.dir()), tokens.join("old/labelled-stats.json"));
    // Today's layout: only Parquet under data/, the manifest under meta/.
    let data: Vec<_> = std::fs::read_dir(&table_dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(data.iter().all(|n| n.ends_with(".parquet")), "{data:?}");
    assert!(tokens.join("new/meta/labelled.json").is_file());
}
