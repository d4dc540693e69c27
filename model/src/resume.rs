//! Which data a resumed run reads. A run records the folder it trained on;
//! `--resume` is given a data root again. The folder given now is used when
//! it is the recorded one or holds the same data (same identity); any other
//! combination is refused, naming both, so a resumed run never trains on
//! data other than what it started with.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// `given` when it is `recorded` or `identity` says both hold the same data;
/// otherwise an error naming both. `identity` returns `None` for a folder
/// that cannot be read.
pub fn resumed_data(
    what: &str,
    recorded: &Path,
    given: &Path,
    identity: impl Fn(&Path) -> Option<String>,
) -> Result<PathBuf> {
    let same_folder = match (recorded.canonicalize(), given.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => recorded == given,
    };
    if same_folder {
        return Ok(given.to_owned());
    }
    match (identity(recorded), identity(given)) {
        (Some(a), Some(b)) if a == b => Ok(given.to_owned()),
        (recorded_id, _) => Err(ModelError::Config(format!(
            "--resume: the run's {what} is {}; the arguments give {} ({}): pass the run's --root/--table or a new --run",
            recorded.display(),
            given.display(),
            if recorded_id.is_some() {
                "other data, or unreadable"
            } else {
                "not comparable: the recorded one is gone"
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_data_elsewhere_is_used_and_other_data_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        for (p, id) in [(&a, "x"), (&b, "x"), (&c, "y")] {
            std::fs::create_dir(p).unwrap();
            std::fs::write(p.join("id"), id).unwrap();
        }
        let id = |p: &Path| std::fs::read_to_string(p.join("id")).ok();
        assert_eq!(resumed_data("split", &a, &a, id).unwrap(), a);
        assert_eq!(resumed_data("split", &a, &b, id).unwrap(), b);
        let e = resumed_data("split", &a, &c, id).unwrap_err().to_string();
        assert!(e.contains(&*a.to_string_lossy()) && e.contains(&*c.to_string_lossy()), "{e}");
        let gone = dir.path().join("gone");
        assert!(resumed_data("split", &gone, &b, id).is_err());
    }
}
