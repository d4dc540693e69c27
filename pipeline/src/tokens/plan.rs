//! Writing a split's token table resumably: the clips are cut into parts of
//! consecutive clip ids; a part already on disk with the same metadata is
//! kept, so an interrupted `encode-latents` continues where it stopped and a
//! rerun with the same checkpoint writes nothing. The manifest is written
//! last.

use std::path::{Path, PathBuf};

use super::layout::manifest_path;
use super::meta::{PartEntry, TableManifest, TokenTableMeta, read_footer};
use super::writer::write_token_part;
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::index::CLIPS_TABLE_FILE;
use crate::shards::metadata::Conditioning;
use crate::shards::{ClipIndex, ClipRecord, read_split_clips};

/// Default clips per part file.
pub const ROWS_PER_PART: usize = 4096;

/// One part still to write or already written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub index: usize,
    /// Position of its first clip in clips.parquet.
    pub offset: usize,
    pub first_clip: u64,
    pub rows: usize,
}

impl PartPlan {
    pub fn file_name(&self) -> String {
        format!("part-{:05}.parquet", self.index)
    }

    pub fn clip_ids(&self) -> std::ops::Range<u64> {
        self.first_clip..self.first_clip + self.rows as u64
    }
}

#[derive(Debug)]
pub struct TablePlan {
    dir: PathBuf,
    meta: TokenTableMeta,
    records: Vec<ClipRecord>,
    columns: Conditioning,
    parts: Vec<PartPlan>,
}

impl TablePlan {
    /// Plans the table for the clips of `clips_split` in `table_dir`.
    /// Refuses a folder holding a table with other metadata (another
    /// checkpoint or other clips) unless `overwrite`, which then removes it.
    pub fn new(
        clips_split: &Path,
        table_dir: &Path,
        meta: TokenTableMeta,
        rows_per_part: usize,
        overwrite: bool,
    ) -> Result<Self> {
        Self::for_task(clips_split, table_dir, meta, rows_per_part, overwrite, false)
    }

    /// [`TablePlan::new`] for one of several tasks writing the folder at
    /// once (`shared`): then temporary files are left alone, since they may
    /// be another task's parts being written.
    pub fn for_task(
        clips_split: &Path,
        table_dir: &Path,
        meta: TokenTableMeta,
        rows_per_part: usize,
        overwrite: bool,
        shared: bool,
    ) -> Result<Self> {
        if rows_per_part == 0 {
            return Err(PipelineError::config("rows per part must be at least 1"));
        }
        let index = ClipIndex::read(clips_split)?;
        let records = read_split_clips(clips_split, &index)?;
        let columns = Conditioning::of_clips_table(&clips_split.join(CLIPS_TABLE_FILE))?;
        let mut parts = Vec::new();
        for (index, chunk) in records.chunks(rows_per_part).enumerate() {
            parts.push(PartPlan {
                index,
                offset: index * rows_per_part,
                first_clip: chunk[0].clip_id,
                rows: chunk.len(),
            });
        }
        let plan = Self {
            dir: table_dir.to_path_buf(),
            meta,
            records,
            columns,
            parts,
        };
        plan.guard_existing(overwrite, shared)?;
        Ok(plan)
    }

    /// Deals with what a previous run left in the folder.
    fn guard_existing(&self, overwrite: bool, shared: bool) -> Result<()> {
        if !self.dir.is_dir() {
            return Ok(());
        }
        if !shared {
            crate::atomic::remove_stale_temps(&self.dir).at(&self.dir)?;
        }
        let manifest = manifest_path(&self.dir);
        let mut foreign: Vec<PathBuf> = Vec::new();
        if manifest.is_file() {
            match TableManifest::read(&self.dir) {
                Ok(m) if m.meta == self.meta => {}
                _ => foreign.push(manifest.clone()),
            }
        }
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let path = entry.at(&self.dir)?.path();
            let is_part = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"));
            if is_part && read_footer(&path).ok().map(|(_, m)| m).as_ref() != Some(&self.meta) {
                foreign.push(path);
            }
        }
        if foreign.is_empty() {
            return Ok(());
        }
        if !overwrite {
            return Err(PipelineError::format(
                &foreign[0],
                format!(
                    "{} holds a token table written by another checkpoint or from other clips ({} files); pass --overwrite to replace it",
                    self.dir.display(),
                    foreign.len()
                ),
            ));
        }
        for path in foreign {
            std::fs::remove_file(&path).at(&path)?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn meta(&self) -> &TokenTableMeta {
        &self.meta
    }

    pub fn parts(&self) -> &[PartPlan] {
        &self.parts
    }

    pub fn clips(&self) -> u64 {
        self.records.len() as u64
    }

    /// Whether `part` is on disk, complete, from this checkpoint.
    pub fn is_done(&self, part: &PartPlan) -> bool {
        read_footer(&self.dir.join(part.file_name()))
            .is_ok_and(|(rows, meta)| rows == part.rows as u64 && meta == self.meta)
    }

    /// The parts still to write.
    pub fn pending(&self) -> Vec<PartPlan> {
        self.parts.iter().filter(|p| !self.is_done(p)).copied().collect()
    }

    /// Writes `part` with its clips' tokens (`part.rows * tokens_per_clip`)
    /// and context frames (`part.rows * context_len`, when the table keeps them).
    pub fn write(&self, part: &PartPlan, tokens: &[u16], frames: Option<&[u8]>) -> Result<()> {
        let records = &self.records[part.offset..part.offset + part.rows];
        let path = self.dir.join(part.file_name());
        write_token_part(&path, &self.meta, records, tokens, frames, self.columns)?;
        Ok(())
    }

    /// Writes the manifest once every part is on disk; returns the manifest.
    pub fn finish(&self) -> Result<TableManifest> {
        let mut entries = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            if !self.is_done(part) {
                return Err(PipelineError::format(
                    self.dir.join(part.file_name()),
                    "part missing or incomplete; rerun encode-latents",
                ));
            }
            let path = self.dir.join(part.file_name());
            entries.push(PartEntry {
                file: part.file_name(),
                first_clip: part.first_clip,
                rows: part.rows as u64,
                bytes: std::fs::metadata(&path).at(&path)?.len(),
                sha256: Some(crate::shards::format::sha256_file(&path)?),
            });
        }
        let manifest = TableManifest::new(self.meta.clone(), entries);
        std::fs::create_dir_all(&self.dir).at(&self.dir)?;
        manifest.write(&self.dir)?;
        Ok(manifest)
    }
}
