//! Dataset cards: a `README.md` whose YAML front matter carries the
//! `configs:` block that Hugging Face `datasets` reads, so that
//! `load_dataset("datasets/<dataset>", "clips")` (or a token table's name)
//! opens the Parquet files with their splits. One card per prepared dataset
//! (`datasets/<dataset>/README.md`: the clip metadata and every token table)
//! and one per token table (`tokens/<table>/README.md`). Rewritten from the
//! manifests after every `prepare` and `encode-latents`.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::shards::ClipIndex;
use crate::shards::index::INDEX_FILE;
use crate::tokens::TableManifest;
use crate::tokens::layout::{complete_splits, split_dir};

pub const CARD_FILE: &str = "README.md";

/// Where the data came from and under which terms, by the dataset family
/// named in index.json (`ucf101-64` is `ucf101`'s).
fn source_and_licence(dataset: &str) -> (&'static str, &'static str, &'static str) {
    let family = dataset.split('-').next().unwrap_or(dataset);
    match family {
        "moving" | "demo" => (
            "cc-by-sa-3.0",
            "Moving MNIST: two MNIST digits bouncing in 64x64 (Srivastava et al. 2015), generated from the real MNIST digits or read from mnist_test_seq.npy",
            "MNIST (LeCun, Cortes, Burges) is available under CC BY-SA 3.0.",
        ),
        "bair" => (
            "other",
            "BAIR robot pushing (Ebert et al. 2017), softmotion30_44k TFRecords",
            "Released by Berkeley AI Research for research use; see the dataset's own terms.",
        ),
        "ucf101" => (
            "other",
            "UCF-101 action recognition videos (Soomro et al. 2012), split 1",
            "Videos collected from YouTube; research use under the terms of the UCF CRCV release.",
        ),
        "tgif" => (
            "other",
            "TGIF animated GIFs with descriptions (Li et al. 2016)",
            "GIFs from Tumblr; the annotations are released for research use, the GIFs belong to their owners.",
        ),
        "vizdoom" => (
            "other",
            "ViZDoom gameplay recorded with the ViZDoom engine and Freedoom (Kempka et al. 2016)",
            "Recorded locally; ViZDoom is MIT-licensed, Freedoom BSD-3-Clause.",
        ),
        _ => ("other", "clips prepared by vgpt-data", "See the raw data's own terms."),
    }
}

fn yaml_quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// A complete token table's `configs:` entry, named `config`, its paths
/// prefixed with `base` (the table folder as seen from the card), and its
/// line for a card's body; `None` when no split of it is complete.
fn table_section(table: &Path, config: &str, base: &str) -> Option<(String, String)> {
    let name = table.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let splits: Vec<(String, TableManifest)> = complete_splits(table)
        .into_iter()
        .filter_map(|s| TableManifest::read(&split_dir(table, &s)).ok().map(|m| (s, m)))
        .collect();
    let (_, first) = splits.first()?;
    let mut entry = format!("- config_name: {}\n  data_files:\n", yaml_quote(config));
    for (split, _) in &splits {
        let dir = split_dir(table, split);
        let rel = dir.strip_prefix(table).unwrap_or(&dir).to_string_lossy().into_owned();
        let _ = writeln!(entry, "  - split: {}\n    path: {}", yaml_quote(split), yaml_quote(&format!("{base}{rel}/*.parquet")));
    }
    let m = &first.meta;
    let [t, h, w] = m.latent_grid;
    let counts: Vec<String> = splits.iter().map(|(s, m)| format!("{s} {}", m.rows)).collect();
    let line = format!(
        "- `{name}`: `tokens` uint16 `[{t}][{h}][{w}]` (codes of a {}-code codebook), clips {}; VQ-VAE weights SHA-256 `{}`.\n",
        m.codebook_size,
        counts.join(", "),
        m.checkpoint_sha256
    );
    Some((entry, line))
}

