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

impl PyTfCheckpoint {
    fn entry(&self, name: &str) -> PyResult<&crate::tf::TfEntry> {
        self.inner.entry(name).ok_or_else(|| {
            pyo3::exceptions::PyKeyError::new_err(format!("{}: no variable {name:?}", self.inner.prefix().display()))
        })
    }
}

/// The checkpoint prefix `path` names (the prefix, its `.index` or a data shard, or the folder);
/// `FileNotFoundError` when it names no TensorFlow checkpoint.
#[pyfunction]
pub fn tf_checkpoint_prefix(path: PathBuf) -> PyResult<PathBuf> {
    Ok(crate::tf::resolve_prefix(&path)?)
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

    /// One variable as a CPU tensor, its checksum verified, in `layout` ("same": TensorFlow's;
    /// "conv", "dense", "u": ours, as [`Layout`] says).
    #[pyo3(signature = (name, layout="same"))]
    fn read(&self, py: Python<'_>, name: &str, layout: &str) -> PyResult<PyTensor> {
        let (entry, layout) = (self.entry(name)?, Layout::parse(layout)?);
        Ok(PyTensor(unlocked(py, || layout.apply(self.inner.read(entry, Device::Cpu)?))?))
    }

    /// The shape `read(name, layout)` returns, from the index alone.
    fn shape_as(&self, name: &str, layout: &str) -> PyResult<Vec<i64>> {
        Ok(Layout::parse(layout)?.shape(&self.entry(name)?.shape)?)
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
