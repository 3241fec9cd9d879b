//! Bindings for [`crate::config::TrainConfig`], [`crate::train::Trainer`] and
//! [`crate::train::CycleGanTrainer`].

use super::error::unlocked;
use super::models::{AnyNetwork, PyCycleGenerator, PyDiscriminator, PyGenerator, PyPatchDiscriminator};
use crate::config::TrainConfig;
use crate::device::device_name;
use crate::models::cyclegan::{CycleGenerator, PatchDiscriminator};
use crate::models::tf_variant::{TfDiscriminator, TfGenerator};
use crate::models::{UgatitDiscriminator, UgatitGenerator};
use crate::train::trainer::GradientHook;
use crate::train::{checkpoint, CycleGanTrainer, StepLosses, Trainer};
use crate::Result;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

/// The Python surface of [`TrainConfig`] is derived from its serde form: the constructor takes
/// keyword arguments over `TrainConfig::default()`, `to_dict` and `repr` list the serialised
/// fields, so adding a field to the struct (and its default) is the whole change.
#[pymethods]
impl TrainConfig {
    #[new]
    #[pyo3(signature = (**kwargs))]
    fn py_new(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        // The model's own defaults first (CycleGAN's differ), then the given fields over them.
        let model: Option<String> = match kwargs.map(|k| k.get_item("model")).transpose()?.flatten() {
            Some(value) => {
                Some(value.extract().map_err(|_| PyTypeError::new_err("TrainConfig.model must be a string"))?)
            }
            None => None,
        };
        let mut config = TrainConfig::defaults_for(model.as_deref().unwrap_or("ugatit"));
        for (key, value) in kwargs.into_iter().flatten() {
            config = config.with_field(py, &key.extract::<String>()?, &value)?;
        }
        // All fields first, so that one given later can make an earlier one valid; fields set
        // after construction are checked again by `validate()` and `Trainer(config)`.
        config.validate()?;
        Ok(config)
    }

    /// `config.field = value` takes what the constructor takes, checked the same way for its
    /// type; ranges and the fields' agreement are checked by `validate()` and `Trainer(config)`,
    /// so that fields can be changed one at a time.
    fn __setattr__(&mut self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
        *self = self.with_field(py, name, value)?;
        Ok(())
    }

    fn __delattr__(&mut self, name: &str) -> PyResult<()> {
        Err(PyTypeError::new_err(format!("TrainConfig.{name} cannot be deleted")))
    }

    /// Raises ValueError naming the first invalid field.
    #[pyo3(name = "validate")]
    fn py_validate(&self) -> PyResult<()> {
        self.validate()?;
        Ok(())
    }

    /// The fields as a plain dict (JSON-serialisable), in declaration order.
    #[pyo3(name = "to_dict")]
    fn py_to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        pythonize::pythonize(py, self).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn __eq__(&self, other: &Self) -> bool {
        self == other
    }

    fn __copy__(&self) -> Self {
        self.clone()
    }

    /// Copies and pickles rebuild the config from its fields, as they are (a config being
    /// edited need not be valid yet): `copy.deepcopy`, and the pickling that `multiprocessing`
    /// and `torch.multiprocessing.spawn(fn, args=(config,))` do.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<(Bound<'py, PyAny>, (), Bound<'py, PyAny>)> {
        let fields = slf.borrow().py_to_dict(slf.py())?;
        Ok((slf.get_type().into_any(), (), fields))
    }

    fn __setstate__(&mut self, py: Python<'_>, fields: &Bound<'_, PyDict>) -> PyResult<()> {
        for (key, value) in fields.iter() {
            *self = self.with_field(py, &key.extract::<String>()?, &value)?;
        }
        Ok(())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let dict = self.py_to_dict(py)?;
        let dict = dict.downcast::<PyDict>()?;
        let fields: Vec<String> =
            dict.iter().map(|(k, v)| Ok(format!("{k}={}", v.repr()?))).collect::<PyResult<_>>()?;
        Ok(format!("TrainConfig({})", fields.join(", ")))
    }
}

