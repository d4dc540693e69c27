//! The fuzz targets on stable Rust: every seed, every committed corpus file
//! (`pipeline/fuzz/corpus/<target>/`) and seeded mutations of them go
//! through each target; a panic fails the test. `just fuzz` runs the same
//! targets under libFuzzer for as long as asked.

use std::path::Path;

use videogpt_pipeline::fuzzing::{TARGETS, remove_scratch, run, seeds};
use videogpt_pipeline::rng::SplitMix64;

/// Seeded mutations per target, each of an input drawn from its seed and
/// corpus (every input also runs once as it is).
const MUTATIONS: usize = 1500;

/// Bit flips, byte overwrites with edge values, cuts, duplicated spans and
/// spliced random bytes: the same kinds libFuzzer starts with.
fn mutate(input: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = data.len().max(1) as u64;
        let at = rng.below(n) as usize;
        match rng.below(6) {
            0 if !data.is_empty() => data[at] ^= 1 << rng.below(8),
            1 if !data.is_empty() => data[at] = [0, 0x7f, 0x80, 0xff][rng.below(4) as usize],
            2 => data.truncate(at),
            3 => {
                let end = (at + 1 + rng.below(64) as usize).min(data.len());
                let span = data.get(at..end).unwrap_or(&[]).to_vec();
                data.splice(at.min(data.len())..at.min(data.len()), span);
            }
            4 => {
                let extra: Vec<u8> = (0..rng.below(32)).map(|_| rng.below(256) as u8).collect();
                data.splice(at.min(data.len())..at.min(data.len()), extra);
            }
            _ if data.len() >= 4 => {
                // A length-like field set huge: the classic allocation bait.
                let at = at.min(data.len() - 4);
                data[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            _ => {}
        }
    }
    data
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn every_target_survives_its_corpus_and_mutations_of_it() {
    let seeds = seeds();
    for (name, _) in TARGETS {
        let mut inputs: Vec<Vec<u8>> = seeds.iter().filter(|(t, _)| *t == name).map(|(_, b)| b.clone()).collect();
        assert_eq!(inputs.len(), 1, "a seed for {name}");
        inputs.extend(corpus(name));
        let mut rng = SplitMix64::for_item(7, "fuzz-smoke", inputs.len() as u64);
        for input in &inputs {
            run(name, input);
        }
        for _ in 0..MUTATIONS {
            let input = &inputs[rng.below(inputs.len() as u64) as usize];
            run(name, &mutate(input, &mut rng));
        }
        eprintln!("{name}: {} inputs, {MUTATIONS} mutations", inputs.len());
    }
    remove_scratch();
}

#[test]
fn each_seed_is_read_as_valid() {
    use videogpt_pipeline::sources::{npy, tf_example};
    let seeds: std::collections::HashMap<_, _> = seeds().into_iter().collect();
    let example = tf_example::parse_example(&seeds["tf_example"]).unwrap();
    assert_eq!(example.len(), 2);
    let (dims, pixels) = videogpt_pipeline::sources::mnist_digits::parse_idx(Path::new("seed"), &seeds["idx"]).unwrap();
    assert_eq!((dims, pixels.len()), (vec![2, 4, 4], 32));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed.npy");
    std::fs::write(&path, &seeds["npy_header"]).unwrap();
    assert_eq!(npy::read_header(&path).unwrap().shape, vec![2, 1, 4, 4]);
    let path = dir.path().join("seed.clips");
    std::fs::write(&path, &seeds["shard"]).unwrap();
    let shard = videogpt_pipeline::shards::format::ShardReader::open(&path).unwrap();
    assert_eq!(shard.num_clips(), 3);
    assert_eq!(shard.read_clip(2, 256).unwrap()[1], 3);
    let path = dir.path().join("seed.parquet");
    std::fs::write(&path, &seeds["token_table"]).unwrap();
    let (rows, meta) = videogpt_pipeline::tokens::meta::read_footer(&path).unwrap();
    assert_eq!((rows, meta.codebook_size), (2, 16));
    remove_scratch();
}
