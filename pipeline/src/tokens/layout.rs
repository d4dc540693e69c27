//! Where a token table's files live.
//!
//! ```text
//! tokens/<table>/data/<split>/part-NNNNN.parquet   only Parquet: readers take the folder as is
//! tokens/<table>/meta/<split>.json                 the split's manifest (written last)
//! tokens/<table>/meta/<split>-stats.json           `vgpt-data stats` output
//! tokens/<table>/README.md                         dataset card (Hugging Face `configs:`)
//! ```
//!
//! Tables written before format version 2 kept everything in one folder
//! (`tokens/<table>/<split>/{part-*.parquet,table.json}`, stats beside it);
//! they are still found and read.

use std::path::{Path, PathBuf};

/// Folder of a table's Parquet parts, one sub-folder per split.
pub const DATA_DIR: &str = "data";
/// Folder of a table's manifests and statistics.
pub const META_DIR: &str = "meta";
/// The manifest's name inside a split folder, in the layout before version 2.
pub const LEGACY_MANIFEST: &str = "table.json";

/// The split's part folder in today's layout: `<table>/data/<split>`.
pub fn data_dir(table: &Path, split: &str) -> PathBuf {
    table.join(DATA_DIR).join(split)
}

/// The split's part folder: today's, unless only a table of the earlier
/// layout is there.
pub fn split_dir(table: &Path, split: &str) -> PathBuf {
    let current = data_dir(table, split);
    let legacy = table.join(split);
    if !manifest_path(&current).is_file() && legacy.join(LEGACY_MANIFEST).is_file() {
        legacy
    } else {
        current
    }
}

/// Whether `split_dir` is a part folder of today's layout (`.../data/<split>`).
pub fn is_current(split_dir: &Path) -> bool {
    split_dir.parent().and_then(Path::file_name).is_some_and(|n| n == DATA_DIR)
}

/// The table folder a part folder belongs to.
pub fn table_of(split_dir: &Path) -> PathBuf {
    let parent = split_dir.parent().unwrap_or(Path::new("."));
    if is_current(split_dir) {
        parent.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

fn split_name(split_dir: &Path) -> String {
    split_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The manifest of the split whose parts are in `split_dir`.
pub fn manifest_path(split_dir: &Path) -> PathBuf {
    if is_current(split_dir) {
        table_of(split_dir)
            .join(META_DIR)
            .join(format!("{}.json", split_name(split_dir)))
    } else {
        split_dir.join(LEGACY_MANIFEST)
    }
}

/// Where `stats` writes the split's statistics.
pub fn stats_path(split_dir: &Path) -> PathBuf {
    let name = format!("{}-stats.json", split_name(split_dir));
    if is_current(split_dir) {
        table_of(split_dir).join(META_DIR).join(name)
    } else {
        table_of(split_dir).join(name)
    }
}

/// The split names with a complete table in `table` (either layout), sorted.
pub fn complete_splits(table: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(table.join(DATA_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|split| manifest_path(&data_dir(table, split)).is_file())
        .collect();
    for entry in std::fs::read_dir(table).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join(LEGACY_MANIFEST).is_file() && !found.contains(&name) {
            found.push(name);
        }
    }
    found.sort();
    found
}

/// Every manifest of the table folder `table` (either layout).
pub fn manifests(table: &Path) -> Vec<PathBuf> {
    complete_splits(table)
        .iter()
        .map(|split| manifest_path(&split_dir(table, split)))
        .collect()
}
