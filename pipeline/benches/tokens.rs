//! `just bench`: token tables. Size per clip against raw uint16 and against
//! the unigram-entropy bound, and read throughput (tokens/s) from a warm page
//! cache, median of 5 reads. Uses every complete table found under
//! `datasets/*/tokens/*/*` (real encoder outputs); when there is none, a
//! synthetic table with Zipf-distributed codes stands in and is labelled so.
//! Writes target/bench/tokens.json.

use std::path::{Path, PathBuf};
use std::time::Instant;

use videogpt_pipeline::rng::SplitMix64;
use videogpt_pipeline::shards::{ClipRecord, write_clips_table};
use videogpt_pipeline::tokens::stats::entropy_bits;
use videogpt_pipeline::tokens::{TablePlan, TokenTable, TokenTableMeta};

#[derive(serde::Serialize)]
struct Row {
    table: String,
    synthetic: bool,
    clips: u64,
    tokens_per_clip: usize,
    codebook_size: usize,
    entropy_bits_per_token: f64,
    bytes_per_clip: f64,
    raw_u16_bytes_per_clip: f64,
    entropy_bound_bytes_per_clip: f64,
    read_seconds: f64,
    read_tokens_per_s: f64,
}

fn measure(dir: &Path, synthetic: bool) -> Row {
    let table = TokenTable::open(dir).unwrap();
    let meta = table.meta().clone();
    let len = meta.tokens_per_clip();
    let bytes: u64 = table.manifest().parts.iter().map(|p| p.bytes).sum();
    let clips = table.rows();
    let rows = table.read(None).unwrap(); // warms the page cache
    let mut hist = vec![0u64; meta.codebook_size];
    for &t in &rows.tokens {
        hist[t as usize] += 1;
    }
    let entropy = entropy_bits(hist.iter().copied());
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            let rows = table.read(None).unwrap();
            assert_eq!(rows.tokens.len() as u64, clips * len as u64);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[2];
    Row {
        table: dir.display().to_string(),
        synthetic,
        clips,
        tokens_per_clip: len,
        codebook_size: meta.codebook_size,
        entropy_bits_per_token: entropy,
        bytes_per_clip: bytes as f64 / clips as f64,
        raw_u16_bytes_per_clip: 2.0 * len as f64,
        entropy_bound_bytes_per_clip: entropy * len as f64 / 8.0,
        read_seconds: median,
        read_tokens_per_s: (clips * len as u64) as f64 / median,
    }
}

/// A table of 20,000 clips of 4x16x16 tokens over 512 codes, Zipf(1.1).
fn synthetic_table(dir: &Path) -> PathBuf {
    let split = dir.join("clips");
    std::fs::create_dir_all(&split).unwrap();
    let clips = 20_000u64;
    let records: Vec<ClipRecord> = (0..clips)
        .map(|i| ClipRecord {
            clip_id: i,
            shard: 0,
            index_in_shard: i as u32,
            video: i,
            source: String::new(),
            start_frame: 0,
            label: None,
            text: None,
            actions: None,
            decode_errors: 0,
        })
        .collect();
    write_clips_table(&split.join("clips.parquet"), "train", &records, Default::default()).unwrap();
    let codes = 512usize;
    let weights: Vec<f64> = (1..=codes).map(|r| 1.0 / (r as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(codes);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let meta = TokenTableMeta {
        dataset: "synthetic".into(),
        split: "train".into(),
        table: "table".into(),
        latent_grid: [4, 16, 16],
        codebook_size: codes,
        checkpoint_sha256: "none".into(),
        checkpoint: "none".into(),
        clip_shape: [8, 64, 64, 1],
        preprocessing: serde_json::from_value(serde_json::json!({
            "resolution": [64, 64], "resize": "none", "crop": "none",
            "sampling": {"seq_len": 8, "frame_stride": 1, "start": {"kind": "first"}},
            "fps": null, "seed": 0, "value_range": "synthetic"
        }))
        .unwrap(),
        context_frames: 0,
    };
    let table = videogpt_pipeline::tokens::layout::data_dir(&dir.join("table"), "train");
    let plan = TablePlan::new(&split, &table, meta, 4096, false).unwrap();
    let mut rng = SplitMix64::new(7);
    for part in plan.pending() {
        let tokens: Vec<u16> = (0..part.rows * 1024)
            .map(|_| {
                let u = rng.next_f64();
                cdf.partition_point(|&c| c < u).min(codes - 1) as u16
            })
            .collect();
        plan.write(&part, &tokens, None).unwrap();
    }
    plan.finish().unwrap();
    table
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut tables: Vec<PathBuf> = glob_tables(&workspace.join("datasets"));
    tables.sort();
    let mut rows: Vec<Row> = tables.iter().map(|t| measure(t, false)).collect();
    let scratch = tempfile::tempdir().unwrap();
    rows.push(measure(&synthetic_table(scratch.path()), true));
    println!(
        "{:<60} {:>7} {:>6} {:>8} {:>10} {:>10} {:>10} {:>12}",
        "table", "clips", "tokens", "H bits", "B/clip", "raw u16", "H bound", "Mtokens/s"
    );
    for r in &rows {
        println!(
            "{:<60} {:>7} {:>6} {:>8.3} {:>10.1} {:>10.0} {:>10.1} {:>12.1}",
            if r.synthetic { "synthetic Zipf(1.1), 512 codes".to_string() } else { r.table.clone() },
            r.clips,
            r.tokens_per_clip,
            r.entropy_bits_per_token,
            r.bytes_per_clip,
            r.raw_u16_bytes_per_clip,
            r.entropy_bound_bytes_per_clip,
            r.read_tokens_per_s / 1e6
        );
    }
    let out = workspace.join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    let path = out.join("tokens.json");
    std::fs::write(&path, serde_json::to_string_pretty(&rows).unwrap()).unwrap();
    println!("written to {}", path.display());
}

/// The part folders of complete split tables under `datasets/<dataset>/tokens/` (either layout).
fn glob_tables(datasets: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let list = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| e.path()).collect()
    };
    for dataset in list(datasets) {
        for table in list(&dataset.join("tokens")) {
            for split in videogpt_pipeline::tokens::layout::complete_splits(&table) {
                out.push(videogpt_pipeline::tokens::layout::split_dir(&table, &split));
            }
        }
    }
    out
}
