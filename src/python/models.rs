//! Thin wrappers around [`crate::models`]. As in huggingface/tokenizers' `models.rs`, one base
//! class (`_native.Network`) holds every method the two networks share, over an enum of the
//! concrete networks; `_native.Generator` and `_native.Discriminator` extend it with their
//! constructors and what differs. The Python package's `ugatit_rs.Generator` /
//! `ugatit_rs.Discriminator` (`torch.nn.Module`s) hold one of these.
//!
//! GIL rule: no method waits for a network's lock while holding the GIL. The lock may be held
//! by a training step whose backward pass runs a Python gradient hook, which needs the GIL.

use super::args::{Flag, Text};
use super::error::unlocked;
use crate::config::{CycleGeneratorConfig, DiscriminatorConfig, GeneratorConfig, PatchDiscriminatorConfig};
use crate::device::{device_name, parse_device};
use crate::models::cyclegan::{CycleGenerator, PatchDiscriminator};
use crate::models::tf_variant::{TfDiscriminator, TfGenerator};
use crate::models::{Discriminator, Generator, Network, Output};
use crate::nn::VarKind;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use std::sync::{Arc, Mutex, MutexGuard};
use tch::Tensor;

type Triple = (PyTensor, PyTensor, PyTensor);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a network half-updated in a way that matters
    // more than losing it, so keep serving it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `variant` is "pytorch" (the default) or "tf" (the TensorFlow release's network).
fn unknown_variant(variant: &str) -> PyErr {
    pyo3::exceptions::PyValueError::new_err(format!(
        "variant must be 'pytorch' (znxlwm/UGATIT-pytorch) or 'tf' (the TensorFlow release), got {variant:?}"
    ))
}

/// Reads a `{name: torch.Tensor}` mapping, naming the first key whose value is no tensor.
fn extract_tensors(dict: &Bound<'_, PyDict>) -> PyResult<Vec<(String, Tensor)>> {
    let mut tensors = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let name: String =
            key.extract().map_err(|_| PyTypeError::new_err(format!("state dict keys must be str, got {key:?}")))?;
        let tensor: PyTensor = value
            .extract()
            .map_err(|_| PyTypeError::new_err(format!("state dict entry {name:?} is not a torch.Tensor")))?;
        tensors.push((name, tensor.0));
    }
    Ok(tensors)
}

/// One of the networks, possibly shared with a Trainer (hence the `Arc<Mutex<..>>`).
#[derive(Clone)]
pub enum AnyNetwork {
    Generator(Arc<Mutex<Generator>>),
    Discriminator(Arc<Mutex<Discriminator>>),
    CycleGenerator(Arc<Mutex<CycleGenerator>>),
    PatchDiscriminator(Arc<Mutex<PatchDiscriminator>>),
    TfGenerator(Arc<Mutex<TfGenerator>>),
    TfDiscriminator(Arc<Mutex<TfDiscriminator>>),
}

/// Runs `$body` with `$net` bound to the locked network, whichever it is.
macro_rules! with_network {
    ($any:expr, mut $net:ident => $body:expr) => {
        match $any {
            AnyNetwork::Generator(shared) => {
                let mut $net = lock(shared);
                $body
            }
            AnyNetwork::Discriminator(shared) => {
                let mut $net = lock(shared);
                $body
            }
            AnyNetwork::CycleGenerator(shared) => {
                let mut $net = lock(shared);
                $body
            }
            AnyNetwork::PatchDiscriminator(shared) => {
                let mut $net = lock(shared);
                $body
            }
            AnyNetwork::TfGenerator(shared) => {
                let mut $net = lock(shared);
                $body
            }
            AnyNetwork::TfDiscriminator(shared) => {
                let mut $net = lock(shared);
                $body
            }
        }
    };
    ($any:expr, $net:ident => $body:expr) => {
        match $any {
            AnyNetwork::Generator(shared) => {
                let $net = lock(shared);
                $body
            }
            AnyNetwork::Discriminator(shared) => {
                let $net = lock(shared);
                $body
            }
            AnyNetwork::CycleGenerator(shared) => {
                let $net = lock(shared);
                $body
            }
            AnyNetwork::PatchDiscriminator(shared) => {
                let $net = lock(shared);
                $body
            }
            AnyNetwork::TfGenerator(shared) => {
                let $net = lock(shared);
                $body
            }
            AnyNetwork::TfDiscriminator(shared) => {
                let $net = lock(shared);
                $body
            }
        }
    };
}

