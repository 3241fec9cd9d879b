//! An ordered store of named tensors, like tch's `VarStore` but keeping registration order, so
//! that `state_dict()` lists keys exactly as PyTorch's `Module.state_dict()` does.
//!
//! Layers receive a [`Path`] and create their tensors under it: `root / "DownBlock" / 1` then
//! `.param("weight", ..)` registers `DownBlock.1.weight`. Each layer keeps shallow clones of its
//! tensors, which share the same `TensorImpl` with the store: moving the store to another device
//! (`set_data`) or loading a state dict (`copy_`) is seen by every layer and by Python alike.

use crate::{Error, Result};
use std::cell::{Cell, RefCell};
use tch::{Device, Kind, Tensor};

thread_local! {
    /// Whether [`Path::param`] draws initial values on this thread (see [`without_initialisation`]).
    static INITIALISE: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with parameters created as zeros instead of drawn from their [`Init`]: for a
/// network whose weights are loaded next. It skips the draws (1.7 s for a full 256 px
/// generator's 268M-weight MLP) and leaves the global RNG where it was.
pub fn without_initialisation<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INITIALISE.with(|i| i.set(self.0));
        }
    }
    let _restore = Restore(INITIALISE.with(|i| i.replace(false)));
    f()
}

/// Learned parameters are trained by the optimizer; buffers (spectral-norm `weight_u`/`weight_v`)
/// are saved in the state dict but receive no gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarKind {
    Parameter,
    Buffer,
}

pub struct Var {
    pub name: String,
    pub tensor: Tensor,
    pub kind: VarKind,
}

/// What a tensor was registered as: its shape and dtype never change (only its values and, with
/// the whole store, its device), so a tensor that differs was altered from outside.
struct Registered {
    var: Var,
    shape: Vec<i64>,
    dtype: Kind,
}

/// How a tensor differs from its registration (see [`ParamStore::check_intact`]).
enum Alteration {
    Undefined,
    Shape(Vec<i64>),
    Dtype(Kind),
    Device(Device),
}

impl Registered {
    /// What was altered from outside, if anything, given the store's device.
    fn alteration(&self, device: Device) -> Result<Option<Alteration>> {
        let t = &self.var.tensor;
        Ok(if !t.defined() {
            Some(Alteration::Undefined)
        } else if t.size() != self.shape {
            Some(Alteration::Shape(t.size()))
        } else if t.f_kind()? != self.dtype {
            Some(Alteration::Dtype(t.f_kind()?))
        } else if t.device() != device {
            Some(Alteration::Device(t.device()))
        } else {
            None
        })
    }
}

/// The bytes a strided tensor can reach, `[start, end)` on its device.
struct MemorySpan {
    device: Device,
    start: usize,
    end: usize,
}

impl MemorySpan {
    /// `None` for an undefined or empty tensor, or one without plain strided storage.
    fn of(t: &Tensor) -> Option<Self> {
        if !t.defined() || t.numel() == 0 || t.is_sparse() || t.is_mkldnn() {
            return None;
        }
        let element = t.f_kind().ok()?.elt_size_in_bytes() as isize;
        let (mut low, mut high) = (0isize, 0isize);
        for (&size, &stride) in t.size().iter().zip(t.stride().iter()) {
            let reach = (size as isize - 1) * stride as isize * element;
            if reach < 0 {
                low += reach;
            } else {
                high += reach;
            }
        }
        let origin = t.data_ptr() as isize;
        Some(Self { device: t.device(), start: (origin + low) as usize, end: (origin + high + element) as usize })
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.device == other.device && self.start < other.end && other.start < self.end
    }
}

/// How a parameter is initialised.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// U(-bound, bound): PyTorch's default for conv/linear weights and biases.
    Uniform { bound: f64 },
    /// Every element set to this value (rho, ILN gamma/beta).
    Const(f64),
    /// N(0, std): TensorFlow's `random_normal_initializer` (the TF variant's kernels).
    Normal { std: f64 },
}

impl Init {
    /// `kaiming_uniform_(w, a=sqrt(5))`, PyTorch's default weight init, which works out to
    /// U(±1/sqrt(fan_in)). Computed with the same float operations as torch.nn.init.
    pub fn pytorch_weight(fan_in: i64) -> Self {
        let a = 5f64.sqrt();
        let gain = (2.0 / (1.0 + a * a)).sqrt();
        let std = gain / (fan_in as f64).sqrt();
        Init::Uniform { bound: 3f64.sqrt() * std }
    }

