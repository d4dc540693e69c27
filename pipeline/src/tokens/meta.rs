//! What a token table says about itself: the Parquet key-value metadata of
//! every part file, and the split's manifest (`meta/<split>.json`, see
//! [`super::layout`]), written last, whose presence means the split's table
//! is complete.

use std::path::Path;

use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};

use super::layout::manifest_path;
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::Preprocessing;
use crate::shards::index::{check_clip_shape, check_consecutive_files};

pub const TOKENS_FORMAT: &str = "videogpt-token-table";
/// 2: parts in `data/<split>/`, manifests in `meta/`, a `table` column and
/// `tokens` nested as `[t][h][w]`. Version 1 tables are still read.
pub const TOKENS_FORMAT_VERSION: u32 = 2;
/// Key prefix of the Parquet key-value metadata.
const KEY: &str = "videogpt.";

/// Everything that decides what the tokens mean. Identical in every part
/// file of a table and in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenTableMeta {
    pub dataset: String,
    pub split: String,
    /// The table's folder name, also stored in every row's `table` column
    /// (empty in version 1 tables, which have no such column).
    #[serde(default)]
    pub table: String,
    /// Latent grid `[t, h, w]`; tokens are stored in this raster order.
    pub latent_grid: [usize; 3],
    /// Number of codes; every token is below it.
    pub codebook_size: usize,
    /// Hex SHA-256 of the VQ-VAE checkpoint's weights file (`model.bpk`).
    pub checkpoint_sha256: String,
    /// The checkpoint folder as given to `encode-latents` (for people; the
    /// hash is what is checked).
    pub checkpoint: String,
    /// `[T, H, W, C]` of the encoded clips.
    pub clip_shape: [usize; 4],
    /// The clip preprocessing, copied from the split's index.json.
    pub preprocessing: Preprocessing,
    /// The first this many frames of every clip are stored in the `frames`
    /// column (uint8 `[k, H, W, C]`), for priors conditioned on frames.
    /// 0 (the default): no `frames` column.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub context_frames: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Most codes a table can hold: tokens are stored as uint16.
pub const MAX_CODEBOOK_SIZE: usize = 1 << 16;
/// Most tokens per clip (a 32x64x64 latent grid).
pub const MAX_TOKENS_PER_CLIP: usize = 1 << 17;

impl TokenTableMeta {
    /// Refuses metadata no encoder writes: a codebook that uint16 tokens
    /// cannot index, an empty or huge latent grid, context frames beyond the
    /// clip. Every reader checks this before it sizes anything by it.
    pub fn check(&self, path: &Path) -> Result<()> {
        let bad = |what: String| Err(PipelineError::format(path, what));
        if !(1..=MAX_CODEBOOK_SIZE).contains(&self.codebook_size) {
            return bad(format!(
                "codebook_size {} is outside 1..={MAX_CODEBOOK_SIZE} (tokens are uint16)",
                self.codebook_size
            ));
        }
        let tokens = self
            .latent_grid
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .filter(|&n| (1..=MAX_TOKENS_PER_CLIP).contains(&n));
        if tokens.is_none() {
            return bad(format!(
                "latent_grid {:?} is empty or has over {MAX_TOKENS_PER_CLIP} cells",
                self.latent_grid
            ));
        }
        check_clip_shape(path, self.clip_shape)?;
        let t = self.clip_shape[0];
        if self.context_frames > 0 && self.context_frames >= t {
            return bad(format!(
                "context_frames {} is not fewer than the {t} frames of a clip",
                self.context_frames
            ));
        }
        Ok(())
    }

    pub fn tokens_per_clip(&self) -> usize {
        self.latent_grid.iter().product()
    }

    /// `[k, H, W, C]` of the `frames` column, when there is one.
    pub fn context_shape(&self) -> Option<[usize; 4]> {
        let [_, h, w, c] = self.clip_shape;
        (self.context_frames > 0).then_some([self.context_frames, h, w, c])
    }

    /// Bytes per row of the `frames` column (0 without one).
    pub fn context_len(&self) -> usize {
        self.context_shape().map_or(0, |s| s.iter().product())
    }

    /// As Parquet key-value pairs (`videogpt.*`; values are plain text or JSON).
    pub fn to_key_values(&self) -> Vec<KeyValue> {
        let mut pairs = vec![
            KeyValue::new(format!("{KEY}format"), TOKENS_FORMAT.to_string()),
            KeyValue::new(
                format!("{KEY}format_version"),
                TOKENS_FORMAT_VERSION.to_string(),
            ),
            KeyValue::new(format!("{KEY}dataset"), self.dataset.clone()),
            KeyValue::new(format!("{KEY}split"), self.split.clone()),
            KeyValue::new(format!("{KEY}latent_grid"), json(&self.latent_grid)),
            KeyValue::new(
                format!("{KEY}codebook_size"),
                self.codebook_size.to_string(),
            ),
            KeyValue::new(
                format!("{KEY}checkpoint_sha256"),
                self.checkpoint_sha256.clone(),
            ),
            KeyValue::new(format!("{KEY}checkpoint"), self.checkpoint.clone()),
            KeyValue::new(format!("{KEY}clip_shape"), json(&self.clip_shape)),
            KeyValue::new(format!("{KEY}preprocessing"), json(&self.preprocessing)),
        ];
        if !self.table.is_empty() {
            pairs.push(KeyValue::new(format!("{KEY}table"), self.table.clone()));
        }
        // Optional (absent = 0), so tables without frames read as before.
        if self.context_frames > 0 {
            pairs.push(KeyValue::new(
                format!("{KEY}context_frames"),
                self.context_frames.to_string(),
            ));
        }
        pairs
    }