/// A forward from Python, which holds the network's very tensors and may have altered them.
fn intact_forward<N: Network>(network: &N, x: &Tensor) -> crate::Result<Output> {
    network.store().check_intact(N::NAME)?;
    crate::models::check_forward_memory(network, x)?;
    network.forward(x)
}

/// The module surface both native networks share. Not constructed directly.
#[pyclass(subclass, name = "Network", module = "ugatit_rs._native")]
pub struct PyNetwork {
    net: AnyNetwork,
}

#[pymethods]
impl PyNetwork {
    /// Runs the network: returns `(out, cam_logit, heatmap)`. A discriminator in training mode
    /// also advances every spectral-norm power iteration by one step.
    fn forward(&self, py: Python<'_>, x: PyTensor) -> PyResult<Triple> {
        let x = x.0;
        let o: Output = unlocked(py, move || with_network!(&self.net, n => intact_forward(&*n, &x)))?;
        Ok((PyTensor(o.out), PyTensor(o.cam_logit), PyTensor(o.heatmap)))
    }

    /// The forward for tracing (export): on the calling thread, where the tracer lives, with
    /// every layer issuing the official operations (no feature-map size becomes a constant of
    /// the traced graph, and no CPU-only fast path is recorded).
    fn forward_for_export(&self, py: Python<'_>, x: PyTensor) -> PyResult<Triple> {
        let x = x.0;
        // `allow_threads` runs the closure on this same thread, where the tracer's state lives.
        let o: Output = unlocked(py, move || {
            crate::nn::compute::with_official_ops(|| with_network!(&self.net, n => intact_forward(&*n, &x)))
        })?;
        Ok((PyTensor(o.out), PyTensor(o.cam_logit), PyTensor(o.heatmap)))
    }

    /// `(name, tensor, is_parameter)` for every tensor, in official state-dict order.
    fn named_tensors(&self, py: Python<'_>) -> PyResult<Vec<(String, PyTensor, bool)>> {
        let vars = unlocked(py, || Ok(with_network!(&self.net, n => n.named_tensors())))?;
        Ok(vars.into_iter().map(|v| (v.name, PyTensor(v.tensor), v.kind == VarKind::Parameter)).collect())
    }

    /// Loads tensors by official name, all or nothing; returns `(missing_keys, unexpected_keys)`.
    fn load_tensors(
        &self,
        py: Python<'_>,
        tensors: &Bound<'_, PyDict>,
        strict: bool,
    ) -> PyResult<(Vec<String>, Vec<String>)> {
        let tensors = extract_tensors(tensors)?;
        let name = self.class_name();
        let report = unlocked(py, move || with_network!(&self.net, n => n.store().load(&tensors, strict, name)))?;
        Ok((report.missing_keys, report.unexpected_keys))
    }

    fn set_training(&self, py: Python<'_>, training: bool) -> PyResult<()> {
        unlocked(py, || {
            with_network!(&self.net, mut n => n.set_training(training));
            Ok(())
        })
    }

    #[getter]
    fn training(&self, py: Python<'_>) -> PyResult<bool> {
        unlocked(py, || Ok(with_network!(&self.net, n => n.is_training())))
    }

    /// Moves every tensor (and gradient) in place to `device`.
    fn to_device(&self, py: Python<'_>, device: &str) -> PyResult<()> {
        let device = parse_device(device)?;
        unlocked(py, || with_network!(&self.net, mut n => n.store_mut().set_device(device)))
    }

    #[getter]
    fn device(&self, py: Python<'_>) -> PyResult<String> {
        unlocked(py, || Ok(device_name(with_network!(&self.net, n => n.device()))))
    }

    fn num_parameters(&self, py: Python<'_>) -> PyResult<i64> {
        unlocked(py, || Ok(with_network!(&self.net, n => n.store().num_parameters())))
    }

