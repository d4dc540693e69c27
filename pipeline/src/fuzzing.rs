//! Entry points for fuzzing the readers of untrusted input: each takes
//! arbitrary bytes, hands them to a reader the way the CLI would (as a file
//! where the reader reads files), and returns. An `Err` is a correct answer
//! to bad input; a panic, a hang or an unbounded allocation is a finding.
//!
//! The cargo-fuzz targets in `pipeline/fuzz/` call these under libFuzzer
//! (`just fuzz`); `tests/fuzz_smoke.rs` runs the committed corpus and
//! seeded mutations of it on stable Rust in `just test`. [`seeds`] gives one
//! valid input per target, written by this crate's own writers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::clip_sampling::ClipSampling;
use crate::shards::format::{ShardBuilder, ShardReader, compress_clip};
use crate::shards::index::{Preprocessing, VALUE_RANGE_U8};
use crate::shards::metadata::{ClipRecord, Conditioning};
use crate::sources::{mnist_digits, npy, tf_example, tfrecord, tgif, ucf101};
use crate::tokens::meta::{PartEntry, TableManifest, TokenTableMeta, read_footer};
use crate::tokens::reader::TokenTable;
use crate::tokens::writer::write_token_part;
use crate::video::DecodeOptions;

/// The fuzz targets, by name (the names of `pipeline/fuzz/fuzz_targets/`).
pub const TARGETS: [(&str, fn(&[u8])); 8] = [
    ("tfrecord", tfrecord_file),
    ("tf_example", tf_example_bytes),
    ("npy_header", npy_header),
    ("idx", idx_bytes),
    ("shard", shard_file),
    ("ucf_lists", ucf_lists),
    ("tgif_tsv", tgif_tsv),
    ("token_table", token_table),
];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name}"));
    target(data);
}

/// Largest clip a shard target decompresses (the CLI's clips are bounded by
/// their index.json the same way).
const CLIP_LEN: usize = 4 * 8 * 8;

/// A folder of this thread for the files the targets write (tests call
/// targets from several threads at once).
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("videogpt-fuzz-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("a scratch folder in the temp dir");
            dir
        };
    }
    DIR.with(PathBuf::clone)
}

/// Removes this thread's scratch folder (the smoke test's tidy-up; a
/// fuzzing process keeps its one folder until it ends).
pub fn remove_scratch() {
    let _ = std::fs::remove_dir_all(scratch());
}

