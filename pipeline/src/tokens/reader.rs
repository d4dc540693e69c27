//! Reading token tables back: open a split's table, check its metadata
//! against what the caller expects, load its rows (optionally only some
//! labels), and stream shuffled batches for training.
//!
//! Rows are held in memory once loaded: 2 bytes per token (a 16x32x32 UCF
//! grid is 8 KiB per clip, so 13k clips take about 100 MB).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int32Type, UInt16Type, UInt64Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::meta::{PartEntry, TableManifest, TokenTableMeta, read_footer};
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::metadata::{actions_row, checked_actions};
use crate::shuffle::ShuffledOrder;

/// One split's complete token table.
#[derive(Debug, Clone)]
pub struct TokenTable {
    dir: PathBuf,
    manifest: TableManifest,
}

/// What a consumer (a prior) needs the tokens to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenExpectation {
    pub latent_grid: [usize; 3],
    pub codebook_size: usize,
}

/// Loaded rows, in clip-id order.
#[derive(Debug, Clone, Default)]
pub struct TokenRows {
    /// Tokens per clip.
    pub len: usize,
    /// `rows * len` tokens, row-major.
    pub tokens: Vec<u16>,
    pub clip_ids: Vec<u64>,
    /// Per row, when the table has a `label` column.
    pub labels: Option<Vec<Option<i32>>>,
    /// Per row `[T * D]` action values, when the table has `actions`.
    pub actions: Option<Vec<Option<Vec<f32>>>>,
    /// Bytes of context frames per row (0 without a `frames` column).
    pub frame_len: usize,
    /// `rows * frame_len` bytes of uint8 `[k, H, W, C]` frames, row-major.
    pub frames: Option<Vec<u8>>,
}

impl TokenRows {
    pub fn rows(&self) -> usize {
        self.clip_ids.len()
    }

    pub fn row(&self, i: usize) -> &[u16] {
        &self.tokens[i * self.len..(i + 1) * self.len]
    }

    /// Row `i`'s context frames, when the table has them.
    pub fn frames_of(&self, i: usize) -> Option<&[u8]> {
        let n = self.frame_len;
        self.frames.as_ref().map(|f| &f[i * n..(i + 1) * n])
    }

    /// Rows `[start, end)` as a batch, in order.
    pub fn batch(&self, start: usize, end: usize) -> TokenBatch {
        self.pick(&(start..end).collect::<Vec<_>>())
    }

    /// The rows `picks` as a batch.
    pub fn pick(&self, picks: &[usize]) -> TokenBatch {
        let mut tokens = Vec::with_capacity(picks.len() * self.len);
        for &r in picks {
            tokens.extend_from_slice(self.row(r));
        }
        TokenBatch {
            tokens,
            len: self.len,
            clip_ids: picks.iter().map(|&r| self.clip_ids[r]).collect(),
            labels: self.labels.as_ref().map(|l| picks.iter().map(|&r| l[r]).collect()),
            actions: self
                .actions
                .as_ref()
                .map(|a| picks.iter().map(|&r| a[r].clone()).collect()),
            frames: self.frames.as_ref().map(|_| {
                picks
                    .iter()
                    .flat_map(|&r| self.frames_of(r).expect("frames").iter().copied())
                    .collect()
            }),
        }
    }
}

impl TokenTable {
    /// Opens the split `split` of the table folder `table` (either layout,
    /// see [`super::layout`]).
    pub fn open_split(table: &Path, split: &str) -> Result<Self> {
        crate::names::check_name("split", split)?;
        Self::open(&super::layout::split_dir(table, split))
    }