    /// The constructor arguments (without the device).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let fields: Vec<(&'static str, i64)> = unlocked(py, || {
            Ok(match &self.net {
                AnyNetwork::Generator(_) | AnyNetwork::TfGenerator(_) => {
                    let c = match &self.net {
                        AnyNetwork::TfGenerator(g) => lock(g).config().clone(),
                        AnyNetwork::Generator(g) => lock(g).config().clone(),
                        _ => unreachable!("matched above"),
                    };
                    vec![
                        ("ngf", c.ngf),
                        ("n_blocks", c.n_blocks),
                        ("img_size", c.img_size),
                        ("light", c.light as i64),
                        ("input_nc", c.input_nc),
                        ("output_nc", c.output_nc),
                    ]
                }
                AnyNetwork::Discriminator(_) | AnyNetwork::TfDiscriminator(_) => {
                    let c = match &self.net {
                        AnyNetwork::TfDiscriminator(d) => lock(d).config().clone(),
                        AnyNetwork::Discriminator(d) => lock(d).config().clone(),
                        _ => unreachable!("matched above"),
                    };
                    vec![("ndf", c.ndf), ("n_layers", c.n_layers), ("input_nc", c.input_nc)]
                }
                AnyNetwork::CycleGenerator(g) => {
                    let c = lock(g).config().clone();
                    vec![("ngf", c.ngf), ("n_blocks", c.n_blocks), ("input_nc", c.input_nc), ("output_nc", c.output_nc)]
                }
                AnyNetwork::PatchDiscriminator(d) => {
                    let c = lock(d).config().clone();
                    vec![("ndf", c.ndf), ("n_layers", c.n_layers), ("input_nc", c.input_nc)]
                }
            })
        })?;
        let dict = PyDict::new(py);
        match &self.net {
            AnyNetwork::Generator(_) | AnyNetwork::Discriminator(_) => dict.set_item("variant", "pytorch")?,
            AnyNetwork::TfGenerator(_) | AnyNetwork::TfDiscriminator(_) => dict.set_item("variant", "tf")?,
            _ => {}
        }
        for (key, value) in fields {
            if key == "light" {
                dict.set_item(key, value != 0)?;
            } else {
                dict.set_item(key, value)?;
            }
        }
        Ok(dict)
    }
}

impl PyNetwork {
    fn class_name(&self) -> &'static str {
        match self.net {
            AnyNetwork::Generator(_) => Generator::NAME,
            AnyNetwork::Discriminator(_) => Discriminator::NAME,
            AnyNetwork::CycleGenerator(_) => CycleGenerator::NAME,
            AnyNetwork::PatchDiscriminator(_) => PatchDiscriminator::NAME,
            AnyNetwork::TfGenerator(_) => TfGenerator::NAME,
            AnyNetwork::TfDiscriminator(_) => TfDiscriminator::NAME,
        }
    }
}

/// The native generator (official `ResnetGenerator`). Use `ugatit_rs.Generator`, which wraps it.
#[pyclass(extends = PyNetwork, name = "Generator", module = "ugatit_rs._native")]
pub struct PyGenerator;

impl PyGenerator {
    /// A Python object over a generator (either variant) owned elsewhere (a Trainer).
    pub fn shared(py: Python<'_>, net: AnyNetwork) -> PyResult<Py<PyGenerator>> {
        Py::new(py, PyClassInitializer::from(PyNetwork { net }).add_subclass(PyGenerator))
    }
}

