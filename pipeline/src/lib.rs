//! VideoGPT data pipeline: upstream datasets to clip shards (zstd) with
//! per-clip metadata (Parquet). Knows nothing of neural networks.
//!
//! - [`sources`]: one module per upstream format; list videos, decode one.
//! - [`video`]: compressed video files through FFmpeg, resized and cropped.
//! - [`clip_sampling`]: sequence length, frame stride, start policy;
//!   [`clip_cutter`] applies it to a stream of frames.
//! - [`prepare`]: sources to shards, parallel, atomic, resumable.
//! - [`shards`]: the shard byte layout, index.json, clips.parquet, reading
//!   and verification.

pub mod atomic;
pub mod card;
pub mod cli;
pub mod clip_cutter;
pub mod clip_sampling;
pub mod datasets;
pub mod error;
pub mod fuzzing;
pub mod names;
pub mod parquet_guard;
pub mod prepare;
pub mod progress;
pub mod rng;
pub mod shards;
pub mod shuffle;
pub mod sources;
pub mod tasks;
pub mod testing;
pub mod tokens;
pub mod video;

pub use clip_sampling::{ClipSampling, StartPolicy};
pub use error::{PipelineError, Result};
pub use prepare::{PrepareConfig, PrepareSummary, prepare_split};