    /// PyTorch's default bias init: U(±1/sqrt(fan_in)).
    pub fn pytorch_bias(fan_in: i64) -> Self {
        Init::Uniform { bound: 1.0 / (fan_in as f64).sqrt() }
    }
}

/// A tensor's name, shape and dtype: what a state dict or file header says before any data is read.
pub type TensorSpec = (String, Vec<i64>, Kind);

/// Keys that `ParamStore::load` did not match (only returned when not strict).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LoadReport {
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
}

pub struct ParamStore {
    vars: RefCell<Vec<Registered>>,
    device: Device,
    /// Host memory the parameters may take, read when the store is made (CPU only; a CUDA
    /// allocation fails cleanly), and how much they take so far: a configuration too large
    /// for the machine is refused before its pages are touched (see `check_host_memory`).
    host_budget: Option<u64>,
    host_bytes: std::cell::Cell<u64>,
}

impl ParamStore {
    pub fn new(device: Device) -> Self {
        let host_budget = if device == Device::Cpu { crate::error::available_memory() } else { None };
        Self { vars: RefCell::new(Vec::new()), device, host_budget, host_bytes: std::cell::Cell::new(0) }
    }

    /// [`ParamStore::new`] for a network of at least `min_parameters` float32 parameters:
    /// refused at once if those cannot fit in the host memory available (each tensor is still
    /// counted as it is made, which catches what the bound leaves out, but only once the memory
    /// before it has been filled).
    pub fn sized(device: Device, min_parameters: f64, network: &str) -> Result<Self> {
        if device == Device::Cpu {
            crate::error::check_host_memory((min_parameters * 4.0) as u64, || {
                format!("this {network} has at least {:.0} million parameters, which", min_parameters / 1e6)
            })?;
        }
        Ok(Self::new(device))
    }

