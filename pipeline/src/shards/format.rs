//! The byte layout of one clip shard file (`shard-NNNNN.clips`).
//!
//! ```text
//! offset 0          magic  b"VGCLIPS1"                      8 bytes
//! offsets[i]..      clip i: one zstd frame (content size and content
//!   offsets[i+1]    checksum in its header), decompressing to T*H*W*C
//!                   uint8 bytes in [T, H, W, C] order
//! footer            offsets[0..=n]: (n + 1) x u64 little-endian
//!                   n: u64 little-endian
//!                   magic b"VGCLIPS1"                       8 bytes
//! ```
//! Every clip is compressed on its own, so clip `i` is two reads away: the
//! footer (once per shard) and its byte range. The clip shape lives in the
//! split's `index.json`. Owns only this layout: no knowledge of datasets.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{IoContext, PipelineError, Result};

pub const SHARD_MAGIC: &[u8; 8] = b"VGCLIPS1";
const TRAILER_LEN: u64 = 16; // n + magic

/// Compresses one clip's pixels into a standalone zstd frame.
pub fn compress_clip(pixels: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_checksum(true)?;
    c.include_contentsize(true)?;
    c.compress(pixels)
}

/// Assembles a shard in memory from already-compressed clips, in order.
#[derive(Debug, Default)]
pub struct ShardBuilder {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

impl ShardBuilder {
    pub fn new() -> Self {
        let mut bytes = Vec::with_capacity(1 << 20);
        bytes.extend_from_slice(SHARD_MAGIC);
        Self {
            bytes,
            offsets: vec![SHARD_MAGIC.len() as u64],
        }
    }

