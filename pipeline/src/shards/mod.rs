//! Clip shards: the on-disk form of a prepared split (see datasets/README.md).

pub mod format;
pub mod index;
pub mod metadata;
pub mod reader;
pub mod verify;

pub use format::{ShardBuilder, ShardReader, compress_clip};
pub use index::{ClipIndex, Preprocessing, Reject, ShardEntry};
pub use metadata::{ClipRecord, read_clips_table, read_split_clips, write_clips_table};
pub use reader::ClipShards;
pub use verify::{VerifyReport, verify_split};