    /// Counts a new float32 tensor of `shape` against the host budget.
    fn reserve(&self, name: &str, shape: &[i64]) -> Result<()> {
        let bytes = shape.iter().try_fold(4u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?)).unwrap_or(u64::MAX);
        let total = self.host_bytes.get().saturating_add(bytes);
        if let Some(budget) = self.host_budget.filter(|&budget| total > budget) {
            return Err(Error::OutOfMemory(format!(
                "the network's parameters up to {name} {shape:?} need {} MiB of memory, more than the {} MiB \
                 this machine had available; choose a smaller configuration",
                total >> 20,
                budget >> 20
            )));
        }
        self.host_bytes.set(total);
        Ok(())
    }

    pub fn root(&self) -> Path<'_> {
        Path { store: self, prefix: String::new() }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Every tensor in registration order, as shallow clones sharing storage with the store.
    pub fn vars(&self) -> Vec<Var> {
        self.vars
            .borrow()
            .iter()
            .map(|r| Var { name: r.var.name.clone(), tensor: r.var.tensor.shallow_clone(), kind: r.var.kind })
            .collect()
    }

    /// The learned parameters only, in registration order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.vars
            .borrow()
            .iter()
            .filter(|r| r.var.kind == VarKind::Parameter)
            .map(|r| r.var.tensor.shallow_clone())
            .collect()
    }

    /// The learned parameters as `(prefix.name, tensor)`, in registration order.
    pub fn named_parameters(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.vars
            .borrow()
            .iter()
            .filter(|r| r.var.kind == VarKind::Parameter)
            .map(|r| (format!("{prefix}.{}", r.var.name), r.var.tensor.shallow_clone()))
            .collect()
    }

    /// Number of learned scalars.
    pub fn num_parameters(&self) -> i64 {
        self.vars
            .borrow()
            .iter()
            .filter(|r| r.var.kind == VarKind::Parameter)
            .map(|r| r.shape.iter().product::<i64>())
            .sum()
    }

    /// Moves every tensor (and any gradient it holds) to `device` in place, like
    /// `Module.to(device)`: handles held elsewhere, in Rust or Python, follow.
    pub fn set_device(&mut self, device: Device) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for var in self.vars.borrow_mut().iter_mut().map(|r| &mut r.var) {
                let moved = var.tensor.f_to_device(device)?;
                var.tensor.f_set_data(&moved)?;
                let mut grad = var.tensor.f_grad()?;
                if grad.defined() {
                    let moved_grad = grad.f_to_device(device)?;
                    grad.f_set_data(&moved_grad)?;
                }
            }
            Ok(())
        })?;
        self.device = device;
        Ok(())
    }

    /// Checks that every tensor still has the shape, dtype and device the network computes with.
    /// Python holds the very same tensors, and `resize_`, `set_`, `as_strided_` or `p.data = ...`
    /// there would otherwise surface as a libtorch error deep inside a forward (or, where shapes
    /// broadcast, as silently wrong numbers). A few microseconds; every forward and step runs it.
    pub fn check_intact(&self, network: &str) -> Result<()> {
        let device = self.device;
        let altered = "was altered outside the network (resize_, set_, as_strided_ or `.data = ...`); \
                       write values in place instead (copy_, load_state_dict, which also restores it)";
        for r in self.vars.borrow().iter() {
            let Some(alteration) = r.alteration(device)? else { continue };
            let name = &r.var.name;
            return Err(match alteration {
                Alteration::Undefined => Error::shape(format!("{network} tensor {name} is undefined: it {altered}")),
                Alteration::Shape(shape) => Error::shape(format!(
                    "{network} tensor {name} has shape {shape:?}, the network needs {:?}: it {altered}",
                    r.shape
                )),
                Alteration::Dtype(dtype) => Error::Dtype(format!(
                    "{network} tensor {name} is {dtype:?}, the network needs {:?}: it {altered}",
                    r.dtype
                )),
                Alteration::Device(on) => Error::Device(format!(
                    "{network} tensor {name} is on {on:?} while the network is on {device:?}: it {altered}; \
                     move the whole network with .to(...)"
                )),
            });
        }
        Ok(())
    }

    /// Refuses a parameter switched to `requires_grad=False` from Python, where the set of
    /// trained parameters cannot change: in a captured CUDA graph, which replays the update of
    /// the parameters that were trainable when it was captured.
    pub fn check_trainable(&self, network: &str) -> Result<()> {
        let frozen = self
            .vars
            .borrow()
            .iter()
            .find(|r| r.var.kind == VarKind::Parameter && !r.var.tensor.requires_grad())
            .map(|r| r.var.name.clone());
        match frozen {
            Some(name) => Err(Error::config(format!(
                "{network} parameter {name} has requires_grad=False, which CUDA-graph training \
                 (cuda_graph=True) does not support: its captured step updates every parameter; call \
                 requires_grad_(True) on it, or train without cuda_graph"
            ))),
            None => Ok(()),
        }
    }

    /// Copies `tensors` into the store in place (under `no_grad`, like `Module.load_state_dict`),
    /// after checking everything first so that a bad dict leaves the store untouched.
    ///
    /// Mis-shaped or non-float tensors are always an error; missing and unexpected keys are an
    /// error when `strict`, else reported back. `network` names the model in messages. A tensor
    /// that was altered from outside (see [`ParamStore::check_intact`]) gets its registered
    /// shape, dtype and device back before the copy.
    pub fn load(&self, tensors: &[(String, Tensor)], strict: bool, network: &str) -> Result<LoadReport> {
        let report = self.check(tensors, strict, network)?;
        let vars = self.vars.borrow();
        tch::no_grad(|| -> Result<()> {
            // A source that shares memory with any of the store's tensors (`p.t()` of a live
            // parameter, another view of it) is copied first: copy_ refuses a partial overlap
            // with its destination, and a destination written earlier in the loop would change a
            // later source. Either would leave the store half loaded.
            let targets: Vec<MemorySpan> = vars.iter().filter_map(|r| MemorySpan::of(&r.var.tensor)).collect();
            let sources: Vec<Tensor> = tensors
                .iter()
                .map(|(_, src)| match MemorySpan::of(src) {
                    Some(span) if targets.iter().any(|t| t.overlaps(&span)) => {
                        let copy = src.f_empty_like()?;
                        copy.shallow_clone().f_copy_(src)?;
                        Ok(copy)
                    }
                    _ => Ok(src.shallow_clone()),
                })
                .collect::<Result<_>>()?;
            for ((name, _), src) in tensors.iter().zip(&sources) {
                if let Some(r) = vars.iter().find(|r| &r.var.name == name) {
                    let mut dst = r.var.tensor.shallow_clone();
                    if r.alteration(self.device)?.is_some() {
                        dst.f_set_data(&Tensor::f_empty(r.shape.as_slice(), (r.dtype, self.device))?)?;
                    }
                    dst.f_copy_(src)?;
                }
            }
            Ok(())
        })?;
        Ok(report)
    }

    /// The checks of [`ParamStore::load`] without copying anything.
    pub fn check(&self, tensors: &[(String, Tensor)], strict: bool, network: &str) -> Result<LoadReport> {
        let specs: Vec<TensorSpec> =
            tensors.iter().map(|(name, t)| Ok((name.clone(), t.size(), t.f_kind()?))).collect::<Result<_>>()?;
        self.check_specs(&specs, strict, network)
    }

    /// The checks of [`ParamStore::load`] on `(name, shape, dtype)` alone (e.g. a file's header).
    pub fn check_specs(&self, specs: &[TensorSpec], strict: bool, network: &str) -> Result<LoadReport> {
        let vars = self.vars.borrow();
        let mut report = LoadReport::default();
        let mut problems = Vec::new();
        for (name, shape, kind) in specs {
            let Some(r) = vars.iter().find(|r| &r.var.name == name) else {
                report.unexpected_keys.push(name.clone());
                continue;
            };
            if !matches!(kind, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16) {
                problems.push(format!("{name}: expected a floating-point tensor, got {kind:?}"));
            } else if shape != &r.shape {
                problems.push(format!("{name}: shape {shape:?} in the state dict, {:?} in the model", r.shape));
            }
        }
        report.missing_keys = vars
            .iter()
            .filter(|r| !specs.iter().any(|(name, _, _)| name == &r.var.name))
            .map(|r| r.var.name.clone())
            .collect();
        if strict {
            if !report.missing_keys.is_empty() {
                problems.push(format!("missing keys: {}", report.missing_keys.join(", ")));
            }
            if !report.unexpected_keys.is_empty() {
                problems.push(format!("unexpected keys: {}", report.unexpected_keys.join(", ")));
            }
        }
        if !problems.is_empty() {
            return Err(Error::StateDict(format!(
                "error(s) in loading state_dict for {network}:\n  {}",
                problems.join("\n  ")
            )));
        }
        Ok(report)
    }

    /// Copies `src` into the tensor registered as `name`, in place (shapes already checked).
    pub fn copy_from(&self, name: &str, src: &Tensor) -> Result<()> {
        let vars = self.vars.borrow();
        let r = vars.iter().find(|r| r.var.name == name).ok_or_else(|| Error::internal(format!("no tensor {name}")))?;
        tch::no_grad(|| r.var.tensor.shallow_clone().f_copy_(src).map(|_| ()))?;
        Ok(())
    }

    fn add(&self, name: String, tensor: Tensor, kind: VarKind) -> Result<Tensor> {
        let mut vars = self.vars.borrow_mut();
        if vars.iter().any(|r| r.var.name == name) {
            return Err(Error::internal(format!("tensor {name:?} registered twice")));
        }
        let handle = tensor.shallow_clone();
        let (shape, dtype) = (tensor.size(), tensor.f_kind()?);
        vars.push(Registered { var: Var { name, tensor, kind }, shape, dtype });
        Ok(handle)
    }
}

