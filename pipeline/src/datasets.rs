//! Finding a prepared dataset's folder from the name a user typed.
//!
//! `prepare ucf101` writes `ucf101-64/` (the resolution is part of the
//! folder name for UCF-101 and for TGIF at other than 64), so every command
//! that takes a dataset name accepts both `ucf101-64` and `ucf101`, the
//! latter when exactly one `ucf101-*` folder is prepared. When nothing
//! matches, the error says where it looked and what is there.

use std::path::{Path, PathBuf};

use crate::error::{PipelineError, Result};
use crate::names::join_name;

/// Whether `dir` holds prepared clips or token tables.
fn is_prepared(dir: &Path) -> bool {
    dir.join("clips").is_dir() || dir.join("tokens").is_dir()
}

/// The prepared datasets under `root` (folders with `clips/` or `tokens/`), sorted.
pub fn prepared_datasets(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_prepared(&e.path()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `root/<name>` when prepared, else the one prepared `root/<name>-*`; an
/// absolute path, so that run folders which record it work from anywhere.
pub fn dataset_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let root = &std::path::absolute(root).map_err(|e| PipelineError::config(format!("--root {}: {e}", root.display())))?;
    let dir = join_name(root, "dataset", name)?;
    if is_prepared(&dir) {
        return Ok(dir);
    }
    let all = prepared_datasets(root);
    let variants: Vec<&String> = all
        .iter()
        .filter(|d| d.strip_prefix(name).is_some_and(|rest| rest.starts_with('-')))
        .collect();
    match variants.as_slice() {
        [one] => {
            tracing::info!(dataset = %one, "`{name}` is prepared as {}", root.join(one).display());
            Ok(root.join(one))
        }
        [] => Err(PipelineError::config(format!(
            "dataset `{name}`: nothing prepared at {} (no clips/ or tokens/ there); {}",
            dir.display(),
            match all.is_empty() {
                true => format!("{} holds no prepared dataset (run `just prepare {name}`)", root.display()),
                false => format!("prepared under {}: {}", root.display(), all.join(", ")),
            }
        ))),
        many => Err(PipelineError::config(format!(
            "dataset `{name}`: {} are prepared under {}; name one",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            root.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_name_finds_its_one_resolution_and_errors_say_what_exists() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("ucf101-64/clips")).unwrap();
        std::fs::create_dir_all(r.join("bair/tokens")).unwrap();
        std::fs::create_dir_all(r.join("ucf101/raw")).unwrap();
        assert_eq!(dataset_dir(r, "ucf101").unwrap(), r.join("ucf101-64"));
        assert_eq!(dataset_dir(r, "ucf101-64").unwrap(), r.join("ucf101-64"));
        assert_eq!(dataset_dir(r, "bair").unwrap(), r.join("bair"));
        let e = dataset_dir(r, "tgif").unwrap_err().to_string();
        assert!(e.contains("tgif") && e.contains("bair, ucf101-64"), "{e}");
        std::fs::create_dir_all(r.join("ucf101-128/clips")).unwrap();
        let e = dataset_dir(r, "ucf101").unwrap_err().to_string();
        assert!(e.contains("ucf101-128, ucf101-64") && e.contains("name one"), "{e}");
        assert!(dataset_dir(r, "../x").is_err());
    }
}
