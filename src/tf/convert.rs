//! Converting a TensorFlow checkpoint into a ugatit-rs safetensors file, one tensor at a time:
//! each variable is read, laid out as ours (HWIO -> OIHW, dense kernels transposed, `u`
//! flattened) and written before the next is read, so memory stays at about one tensor.

use super::TfCheckpoint;
use crate::train::checkpoint::write_safetensors_streaming;
use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Tensor};

/// How a TensorFlow variable is laid out relative to ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A conv kernel, HWIO (ours OIHW).
    Conv,
    /// A dense kernel, `(in, out)` (ours `(out, in)`).
    Dense,
    /// A spectral-norm `u`, `(1, out)` (ours `(out,)`).
    U,
    /// Biases, norms, rho: the same.
    Same,
}

impl Layout {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "conv" => Ok(Self::Conv),
            "dense" => Ok(Self::Dense),
            "u" => Ok(Self::U),
            "same" => Ok(Self::Same),
            other => Err(Error::config(format!("unknown layout {other:?} (conv, dense, u, same)"))),
        }
    }

    /// Our shape for a variable of TensorFlow shape `tf`.
    pub fn shape(self, tf: &[i64]) -> Result<Vec<i64>> {
        Ok(match (self, tf) {
            (Self::Conv, [h, w, i, o]) => vec![*o, *i, *h, *w],
            (Self::Dense, [i, o]) => vec![*o, *i],
            (Self::U, [1, o]) => vec![*o],
            (Self::Same, s) => s.to_vec(),
            (layout, s) => return Err(Error::StateDict(format!("a {layout:?} variable cannot have shape {s:?}"))),
        })
    }

    /// The variable's value in our layout.
    pub fn apply(self, t: Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Conv => t.f_permute([3, 2, 0, 1])?.f_contiguous()?,
            Self::Dense => t.f_tr()?.f_contiguous()?,
            Self::U => t.f_reshape([-1])?,
            Self::Same => t,
        })
    }
}

/// Writes `plan` (`(TensorFlow name, our name, layout)`) from `ckpt` to `out`, atomically.
pub fn convert(
    ckpt: &TfCheckpoint,
    plan: &[(String, String, Layout)],
    out: &Path,
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut specs = Vec::with_capacity(plan.len());
    let mut entries = Vec::with_capacity(plan.len());
    for (tf_name, ours, layout) in plan {
        let entry = ckpt
            .entry(tf_name)
            .ok_or_else(|| Error::StateDict(format!("{}: no variable {tf_name:?}", ckpt.prefix().display())))?;
        let kind =
            entry.kind().ok_or_else(|| Error::StateDict(format!("{tf_name}: unsupported dtype {}", entry.dtype)))?;
        specs.push((ours.clone(), layout.shape(&entry.shape)?, kind));
        entries.push(entry);
    }
    write_safetensors_streaming(out, &specs, metadata, |i| plan[i].2.apply(ckpt.read(entries[i], Device::Cpu)?))
}
