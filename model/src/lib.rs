//! VideoGPT models: the VQ-VAE tokenizer, its training and evaluation.
//! Backend-agnostic: burn 0.22 picks the backend from the runtime `Device`
//! ([`backend::BackendKind`]).
//!
//! - [`vqvae`]: the model (encoder, axial attention, codebook, decoder).
//! - [`data`]: clip shards to float batches on a loader thread.
//! - [`train`], [`checkpoint`], [`eval`], [`preview`]: `train-vqvae`,
//!   `eval-vqvae` and what they write.
//!
//! What this crate may use of the pipeline: reading clip shards
//! ([`videogpt_pipeline::shards::ClipShards`]) and, later, token tables. It
//! must not reach into a dataset's raw files.

pub mod backend;
pub mod checkpoint;
pub mod data;
pub mod distributed;
pub mod encode;
pub mod error;
pub mod eval;
pub mod fvd;
pub mod limits;
pub mod ops;
pub mod patches;
pub mod preview;
pub mod prior;
pub mod resume;
pub mod run_config;
pub mod schedule;
pub mod train;
pub mod vqvae;

pub use backend::BackendKind;
pub use error::{ModelError, Result};
pub use videogpt_pipeline::shards::ClipShards;
pub use vqvae::{VqVae, VqVaeConfig};
