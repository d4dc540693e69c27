//! TGIF: `tgif-v1.0.tsv` (GIF URL, TAB, description; one line per
//! description) and the downloaded GIFs, stored under the last path segment
//! of their URL in `<raw>/gifs/` (or `<raw>/` itself).
//!
//! One video per GIF: a GIF listed on several lines gets its descriptions
//! joined with newlines, in file order, as `text`. GIFs missing on disk are
//! rejects (counted, listed in rejects.tsv); the rest is prepared. TGIF ships
//! no split in this file, so the split is a [`HashSplit`] on the file name
//! (10% test by default): deterministic, and stable as GIFs come and go.
//!
//! A GIF cut short (an interrupted download) is a reject: GIFs declare no
//! frame count, so FFmpeg would decode the frames before the cut without a
//! word; a complete GIF ends with the trailer byte 0x3B ([`gif_is_complete`]).

use crate::shards::metadata::Conditioning;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::video_files::{HashSplit, VideoFile, VideoFiles};
use crate::error::{IoContext, PipelineError, Result};
use crate::shards::Reject;
use crate::video::DecodeOptions;

pub const TSV_FILE: &str = "tgif-v1.0.tsv";

/// The byte that ends every complete GIF (GIF89a, section 27).
const GIF_TRAILER: u8 = 0x3B;

/// Whether a GIF file ends with the trailer byte (trailing zero padding
/// allowed). A GIF declares no frame count, so a download cut short still
/// decodes, just with fewer frames; the missing trailer is what tells.
pub fn gif_is_complete(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let tail_len = len.min(64);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    Ok(tail.iter().rev().find(|&&b| b != 0) == Some(&GIF_TRAILER))
}

/// One GIF of the listing.
#[derive(Debug, Clone, PartialEq)]
pub struct TgifEntry {
    pub url: String,
    pub file_name: String,
    pub descriptions: Vec<String>,
    /// 1-based line of its first description.
    pub line: usize,
}

/// Reads the TSV, grouping descriptions by GIF, in order of first mention.
pub fn read_listing(path: &Path) -> Result<Vec<TgifEntry>> {
    let text = std::fs::read_to_string(path).at(path)?;
    let mut entries: Vec<TgifEntry> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (n, line) in super::text_lines(&text).enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (url, description) = line.split_once('\t').ok_or_else(|| {
            PipelineError::format(
                path,
                format!("line {}: expected `<gif url>\\t<description>`", n + 1),
            )
        })?;
        let url = url.trim();
        let file_name = url
            .split(['?', '#'])
            .next()
            .and_then(|u| u.rsplit('/').next())
            .filter(|f| crate::names::name_problem(f).is_none())
            .ok_or_else(|| {
                PipelineError::format(
                    path,
                    format!("line {}: no file name in the URL {}", n + 1, crate::names::quote(url)),
                )
            })?
            .to_owned();
        let description = description.trim().to_owned();
        match by_name.get(&file_name) {
            Some(&i) => entries[i].descriptions.push(description),
            None => {
                by_name.insert(file_name.clone(), entries.len());
                entries.push(TgifEntry {
                    url: url.to_owned(),
                    file_name,
                    descriptions: vec![description],
                    line: n + 1,
                });
            }
        }
    }
    if entries.is_empty() {
        return Err(PipelineError::format(path, "lists no GIFs"));
    }
    Ok(entries)
}

/// The folder holding the GIFs: `<raw>/gifs` when it exists, else `<raw>`.
pub fn gif_dir(raw: &Path) -> PathBuf {
    let gifs = raw.join("gifs");
    if gifs.is_dir() { gifs } else { raw.to_owned() }
}

/// The GIFs of `split` ("train" or "test").
pub fn open(
    raw: &Path,
    split: &str,
    test_percent: u32,
    options: DecodeOptions,
) -> Result<VideoFiles> {
    let members = HashSplit::new("TGIF GIFs", split, test_percent)?;
    let tsv = raw.join(TSV_FILE);
    let entries = read_listing(&tsv)?;
    let dir = gif_dir(raw);
    let mut files = Vec::new();
    let mut rejects = Vec::new();
    for e in entries {
        if !members.contains(&e.file_name) {
            continue;
        }
        let path = dir.join(&e.file_name);
        if path.is_file() {
            files.push(VideoFile {
                path,
                label: None,
                text: Some(e.descriptions.join("\n")),
                actions: None,
            });
        } else {
            rejects.push(Reject {
                file: super::video_files::relative_name(raw, &path),
                record: Some(e.line as u64),
                reason: format!(
                    "missing on disk ({TSV_FILE} line {} lists {})",
                    e.line,
                    crate::names::quote(&e.url)
                ),
            });
        }
    }
    let describe = serde_json::json!({
        "kind": "tgif",
        "listing": TSV_FILE,
        "split_rule": "test when SHA-256(file name)[0..8] as big-endian u64 % 100 < test_percent",
        "test_percent": test_percent,
    });
    Ok(VideoFiles::new(
        "tgif", split, raw, options, files, Conditioning { text: true, ..Conditioning::default() }, rejects, describe,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_grouped_by_gif_and_names_come_from_urls() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(TSV_FILE);
        std::fs::write(
            &p,
            "https://38.media.tumblr.com/a/tumblr_x.gif\ta cat jumps\n\
             https://38.media.tumblr.com/b/tumblr_y.gif?x=1\ta dog runs\n\
             https://38.media.tumblr.com/a/tumblr_x.gif\ta cat leaps off a couch\n",
        )
        .unwrap();
        let entries = read_listing(&p).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].file_name, "tumblr_x.gif");
        assert_eq!(
            entries[0].descriptions,
            ["a cat jumps", "a cat leaps off a couch"]
        );
        assert_eq!(entries[1].file_name, "tumblr_y.gif");
        std::fs::write(&p, "no tab here\n").unwrap();
        let e = read_listing(&p).unwrap_err().to_string();
        assert!(e.contains(TSV_FILE) && e.contains("line 1"), "{e}");
        // Old-Mac line endings: two lines, not one.
        std::fs::write(&p, "http://h/a.gif\tone\rhttp://h/b.gif\ttwo\r").unwrap();
        assert_eq!(read_listing(&p).unwrap().len(), 2);
        // A URL whose last segment is `..` names no file.
        std::fs::write(&p, "http://h/a/..\tx\n").unwrap();
        assert!(read_listing(&p).unwrap_err().to_string().contains("no file name"));
        // A very long URL is quoted short.
        std::fs::write(&p, format!("http://h/{}/\tx\n", "u".repeat(1 << 20))).unwrap();
        assert!(read_listing(&p).unwrap_err().to_string().len() < 400);
    }
}
