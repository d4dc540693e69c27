//! VideoGPT data pipeline: upstream datasets to clip shards (zstd) with
//! per-clip metadata (Parquet). Knows nothing of neural networks.
//!
//! - [`sources`]: one module per upstream format; list videos, decode one.
//! - [`clip_sampling`]: sequence length, frame stride, start policy.
//! - [`prepare`]: sources to shards, parallel, atomic, resumable.
//! - [`shards`]: the shard byte layout, index.json, clips.parquet, reading
//!   and verification.

pub mod atomic;
pub mod cli;
pub mod clip_sampling;
pub mod error;
pub mod prepare;
pub mod progress;
pub mod rng;
pub mod shards;
pub mod shuffle;
pub mod sources;
pub mod testing;
pub mod tokens;

pub use clip_sampling::{ClipSampling, StartPolicy};
pub use error::{PipelineError, Result};
pub use prepare::{PrepareConfig, PrepareSummary, prepare_split};
