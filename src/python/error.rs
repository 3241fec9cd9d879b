//! Maps the crate's errors to specific Python exceptions.

use crate::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyFloatingPointError, PyMemoryError, PyOSError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::PyErr;

create_exception!(
    ugatit_rs,
    StateDictError,
    PyValueError,
    "A state dict does not match the network: missing, unexpected or mis-shaped keys."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::Config(_) | Error::Shape(_) | Error::Device(_) => PyValueError::new_err(message),
            Error::Dtype(_) => PyTypeError::new_err(message),
            Error::StateDict(_) => StateDictError::new_err(message),
            Error::NotFound { .. } => PyFileNotFoundError::new_err(message),
            // With the OS's errno Python picks the subclass (PermissionError, IsADirectoryError,
            // ...) and fills `errno`, `strerror` and `filename`, as its own file functions do.
            Error::Io { path, source } => match source.raw_os_error() {
                Some(code) => {
                    let text = source.to_string();
                    let strerror = text.strip_suffix(&format!(" (os error {code})")).unwrap_or(&text).to_string();
                    PyOSError::new_err((code, strerror, path.to_string_lossy().into_owned()))
                }
                None => PyOSError::new_err(message),
            },
            Error::NonFinite(_) => PyFloatingPointError::new_err(message),
            Error::OutOfMemory(_) => PyMemoryError::new_err(message),
            Error::Internal(_) | Error::Hook(_) => PyRuntimeError::new_err(message),
            Error::Torch(_) if is_out_of_memory(&message) => PyMemoryError::new_err(message),
            Error::Torch(_) => PyRuntimeError::new_err(message),
        }
    }
}

fn is_out_of_memory(message: &str) -> bool {
    let lower = message.to_lowercase();
    ["out of memory", "not enough memory", "failed to allocate", "can't allocate", "cannot allocate"]
        .iter()
        .any(|m| lower.contains(m))
}

/// Releases the GIL and runs `f` with panics turned into errors: every long binding goes
/// through here, so neither the GIL nor a panic is held across Rust work.
///
/// When a Python callback that libtorch ran during the call raised (a saved-tensor hook such as
/// `torch.utils.checkpoint`'s, a tensor hook in a backward pass), libtorch hands tch only an empty
/// C++ error and leaves the Python exception set on this thread: that exception is the real
/// error, and callers such as `checkpoint` rely on catching it, so it is the one raised.
pub fn unlocked<T: Send>(py: pyo3::Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> pyo3::PyResult<T> {
    py.allow_threads(|| crate::error::guarded(f)).map_err(|err| PyErr::take(py).unwrap_or_else(|| err.into()))
}
