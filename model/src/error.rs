//! Errors a user can cause; each names the file or argument and what was wrong.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Pipeline(#[from] videogpt_pipeline::PipelineError),
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;

impl ModelError {
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Format {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// `.at(path)` on io results.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })
    }
}
