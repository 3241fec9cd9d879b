//! How the bindings read plain Python arguments where PyO3's own conversion would answer in its
//! internal words (`'str' object cannot be converted to 'PyBool'`) or without naming the
//! argument (a bare `OverflowError`). PyO3 prefixes their TypeErrors with `argument '<name>': `.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A `bool` argument: `True`, `False` or numpy's bool, and nothing merely truthy.
pub struct Flag(pub bool);

impl<'py> FromPyObject<'py> for Flag {
    fn extract_bound(value: &Bound<'py, PyAny>) -> PyResult<Self> {
        value.extract::<bool>().map(Flag).map_err(|_| {
            let shown = value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "?".into());
            PyTypeError::new_err(format!("expected True or False, got {shown}"))
        })
    }
}

/// A `str` argument. PyO3 would say "'int' object cannot be converted to 'PyString'".
pub struct Text(pub String);

impl<'py> FromPyObject<'py> for Text {
    fn extract_bound(value: &Bound<'py, PyAny>) -> PyResult<Self> {
        value.extract::<String>().map(Text).map_err(|_| {
            let kind = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
            PyTypeError::new_err(format!("expected a str, got {kind}"))
        })
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(text.to_string())
    }
}

/// A non-negative integer argument (a seed, an index) as a `u64`, named when it does not fit.
fn u64_argument(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    value.extract::<u64>().map_err(|err| {
        if err.is_instance_of::<PyOverflowError>(value.py()) {
            PyValueError::new_err(format!("{name} must be between 0 and {}, got {value}", u64::MAX))
        } else {
            let kind = value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
            // PyO3 prefixes a TypeError with "argument '<name>': ".
            PyTypeError::new_err(format!("expected an int, got {kind}"))
        }
    })
}

// `#[pyo3(from_py_with = ...)]` takes a function of the value alone, hence one per name.

pub fn seed_argument(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    u64_argument(value, "seed")
}

pub fn domain_argument(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    u64_argument(value, "domain")
}

pub fn index_argument(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    u64_argument(value, "index")
}
