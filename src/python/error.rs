//! Maps the crate's errors to specific Python exceptions.

use crate::Error;
use pyo3::create_exception;
use pyo3::exceptions::{PyFileNotFoundError, PyFloatingPointError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
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
            Error::Io { .. } => PyOSError::new_err(message),
            Error::NonFinite(_) => PyFloatingPointError::new_err(message),
            Error::Torch(_) => PyRuntimeError::new_err(message),
        }
    }
}
