//! Bindings for the image pipeline ([`crate::data`]).

use crate::data::{load_image, DomainLoader, LoaderConfig};
use pyo3::prelude::*;
use pyo3_tch::PyTensor;
use std::path::PathBuf;

/// A seeded, prefetching batch stream over one domain folder. Use `ugatit_rs.data.DomainLoader`.
#[pyclass(name = "DomainLoader", module = "ugatit_rs._native")]
pub struct PyDomainLoader {
    inner: DomainLoader,
}

#[pymethods]
impl PyDomainLoader {
    #[new]
    #[pyo3(signature = (folder, img_size, batch_size=1, seed=0, domain=0, train=true, strict=false, num_workers=2))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        folder: PathBuf,
        img_size: i64,
        batch_size: i64,
        seed: u64,
        domain: u64,
        train: bool,
        strict: bool,
        num_workers: i64,
    ) -> PyResult<Self> {
        if img_size <= 0 || batch_size <= 0 || num_workers < 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "DomainLoader needs img_size > 0, batch_size > 0, num_workers >= 0; got {img_size}, {batch_size}, {num_workers}"
            )));
        }
        let config = LoaderConfig {
            img_size: img_size as u32,
            batch_size: batch_size as usize,
            seed,
            domain,
            train,
            strict,
            num_workers: num_workers as usize,
        };
        let inner = py.allow_threads(|| DomainLoader::new(&folder, config))?;
        Ok(Self { inner })
    }

    /// The next batch, a float32 (B, 3, S, S) CPU tensor in [-1, 1].
    fn next_batch(&self, py: Python<'_>) -> PyResult<PyTensor> {
        let t = py.allow_threads(|| self.inner.next_batch())?;
        Ok(PyTensor(t))
    }

    fn seek(&self, k: i64) {
        self.inner.seek(k)
    }

    #[getter]
    fn position(&self) -> i64 {
        self.inner.position()
    }

    #[getter]
    fn num_images(&self) -> usize {
        self.inner.num_images()
    }

    #[getter]
    fn batches_per_epoch(&self) -> i64 {
        self.inner.batches_per_epoch()
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.inner.paths().to_vec()
    }

    /// `[(path, reason), ...]` for every unreadable file met so far.
    fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.inner.skipped()
    }
}

/// Loads one image file resized to `img_size` as a (1, 3, S, S) float32 tensor in [-1, 1].
#[pyfunction(name = "load_image")]
pub fn py_load_image(py: Python<'_>, path: PathBuf, img_size: u32) -> PyResult<PyTensor> {
    let t = py.allow_threads(|| load_image(&path, img_size))?;
    Ok(PyTensor(t))
}
