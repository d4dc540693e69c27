//! The prior's sampling step: attention over a key/value cache
//! ([`cached_attention`], any device) and, on the CPU, the whole step on the
//! host with packed weights ([`Decoder`]).

pub mod cache;
pub mod kv_cache;
pub mod packed_linear;
pub mod step;

pub use cache::{KvCache, cached_attention};
pub use kv_cache::{HostKvCache, KvPrecision};
pub use packed_linear::PackedLinear;
pub use step::{Decoder, DecoderBlock, DecoderState, FoldedNorm};