impl TrainConfig {
    /// This config with one field replaced by a Python value, or the error naming the field:
    /// an unknown name, a type that is not the field's own, a number that does not fit.
    fn with_field(&self, py: Python<'_>, name: &str, value: &Bound<'_, PyAny>) -> PyResult<Self> {
        let fields = self.py_to_dict(py)?.downcast_into::<PyDict>()?;
        let Some(current) = fields.get_item(name)? else {
            let known: Vec<String> = fields.keys().extract()?;
            return Err(PyTypeError::new_err(format!(
                "TrainConfig got an unexpected keyword argument {name:?}; the fields are {known:?}"
            )));
        };
        // serde's bool takes any truthy object (`light="no"` was True) and its integers take
        // bools: the Python types must match the field's own.
        let (is_bool, field_is_bool) = (value.is_instance_of::<PyBool>(), current.is_instance_of::<PyBool>());
        if is_bool != field_is_bool {
            let wanted = if field_is_bool {
                "True or False".to_string()
            } else {
                format!("of type {}", current.get_type().name()?)
            };
            return Err(PyTypeError::new_err(format!("TrainConfig.{name} must be {wanted}, got {}", value.repr()?)));
        }
        fields.set_item(name, value)?;
        pythonize::depythonize::<TrainConfig>(&fields).map_err(|e| {
            let text = e.to_string();
            if text.contains("OverflowError") {
                // PyO3's "can't convert negative int to unsigned" names neither field nor range.
                let range = if text.contains("negative") { "must be >= 0" } else { "does not fit in 64 bits" };
                return PyValueError::new_err(format!("TrainConfig.{name} {range}, got {value}"));
            }
            let wrong_type = value.is_none()
                || text.contains("invalid type")
                || text.contains("TypeError")
                || text.contains("unexpected type");
            if wrong_type {
                // serde and PyO3 word it in their own types ('PyString'); name the Python one.
                let wanted = current.get_type().name().map(|n| n.to_string()).unwrap_or_default();
                let got = value.repr().map(|r| r.to_string()).unwrap_or_default();
                PyTypeError::new_err(format!("TrainConfig.{name} must be of type {wanted}, got {got}"))
            } else {
                PyValueError::new_err(format!("TrainConfig.{name}: {e}"))
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads every loss with one device-to-host transfer.
fn losses_to_floats(losses: &StepLosses) -> Result<Vec<(String, f64)>> {
    let tensors: Vec<&Tensor> = losses.values.iter().map(|(_, t)| t).collect();
    let stacked = Tensor::f_stack(&tensors, 0)?.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?;
    let values = Vec::<f64>::try_from(&stacked).map_err(crate::Error::Torch)?;
    let mut out: Vec<(String, f64)> =
        losses.values.iter().zip(values).map(|((name, _), v)| (name.to_string(), v)).collect();
    out.push(("lr".to_string(), losses.lr));
    Ok(out)
}

/// A gradient hook calling a Python function with the list of gradients (no copies). It takes
/// the GIL only for the call; the trainer lock it runs under is never awaited with the GIL held.
/// An exception it raises is kept in `raised`, to be re-raised as itself (a KeyboardInterrupt or
/// a torch.distributed error stays what it was).
fn python_hook<'a>(hook: &'a PyObject, raised: &'a mut Option<PyErr>) -> impl FnMut(&[Tensor]) -> Result<()> + 'a {
    move |grads: &[Tensor]| {
        Python::with_gil(|py| {
            let list: Vec<PyTensor> = grads.iter().map(|g| PyTensor(g.shallow_clone())).collect();
            hook.call1(py, (list,)).map(|_| ()).map_err(|e| {
                let message = e.to_string();
                *raised = Some(e);
                crate::Error::Hook(message)
            })
        })
    }
}

/// What the shared trainer bindings ([`PyTrainerBase`]) need of either model's trainer.
trait Steps: checkpoint::Checkpointable + Send {
    fn step_reduced(&mut self, a: &Tensor, b: &Tensor, reduce: GradientHook<'_>) -> Result<StepLosses>;
    /// CycleGAN's `(fake_B pool, fake_A pool)` sizes; None for U-GAT-IT.
    fn pool_sizes(&self) -> Option<(usize, usize)> {
        None
    }
    /// CUDA-graph training's two halves (U-GAT-IT only; see `Trainer::prepare_replay`).
    fn prepare_replay(&mut self) -> Result<f64> {
        Err(crate::Error::config("cuda_graph is for U-GAT-IT's trainer, not CycleGAN's"))
    }
    fn step_kernels(&mut self, _a: &Tensor, _b: &Tensor) -> Result<StepLosses> {
        Err(crate::Error::config("cuda_graph is for U-GAT-IT's trainer, not CycleGAN's"))
    }
}

impl Steps for CycleGanTrainer {
    fn step_reduced(&mut self, a: &Tensor, b: &Tensor, reduce: GradientHook<'_>) -> Result<StepLosses> {
        CycleGanTrainer::step_reduced(self, a, b, reduce)
    }
    fn pool_sizes(&self) -> Option<(usize, usize)> {
        Some((self.pools[0].len(), self.pools[1].len()))
    }
}

impl<G: UgatitGenerator, D: UgatitDiscriminator> Steps for Trainer<G, D> {
    fn step_reduced(&mut self, a: &Tensor, b: &Tensor, reduce: GradientHook<'_>) -> Result<StepLosses> {
        Trainer::step_reduced(self, a, b, reduce)
    }
    fn prepare_replay(&mut self) -> Result<f64> {
        Trainer::prepare_replay(self)
    }
    fn step_kernels(&mut self, a: &Tensor, b: &Tensor) -> Result<StepLosses> {
        Trainer::step_kernels(self, a, b)
    }
}

/// Runs one step with an optional Python gradient hook, re-raising the hook's own exception.
fn step_with_hook(
    py: Python<'_>,
    trainer: &Mutex<Box<dyn Steps>>,
    a: Tensor,
    b: Tensor,
    hook: Option<PyObject>,
) -> PyResult<StepLosses> {
    let mut raised = None;
    let (hook, slot) = (hook.as_ref(), &mut raised);
    let result = unlocked(py, move || match hook {
        Some(hook) => lock(trainer).step_reduced(&a, &b, Some(&mut python_hook(hook, slot))),
        None => lock(trainer).step_reduced(&a, &b, None),
    });
    match (result, raised) {
        (Err(_), Some(original)) => Err(original),
        (result, _) => result,
    }
}

/// Reads the tensors of a checkpoint whose names start with `prefix` (all by default), on the
/// CPU, one at a time: `[("genA2B.DownBlock.1.weight", tensor), ...]`.
#[pyfunction]
#[pyo3(signature = (path, prefix=""))]
pub fn read_checkpoint(py: Python<'_>, path: PathBuf, prefix: &str) -> PyResult<Vec<(String, PyTensor)>> {
    let prefix = prefix.to_string();
    let tensors = unlocked(py, move || {
        let file = checkpoint::SafetensorsFile::open(&path)?;
        file.entries()
            .iter()
            .filter(|e| e.name.starts_with(&prefix))
            .map(|e| Ok((e.name.clone(), file.read(e, Device::Cpu)?)))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(tensors.into_iter().map(|(n, t)| (n, PyTensor(t))).collect())
}

/// Whether `path` is a `torch.save` file (an official checkpoint) rather than a safetensors one.
#[pyfunction]
pub fn is_torch_save(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
    unlocked(py, move || checkpoint::is_torch_save(&path))
}

/// A temporary name beside `path` to write to before renaming over it (`files::temporary_beside`:
/// the Python writers use the same scheme and the same per-process counter).
#[pyfunction]
pub fn temporary_beside(path: PathBuf) -> PathBuf {
    crate::files::temporary_beside(&path)
}

/// Deletes the temporary files in the folder `path` that a killed writer left
/// (`files::remove_stale_temporaries`); returns how many files and bytes were removed.
#[pyfunction]
pub fn remove_stale_temporaries(py: Python<'_>, path: PathBuf) -> PyResult<(usize, u64)> {
    unlocked(py, move || crate::files::remove_stale_temporaries(&path))
}

/// What is wrong with the zip archive at `path` (a `torch.save` or TorchScript file), checked
/// against its CRC-32s: None when nothing is, else `(kind, message)` with kind "not an archive"
/// (e.g. a legacy pickle), "malformed" or "corrupted".
#[pyfunction]
pub fn zip_problem(py: Python<'_>, path: PathBuf) -> PyResult<Option<(&'static str, String)>> {
    use crate::archive::{check_zip, ArchiveProblem};
    let outcome = unlocked(py, move || check_zip(&path))?;
    Ok(outcome.err().map(|problem| {
        let kind = match problem {
            ArchiveProblem::NotAnArchive => "not an archive",
            ArchiveProblem::Malformed(_) => "malformed",
            ArchiveProblem::Corrupted { .. } => "corrupted",
        };
        (kind, problem.to_string())
    }))
}

/// A checkpoint's metadata (step, lr, config JSON, ...), read from its header alone.
#[pyfunction]
pub fn read_checkpoint_metadata(py: Python<'_>, path: PathBuf) -> PyResult<Vec<(String, String)>> {
    let meta = unlocked(py, move || Ok(checkpoint::SafetensorsFile::open(&path)?.metadata().clone()))?;
    let mut meta: Vec<(String, String)> = meta.into_iter().collect();
    meta.sort();
    Ok(meta)
}

/// Writes `{name: tensor}` plus string metadata as a safetensors file, atomically.
#[pyfunction]
pub fn write_checkpoint(
    py: Python<'_>,
    path: PathBuf,
    tensors: Vec<(String, PyTensor)>,
    metadata: Vec<(String, String)>,
) -> PyResult<()> {
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().map(|(n, t)| (n, t.0)).collect();
    let metadata = metadata.into_iter().collect();
    unlocked(py, move || checkpoint::write_safetensors_atomic(&path, &tensors, &metadata))?;
    Ok(())
}

/// A trainer of either variant, and handles on its generators and discriminators.
type TrainerParts = (Box<dyn Steps>, [AnyNetwork; 2], [AnyNetwork; 4]);

/// Builds the trainer of `config.variant`, with Python handles on its six networks.
fn ugatit_trainer(config: TrainConfig) -> Result<TrainerParts> {
    fn parts<G: UgatitGenerator + 'static, D: UgatitDiscriminator + 'static>(
        t: Trainer<G, D>,
        g: fn(Arc<Mutex<G>>) -> AnyNetwork,
        d: fn(Arc<Mutex<D>>) -> AnyNetwork,
    ) -> TrainerParts {
        let gens = [g(t.gen_a2b.clone()), g(t.gen_b2a.clone())];
        let dis = [d(t.dis_ga.clone()), d(t.dis_gb.clone()), d(t.dis_la.clone()), d(t.dis_lb.clone())];
        (Box::new(t), gens, dis)
    }
    Ok(if config.variant == "tf" {
        parts(
            Trainer::<TfGenerator, TfDiscriminator>::create(config)?,
            AnyNetwork::TfGenerator,
            AnyNetwork::TfDiscriminator,
        )
    } else {
        parts(Trainer::new(config)?, AnyNetwork::Generator, AnyNetwork::Discriminator)
    })
}

/// What both native trainers share: stepping, checkpoints, config, step count, lr and device.
///
/// What never changes after construction (config, device) is kept outside the lock; everything
/// else is read with the GIL released (see `models.rs`).
#[pyclass(name = "TrainerBase", module = "ugatit_rs._native", subclass)]
pub struct PyTrainerBase {
    inner: Mutex<Box<dyn Steps>>,
    config: TrainConfig,
    device: String,
}

impl PyTrainerBase {
    fn new(trainer: Box<dyn Steps>) -> Self {
        Self { config: trainer.config().clone(), device: device_name(trainer.device()), inner: Mutex::new(trainer) }
    }
}

#[pymethods]
impl PyTrainerBase {
    /// One iteration; returns `[(loss_name, value), ...]` (one host sync for all of them).
    /// `grad_hook(grads)`, if given, may rewrite each optimizer's gradients in place before its
    /// update (data-parallel averaging).
    #[pyo3(signature = (real_a, real_b, grad_hook=None))]
    fn step(
        &self,
        py: Python<'_>,
        real_a: PyTensor,
        real_b: PyTensor,
        grad_hook: Option<PyObject>,
    ) -> PyResult<Vec<(String, f64)>> {
        let losses = step_with_hook(py, &self.inner, real_a.0, real_b.0, grad_hook)?;
        unlocked(py, move || losses_to_floats(&losses))
    }

    /// One iteration; returns the losses as 0-d tensors on the device (no host sync), plus lr.
    #[pyo3(signature = (real_a, real_b, grad_hook=None))]
    fn step_lazy(
        &self,
        py: Python<'_>,
        real_a: PyTensor,
        real_b: PyTensor,
        grad_hook: Option<PyObject>,
    ) -> PyResult<(Vec<(String, PyTensor)>, f64)> {
        let losses = step_with_hook(py, &self.inner, real_a.0, real_b.0, grad_hook)?;
        let values = losses.values.into_iter().map(|(n, t)| (n.to_string(), PyTensor(t))).collect();
        Ok((values, losses.lr))
    }

    /// CUDA graphs, host half: counts the next iteration, writes its LR and bias corrections to
    /// the device for the replay that follows; returns the LR.
    fn prepare_replay(&self, py: Python<'_>) -> PyResult<f64> {
        unlocked(py, || lock(&self.inner).prepare_replay())
    }

    /// CUDA graphs, device half: one iteration's kernels without host bookkeeping, for
    /// `torch.cuda.graph` to capture. Returns the losses (the graph's output tensors).
    fn step_kernels(&self, py: Python<'_>, real_a: PyTensor, real_b: PyTensor) -> PyResult<Vec<(String, PyTensor)>> {
        let losses = unlocked(py, move || lock(&self.inner).step_kernels(&real_a.0, &real_b.0))?;
        Ok(losses.values.into_iter().map(|(n, t)| (n.to_string(), PyTensor(t))).collect())
    }

    /// Writes the full training state (networks, optimizers, CycleGAN's pools) to `path`
    /// (atomically).
    #[pyo3(signature = (path, metadata=Vec::new()))]
    fn save_checkpoint(&self, py: Python<'_>, path: PathBuf, metadata: Vec<(String, String)>) -> PyResult<()> {
        unlocked(py, || checkpoint::save_with_metadata(&mut **lock(&self.inner), &path, &metadata))?;
        Ok(())
    }

    /// Restores a checkpoint; returns its step. Validates everything before changing anything.
    fn load_checkpoint(&self, py: Python<'_>, path: PathBuf) -> PyResult<i64> {
        let info = unlocked(py, || checkpoint::load(&mut **lock(&self.inner), &path))?;
        Ok(info.step)
    }

    /// A copy of the config the trainer was built with.
    #[getter]
    fn config(&self) -> TrainConfig {
        self.config.clone()
    }

    /// Whether a tensor hook may keep the gradients of a step: on the CPU the update otherwise
    /// reuses each spent gradient's memory for its scratch (see `Adam::set_keep_gradients`).
    fn set_keep_gradients(&self, py: Python<'_>, keep: bool) -> PyResult<()> {
        unlocked(py, || {
            lock(&self.inner).optimizers().into_iter().for_each(|optim| optim.set_keep_gradients(keep));
            Ok(())
        })
    }

    #[getter]
    fn step_count(&self, py: Python<'_>) -> PyResult<i64> {
        unlocked(py, || Ok(lock(&self.inner).step_count()))
    }

    #[getter]
    fn lr(&self, py: Python<'_>) -> PyResult<f64> {
        unlocked(py, || Ok(lock(&self.inner).lr()))
    }

    #[getter]
    fn device(&self) -> String {
        self.device.clone()
    }
}

/// The native U-GAT-IT trainer (either variant). Use `ugatit_rs.Trainer`, which wraps it.
#[pyclass(name = "Trainer", module = "ugatit_rs._native", extends = PyTrainerBase)]
pub struct PyTrainer {
    generators: [AnyNetwork; 2],
    discriminators: [AnyNetwork; 4],
}

#[pymethods]
impl PyTrainer {
    #[new]
    fn new(py: Python<'_>, config: TrainConfig) -> PyResult<(Self, PyTrainerBase)> {
        let (trainer, generators, discriminators) = unlocked(py, move || ugatit_trainer(config))?;
        Ok((Self { generators, discriminators }, PyTrainerBase::new(trainer)))
    }

    #[getter]
    fn gen_a2b(&self, py: Python<'_>) -> PyResult<Py<PyGenerator>> {
        PyGenerator::shared(py, self.generators[0].clone())
    }

    #[getter]
    fn gen_b2a(&self, py: Python<'_>) -> PyResult<Py<PyGenerator>> {
        PyGenerator::shared(py, self.generators[1].clone())
    }

    #[getter]
    fn dis_ga(&self, py: Python<'_>) -> PyResult<Py<PyDiscriminator>> {
        PyDiscriminator::shared(py, self.discriminators[0].clone())
    }

    #[getter]
    fn dis_gb(&self, py: Python<'_>) -> PyResult<Py<PyDiscriminator>> {
        PyDiscriminator::shared(py, self.discriminators[1].clone())
    }

    #[getter]
    fn dis_la(&self, py: Python<'_>) -> PyResult<Py<PyDiscriminator>> {
        PyDiscriminator::shared(py, self.discriminators[2].clone())
    }

    #[getter]
    fn dis_lb(&self, py: Python<'_>) -> PyResult<Py<PyDiscriminator>> {
        PyDiscriminator::shared(py, self.discriminators[3].clone())
    }
}

/// The native CycleGAN trainer. Use `ugatit_rs.Trainer(TrainConfig(model="cyclegan"))`, which
/// wraps it; its surface is the U-GAT-IT trainer's, with CycleGAN's four networks.
#[pyclass(name = "CycleGanTrainer", module = "ugatit_rs._native", extends = PyTrainerBase)]
pub struct PyCycleGanTrainer {
    generators: [Arc<Mutex<CycleGenerator>>; 2],
    discriminators: [Arc<Mutex<PatchDiscriminator>>; 2],
}

#[pymethods]
impl PyCycleGanTrainer {
    #[new]
    fn new(py: Python<'_>, config: TrainConfig) -> PyResult<(Self, PyTrainerBase)> {
        let trainer = unlocked(py, move || CycleGanTrainer::new(config))?;
        let networks = Self {
            generators: [trainer.gen_a.clone(), trainer.gen_b.clone()],
            discriminators: [trainer.dis_a.clone(), trainer.dis_b.clone()],
        };
        Ok((networks, PyTrainerBase::new(Box::new(trainer))))
    }

    /// How many images each pool holds: `(fake_B pool, fake_A pool)`.
    #[getter]
    fn pool_sizes(slf: PyRef<'_, Self>, py: Python<'_>) -> PyResult<(usize, usize)> {
        let inner = &slf.as_super().inner;
        unlocked(py, || Ok(lock(inner).pool_sizes().unwrap_or((0, 0))))
    }

    #[getter]
    fn gen_a(&self, py: Python<'_>) -> PyResult<Py<PyCycleGenerator>> {
        PyCycleGenerator::shared(py, self.generators[0].clone())
    }

    #[getter]
    fn gen_b(&self, py: Python<'_>) -> PyResult<Py<PyCycleGenerator>> {
        PyCycleGenerator::shared(py, self.generators[1].clone())
    }

    #[getter]
    fn dis_a(&self, py: Python<'_>) -> PyResult<Py<PyPatchDiscriminator>> {
        PyPatchDiscriminator::shared(py, self.discriminators[0].clone())
    }

    #[getter]
    fn dis_b(&self, py: Python<'_>) -> PyResult<Py<PyPatchDiscriminator>> {
        PyPatchDiscriminator::shared(py, self.discriminators[1].clone())
    }
}
