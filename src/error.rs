//! One error type for the whole crate. `src/python/error.rs` maps each variant to a specific
//! Python exception, so every message here must name the offending thing (key, shape, file).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range (Python: `ValueError`).
    #[error("{0}")]
    Config(String),
    /// A tensor has the wrong rank or size (Python: `ValueError`).
    #[error("{0}")]
    Shape(String),
    /// A tensor has the wrong element type (Python: `TypeError`).
    #[error("{0}")]
    Dtype(String),
    /// A tensor or module is on the wrong device, or the device is unavailable (Python: `ValueError`).
    #[error("{0}")]
    Device(String),
    /// A state dict does not match the network: missing, unexpected or mis-shaped keys
    /// (Python: `ugatit_rs.StateDictError`, a `KeyError`).
    #[error("{0}")]
    StateDict(String),
    /// A file or folder does not exist (Python: `FileNotFoundError`).
    #[error("{}: {message}", path.display())]
    NotFound { path: PathBuf, message: String },
    /// Any other I/O failure (Python: `OSError`).
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A NaN or Inf where finite numbers are required (Python: `FloatingPointError`).
    #[error("{0}")]
    NonFinite(String),
    /// A bug caught at the boundary: a Rust panic turned into an error (Python: `RuntimeError`).
    #[error("internal error (please report): {0}")]
    Internal(String),
    /// libtorch reported an error we did not anticipate (Python: `RuntimeError`, or
    /// `MemoryError` when an allocation failed).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Runs `f`, turning a panic into [`Error::Internal`] so that no panic unwinds into Python.
pub fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a Rust panic".into());
            Err(Error::Internal(message))
        }
    }
}

impl Error {
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn shape(msg: impl Into<String>) -> Self {
        Error::Shape(msg.into())
    }
}
