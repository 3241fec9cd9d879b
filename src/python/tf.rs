//! Bindings for [`crate::tf`]: a TensorFlow checkpoint, read one tensor at a time.

use super::error::unlocked;
use crate::tf::convert::{convert, Layout};
use crate::tf::TfCheckpoint;
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use tch::Device;

/// A TensorFlow tensor-bundle checkpoint (`PREFIX.index` + data shards).
#[pyclass(name = "TfCheckpoint", module = "ugatit_rs._native", frozen)]
pub struct PyTfCheckpoint {
    inner: TfCheckpoint,
}

#[pymethods]
impl PyTfCheckpoint {
    /// `path`: the prefix, its `.index` or a data file, or the folder holding them.
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Ok(Self { inner: unlocked(py, || TfCheckpoint::open(&path))? })
    }

    #[getter]
    fn prefix(&self) -> PathBuf {
        self.inner.prefix().to_path_buf()
    }

    /// `[(name, tensorflow dtype number, shape)]`, sorted by name.
    fn entries(&self) -> Vec<(String, u64, Vec<i64>)> {
        self.inner.entries().iter().map(|e| (e.name.clone(), e.dtype, e.shape.clone())).collect()
    }

    /// One variable as a CPU tensor, its checksum verified.
    fn read(&self, py: Python<'_>, name: &str) -> PyResult<PyTensor> {
        let entry = self.inner.entry(name).ok_or_else(|| {
            pyo3::exceptions::PyKeyError::new_err(format!("{}: no variable {name:?}", self.inner.prefix().display()))
        })?;
        Ok(PyTensor(unlocked(py, || self.inner.read(entry, Device::Cpu))?))
    }

    /// Writes `plan` (`[(tensorflow name, our name, "conv" | "dense" | "u" | "same")]`) to a
    /// safetensors file with `metadata`, one tensor in memory at a time, atomically.
    fn convert(
        &self,
        py: Python<'_>,
        plan: Vec<(String, String, String)>,
        out: PathBuf,
        metadata: Vec<(String, String)>,
    ) -> PyResult<()> {
        let plan = plan
            .into_iter()
            .map(|(tf, ours, layout)| Ok((tf, ours, Layout::parse(&layout)?)))
            .collect::<crate::Result<Vec<_>>>()?;
        let metadata = metadata.into_iter().collect();
        unlocked(py, || convert(&self.inner, &plan, &out, &metadata))?;
        Ok(())
    }
}