/// The `configs:` entries and body lines of every complete token table of
/// `dataset_dir/tokens`, for the dataset's card.
fn table_sections(dataset_dir: &Path) -> (String, String) {
    let (mut configs, mut body) = (String::new(), String::new());
    let mut tables: Vec<_> = std::fs::read_dir(dataset_dir.join("tokens")).into_iter().flatten().flatten().map(|e| e.path()).collect();
    tables.sort();
    for table in tables {
        let name = table.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some((entry, line)) = table_section(&table, &name, &format!("tokens/{name}/")) {
            configs.push_str(&entry);
            body.push_str(&line);
        }
    }
    (configs, body)
}

/// Writes `dataset_dir/README.md` from the split indexes and token tables.
pub fn write_dataset_card(dataset_dir: &Path) -> Result<()> {
    let clips = dataset_dir.join("clips");
    let mut splits: Vec<ClipIndex> = std::fs::read_dir(&clips)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(INDEX_FILE).is_file())
        .filter_map(|e| ClipIndex::read(&e.path()).ok())
        .collect();
    splits.sort_by(|a, b| a.split.cmp(&b.split));
    let Some(first) = splits.first() else { return Ok(()) };
    let (licence, source, terms) = source_and_licence(&first.dataset);
    let mut card = format!("---\nlicense: {licence}\npretty_name: {}\nconfigs:\n", yaml_quote(&first.dataset));
    let _ = writeln!(card, "- config_name: clips\n  data_files:");
    for s in &splits {
        let _ = writeln!(card, "  - split: {}\n    path: {}", yaml_quote(&s.split), yaml_quote(&format!("clips/{}/clips.parquet", s.split)));
    }
    let (table_configs, table_body) = table_sections(dataset_dir);
    card.push_str(&table_configs);
    card.push_str("---\n\n");
    let [t, h, w, c] = first.clip_shape;
    let p = &first.preprocessing;
    let _ = writeln!(card, "# {}\n\n{source}.\n\nLicence: {terms}\n", first.dataset);
    let _ = writeln!(card, "## Clips\n");
    let _ = writeln!(
        card,
        "Each clip is uint8 `[T, H, W, C]` = `[{t}, {h}, {w}, {c}]`, values 0..=255, resized ({}) and cropped ({}), frame stride {}, {}. \
         Pixels are in `clips/<split>/shard-*.clips` (one zstd frame per clip, layout in the workspace's `datasets/README.md`); \
         `clips/<split>/clips.parquet` has one row per clip: `clip_id`, `split`, `shard`, `index_in_shard`, `video`, `source`, `start_frame` and the conditioning columns.\n",
        p.resize,
        p.crop,
        p.sampling.frame_stride,
        p.fps.map_or("the source's frame rate".to_string(), |f| format!("{f} fps"))
    );
    let _ = writeln!(card, "| split | clips | videos |\n|---|---|---|");
    for s in &splits {
        let _ = writeln!(card, "| {} | {} | {} |", s.split, s.num_clips, s.num_videos);
    }
    if !table_body.is_empty() {
        let _ = writeln!(card, "\n## Token tables\n\nOne row per clip: `clip_id`, `split`, `table`, the conditioning columns, `tokens` in `(t, h, w)` raster order.\n");
        card.push_str(&table_body);
    }
    let path = dataset_dir.join(CARD_FILE);
    crate::atomic::write_bytes_atomic(&path, card.as_bytes()).at(&path)
}

/// Writes `table/README.md` (the table's own card: its splits as one config).
pub fn write_table_card(table: &Path) -> Result<()> {
    let Some((own, line)) = table_section(table, "default", "") else { return Ok(()) };
    let name = table.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dataset = table.parent().and_then(Path::parent).and_then(Path::file_name).map(|n| n.to_string_lossy()).unwrap_or_default();
    let card = format!(
        "---\nconfigs:\n{own}---\n\n# Token table `{name}`\n\nVQ-VAE codes of the clips of `{dataset}`.\n\n{line}\nManifests and statistics: `meta/<split>.json`, `meta/<split>-stats.json`.\n"
    );
    let path = table.join(CARD_FILE);
    crate::atomic::write_bytes_atomic(&path, card.as_bytes()).at(&path)
}
