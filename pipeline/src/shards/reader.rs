//! Random access to every clip of a prepared split, by global clip id.
//! This is what training loaders and tests use; it never writes.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::format::ShardReader;
use super::index::ClipIndex;
use crate::error::{PipelineError, Result};

pub struct ClipShards {
    dir: PathBuf,
    index: ClipIndex,
    readers: Vec<OnceLock<ShardReader>>,
}

impl ClipShards {
    /// Opens a split folder (`datasets/<dataset>/clips/<split>`).
    pub fn open(split_dir: &Path) -> Result<Self> {
        let index = ClipIndex::read(split_dir)?;
        let readers = index.shards.iter().map(|_| OnceLock::new()).collect();
        Ok(Self {
            dir: split_dir.to_owned(),
            index,
            readers,
        })
    }

    pub fn index(&self) -> &ClipIndex {
        &self.index
    }

    pub fn len(&self) -> u64 {
        self.index.num_clips
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `[T, H, W, C]`.
    pub fn clip_shape(&self) -> [usize; 4] {
        self.index.clip_shape
    }

    /// The shard and position holding global clip `id`.
    pub fn locate(&self, id: u64) -> Option<(usize, usize)> {
        let shards = &self.index.shards;
        let s = shards
            .partition_point(|e| e.first_clip <= id)
            .checked_sub(1)?;
        let within = id - shards[s].first_clip;
        (within < shards[s].clips as u64).then_some((s, within as usize))
    }

    fn reader(&self, shard: usize) -> Result<&ShardReader> {
        if let Some(r) = self.readers[shard].get() {
            return Ok(r);
        }
        let r = ShardReader::open(&self.dir.join(&self.index.shards[shard].file))?;
        Ok(self.readers[shard].get_or_init(|| r))
    }

    /// Pixels of clip `id`, uint8 `[T, H, W, C]`.
    pub fn clip(&self, id: u64) -> Result<Vec<u8>> {
        let (shard, i) = self.locate(id).ok_or_else(|| {
            PipelineError::format(
                &self.dir,
                format!("clip {id} requested, split holds {}", self.len()),
            )
        })?;
        self.reader(shard)?.read_clip(i, self.index.clip_len())
    }
}
