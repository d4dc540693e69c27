//! TFRecord framing: each record is
//! `u64 length | u32 masked_crc32c(length bytes) | data | u32 masked_crc32c(data)`,
//! all little-endian, with TensorFlow's CRC mask
//! `((crc >> 15) | (crc << 17)) + 0xa282ead8` over CRC-32C (Castagnoli).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{IoContext, Result};

pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Where one record's data lies in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    /// Position of the record in its file, from 0.
    pub index: u64,
    pub data_offset: u64,
    pub len: u64,
}

/// The records of a file whose framing is intact, and, if the framing breaks
/// (truncation, a bad length CRC), the record where it broke and why. Records
/// after a broken frame cannot be located.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub records: Vec<RecordLocation>,
    pub broken: Option<(u64, String)>,
}

/// Walks the framing of a TFRecord file without reading the record data.
pub fn scan(path: &Path) -> Result<Scan> {
    let file = File::open(path).at(path)?;
    let file_len = file.metadata().at(path)?.len();
    let mut scan = Scan::default();
    let mut pos = 0u64;
    while pos < file_len {
        let index = scan.records.len() as u64;
        if file_len - pos < 12 {
            scan.broken = Some((
                index,
                format!(
                    "truncated record header at byte {pos} ({} bytes left)",
                    file_len - pos
                ),
            ));
            break;
        }
        let mut header = [0u8; 12];
        file.read_exact_at(&mut header, pos).at(path)?;
        let len = u64::from_le_bytes(header[..8].try_into().unwrap());
        let len_crc = u32::from_le_bytes(header[8..].try_into().unwrap());
        if masked_crc32c(&header[..8]) != len_crc {
            scan.broken = Some((
                index,
                format!("length CRC mismatch at byte {pos}; the rest of the file is skipped"),
            ));
            break;
        }
        let data_offset = pos + 12;
        match data_offset.checked_add(len).and_then(|e| e.checked_add(4)) {
            Some(end) if end <= file_len => {
                scan.records.push(RecordLocation {
                    index,
                    data_offset,
                    len,
                });
                pos = end;
            }
            _ => {
                scan.broken = Some((
                    index,
                    format!(
                        "truncated: record of {len} bytes at byte {pos} runs past the end of the file ({file_len} bytes)"
                    ),
                ));
                break;
            }
        }
    }
    Ok(scan)
}

/// Reads one record's data and checks its CRC. `Err` is a reject reason.
pub fn read_record(file: &File, loc: &RecordLocation) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; loc.len as usize + 4];
    file.read_exact_at(&mut buf, loc.data_offset)
        .map_err(|e| format!("read failed: {e}"))?;
    let crc = u32::from_le_bytes(buf[loc.len as usize..].try_into().unwrap());
    buf.truncate(loc.len as usize);
    if masked_crc32c(&buf) != crc {
        return Err("data CRC mismatch (corrupt record)".into());
    }
    Ok(buf)
}

/// Appends one framed record (used to write test fixtures and benchmarks).
pub fn write_record(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc32c(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc32c(data).to_le_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // crc32c("123456789") = 0xE3069283 (the standard check value);
        // TensorFlow's MaskedCrc of it: rotate right 15, add 0xa282ead8.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(masked_crc32c(b"123456789"), 0xC78A_B0E5);
    }

    #[test]
    fn scan_finds_records_and_stops_at_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tfrecords");
        let mut bytes = Vec::new();
        for r in [&b"first"[..], b"second record", b"third"] {
            write_record(&mut bytes, r).unwrap();
        }
        std::fs::write(&p, &bytes).unwrap();
        let s = scan(&p).unwrap();
        assert_eq!(s.records.len(), 3);
        assert!(s.broken.is_none());
        let f = File::open(&p).unwrap();
        assert_eq!(read_record(&f, &s.records[1]).unwrap(), b"second record");

        std::fs::write(&p, &bytes[..bytes.len() - 2]).unwrap();
        let s = scan(&p).unwrap();
        assert_eq!(s.records.len(), 2);
        let (rec, why) = s.broken.unwrap();
        assert_eq!(rec, 2);
        assert!(why.contains("truncated"), "{why}");
    }

    #[test]
    fn flipped_data_byte_fails_the_data_crc() {
        let mut bytes = Vec::new();
        write_record(&mut bytes, b"payload").unwrap();
        bytes[14] ^= 1;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tfrecords");
        std::fs::write(&p, &bytes).unwrap();
        let s = scan(&p).unwrap();
        let err = read_record(&File::open(&p).unwrap(), &s.records[0]).unwrap_err();
        assert!(err.contains("CRC"), "{err}");
    }
}
