//! Bad names and manifests through the real `vgpt-data` binary and the
//! readers `encode-latents` and `train-prior` use: names given as arguments
//! never leave the data root, paths read from manifests are refused when they
//! would, manifests that disagree are refused naming both files, and `stats`
//! refuses every malformed token table that the prior's reader refuses.
//! Every error is one line of at most 300 characters.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, FixedSizeListArray, Int16Array, ListArray, RecordBatch, UInt16Array, UInt64Array};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use common::*;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use videogpt_pipeline::shards::metadata::Conditioning;
use videogpt_pipeline::shards::{ClipIndex, read_clips_table, write_clips_table};
use videogpt_pipeline::tokens::{PartEntry, TableManifest, TablePlan, TokenTable, TokenTableMeta};

const GRID: [usize; 3] = [2, 4, 4];
const CODES: usize = 16;

/// `root/moving-mnist/clips/{train,test}` from the real digits.
fn prepared(root: &Path) -> PathBuf {
    let raw = real_mnist_raw();
    let out = run(&[
        "prepare", "moving-mnist", "--root", root.to_str().unwrap(), "--raw", raw.to_str().unwrap(),
        "--seq-len", "8", "--train-sequences", "12", "--test-sequences", "4", "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    root.join("moving-mnist/clips")
}

/// The one `error:` line of a failed run, checked to be short.
fn error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {stderr}");
    assert!(lines[0].chars().count() <= 300, "error line over 300 characters: {}", lines[0]);
    lines[0].to_owned()
}

fn files_under(dir: &Path) -> usize {
    walk(dir).len()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn names_given_as_arguments_never_leave_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/root");
    prepared(&root);
    let outside = dir.path().join("escape");
    let raw = real_mnist_raw();
    let root_s = root.to_str().unwrap();
    let escape = "../../../../escape/train";
    let out = run(&[
        "prepare", "moving-mnist", "--root", root_s, "--raw", raw.to_str().unwrap(), "--seq-len", "8",
        "--train-sequences", "4", "--splits", escape, "--no-progress",
    ]);
    assert!(error_line(&out).contains("--splits `../../../../escape/train`"), "{}", text(&out));
    for args in [
        vec!["stats", "../../escape", "--root", root_s],
        vec!["stats", "moving-mnist", "--root", root_s, "--table", "../../.."],
        vec!["stats", "moving-mnist", "--root", root_s, "--table", "t", "--splits", "../../../../escape"],
    ] {
        let line = error_line(&run(&args));
        assert!(line.contains("`../"), "{args:?}: {line}");
    }
    assert!(!outside.exists(), "something was written outside the root");
}

#[test]
fn manifest_pointers_out_of_the_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let clips = prepared(&root);
    let train = clips.join("train");
    let secret = dir.path().join("secret.bin");
    std::fs::write(&secret, b"not a shard").unwrap();

    // index.json naming a shard outside the split folder.
    let path = train.join("index.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut index: serde_json::Value = serde_json::from_str(&original).unwrap();
    index["shards"][0]["file"] = "../../../../secret.bin".into();
    std::fs::write(&path, serde_json::to_vec(&index).unwrap()).unwrap();
    for cmd in ["verify", "info"] {
        let line = error_line(&run(&[cmd, train.to_str().unwrap()]));
        assert!(line.contains("index.json") && line.contains("../../../../secret.bin"), "{cmd}: {line}");
    }
    assert!(ClipIndex::read(&train).is_err());
    std::fs::write(&path, original).unwrap();

    // table.json naming a part outside the table folder.
    let table = write_table(&clips, &root, "pointer");
    let manifest_path = table.join("table.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["parts"][0]["file"] = "../../../../../secret.bin".into();
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let line = error_line(&stats(&root, "pointer"));
    assert!(line.contains("table.json") && line.contains("part file `../"), "{line}");
    assert!(TokenTable::open(&table).is_err());
}

#[test]
fn a_clips_table_that_disagrees_with_the_index_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let clips = prepared(&root);
    let train = clips.join("train");
    let table_path = train.join("clips.parquet");
    let records = read_clips_table(&table_path).unwrap();
    let all_zero: Vec<_> = records.iter().cloned().map(|mut r| { r.clip_id = 0; r }).collect();
    for (what, rows) in [("one row fewer", records[1..].to_vec()), ("all ids 0", all_zero), ("no rows", vec![])] {
        write_clips_table(&table_path, "train", &rows, Conditioning::default()).unwrap();
        let err = TablePlan::new(&train, &dir.path().join("t/train"), meta(&train), 4, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("clips.parquet") && err.contains("index.json"), "{what}: {err}");
        let out = run(&["verify", train.to_str().unwrap()]);
        assert!(!out.status.success() && text(&out).contains("CORRUPT"), "{what}: {}", text(&out));
    }
    write_clips_table(&table_path, "train", &records, Conditioning::default()).unwrap();
    assert!(run(&["verify", train.to_str().unwrap()]).status.success());
}

#[test]
fn stats_refuses_every_malformed_table_the_prior_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let clips = prepared(&root);
    let good = write_table(&clips, &root, "good");
    assert!(TokenTable::open(&good).unwrap().validate().is_ok());
    assert!(stats(&root, "good").status.success(), "{}", text(&stats(&root, "good")));
    let rows = TokenTable::open(&good).unwrap().rows() as usize;
    let len: usize = GRID.iter().product();
    let ids = || Arc::new(UInt64Array::from_iter_values(0..rows as u64)) as ArrayRef;
    let fixed = |values: ArrayRef, len: usize, nulls: Option<NullBuffer>| -> ArrayRef {
        let item = Arc::new(Field::new("item", values.data_type().clone(), true));
        Arc::new(FixedSizeListArray::try_new(item, len as i32, values, nulls).unwrap())
    };
    let u16s = |n: usize, top: u16| Arc::new(UInt16Array::from_iter_values((0..n).map(|i| i as u16 % top))) as ArrayRef;
    let variants: Vec<(&str, ArrayRef, ArrayRef)> = vec![
        ("token-beyond-codebook", ids(), fixed(u16s(rows * len, CODES as u16 + 5), len, None)),
        ("int16", ids(), fixed(Arc::new(Int16Array::from_iter_values((0..rows * len).map(|i| (i % CODES) as i16))), len, None)),
        ("short-lists", ids(), fixed(u16s(rows * (len - 1), CODES as u16), len - 1, None)),
        ("null-list", ids(), fixed(u16s(rows * len, CODES as u16), len, Some(NullBuffer::from(vec![false; rows])))),
        (
            "variable-lists",
            ids(),
            Arc::new(ListArray::new(
                Arc::new(Field::new("item", DataType::UInt16, true)),
                OffsetBuffer::from_lengths(vec![len; rows]),
                u16s(rows * len, CODES as u16),
                None,
            )),
        ),
        ("ids-out-of-order", Arc::new(UInt64Array::from_iter_values((0..rows as u64).rev())), fixed(u16s(rows * len, CODES as u16), len, None)),
    ];
    let base = TableManifest::read(&good).unwrap();
    for (name, ids, tokens) in variants {
        let dir = root.join("moving-mnist/tokens").join(name).join("train");
        write_custom_table(&dir, &base, ids, tokens);
        let prior = TokenTable::open(&dir).and_then(|t| t.read(None).map(|_| ()));
        assert!(prior.is_err(), "{name}: the prior's reader accepted it");
        let line = error_line(&stats(&root, name));
        assert!(line.contains("part-00000.parquet"), "{name}: {line}");
    }
    // Metadata no encoder writes: table.json and the part's footer agree on it.
    for (name, edit) in [
        ("codebook-0", TokenTableMeta { codebook_size: 0, ..base.meta.clone() }),
        ("codebook-2-62", TokenTableMeta { codebook_size: 1 << 62, ..base.meta.clone() }),
        ("codebook-1e15", TokenTableMeta { codebook_size: 1_000_000_000_000_000, ..base.meta.clone() }),
        ("grid-empty", TokenTableMeta { latent_grid: [0, 4, 4], ..base.meta.clone() }),
    ] {
        let dir = root.join("moving-mnist/tokens").join(name).join("train");
        let manifest = TableManifest { meta: edit, ..base.clone() };
        write_custom_table(&dir, &manifest, ids(), fixed(u16s(rows * len, CODES as u16), len, None));
        assert!(TokenTable::open(&dir).is_err(), "{name}");
        let line = error_line(&stats(&root, name));
        assert!(line.contains("codebook_size") || line.contains("latent_grid"), "{name}: {line}");
    }
    // A latent grid in table.json that differs from the parts'.
    let dir = root.join("moving-mnist/tokens/grid-differs/train");
    write_custom_table(&dir, &base, ids(), fixed(u16s(rows * len, CODES as u16), len, None));
    let mut manifest = base.clone();
    manifest.meta.latent_grid = [2, 2, 8];
    manifest.write(&dir).unwrap();
    assert!(TokenTable::open(&dir).is_err());
    error_line(&stats(&root, "grid-differs"));
}

