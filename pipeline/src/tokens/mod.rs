//! Token tables: the VQ-VAE codes of every clip of a split, cached as Parquet
//! so priors train without rerunning the VQ-VAE (see datasets/README.md).
//!
//! `datasets/<dataset>/tokens/<name>/data/<split>/part-NNNNN.parquet`, the
//! manifests and statistics in `<name>/meta/` ([`layout`]).
//! One row per clip: `clip_id` u64, `split` utf8, `table` utf8, the
//! conditioning columns of clips.parquet (`label`, `text`, `actions`) when
//! the dataset has them, and `tokens`, uint16 `[t][h][w]`.
//! Every part carries the table's metadata as Parquet key-value pairs
//! (`videogpt.*`): format version, latent grid, codebook size, the SHA-256
//! of the VQ-VAE weights, the clip preprocessing.

pub mod layout;
pub mod meta;
pub mod plan;
pub mod reader;
pub mod stats;
pub mod writer;

pub use meta::{PartEntry, TableManifest, TokenTableMeta};
pub use plan::{PartPlan, ROWS_PER_PART, TablePlan};
pub use reader::{TokenBatch, TokenBatches, TokenExpectation, TokenRows, TokenTable, find_table, table_splits};
pub use stats::{TokenStats, token_stats};
pub use writer::write_token_part;