/// Writes `data` to `name` under a fresh folder `case` of the scratch folder.
fn place(case: &str, name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(case).join(name);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("scratch folder");
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// A TFRecord file: framing scan, every intact record read and parsed as an
/// Example (what `prepare bair` does with each).
pub fn tfrecord_file(data: &[u8]) {
    let path = place("tfrecord", "x.tfrecords", data);
    let Ok(scan) = tfrecord::scan(&path) else { return };
    let Ok(file) = std::fs::File::open(&path) else { return };
    for location in &scan.records {
        if let Ok(record) = tfrecord::read_record(&file, location) {
            let _ = tf_example::parse_example(&record);
        }
    }
}

/// One serialized `tf.train.Example`.
pub fn tf_example_bytes(data: &[u8]) {
    let _ = tf_example::parse_example(data);
}

/// A `.npy` file's header.
pub fn npy_header(data: &[u8]) {
    let path = place("npy", "x.npy", data);
    let _ = npy::read_header(&path);
}

/// An MNIST IDX file (already decompressed).
pub fn idx_bytes(data: &[u8]) {
    let _ = mnist_digits::parse_idx(Path::new("x-idx3-ubyte"), data);
}

/// A clip shard: footer, offset table, and every clip decompressed to at
/// most [`CLIP_LEN`] bytes.
pub fn shard_file(data: &[u8]) {
    let path = place("shard", "shard-00000.clips", data);
    let Ok(reader) = ShardReader::open(&path) else { return };
    for i in 0..reader.num_clips().min(64) {
        let _ = reader.read_clip(i, CLIP_LEN);
    }
}

/// UCF-101's lists: the bytes up to the first NUL are classInd.txt, the rest
/// trainlist01.txt. Every video the lists let through must lie inside
/// UCF-101/ (the lists may not reach other folders).
pub fn ucf_lists(data: &[u8]) {
    let (class_index, list) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    let raw = scratch().join("ucf");
    let _ = std::fs::remove_dir_all(&raw);
    place("ucf/UCF-101/Archery", "v_Archery_g01_c01.avi", b"");
    place("ucf/outside", "v.avi", b"");
    place("ucf/ucfTrainTestlist", "classInd.txt", class_index);
    place("ucf/ucfTrainTestlist", "trainlist01.txt", list);
    let Ok(layout) = ucf101::discover(&raw) else { return };
    if let Ok(files) = ucf101::open(&layout, "train", 1, DecodeOptions::default()) {
        for file in files.files() {
            assert!(
                file.path.starts_with(&layout.videos)
                    && !file.path.components().any(|c| c == std::path::Component::ParentDir),
                "a list entry escaped UCF-101/: {}",
                file.path.display()
            );
        }
    }
}

/// TGIF's TSV listing; every GIF name it yields is one file name.
pub fn tgif_tsv(data: &[u8]) {
    let path = place("tgif", "tgif-v1.0.tsv", data);
    if let Ok(entries) = tgif::read_listing(&path) {
        for e in entries {
            assert!(
                crate::names::name_problem(&e.file_name).is_none(),
                "a TSV line gave the file name {:?}",
                e.file_name
            );
        }
    }
}

/// A token table part: its footer's metadata, then every row through the
/// reader the prior and `stats` use, with a manifest made from the footer
/// (so the checks past the manifest are what is fuzzed).
pub fn token_table(data: &[u8]) {
    let dir = scratch().join("tokens/train");
    let _ = std::fs::remove_dir_all(scratch().join("tokens"));
    let path = place("tokens/train", "part-00000.parquet", data);
    let Ok((rows, meta)) = read_footer(&path) else { return };
    let part = PartEntry {
        file: "part-00000.parquet".into(),
        first_clip: 0,
        rows,
        bytes: data.len() as u64,
        sha256: None,
    };
    if TableManifest::new(meta, vec![part]).write(&dir).is_err() {
        return;
    }
    if let Ok(table) = TokenTable::open(&dir) {
        let _ = table.read(None);
    }
}

/// One valid input per target, made by this crate's writers: the corpus's
/// starting points (`cargo run --example fuzz_seeds`).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut tfrecords = Vec::new();
    let example = tf_example::encode_example(&[
        ("0/image_aux1/encoded".into(), tf_example::Feature::Bytes(vec![vec![7u8; 12]])),
        ("0/action".into(), tf_example::Feature::Floats(vec![0.5, -0.25, 1.0, 0.0])),
    ]);
    tfrecord::write_record(&mut tfrecords, &example).expect("in memory");
    tfrecord::write_record(&mut tfrecords, &example).expect("in memory");

    let mut npy_file = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1, 4, 4), }".to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    npy_file.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy_file.extend_from_slice(header.as_bytes());
    npy_file.extend((0..32u8).map(|i| i * 7));

    let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 4];
    idx.extend((0..32u8).map(|i| i * 5));

    let mut shard = ShardBuilder::new();
    for k in 0..3u8 {
        let clip: Vec<u8> = (0..CLIP_LEN).map(|i| (i as u8).wrapping_mul(k + 1)).collect();
        shard.push(&compress_clip(&clip, 3).expect("zstd"));
    }

    let lists = b"1 Archery\n2 Basketball\n\0Archery/v_Archery_g01_c01.avi 1\nArchery/v_Archery_g02_c01.avi 1\n".to_vec();
    let tsv = b"https://x.tumblr.com/a/tumblr_a.gif\ta cat jumps\nhttps://x.tumblr.com/b/tumblr_b.gif\ta dog runs\n".to_vec();

    vec![
        ("tfrecord", tfrecords),
        ("tf_example", example),
        ("npy_header", npy_file),
        ("idx", idx),
        ("shard", shard.finish()),
        ("ucf_lists", lists),
        ("tgif_tsv", tsv),
        ("token_table", token_part_seed()),
    ]
}

/// A two-row token table part with labels, as encode-latents writes it.
fn token_part_seed() -> Vec<u8> {
    let meta = TokenTableMeta {
        dataset: "ucf101".into(),
        split: "train".into(),
        table: "seed".into(),
        latent_grid: [2, 2, 2],
        codebook_size: 16,
        checkpoint_sha256: "00".repeat(32),
        checkpoint: "runs/seed/checkpoints/step-00000001".into(),
        clip_shape: [4, 8, 8, 3],
        preprocessing: Preprocessing {
            resolution: [8, 8],
            resize: "none".into(),
            crop: "none".into(),
            sampling: ClipSampling::default(),
            fps: None,
            seed: 0,
            value_range: VALUE_RANGE_U8.into(),
        },
        context_frames: 0,
    };
    let records: Vec<ClipRecord> = (0..2)
        .map(|i| ClipRecord {
            clip_id: i,
            shard: 0,
            index_in_shard: i as u32,
            video: i,
            source: format!("v{i}.avi"),
            start_frame: 0,
            label: Some(i as i32),
            text: None,
            actions: None,
            decode_errors: 0,
        })
        .collect();
    let tokens: Vec<u16> = (0..16).map(|t| t % 16).collect();
    let path = scratch().join("seed-part.parquet");
    let columns = Conditioning { label: true, ..Conditioning::default() };
    write_token_part(&path, &meta, &records, &tokens, None, columns).expect("a seed part");
    let bytes = std::fs::read(&path).expect("the seed part");
    let _ = std::fs::remove_file(&path);
    bytes
}