#[pymethods]
impl PyGenerator {
    #[new]
    #[pyo3(signature = (ngf=64, n_blocks=4, img_size=256, light=Flag(false), input_nc=3, output_nc=3, device="cpu", variant=Text::from("pytorch"), init_weights=Flag(true)))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        ngf: i64,
        n_blocks: i64,
        img_size: i64,
        light: Flag,
        input_nc: i64,
        output_nc: i64,
        device: &str,
        variant: Text,
        init_weights: Flag,
    ) -> PyResult<(Self, PyNetwork)> {
        let (Flag(light), Flag(init_weights), Text(variant)) = (light, init_weights, variant);
        let variant = variant.as_str();
        let config = GeneratorConfig { input_nc, output_nc, ngf, n_blocks, img_size, light };
        let device = parse_device(device)?;
        if !matches!(variant, "pytorch" | "tf") {
            return Err(unknown_variant(variant));
        }
        let net = unlocked(py, move || {
            let make = || -> crate::Result<AnyNetwork> {
                Ok(match variant {
                    "tf" => AnyNetwork::TfGenerator(Arc::new(Mutex::new(TfGenerator::new(config, device)?))),
                    _ => AnyNetwork::Generator(Arc::new(Mutex::new(Generator::new(config, device)?))),
                })
            };
            // `init_weights=False`: zeros, for weights loaded next (`without_initialisation`).
            if init_weights {
                make()
            } else {
                crate::nn::store::without_initialisation(make)
            }
        })?;
        Ok((PyGenerator, PyNetwork { net }))
    }
}

/// The native discriminator. Use `ugatit_rs.Discriminator`, which wraps it.
#[pyclass(extends = PyNetwork, name = "Discriminator", module = "ugatit_rs._native")]
pub struct PyDiscriminator;

impl PyDiscriminator {
    /// A Python object over a discriminator (either variant) owned elsewhere (a Trainer).
    pub fn shared(py: Python<'_>, net: AnyNetwork) -> PyResult<Py<PyDiscriminator>> {
        Py::new(py, PyClassInitializer::from(PyNetwork { net }).add_subclass(PyDiscriminator))
    }
}

#[pymethods]
impl PyDiscriminator {
    #[new]
    #[pyo3(signature = (ndf=64, n_layers=7, input_nc=3, device="cpu", variant=Text::from("pytorch")))]
    fn new(
        py: Python<'_>,
        ndf: i64,
        n_layers: i64,
        input_nc: i64,
        device: &str,
        variant: Text,
    ) -> PyResult<(Self, PyNetwork)> {
        let config = DiscriminatorConfig { input_nc, ndf, n_layers };
        let device = parse_device(device)?;
        let net = match variant.0.as_str() {
            "pytorch" => {
                AnyNetwork::Discriminator(Arc::new(Mutex::new(unlocked(py, || Discriminator::new(config, device))?)))
            }
            "tf" => AnyNetwork::TfDiscriminator(Arc::new(Mutex::new(unlocked(py, || {
                TfDiscriminator::new(config, device)
            })?))),
            other => return Err(unknown_variant(other)),
        };
        Ok((PyDiscriminator, PyNetwork { net }))
    }

    /// The smallest square image size this discriminator accepts.
    fn min_input_size(self_: PyRef<'_, Self>, py: Python<'_>) -> PyResult<i64> {
        let net = self_.as_super().net.clone();
        unlocked(py, || match &net {
            AnyNetwork::Discriminator(d) => Ok(lock(d).config().min_input_size()),
            AnyNetwork::TfDiscriminator(d) => Ok(lock(d).min_input_size()),
            _ => Err(crate::Error::internal("a Discriminator holding another network")),
        })
    }
}

/// The native CycleGAN ResNet generator. Use `ugatit_rs.cyclegan.ResnetGenerator`, which wraps it.
#[pyclass(extends = PyNetwork, name = "CycleGenerator", module = "ugatit_rs._native")]
pub struct PyCycleGenerator;

impl PyCycleGenerator {
    pub fn shared(py: Python<'_>, inner: Arc<Mutex<CycleGenerator>>) -> PyResult<Py<PyCycleGenerator>> {
        let base = PyNetwork { net: AnyNetwork::CycleGenerator(inner) };
        Py::new(py, PyClassInitializer::from(base).add_subclass(PyCycleGenerator))
    }
}

#[pymethods]
impl PyCycleGenerator {
    #[new]
    #[pyo3(signature = (ngf=64, n_blocks=9, input_nc=3, output_nc=3, device="cpu"))]
    fn new(
        py: Python<'_>,
        ngf: i64,
        n_blocks: i64,
        input_nc: i64,
        output_nc: i64,
        device: &str,
    ) -> PyResult<(Self, PyNetwork)> {
        let config = CycleGeneratorConfig { input_nc, output_nc, ngf, n_blocks };
        let device = parse_device(device)?;
        let generator = unlocked(py, || CycleGenerator::new(config, device))?;
        Ok((PyCycleGenerator, PyNetwork { net: AnyNetwork::CycleGenerator(Arc::new(Mutex::new(generator))) }))
    }
}

