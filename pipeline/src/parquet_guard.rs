//! The parquet crate asserts (panics) on some malformed files where it
//! should return an error: a data page that is dictionary-encoded in a
//! column chunk without a dictionary page, for one (found by fuzzing the
//! token-table reader). Our readers decode Parquet inside [`guarded`], which
//! turns such a panic into an error naming the file, and keeps the panic's
//! message off stderr (the error says it once).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use crate::error::{PipelineError, Result};

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `read` (which decodes the Parquet file `path`); a panic inside it
/// becomes `damaged Parquet file: <the panic's message>`.
pub fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    let outer = GUARDED.with(|g| g.replace(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(read));
    GUARDED.with(|g| g.set(outer));
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the Parquet reader failed".into());
        Err(PipelineError::format(path, format!("damaged Parquet file: {message}")))
    })
}

/// Wraps the panic hook once: panics inside [`guarded`] on this thread are
/// not printed (nor passed to an earlier hook that would abort); all others
/// go to the earlier hook as before.
fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let earlier = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                earlier(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_is_an_error_naming_the_file() {
        let e = guarded::<()>(Path::new("t.parquet"), || panic!("Decoder for dict should have been set"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.parquet") && e.contains("damaged Parquet file: Decoder for dict"), "{e}");
        assert_eq!(guarded(Path::new("t.parquet"), || Ok(7)).unwrap(), 7);
    }
}
