//! Bindings for [`crate::config::TrainConfig`] and [`crate::train::Trainer`].

use super::models::{PyDiscriminator, PyGenerator};
use crate::config::TrainConfig;
use crate::device::device_name;
use crate::train::{checkpoint, StepLosses, Trainer};
use std::path::PathBuf;
use crate::Result;
use super::error::unlocked;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3_tch::PyTensor;
use std::sync::{Mutex, MutexGuard};
use tch::{Device, Kind, Tensor};

#[pymethods]
impl TrainConfig {
    #[new]
    #[pyo3(signature = (
        dataset=String::new(), light=false, iteration=1_000_000, batch_size=1, print_freq=1000,
        save_freq=100_000, decay_flag=true, lr=1e-4, weight_decay=1e-4, adv_weight=1.0,
        cycle_weight=10.0, identity_weight=10.0, cam_weight=1000.0, ch=64, n_res=4, img_size=256,
        result_dir="results".to_string(), device="cuda".to_string(), resume=false, seed=0, num_workers=2,
        fused_discriminator=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        dataset: String, light: bool, iteration: i64, batch_size: i64, print_freq: i64, save_freq: i64,
        decay_flag: bool, lr: f64, weight_decay: f64, adv_weight: f64, cycle_weight: f64,
        identity_weight: f64, cam_weight: f64, ch: i64, n_res: i64, img_size: i64, result_dir: String,
        device: String, resume: bool, seed: u64, num_workers: i64, fused_discriminator: bool,
    ) -> Self {
        TrainConfig {
            dataset, light, iteration, batch_size, print_freq, save_freq, decay_flag, lr, weight_decay,
            adv_weight, cycle_weight, identity_weight, cam_weight, ch, n_res, img_size, result_dir,
            device, resume, seed, num_workers, fused_discriminator,
        }
    }

    /// Raises ValueError naming the first invalid field.
    #[pyo3(name = "validate")]
    fn py_validate(&self) -> PyResult<()> {
        self.validate()?;
        Ok(())
    }

    /// The fields as a plain dict (JSON-serialisable).
    #[pyo3(name = "to_dict")]
    fn py_to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("dataset", &self.dataset)?;
        d.set_item("light", self.light)?;
        d.set_item("iteration", self.iteration)?;
        d.set_item("batch_size", self.batch_size)?;
        d.set_item("print_freq", self.print_freq)?;
        d.set_item("save_freq", self.save_freq)?;
        d.set_item("decay_flag", self.decay_flag)?;
        d.set_item("lr", self.lr)?;
        d.set_item("weight_decay", self.weight_decay)?;
        d.set_item("adv_weight", self.adv_weight)?;
        d.set_item("cycle_weight", self.cycle_weight)?;
        d.set_item("identity_weight", self.identity_weight)?;
        d.set_item("cam_weight", self.cam_weight)?;
        d.set_item("ch", self.ch)?;
        d.set_item("n_res", self.n_res)?;
        d.set_item("img_size", self.img_size)?;
        d.set_item("result_dir", &self.result_dir)?;
        d.set_item("device", &self.device)?;
        d.set_item("resume", self.resume)?;
        d.set_item("seed", self.seed)?;
        d.set_item("num_workers", self.num_workers)?;
        d.set_item("fused_discriminator", self.fused_discriminator)?;
        Ok(d)
    }

    fn __eq__(&self, other: &Self) -> bool {
        self == other
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let fields: Vec<String> = self
            .py_to_dict(py)?
            .iter()
            .map(|(k, v)| Ok(format!("{}={}", k, v.repr()?)))
            .collect::<PyResult<_>>()?;
        Ok(format!("TrainConfig({})", fields.join(", ")))
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

/// Reads a checkpoint's networks: `{"genA2B.DownBlock.1.weight": tensor, ...}` on the CPU,
/// plus its metadata (step, lr, config JSON).
#[pyfunction]
pub fn read_checkpoint(py: Python<'_>, path: PathBuf) -> PyResult<(Vec<(String, PyTensor)>, Vec<(String, String)>)> {
    let (tensors, meta) = unlocked(py, || -> Result<_> {
        let file = checkpoint::SafetensorsFile::open(&path)?;
        Ok((file.tensors_with_prefix("", Device::Cpu)?, file.metadata()?))
    })?;
    let tensors = tensors.into_iter().map(|(n, t)| (n, PyTensor(t))).collect();
    Ok((tensors, meta.into_iter().collect()))
}

/// Writes `{name: tensor}` plus string metadata as a safetensors file, atomically.
#[pyfunction]
pub fn write_checkpoint(py: Python<'_>, path: PathBuf, tensors: Vec<(String, PyTensor)>, metadata: Vec<(String, String)>) -> PyResult<()> {
    let tensors: Vec<(String, Tensor)> = tensors.into_iter().map(|(n, t)| (n, t.0)).collect();
    let metadata = metadata.into_iter().collect();
    unlocked(py, move || checkpoint::write_safetensors_atomic(&path, &tensors, &metadata))?;
    Ok(())
}

/// The native trainer. Use `ugatit_rs.Trainer`, which wraps it.
#[pyclass(name = "Trainer", module = "ugatit_rs._native")]
pub struct PyTrainer {
    inner: Mutex<Trainer>,
}

#[pymethods]
impl PyTrainer {
    #[new]
    fn new(py: Python<'_>, config: TrainConfig) -> PyResult<Self> {
        let trainer = unlocked(py, move || Trainer::new(config))?;
        Ok(Self { inner: Mutex::new(trainer) })
    }

    /// One iteration; returns `[(loss_name, value), ...]` (one host sync for all of them).
    fn step(&self, py: Python<'_>, real_a: PyTensor, real_b: PyTensor) -> PyResult<Vec<(String, f64)>> {
        let (a, b) = (real_a.0, real_b.0);
        let values = unlocked(py, move || -> Result<_> {
            let losses = lock(&self.inner).step(&a, &b)?;
            losses_to_floats(&losses)
        })?;
        Ok(values)
    }

    /// One iteration; returns the losses as 0-d tensors on the device (no host sync), plus lr.
    fn step_lazy(&self, py: Python<'_>, real_a: PyTensor, real_b: PyTensor) -> PyResult<(Vec<(String, PyTensor)>, f64)> {
        let (a, b) = (real_a.0, real_b.0);
        let losses = unlocked(py, move || lock(&self.inner).step(&a, &b))?;
        let values = losses.values.into_iter().map(|(n, t)| (n.to_string(), PyTensor(t))).collect();
        Ok((values, losses.lr))
    }

    /// Writes the full training state to `path` (atomically).
    fn save_checkpoint(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        unlocked(py, || checkpoint::save(&lock(&self.inner), &path))?;
        Ok(())
    }

    /// Restores a checkpoint; returns its step. Validates everything before changing anything.
    fn load_checkpoint(&self, py: Python<'_>, path: PathBuf) -> PyResult<i64> {
        let info = unlocked(py, || checkpoint::load(&mut lock(&self.inner), &path))?;
        Ok(info.step)
    }

    #[getter]
    fn config(&self) -> TrainConfig {
        lock(&self.inner).config().clone()
    }

    #[getter]
    fn step_count(&self) -> i64 {
        lock(&self.inner).step_count()
    }

    #[getter]
    fn lr(&self) -> f64 {
        lock(&self.inner).lr()
    }

    #[getter]
    fn device(&self) -> String {
        device_name(lock(&self.inner).device())
    }

    #[getter]
    fn gen_a2b(&self) -> PyGenerator {
        PyGenerator::from_shared(lock(&self.inner).gen_a2b.clone())
    }

    #[getter]
    fn gen_b2a(&self) -> PyGenerator {
        PyGenerator::from_shared(lock(&self.inner).gen_b2a.clone())
    }

    #[getter]
    fn dis_ga(&self) -> PyDiscriminator {
        PyDiscriminator::from_shared(lock(&self.inner).dis_ga.clone())
    }

    #[getter]
    fn dis_gb(&self) -> PyDiscriminator {
        PyDiscriminator::from_shared(lock(&self.inner).dis_gb.clone())
    }

    #[getter]
    fn dis_la(&self) -> PyDiscriminator {
        PyDiscriminator::from_shared(lock(&self.inner).dis_la.clone())
    }

    #[getter]
    fn dis_lb(&self) -> PyDiscriminator {
        PyDiscriminator::from_shared(lock(&self.inner).dis_lb.clone())
    }
}
