//! VideoGPT models: the VQ-VAE tokenizer, the GPT prior, training,
//! `encode-latents`, sampling and FVD. Generic over burn's `Backend`.
//!
//! Not built yet (see the issues for the VQ-VAE, token tables, prior and
//! FVD). What this crate may use of the pipeline: reading clip shards
//! ([`videogpt_pipeline::shards::ClipShards`]) and, later, token tables. It
//! must not reach into a dataset's raw files.

pub use videogpt_pipeline::shards::ClipShards;