/// A position in the store's name tree; `/` descends one level.
#[derive(Clone)]
pub struct Path<'a> {
    store: &'a ParamStore,
    prefix: String,
}

impl<'a> Path<'a> {
    fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn device(&self) -> Device {
        self.store.device
    }

    /// Registers a learned float32 parameter with `requires_grad=True`.
    pub fn param(&self, name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        self.store.reserve(&self.full_name(name), shape)?;
        let mut tensor = Tensor::f_empty(shape, (Kind::Float, self.store.device))?;
        tch::no_grad(|| -> Result<()> {
            let _ = match init {
                _ if !INITIALISE.with(Cell::get) => tensor.f_zero_()?,
                Init::Uniform { bound } => tensor.f_uniform_(-bound, bound)?,
                Init::Const(value) => tensor.f_fill_(value)?,
                Init::Normal { std } => tensor.f_normal_(0.0, std)?,
            };
            Ok(())
        })?;
        let tensor = tensor.f_requires_grad_(true)?;
        self.store.add(self.full_name(name), tensor, VarKind::Parameter)
    }

    /// Registers a buffer: saved and loaded with the state dict, never trained.
    pub fn buffer(&self, name: &str, tensor: Tensor) -> Result<Tensor> {
        let tensor = tensor.f_to_device(self.store.device)?.f_detach()?;
        self.store.add(self.full_name(name), tensor, VarKind::Buffer)
    }
}

