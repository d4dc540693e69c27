//! The one rule for names and for paths read from files, so that nothing the
//! user types or a file says can read or write outside its root.
//!
//! - A *name* (dataset, split, table, run step, shard or part file) is one
//!   folder or file name: not empty, not `.` or `..`, no `/` or `\`, no NUL or
//!   control character, at most 255 bytes.
//! - An *entry* (a path read from a manifest, a list or a pointer file) is
//!   one or more names joined by `/`: never absolute, no `..`, no empty
//!   component (`a//b`). Joined to its root it stays lexically inside it.
//!
//! The check is lexical on purpose: symlinks that the user placed inside a
//! root are followed, because people link big data in.

use std::path::{Path, PathBuf};

use crate::error::{PipelineError, Result};

/// Most bytes of a name (the usual file-system limit).
const MAX_NAME_BYTES: usize = 255;
/// Most characters of user input quoted in an error message.
pub const MAX_QUOTED_CHARS: usize = 200;

/// What is wrong with `name` as one folder or file name, if anything.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is `.` or `..`, not a name")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator; it must be one folder name")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else {
        None
    }
}

/// Refuses a name given as an argument: `what` names the argument
/// (`--splits`, `dataset`), and the error quotes the value.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    match name_problem(name) {
        None => Ok(()),
        Some(problem) => Err(PipelineError::config(format!(
            "{what} {}: {problem}",
            quote(name)
        ))),
    }
}

/// `root/name` for a name given as an argument.
pub fn join_name(root: &Path, what: &str, name: &str) -> Result<PathBuf> {
    check_name(what, name)?;
    Ok(root.join(name))
}

/// What is wrong with `entry` as a relative path inside a root, if anything.
pub fn entry_problem(entry: &str) -> Option<&'static str> {
    if entry.is_empty() {
        return Some("is empty");
    }
    if entry.starts_with('/') || entry.starts_with('\\') {
        return Some("is absolute; it must be relative to its folder");
    }
    for component in entry.split('/') {
        match component {
            "" => return Some("has an empty component (`//` or a trailing `/`)"),
            ".." => return Some("has a `..` component and would leave its folder"),
            "." => return Some("has a `.` component"),
            c if c.contains('\\') => return Some("contains `\\`; entries use `/`"),
            c if c.chars().any(char::is_control) => return Some("contains a control character"),
            c if c.len() > MAX_NAME_BYTES => return Some("has a component longer than 255 bytes"),
            _ => {}
        }
    }
    None
}

/// `root/entry` for an entry read from `listed_in`; refuses an entry that
/// would leave `root`, naming the file it came from.
pub fn join_entry(root: &Path, entry: &str, listed_in: &Path) -> Result<PathBuf> {
    match entry_problem(entry) {
        None => Ok(root.join(entry)),
        Some(problem) => Err(PipelineError::format(
            listed_in,
            format!("entry {} {problem}", quote(entry)),
        )),
    }
}

/// `dir/file` for a file name read from `listed_in` (a shard or part named
/// in a manifest lives directly in the manifest's folder).
pub fn join_file_name(dir: &Path, file: &str, listed_in: &Path) -> Result<PathBuf> {
    match name_problem(file) {
        None => Ok(dir.join(file)),
        Some(problem) => Err(PipelineError::format(
            listed_in,
            format!("file {} {problem}", quote(file)),
        )),
    }
}

/// User input for an error message: in backticks, cut to
/// [`MAX_QUOTED_CHARS`] characters with the full length said.
pub fn quote(input: &str) -> String {
    let shown: String = input
        .chars()
        .take(MAX_QUOTED_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if input.chars().nth(MAX_QUOTED_CHARS).is_some() {
        format!("`{shown}...` ({} bytes)", input.len())
    } else {
        format!("`{shown}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_component() {
        for good in ["train", "ucf101-64", "vqvae-bair-step-1200", ".hidden", "a.b"] {
            assert_eq!(name_problem(good), None, "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/abs", "x\n", &"n".repeat(256)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
        let err = check_name("--splits", "../../escape/train").unwrap_err().to_string();
        assert!(err.starts_with("--splits `../../escape/train`:"), "{err}");
    }

    #[test]
    fn entries_stay_inside_their_root() {
        let root = Path::new("/data/raw");
        let list = Path::new("/data/raw/list.txt");
        assert_eq!(
            join_entry(root, "Class/v.avi", list).unwrap(),
            Path::new("/data/raw/Class/v.avi")
        );
        for bad in [
            "Class/../Other/v.avi",
            "../../outside/v.avi",
            "Class//abs/path.avi",
            "/etc/passwd",
            "a/./b",
            "a/",
            "",
        ] {
            let err = join_entry(root, bad, list).unwrap_err().to_string();
            assert!(err.starts_with("/data/raw/list.txt: entry `"), "{bad}: {err}");
        }
    }

    #[test]
    fn quotes_are_short() {
        let long = "x".repeat(8 << 20);
        let q = quote(&long);
        assert!(q.len() < MAX_QUOTED_CHARS + 40, "{}", q.len());
        assert!(q.ends_with("(8388608 bytes)"), "{q}");
        assert_eq!(quote("a\tb"), "`a?b`");
    }
}
