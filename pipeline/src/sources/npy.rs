//! Reads the header of a NumPy `.npy` file holding a C-order uint8 array
//! (as `mnist_test_seq.npy` does), so the data can be read in place by offset.

use std::io::Read;
use std::path::Path;

use crate::error::{IoContext, PipelineError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyU8 {
    pub shape: Vec<usize>,
    /// Byte offset of the first element.
    pub data_offset: u64,
}

/// Longest header accepted (numpy writes about 128 bytes).
const MAX_HEADER_BYTES: usize = 1 << 16;

pub fn read_header(path: &Path) -> Result<NpyU8> {
    let bad = |what: String| PipelineError::format(path, what);
    let mut file = std::fs::File::open(path).at(path)?;
    let mut pre = [0u8; 10];
    file.read_exact(&mut pre)
        .map_err(|_| bad("too short to be a .npy file".into()))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (magic \\x93NUMPY missing)".into()));
    }
    let (header_len, prefix) = match pre[6] {
        1 => (u16::from_le_bytes([pre[8], pre[9]]) as usize, 10),
        2 | 3 => {
            let mut more = [0u8; 2];
            file.read_exact(&mut more).at(path)?;
            (
                u32::from_le_bytes([pre[8], pre[9], more[0], more[1]]) as usize,
                12,
            )
        }
        v => return Err(bad(format!(".npy version {v} is not supported"))),
    };
    // numpy pads the header with spaces to a multiple of 16 (64 since 1.14)
    // bytes and ends it with a newline; a length that breaks either rule
    // would read the pixels from the wrong offset.
    if header_len > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header length {header_len} is over {MAX_HEADER_BYTES} bytes"
        )));
    }
    if (prefix + header_len) % 16 != 0 {
        return Err(bad(format!(
            "header length {header_len} does not end the header on a 16-byte boundary; the file is damaged"
        )));
    }
    let mut header = vec![0u8; header_len];
    file.read_exact(&mut header)
        .map_err(|_| bad("truncated .npy header".into()))?;
    if header.last() != Some(&b'\n') {
        return Err(bad(
            "header does not end with a newline where its length says; the file is damaged".into(),
        ));
    }
    let header = String::from_utf8_lossy(&header);
    let descr = dict_value(&header, "descr").ok_or_else(|| bad("header has no descr".into()))?;
    if !matches!(
        descr.trim_matches(|c| c == '\'' || c == '"'),
        "|u1" | "u1" | "<u1" | ">u1"
    ) {
        return Err(bad(format!("dtype {} is not uint8", crate::names::quote(descr))));
    }
    if dict_value(&header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let shape_text =
        dict_value(&header, "shape").ok_or_else(|| bad("header has no shape".into()))?;
    let shape = shape_text
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("bad shape {}", crate::names::quote(shape_text))))
        })
        .collect::<Result<Vec<_>>>()?;
    let data_offset = (prefix + header_len) as u64;
    let elements = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
        .ok_or_else(|| bad(format!("shape {} overflows 64 bits", crate::names::quote(shape_text))))?;
    let need = data_offset.saturating_add(elements);
    let have = file.metadata().at(path)?.len();
    if have < need {
        return Err(bad(format!(
            "truncated: shape {shape:?} needs {need} bytes, file has {have}"
        )));
    }
    Ok(NpyU8 { shape, data_offset })
}

/// The value after `'key':` in a Python dict literal, up to the comma that
/// ends it (commas inside a shape tuple do not).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest[rest.find(':')? + 1..].trim_start();
    let mut depth = 0i32;
    let end = rest
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (c == ',' && depth == 0) || c == '}'
        })
        .map_or(rest.len(), |(i, _)| i);
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numpy_written_header() {
        // Written as numpy 1.x writes np.zeros((20, 3, 64, 64), np.uint8).
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        let data = vec![0u8; 20 * 3 * 64 * 64];
        crate::testing::write_npy_u8(&p, &[20, 3, 64, 64], &data).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let h = read_header(&p).unwrap();
        assert_eq!(h.shape, vec![20, 3, 64, 64]);
        assert_eq!(h.data_offset, 128);
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(
            read_header(&p)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn refuses_a_header_length_that_misplaces_the_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.npy");
        crate::testing::write_npy_u8(&p, &[2, 3, 8, 8], &[7u8; 2 * 3 * 8 * 8]).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        let len = u16::from_le_bytes([bytes[8], bytes[9]]);
        bytes[8..10].copy_from_slice(&(len - 20).to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = read_header(&p).unwrap_err().to_string();
        assert!(e.contains("a.npy") && e.contains("damaged"), "{e}");
        // A shape whose product wraps 64 bits is refused, not wrapped.
        crate::testing::write_npy_u8(&p, &[1 << 32, 1 << 32, 2], &[]).unwrap();
        let e = read_header(&p).unwrap_err().to_string();
        assert!(e.contains("overflows"), "{e}");
    }
}