    /// Reads the metadata back from a part file's key-value pairs.
    pub fn from_key_values(path: &Path, pairs: Option<&Vec<KeyValue>>) -> Result<Self> {
        let get = |name: &str| -> Result<&str> {
            pairs
                .into_iter()
                .flatten()
                .find(|kv| kv.key == format!("{KEY}{name}"))
                .and_then(|kv| kv.value.as_deref())
                .ok_or_else(|| {
                    PipelineError::format(
                        path,
                        format!("not a token table: metadata key `{KEY}{name}` is missing"),
                    )
                })
        };
        let format = get("format")?;
        let version: u32 = parse(path, "format_version", get("format_version")?)?;
        if format != TOKENS_FORMAT || version > TOKENS_FORMAT_VERSION {
            return Err(PipelineError::format(
                path,
                format!(
                    "format {format} v{version} is not readable by this version ({TOKENS_FORMAT} v{TOKENS_FORMAT_VERSION})"
                ),
            ));
        }
        let meta = Self {
            dataset: get("dataset")?.to_string(),
            split: get("split")?.to_string(),
            table: get("table").map(str::to_string).unwrap_or_default(),
            latent_grid: parse(path, "latent_grid", get("latent_grid")?)?,
            codebook_size: parse(path, "codebook_size", get("codebook_size")?)?,
            checkpoint_sha256: get("checkpoint_sha256")?.to_string(),
            checkpoint: get("checkpoint")?.to_string(),
            clip_shape: parse(path, "clip_shape", get("clip_shape")?)?,
            preprocessing: parse(path, "preprocessing", get("preprocessing")?)?,
            context_frames: match get("context_frames") {
                Ok(v) => parse(path, "context_frames", v)?,
                Err(_) => 0,
            },
        };
        meta.check(path)?;
        Ok(meta)
    }
}

/// Row count and table metadata from a part file's footer.
pub fn read_footer(path: &Path) -> Result<(u64, TokenTableMeta)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = std::fs::File::open(path).at(path)?;
    let reader = SerializedFileReader::new(file).map_err(|e| PipelineError::Parquet {
        path: path.into(),
        source: e,
    })?;
    let meta = reader.metadata().file_metadata();
    let table = TokenTableMeta::from_key_values(path, meta.key_value_metadata())?;
    Ok((meta.num_rows() as u64, table))
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, key: &str, value: &str) -> Result<T> {
    serde_json::from_str(value).map_err(|e| {
        PipelineError::format(path, format!("metadata `{KEY}{key}` = {value:?}: {e}"))
    })
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("metadata serialises")
}

/// One part file of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEntry {
    pub file: String,
    /// Global clip id of its first row; rows are consecutive clip ids.
    pub first_clip: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the part file, checked on every read (Parquet pages
    /// carry no checksum of their own); absent in older tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The split's manifest: the metadata, the parts and the totals; written last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableManifest {
    pub format: String,
    pub format_version: u32,
    #[serde(flatten)]
    pub meta: TokenTableMeta,
    pub rows: u64,
    pub parts: Vec<PartEntry>,
}

impl TableManifest {
    pub fn new(meta: TokenTableMeta, parts: Vec<PartEntry>) -> Self {
        Self {
            format: TOKENS_FORMAT.into(),
            format_version: TOKENS_FORMAT_VERSION,
            rows: parts.iter().map(|p| p.rows).sum(),
            meta,
            parts,
        }
    }

    /// Reads the manifest of the split whose parts are in `dir`; a missing
    /// file means the table is not complete (or not there).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = manifest_path(dir);
        if !path.is_file() {
            return Err(PipelineError::format(
                dir,
                format!(
                    "no complete token table here ({} is missing; run `encode-latents` to write or finish it)",
                    path.display()
                ),
            ));
        }
        let text = std::fs::read_to_string(&path).at(&path)?;
        let manifest: Self = serde_json::from_str(&text)
            .map_err(|e| PipelineError::format(&path, format!("not a token table manifest: {e}")))?;
        if manifest.format != TOKENS_FORMAT || manifest.format_version > TOKENS_FORMAT_VERSION {
            return Err(PipelineError::format(
                &path,
                format!(
                    "format {} v{} is not readable by this version ({TOKENS_FORMAT} v{TOKENS_FORMAT_VERSION})",
                    manifest.format, manifest.format_version
                ),
            ));
        }
        manifest.check(&path)?;
        Ok(manifest)
    }

    /// The metadata is sane, every part is a file of the table's folder,
    /// parts hold consecutive clip ids from 0, and `rows` is their sum.
    fn check(&self, path: &Path) -> Result<()> {
        self.meta.check(path)?;
        let parts = self.parts.iter().map(|p| (p.file.as_str(), p.first_clip, p.rows));
        let held = check_consecutive_files(path, "part", parts)?;
        if held != self.rows {
            return Err(PipelineError::format(
                path,
                format!("its parts hold {held} rows, but rows says {}", self.rows),
            ));
        }
        Ok(())
    }

    /// Writes the manifest of the split whose parts are in `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = manifest_path(dir);
        if let Some(meta_dir) = path.parent() {
            std::fs::create_dir_all(meta_dir).at(meta_dir)?;
        }
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        crate::atomic::write_bytes_atomic(&path, &json).at(&path)
    }
}
