//! How the convolutions and matrix products compute — opt-ins that change the numbers:
//! reduced precision (`TrainConfig.precision = "bf16"`, `ugatit_rs.compute(...)` for inference)
//! and channels-last memory order (`TrainConfig.channels_last`).
//!
//! Reduced precision is what `torch.autocast` does, made explicit for our layers, because tch
//! can neither choose autocast's dtype nor keep it away from ops that must stay in float32.
//! While a compute kind is set on the current thread, convolutions and matrix products
//! (`Conv2d`, `ConvTranspose2d`, `Linear` and the spectral-norm layers) cast their input and
//! weight to it — the master weights stay float32 and receive float32 gradients through the
//! cast — while the normalisations upcast their input and compute their statistics in float32,
//! the spectral-norm power iteration and σ stay float32, and every network returns float32.
//!
//! Channels-last hands convolutions NHWC-ordered input and weight (tch cannot name memory
//! formats, so the layout is made by permuting): cuDNN's tensor-core kernels want it, and the
//! weights stay in the optimizer's NCHW buffer, so each convolution converts its own operands.
//!
//! The third setting is not an opt-in but the export's: while a network is traced, every layer
//! issues the official code's operations instead of its fast paths (`with_official_ops`).

use crate::{Error, Result};
use std::cell::Cell;
use tch::{Kind, Tensor};

/// This thread's compute settings (the default: float32, NCHW, the fast paths allowed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Compute {
    /// The kind convolutions and products run in; None: float32.
    pub kind: Option<Kind>,
    pub channels_last: bool,
    /// Every layer issues the official code's own operations (set by [`with_official_ops`]).
    pub official_ops: bool,
}

impl Compute {
    /// From a precision name (`"fp32"`, `"bf16"`, `"fp16"`) and the layout flag.
    pub fn new(precision: &str, channels_last: bool) -> Result<Self> {
        let kind = match precision {
            "fp32" => None,
            "bf16" => Some(Kind::BFloat16),
            "fp16" => Some(Kind::Half),
            other => {
                return Err(Error::config(format!("precision must be \"fp32\", \"bf16\" or \"fp16\", got {other:?}")))
            }
        };
        Ok(Self { kind, channels_last, official_ops: false })
    }

    /// The precision name [`Compute::new`] takes.
    pub fn precision(&self) -> &'static str {
        match self.kind {
            Some(Kind::BFloat16) => "bf16",
            Some(_) => "fp16",
            None => "fp32",
        }
    }
}

thread_local! {
    static COMPUTE: Cell<Compute> =
        const { Cell::new(Compute { kind: None, channels_last: false, official_ops: false }) };
}

/// Runs `f` with `compute` as this thread's settings, restoring the previous ones after.
pub fn with_compute<T>(compute: Compute, f: impl FnOnce() -> T) -> T {
    struct Restore(Compute);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPUTE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(replace(compute));
    f()
}

/// Sets this thread's settings, returning the previous ones (the Python context manager).
pub fn replace(compute: Compute) -> Compute {
    COMPUTE.with(|c| c.replace(compute))
}

/// This thread's settings.
pub fn current() -> Compute {
    COMPUTE.with(|c| c.get())
}

/// Runs `f` with every layer issuing the official code's own operations on this thread: the
/// export traces what the layers issue, and the fast paths some layers take instead (ILN/AdaILN
/// fold the feature-map size into constants, which a trace would bake in; the CPU output
/// convolution runs as a transposed one) are not what an exported graph should hold.
pub fn with_official_ops<T>(f: impl FnOnce() -> T) -> T {
    with_compute(Compute { official_ops: true, ..current() }, f)
}

/// Whether this thread is inside [`with_official_ops`].
pub fn official_ops() -> bool {
    current().official_ops
}

/// `t` in the compute kind (a no-op without one): an operand of a product.
pub fn lowered(t: &Tensor) -> Result<Tensor> {
    match current().kind {
        Some(kind) if t.f_kind()? != kind => Ok(t.f_to_kind(kind)?),
        _ => Ok(t.shallow_clone()),
    }
}

/// An operand of a convolution: in the compute kind and, if asked, channels-last.
pub fn conv_operand(t: &Tensor) -> Result<Tensor> {
    let t = lowered(t)?;
    if !current().channels_last || t.dim() != 4 {
        return Ok(t);
    }
    // (N, C, H, W) viewed over NHWC storage: the strides libtorch reads as channels-last.
    Ok(t.f_permute([0, 2, 3, 1])?.f_contiguous()?.f_permute([0, 3, 1, 2])?)
}

/// `t` in float32 (a no-op if it is): inputs of normalisations and network outputs.
pub fn full(t: &Tensor) -> Result<Tensor> {
    match t.f_kind()? {
        Kind::Float => Ok(t.shallow_clone()),
        _ => Ok(t.f_to_kind(Kind::Float)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn scoped_to_the_call_and_the_thread() {
        let x = Tensor::ones([1, 2, 3, 4], (Kind::Float, Device::Cpu));
        assert_eq!(lowered(&x).unwrap().kind(), Kind::Float);
        let bf16_nhwc = Compute::new("bf16", true).unwrap();
        with_compute(bf16_nhwc, || {
            let y = conv_operand(&x).unwrap();
            assert_eq!(y.kind(), Kind::BFloat16);
            assert_eq!(y.stride(), [24, 1, 8, 2], "channels-last strides");
            assert!(y.equal(&x.to_kind(Kind::BFloat16)));
            std::thread::spawn(|| assert_eq!(current(), Compute::default())).join().unwrap();
            assert_eq!(full(&y).unwrap().kind(), Kind::Float);
        });
        assert_eq!(current(), Compute::default());
        assert!(Compute::new("fp8", false).is_err());
    }

    #[test]
    fn official_ops_keep_the_precision_and_end_with_the_call() {
        let bf16 = Compute::new("bf16", false).unwrap();
        with_compute(bf16, || {
            with_official_ops(|| {
                assert!(official_ops());
                assert_eq!(current().kind, Some(Kind::BFloat16));
            });
            assert!(!official_ops());
            assert_eq!(current(), bf16);
        });
        assert!(!official_ops());
    }
}