impl<'a, T: std::fmt::Display> std::ops::Div<T> for &Path<'a> {
    type Output = Path<'a>;
    fn div(self, child: T) -> Path<'a> {
        Path { store: self.store, prefix: self.full_name(&child.to_string()) }
    }
}

impl<'a, T: std::fmt::Display> std::ops::Div<T> for Path<'a> {
    type Output = Path<'a>;
    fn div(self, child: T) -> Path<'a> {
        &self / child
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_paths_and_order_is_kept() {
        let store = ParamStore::new(Device::Cpu);
        let root = store.root();
        let g = &root / "gap_fc";
        let _ = g.param("weight", &[1, 4], Init::pytorch_weight(4)).unwrap();
        let _ = (&root / "DownBlock" / 1).param("weight", &[2, 3], Init::Const(0.5)).unwrap();
        let names: Vec<_> = store.vars().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["gap_fc.weight", "DownBlock.1.weight"]);
        assert!(g.param("weight", &[1], Init::Const(0.0)).is_err());
    }

    #[test]
    fn load_checks_everything_before_copying() {
        let store = ParamStore::new(Device::Cpu);
        let a = store.root().param("a", &[2], Init::Const(0.0)).unwrap();
        let _ = store.root().param("b", &[3], Init::Const(0.0)).unwrap();
        let good = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let bad = Tensor::ones([4], (Kind::Float, Device::Cpu));
        let err =
            store.load(&[("a".into(), good.shallow_clone()), ("b".into(), bad)], true, "Net").unwrap_err().to_string();
        assert!(err.contains("b: shape [4]"), "{err}");
        assert_eq!(a.sum(Kind::Float).double_value(&[]), 0.0, "nothing copied on error");
        let err = store.load(&[("a".into(), good.shallow_clone())], true, "Net").unwrap_err().to_string();
        assert!(err.contains("missing keys: b"), "{err}");
        let report = store.load(&[("a".into(), good), ("zz".into(), a.copy())], false, "Net").unwrap();
        assert_eq!(report.missing_keys, ["b"]);
        assert_eq!(report.unexpected_keys, ["zz"]);
        assert_eq!(a.sum(Kind::Float).double_value(&[]), 2.0);
    }

    #[test]
    fn altered_tensors_are_named_and_a_load_restores_them() {
        let store = ParamStore::new(Device::Cpu);
        let w = store.root().param("w", &[2, 3], Init::Const(0.5)).unwrap();
        assert!(store.check_intact("Net").is_ok());
        // What Python's `set_` does to the shared TensorImpl.
        tch::no_grad(|| w.shallow_clone().set_data(&Tensor::zeros([4], (Kind::Double, Device::Cpu))));
        let err = store.check_intact("Net").unwrap_err();
        assert!(matches!(err, Error::Shape(_)) && err.to_string().contains("Net tensor w has shape [4]"), "{err}");
        let good = Tensor::ones([2, 3], (Kind::Float, Device::Cpu));
        store.load(&[("w".into(), good)], true, "Net").unwrap();
        assert!(store.check_intact("Net").is_ok());
        assert_eq!((w.size(), w.sum(Kind::Float).double_value(&[])), (vec![2, 3], 6.0));
    }

    #[test]
    fn pytorch_init_bound() {
        match Init::pytorch_weight(27) {
            Init::Uniform { bound } => assert!((bound - 1.0 / 27f64.sqrt()).abs() < 1e-12),
            _ => unreachable!(),
        }
        let store = ParamStore::new(Device::Cpu);
        let w = store.root().param("w", &[1000], Init::pytorch_weight(9)).unwrap();
        assert!(w.requires_grad());
        let max = w.abs().max().double_value(&[]);
        assert!(max <= 1.0 / 3.0 && max > 0.3);
    }
}