    pub fn push(&mut self, compressed_clip: &[u8]) {
        self.bytes.extend_from_slice(compressed_clip);
        self.offsets.push(self.bytes.len() as u64);
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The finished file contents.
    pub fn finish(mut self) -> Vec<u8> {
        let n = self.len() as u64;
        for off in &self.offsets {
            self.bytes.extend_from_slice(&off.to_le_bytes());
        }
        self.bytes.extend_from_slice(&n.to_le_bytes());
        self.bytes.extend_from_slice(SHARD_MAGIC);
        self.bytes
    }
}

/// Hex SHA-256 of a byte slice (the shard checksum recorded in index.json).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// An error naming `path` unless its SHA-256 is `expected`, the value the
/// manifest `recorded_in` holds: Parquet pages carry no checksum of their
/// own, so readers compare the whole file's before parsing it.
pub fn check_sha256(path: &Path, expected: &str, recorded_in: &Path) -> Result<()> {
    let found = sha256_file(path)?;
    if found == expected {
        return Ok(());
    }
    let short = |hex: &str| hex.chars().take(16).collect::<String>();
    let manifest = recorded_in.file_name().unwrap_or_default().to_string_lossy();
    Err(crate::error::PipelineError::format(
        path,
        format!(
            "damaged: its SHA-256 starts {}, but {manifest} records {}",
            short(&found),
            short(expected)
        ),
    ))
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).at(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Random access to the clips of one shard file.
#[derive(Debug)]
pub struct ShardReader {
    path: PathBuf,
    file: File,
    offsets: Vec<u64>,
}

impl ShardReader {
    /// Opens a shard and reads its footer; rejects files that are not
    /// complete shards (wrong magic, truncated, offsets out of order).
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bad = |what: String| PipelineError::format(path, what);
        if len < SHARD_MAGIC.len() as u64 + TRAILER_LEN + 8 {
            return Err(bad(format!("{len} bytes is too short to be a clip shard")));
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0).at(path)?;
        let mut trailer = [0u8; TRAILER_LEN as usize];
        file.read_exact_at(&mut trailer, len - TRAILER_LEN)
            .at(path)?;
        if &head != SHARD_MAGIC || &trailer[8..] != SHARD_MAGIC {
            return Err(bad(
                "not a clip shard (magic VGCLIPS1 missing at start or end; truncated?)".into(),
            ));
        }
        let n = u64::from_le_bytes(trailer[..8].try_into().unwrap());
        let table_len = n
            .checked_add(1)
            .and_then(|k| k.checked_mul(8))
            .filter(|t| t.checked_add(TRAILER_LEN + 8).is_some_and(|end| end <= len))
            .ok_or_else(|| {
                bad(format!(
                    "footer claims {n} clips, more than the file can hold"
                ))
            })?;
        let table_start = len - TRAILER_LEN - table_len;
        let mut raw = vec![0u8; table_len as usize];
        file.read_exact_at(&mut raw, table_start).at(path)?;
        let offsets: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let ordered = offsets.windows(2).all(|w| w[0] <= w[1]);
        if offsets[0] != SHARD_MAGIC.len() as u64 || !ordered || offsets[n as usize] != table_start
        {
            return Err(bad("clip offset table is inconsistent".into()));
        }
        Ok(Self {
            path: path.to_owned(),
            file,
            offsets,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn num_clips(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The compressed bytes of clip `i`.
    pub fn read_compressed(&self, i: usize) -> Result<Vec<u8>> {
        if i >= self.num_clips() {
            return Err(PipelineError::format(
                &self.path,
                format!("clip {i} requested, shard holds {}", self.num_clips()),
            ));
        }
        let (start, end) = (self.offsets[i], self.offsets[i + 1]);
        let mut buf = vec![0u8; (end - start) as usize];
        self.file.read_exact_at(&mut buf, start).at(&self.path)?;
        Ok(buf)
    }

    /// Clip `i` decompressed: `expected_len` = T*H*W*C bytes.
    pub fn read_clip(&self, i: usize, expected_len: usize) -> Result<Vec<u8>> {
        let compressed = self.read_compressed(i)?;
        let pixels = zstd::bulk::decompress(&compressed, expected_len).map_err(|e| {
            PipelineError::format(
                &self.path,
                format!("clip {i}: zstd frame does not decode: {e}"),
            )
        })?;
        if pixels.len() != expected_len {
            return Err(PipelineError::format(
                &self.path,
                format!(
                    "clip {i}: {} bytes decoded, expected {expected_len}",
                    pixels.len()
                ),
            ));
        }
        Ok(pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_round_trip_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-00000.clips");
        let clips: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 + i as usize]).collect();
        let mut b = ShardBuilder::new();
        for c in &clips {
            b.push(&compress_clip(c, 3).unwrap());
        }
        std::fs::write(&path, b.finish()).unwrap();
        let r = ShardReader::open(&path).unwrap();
        assert_eq!(r.num_clips(), 5);
        for i in [4, 0, 2, 3, 1] {
            assert_eq!(r.read_clip(i, clips[i].len()).unwrap(), clips[i]);
        }
        assert!(r.read_clip(5, 10).is_err());
        assert!(
            r.read_clip(1, 3).is_err(),
            "wrong expected size is an error"
        );
    }

    #[test]
    fn truncated_or_foreign_files_are_rejected_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.clips");
        let mut b = ShardBuilder::new();
        b.push(&compress_clip(&[1; 100], 3).unwrap());
        let bytes = b.finish();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = ShardReader::open(&path).unwrap_err().to_string();
        assert!(err.contains("s.clips") && err.contains("magic"), "{err}");
        std::fs::write(&path, b"hello").unwrap();
        assert!(
            ShardReader::open(&path)
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
    }

    #[test]
    fn a_footer_claiming_huge_clip_counts_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.clips");
        for n in [1u64 << 61, (1 << 61) - 2, (1 << 61) - 1, u64::MAX] {
            let mut bytes = SHARD_MAGIC.to_vec();
            bytes.extend_from_slice(&[0; 64]);
            bytes.extend_from_slice(&n.to_le_bytes());
            bytes.extend_from_slice(SHARD_MAGIC);
            std::fs::write(&path, &bytes).unwrap();
            let e = ShardReader::open(&path).err().expect("refused").to_string();
            assert!(e.contains("more than the file can hold"), "{n}: {e}");
        }
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
