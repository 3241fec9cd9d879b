//! Thin wrappers around [`crate::models`]: the Python package's `Generator` and `Discriminator`
//! classes (python/ugatit_rs/models.py) hold one of these and add the PyTorch-module surface.

use crate::config::{DiscriminatorConfig, GeneratorConfig};
use crate::device::{device_name, parse_device};
use crate::models::{Discriminator, Generator, Network, Output};
use crate::nn::VarKind;
use pyo3::exceptions::PyTypeError;
use super::error::unlocked;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use std::sync::{Arc, Mutex, MutexGuard};
use tch::Tensor;

type Triple = (PyTensor, PyTensor, PyTensor);

fn into_triple(o: Output) -> Triple {
    (PyTensor(o.out), PyTensor(o.cam_logit), PyTensor(o.heatmap))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a network half-updated in a way that matters
    // more than losing it, so keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}


/// Reads a `{name: torch.Tensor}` mapping, naming the first key whose value is no tensor.
fn extract_tensors(dict: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Tensor)>> {
    let mut tensors = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let name: String = key
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("state dict keys must be str, got {key:?}")))?;
        let tensor: PyTensor = value.extract().map_err(|_| {
            PyTypeError::new_err(format!("state dict entry {name:?} is not a torch.Tensor"))
        })?;
        tensors.push((name, tensor.0));
    }
    Ok(tensors)
}

/// The module surface both Python classes share, over a network that may also be owned by a
/// Trainer (hence the `Arc<Mutex<..>>`).
struct Handle<N: Network>(Arc<Mutex<N>>);

impl<N: Network> Handle<N> {
    fn forward(&self, py: Python<'_>, x: PyTensor) -> PyResult<Triple> {
        let x = x.0;
        let output = unlocked(py, move || lock(&self.0).forward(&x))?;
        Ok(into_triple(output))
    }

    /// `(name, tensor, is_parameter)` for every tensor, in state-dict order.
    fn named_tensors(&self) -> Vec<(String, PyTensor, bool)> {
        let vars = lock(&self.0).named_tensors();
        vars.into_iter().map(|v| (v.name, PyTensor(v.tensor), v.kind == VarKind::Parameter)).collect()
    }

    fn load_tensors(&self, py: Python<'_>, tensors: &Bound<'_, PyDict>, strict: bool) -> PyResult<(Vec<String>, Vec<String>)> {
        let tensors = extract_tensors(tensors)?;
        let report = unlocked(py, move || lock(&self.0).store().load(&tensors, strict, N::NAME))?;
        Ok((report.missing_keys, report.unexpected_keys))
    }

    fn to_device(&self, py: Python<'_>, device: &str) -> PyResult<()> {
        let device = parse_device(device)?;
        unlocked(py, || lock(&self.0).store_mut().set_device(device))
    }

    fn device(&self) -> String {
        device_name(lock(&self.0).device())
    }

    fn num_parameters(&self) -> i64 {
        lock(&self.0).store().num_parameters()
    }
}

/// The native generator. Use `ugatit_rs.Generator`, which wraps it.
#[pyclass(name = "Generator", module = "ugatit_rs._native")]
pub struct PyGenerator {
    inner: Handle<Generator>,
}

impl PyGenerator {
    pub fn from_shared(inner: Arc<Mutex<Generator>>) -> Self {
        Self { inner: Handle(inner) }
    }
}

#[pymethods]
impl PyGenerator {
    #[new]
    #[pyo3(signature = (ngf=64, n_blocks=4, img_size=256, light=false, input_nc=3, output_nc=3, device="cpu"))]
    fn new(
        py: Python<'_>,
        ngf: i64,
        n_blocks: i64,
        img_size: i64,
        light: bool,
        input_nc: i64,
        output_nc: i64,
        device: &str,
    ) -> PyResult<Self> {
        let config = GeneratorConfig { input_nc, output_nc, ngf, n_blocks, img_size, light };
        let device = parse_device(device)?;
        let generator = unlocked(py, || Generator::new(config, device))?;
        Ok(Self::from_shared(Arc::new(Mutex::new(generator))))
    }