    /// Opens the table whose parts are in `dir`: reads its manifest and
    /// checks that every part file is there with the same metadata.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = TableManifest::read(dir)?;
        for part in &manifest.parts {
            let path = dir.join(&part.file);
            let (rows, meta) = read_footer(&path)?;
            if meta != manifest.meta {
                return Err(PipelineError::format(
                    &path,
                    format!(
                        "its metadata differs from {} (written by another checkpoint or settings); rerun encode-latents with --overwrite",
                        super::layout::manifest_path(dir).display()
                    ),
                ));
            }
            if rows != part.rows {
                return Err(PipelineError::format(
                    &path,
                    format!("{rows} rows, its manifest says {}", part.rows),
                ));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &TokenTableMeta {
        &self.manifest.meta
    }

    pub fn manifest(&self) -> &TableManifest {
        &self.manifest
    }

    pub fn rows(&self) -> u64 {
        self.manifest.rows
    }

    /// Refuses a table whose latent grid or codebook size differ from
    /// `expected`, naming both.
    pub fn check(&self, expected: &TokenExpectation) -> Result<()> {
        let meta = self.meta();
        if meta.latent_grid != expected.latent_grid || meta.codebook_size != expected.codebook_size {
            return Err(PipelineError::format(
                &self.dir,
                format!(
                    "token table has latent grid {:?} and {} codes, but the model expects grid {:?} and {} codes",
                    meta.latent_grid, meta.codebook_size, expected.latent_grid, expected.codebook_size
                ),
            ));
        }
        Ok(())
    }

    /// Loads every row, or only rows whose label is in `labels`.
    pub fn read(&self, labels: Option<&[i32]>) -> Result<TokenRows> {
        let len = self.meta().tokens_per_clip();
        let mut out = TokenRows {
            len,
            frame_len: self.meta().context_len(),
            ..TokenRows::default()
        };
        for part in &self.manifest.parts {
            let path = self.dir.join(&part.file);
            check_part_file(&path, part, &super::layout::manifest_path(&self.dir))?;
            let expected = PartRows {
                first_clip: part.first_clip,
                rows: part.rows,
                codebook_size: self.meta().codebook_size,
            };
            crate::parquet_guard::guarded(&path, || read_part(&path, len, labels, &expected, &mut out))?;
        }
        Ok(out)
    }

    /// Reads every row and applies every check that [`TokenTable::read`]
    /// does (types, list lengths, nulls, clip ids, tokens below the codebook
    /// size), so that a table `stats` accepts is one a prior trains on.
    pub fn validate(&self) -> Result<()> {
        self.read(None).map(|_| ())
    }
}

/// The part file is the one its manifest recorded: same size and, where the
/// manifest has it, same SHA-256 (a flipped byte in a Parquet data page
/// would otherwise be read as valid tokens).
fn check_part_file(path: &Path, part: &PartEntry, manifest: &Path) -> Result<()> {
    let bytes = std::fs::metadata(path).at(path)?.len();
    if bytes != part.bytes {
        return Err(PipelineError::format(
            path,
            format!("{bytes} bytes, its manifest says {} (cut or replaced)", part.bytes),
        ));
    }
    match &part.sha256 {
        Some(expected) => crate::shards::format::check_sha256(path, expected, manifest),
        None => Ok(()),
    }
}

/// What the manifest says one part holds; its rows are checked against it.
struct PartRows {
    first_clip: u64,
    rows: u64,
    codebook_size: usize,
}

fn read_part(
    path: &Path,
    len: usize,
    labels: Option<&[i32]>,
    expected: &PartRows,
    out: &mut TokenRows,
) -> Result<()> {
    let parquet_err = |e| PipelineError::Parquet {
        path: path.into(),
        source: e,
    };
    let file = File::open(path).at(path)?;
    let file_len = file.metadata().at(path)?.len();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    crate::shards::metadata::check_column_chunks(path, builder.metadata(), file_len)?;
    let wanted = ["clip_id", "tokens", "label", "actions", "frames"];
    let schema = builder.parquet_schema();
    let roots: Vec<usize> = (0..schema.root_schema().get_fields().len())
        .filter(|&i| wanted.contains(&schema.root_schema().get_fields()[i].name()))
        .collect();
    let mask = ProjectionMask::roots(schema, roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(parquet_err)?;
    let missing = |name: &str| {
        PipelineError::format(path, format!("column `{name}` missing or of the wrong type"))
    };
    let mut seen = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| PipelineError::Arrow {
            path: path.into(),
            source: e,
        })?;
        let ids = batch
            .column_by_name("clip_id")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| missing("clip_id"))?;
        let tokens = batch.column_by_name("tokens").ok_or_else(|| missing("tokens"))?;
        let values = flat_values(tokens.as_ref(), len)
            .and_then(|v| v.as_primitive_opt::<UInt16Type>())
            .ok_or_else(|| missing("tokens"))?;
        if values.null_count() > 0 || ids.null_count() > 0 {
            return Err(PipelineError::format(path, "null clip ids or tokens"));
        }
        let values: &[u16] = values.values();
        if let Some(bad) = values.iter().find(|&&t| t as usize >= expected.codebook_size) {
            return Err(PipelineError::format(
                path,
                format!("token {bad} is not a code of the table's {}-code codebook", expected.codebook_size),
            ));
        }
        for (i, &id) in ids.values().iter().enumerate() {
            let want = expected.first_clip + seen + i as u64;
            if id != want {
                return Err(PipelineError::format(
                    path,
                    format!("row {} has clip id {id}, expected {want} (the part's rows are consecutive clip ids)", seen + i as u64),
                ));
            }
        }
        seen += batch.num_rows() as u64;
        let label = batch
            .column_by_name("label")
            .and_then(|c| c.as_primitive_opt::<Int32Type>());
        let actions = checked_actions(&batch, path)?;
        let frame_len = out.frame_len;
        let frames: Option<&[u8]> = if frame_len == 0 {
            None
        } else {
            let bytes = batch
                .column_by_name("frames")
                .and_then(|c| flat_values(c.as_ref(), frame_len))
                .and_then(|v| v.as_primitive_opt::<arrow::datatypes::UInt8Type>())
                .filter(|v| v.null_count() == 0)
                .ok_or_else(|| missing("frames"))?;
            Some(bytes.values())
        };
        if labels.is_some() && label.is_none() {
            return Err(PipelineError::format(
                path,
                "filtering by label, but the table has no `label` column",
            ));
        }
        let label_of = |i: usize| label.filter(|l| l.is_valid(i)).map(|l| l.value(i));
        let keep = |i: usize| match labels {
            None => true,
            Some(set) => label_of(i).is_some_and(|l| set.contains(&l)),
        };
        if labels.is_none() {
            out.tokens.extend_from_slice(values);
            out.clip_ids.extend_from_slice(&ids.values()[..]);
        }
        for i in 0..batch.num_rows() {
            if labels.is_some() {
                if !keep(i) {
                    continue;
                }
                out.tokens.extend_from_slice(&values[i * len..(i + 1) * len]);
                out.clip_ids.push(ids.value(i));
            }
            if label.is_some() {
                out.labels.get_or_insert_with(Vec::new).push(label_of(i));
            }
            if let Some(a) = actions {
                out.actions.get_or_insert_with(Vec::new).push(actions_row(a, i));
            }
            if let Some(f) = frames {
                out.frames
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&f[i * frame_len..(i + 1) * frame_len]);
            }
        }
    }
    if seen != expected.rows {
        return Err(PipelineError::format(
            path,
            format!("{seen} rows, its manifest says {}", expected.rows),
        ));
    }
    Ok(())
}