/// The native CycleGAN PatchGAN. Use `ugatit_rs.cyclegan.PatchDiscriminator`, which wraps it.
#[pyclass(extends = PyNetwork, name = "PatchDiscriminator", module = "ugatit_rs._native")]
pub struct PyPatchDiscriminator;

impl PyPatchDiscriminator {
    pub fn shared(py: Python<'_>, inner: Arc<Mutex<PatchDiscriminator>>) -> PyResult<Py<PyPatchDiscriminator>> {
        let base = PyNetwork { net: AnyNetwork::PatchDiscriminator(inner) };
        Py::new(py, PyClassInitializer::from(base).add_subclass(PyPatchDiscriminator))
    }
}

#[pymethods]
impl PyPatchDiscriminator {
    #[new]
    #[pyo3(signature = (ndf=64, n_layers=3, input_nc=3, device="cpu"))]
    fn new(py: Python<'_>, ndf: i64, n_layers: i64, input_nc: i64, device: &str) -> PyResult<(Self, PyNetwork)> {
        let config = PatchDiscriminatorConfig { input_nc, ndf, n_layers };
        let device = parse_device(device)?;
        let discriminator = unlocked(py, || PatchDiscriminator::new(config, device))?;
        Ok((
            PyPatchDiscriminator,
            PyNetwork { net: AnyNetwork::PatchDiscriminator(Arc::new(Mutex::new(discriminator))) },
        ))
    }

    /// The smallest square image size this discriminator accepts.
    fn min_input_size(self_: PyRef<'_, Self>, py: Python<'_>) -> PyResult<i64> {
        let net = self_.as_super().net.clone();
        unlocked(py, || match &net {
            AnyNetwork::PatchDiscriminator(d) => Ok(lock(d).config().min_input_size()),
            _ => Err(crate::Error::internal("a PatchDiscriminator holding another network")),
        })
    }
}

/// A TorchScript export loaded by `tch::CModule` (what a Rust program would run), so that Python
/// can check it against `torch.jit.load` and the live network.
#[pyclass(name = "ExportedGenerator", module = "ugatit_rs._native", frozen)]
pub struct PyExportedGenerator {
    module: Mutex<crate::models::ExportedGenerator>,
    path: std::path::PathBuf,
}

#[pymethods]
impl PyExportedGenerator {
    #[new]
    fn new(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let module = unlocked(py, || crate::models::ExportedGenerator::load(&path))?;
        Ok(Self { module: Mutex::new(module), path })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("ExportedGenerator({})", self.path.as_os_str().into_pyobject(py)?.repr()?))
    }

    /// `(translation, cam_logit, heatmap)`; the last two are empty for a translation-only export.
    fn forward(&self, py: Python<'_>, x: PyTensor) -> PyResult<Triple> {
        let x = x.0;
        let o: Output = unlocked(py, move || lock(&self.module).forward(&x))?;
        Ok((PyTensor(o.out), PyTensor(o.cam_logit), PyTensor(o.heatmap)))
    }
}

/// Checks that a device exists (`"cpu"`, `"cuda"`, `"cuda:N"`) and returns its torch spelling;
/// the message of a missing one is the networks' own.
#[pyfunction]
pub fn check_device(name: &str) -> PyResult<String> {
    Ok(crate::device::device_name(crate::device::parse_device(name)?))
}

/// Sets how this thread's network forwards compute (`ugatit_rs.compute`), returning the previous
/// `(precision, channels_last)` so the context manager can restore it.
#[pyfunction]
pub fn set_compute(precision: Text, channels_last: Flag) -> PyResult<(&'static str, bool)> {
    let Flag(channels_last) = channels_last;
    let compute = crate::nn::compute::Compute::new(&precision.0, channels_last).map_err(PyErr::from)?;
    let previous = crate::nn::compute::replace(compute);
    Ok((previous.precision(), previous.channels_last))
}