    /// Runs the generator: returns `(out, cam_logit, heatmap)`.
    fn forward(&self, py: Python<'_>, x: PyTensor) -> PyResult<Triple> {
        self.inner.forward(py, x)
    }

    fn named_tensors(&self) -> Vec<(String, PyTensor, bool)> {
        self.inner.named_tensors()
    }

    /// Loads tensors by official name; returns `(missing_keys, unexpected_keys)`.
    fn load_tensors(&self, py: Python<'_>, tensors: &Bound<'_, PyDict>, strict: bool) -> PyResult<(Vec<String>, Vec<String>)> {
        self.inner.load_tensors(py, tensors, strict)
    }

    fn set_training(&self, training: bool) {
        lock(&self.inner.0).set_training(training)
    }

    #[getter]
    fn training(&self) -> bool {
        lock(&self.inner.0).is_training()
    }

    fn to_device(&self, py: Python<'_>, device: &str) -> PyResult<()> {
        self.inner.to_device(py, device)
    }

    #[getter]
    fn device(&self) -> String {
        self.inner.device()
    }

    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = lock(&self.inner.0);
        let c = guard.config();
        let dict = PyDict::new(py);
        dict.set_item("ngf", c.ngf)?;
        dict.set_item("n_blocks", c.n_blocks)?;
        dict.set_item("img_size", c.img_size)?;
        dict.set_item("light", c.light)?;
        dict.set_item("input_nc", c.input_nc)?;
        dict.set_item("output_nc", c.output_nc)?;
        Ok(dict)
    }

    fn num_parameters(&self) -> i64 {
        self.inner.num_parameters()
    }
}

/// The native discriminator. Use `ugatit_rs.Discriminator`, which wraps it.
#[pyclass(name = "Discriminator", module = "ugatit_rs._native")]
pub struct PyDiscriminator {
    inner: Handle<Discriminator>,
}

impl PyDiscriminator {
    pub fn from_shared(inner: Arc<Mutex<Discriminator>>) -> Self {
        Self { inner: Handle(inner) }
    }
}

#[pymethods]
impl PyDiscriminator {
    #[new]
    #[pyo3(signature = (ndf=64, n_layers=7, input_nc=3, device="cpu"))]
    fn new(py: Python<'_>, ndf: i64, n_layers: i64, input_nc: i64, device: &str) -> PyResult<Self> {
        let config = DiscriminatorConfig { input_nc, ndf, n_layers };
        let device = parse_device(device)?;
        let discriminator = unlocked(py, || Discriminator::new(config, device))?;
        Ok(Self::from_shared(Arc::new(Mutex::new(discriminator))))
    }

    /// Runs the discriminator: returns `(out, cam_logit, heatmap)`. In training mode this also
    /// advances every spectral-norm power iteration by one step.
    fn forward(&self, py: Python<'_>, x: PyTensor) -> PyResult<Triple> {
        self.inner.forward(py, x)
    }

    fn named_tensors(&self) -> Vec<(String, PyTensor, bool)> {
        self.inner.named_tensors()
    }

    fn load_tensors(&self, py: Python<'_>, tensors: &Bound<'_, PyDict>, strict: bool) -> PyResult<(Vec<String>, Vec<String>)> {
        self.inner.load_tensors(py, tensors, strict)
    }

    fn set_training(&self, training: bool) {
        lock(&self.inner.0).set_training(training)
    }

    #[getter]
    fn training(&self) -> bool {
        lock(&self.inner.0).is_training()
    }

    fn to_device(&self, py: Python<'_>, device: &str) -> PyResult<()> {
        self.inner.to_device(py, device)
    }

    #[getter]
    fn device(&self) -> String {
        self.inner.device()
    }

    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let guard = lock(&self.inner.0);
        let c = guard.config();
        let dict = PyDict::new(py);
        dict.set_item("ndf", c.ndf)?;
        dict.set_item("n_layers", c.n_layers)?;
        dict.set_item("input_nc", c.input_nc)?;
        Ok(dict)
    }

    fn num_parameters(&self) -> i64 {
        self.inner.num_parameters()
    }

    /// The smallest square image size this discriminator accepts.
    fn min_input_size(&self) -> i64 {
        lock(&self.inner.0).config().min_input_size()
    }
}