/// The values of a fixed-size-list column holding `len` values per row,
/// flat (version 1) or nested once per axis (version 2): the innermost
/// array, when the list sizes multiply to `len`, no level has nulls and
/// nothing is sliced.
fn flat_values(column: &dyn Array, len: usize) -> Option<&dyn Array> {
    let rows = column.len();
    let mut array = column;
    let mut per_row = 1usize;
    while let Some(list) = array.as_fixed_size_list_opt() {
        if list.null_count() > 0 || list.offset() != 0 {
            return None;
        }
        per_row = per_row.checked_mul(list.value_length() as usize)?;
        array = list.values().as_ref();
    }
    (array.offset() == 0 && per_row == len && array.len() == rows.checked_mul(len)?).then_some(array)
}

/// A batch of token rows for training.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `[batch, len]` row-major.
    pub tokens: Vec<u16>,
    pub len: usize,
    pub clip_ids: Vec<u64>,
    pub labels: Option<Vec<Option<i32>>>,
    pub actions: Option<Vec<Option<Vec<f32>>>>,
    /// `[batch, k * H * W * C]` uint8 context frames, when the table has them.
    pub frames: Option<Vec<u8>>,
}

/// Endless shuffled batches over loaded rows: every row once per epoch, a
/// fresh seeded order each epoch, resumable from a sample counter.
pub struct TokenBatches {
    rows: Arc<TokenRows>,
    order: ShuffledOrder,
    batch_size: usize,
    /// Of each batch, the rows `first..first + count` are handed out.
    slice: (usize, usize),
    sample: u64,
}