fn stats(root: &Path, table: &str) -> std::process::Output {
    run(&["stats", "moving-mnist", "--root", root.to_str().unwrap(), "--table", table, "--splits", "train"])
}

fn meta(split: &Path) -> TokenTableMeta {
    let index = ClipIndex::read(split).unwrap();
    TokenTableMeta {
        dataset: index.dataset,
        split: index.split,
        table: String::new(),
        latent_grid: GRID,
        codebook_size: CODES,
        checkpoint_sha256: "ab".into(),
        checkpoint: "runs/test/checkpoints/step-00000001".into(),
        clip_shape: index.clip_shape,
        preprocessing: index.preprocessing,
        context_frames: 0,
    }
}

/// A valid table `root/moving-mnist/tokens/<name>/train` in one part.
fn write_table(clips: &Path, root: &Path, name: &str) -> PathBuf {
    let split = clips.join("train");
    let dir = root.join("moving-mnist/tokens").join(name).join("train");
    let plan = TablePlan::new(&split, &dir, meta(&split), 1 << 20, false).unwrap();
    let len: usize = GRID.iter().product();
    for part in plan.pending() {
        let tokens: Vec<u16> = part.clip_ids().flat_map(|c| (0..len).map(move |p| ((c as usize + p) % CODES) as u16)).collect();
        plan.write(&part, &tokens, None).unwrap();
    }
    plan.finish().unwrap();
    dir
}

/// One part file with the given columns and `manifest`'s metadata, and a
/// table.json listing it.
fn write_custom_table(dir: &Path, manifest: &TableManifest, ids: ArrayRef, tokens: ArrayRef) {
    std::fs::create_dir_all(dir).unwrap();
    let schema = Schema::new(vec![
        Field::new("clip_id", DataType::UInt64, false),
        Field::new("tokens", tokens.data_type().clone(), true),
    ]);
    let rows = ids.len() as u64;
    let batch = RecordBatch::try_new(Arc::new(schema), vec![ids, tokens]).unwrap();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(manifest.meta.to_key_values()))
        .build();
    let path = dir.join("part-00000.parquet");
    let mut writer = ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let part = PartEntry { file: "part-00000.parquet".into(), first_clip: 0, rows, bytes: std::fs::metadata(&path).unwrap().len(), sha256: None };
    let manifest = TableManifest { parts: vec![part], rows, ..manifest.clone() };
    // Written as JSON directly: the library refuses to read such a table,
    // not to write one.
    std::fs::write(dir.join("table.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    assert_eq!(files_under(dir), 2);
}