/// Purpose of the token shuffle (its stream of the run seed).
const TOKEN_ORDER: &str = "token-order";

impl TokenBatches {
    /// Panics when `rows` is empty or `batch_size` is 0; callers check first.
    pub fn new(rows: Arc<TokenRows>, batch_size: usize, seed: u64, start_sample: u64) -> Self {
        assert!(batch_size > 0, "batch size 0");
        let order = ShuffledOrder::new(seed, TOKEN_ORDER, rows.rows() as u64);
        Self {
            rows,
            order,
            batch_size,
            slice: (0, batch_size),
            sample: start_sample,
        }
    }

    /// One rank's share of every batch in data-parallel training: of each
    /// global batch, the `count` rows starting at `first`. Panics when the
    /// slice leaves the batch; callers split the batch first.
    pub fn slice(mut self, first: usize, count: usize) -> Self {
        assert!(count > 0 && first + count <= self.batch_size, "slice outside the batch");
        self.slice = (first, count);
        self
    }

    /// Samples handed out so far (including `start_sample`).
    pub fn samples_seen(&self) -> u64 {
        self.sample
    }
}

impl Iterator for TokenBatches {
    type Item = TokenBatch;

    fn next(&mut self) -> Option<TokenBatch> {
        let (first, count) = self.slice;
        let picks: Vec<usize> = (first as u64..(first + count) as u64)
            .map(|i| self.order.item_at(self.sample + i) as usize)
            .collect();
        self.sample += self.batch_size as u64;
        Some(self.rows.pick(&picks))
    }
}

/// The table folder `tokens_root/<name>`, or without a name the one whose
/// manifest was written last (the newest encoding).
pub fn find_table(tokens_root: &Path, name: Option<&str>) -> Result<PathBuf> {
    if let Some(name) = name {
        let dir = crate::names::join_name(tokens_root, "--table", name)?;
        if !dir.is_dir() {
            return Err(PipelineError::format(&dir, "no such token table (run `just encode-latents` first)"));
        }
        return Ok(dir);
    }
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for table in std::fs::read_dir(tokens_root).at(tokens_root)?.flatten() {
        for manifest in super::layout::manifests(&table.path()) {
            if let Ok(modified) = std::fs::metadata(&manifest).and_then(|m| m.modified()) {
                if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                    newest = Some((modified, table.path()));
                }
            }
        }
    }
    newest.map(|(_, dir)| dir).ok_or_else(|| {
        PipelineError::format(tokens_root, "holds no complete token table (run `just encode-latents` first)")
    })
}

/// The split names of the token table folder `table` that have a complete
/// table, sorted.
pub fn table_splits(table: &Path) -> Result<Vec<String>> {
    std::fs::read_dir(table).at(table)?;
    Ok(super::layout::complete_splits(table))
}
