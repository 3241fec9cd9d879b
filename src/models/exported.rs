//! A generator exported as TorchScript (`ugatit-rs export --format torchscript`), loaded with
//! `tch::CModule`: how a Rust program runs a trained model without this crate's networks.

use super::Output;
use crate::archive::{self, ArchiveProblem};
use crate::{Error, Result};
use std::path::Path;
use tch::{CModule, IValue, Tensor};

/// A traced generator: `(N, 3, H, W)` in, `translation` (and, when exported with attention, the
/// CAM logits and heatmap) out.
pub struct ExportedGenerator {
    module: CModule,
}

impl ExportedGenerator {
    /// Loads a TorchScript file on the CPU, in eval mode.
    pub fn load(path: &Path) -> Result<Self> {
        // Refuses FIFOs, folders and missing files, and damaged archives (libtorch's reader
        // skips the CRCs, so a flipped bit in a weight would load), before libtorch sees them.
        match archive::check_zip(path)? {
            Ok(()) => {}
            Err(problem @ ArchiveProblem::Corrupted { .. }) => {
                return Err(Error::StateDict(format!("{}: {problem}", path.display())))
            }
            Err(problem) => {
                return Err(Error::StateDict(format!("{}: not a TorchScript file ({problem})", path.display())))
            }
        }
        let mut module = CModule::load(path)
            .map_err(|e| Error::StateDict(format!("{}: not a TorchScript file ({e})", path.display())))?;
        module.set_eval();
        Ok(Self { module })
    }

    /// Runs the module; a translation-only export gives an empty CAM logit and heatmap.
    pub fn forward(&self, input: &Tensor) -> Result<Output> {
        let result = tch::no_grad(|| self.module.forward_is(&[IValue::Tensor(input.shallow_clone())]))?;
        match result {
            IValue::Tensor(out) => Ok(Output::image_only(out)),
            IValue::Tuple(items) => match <[IValue; 3]>::try_from(items) {
                Ok([IValue::Tensor(out), IValue::Tensor(cam_logit), IValue::Tensor(heatmap)]) => {
                    Ok(Output { out, cam_logit, heatmap })
                }
                _ => Err(Error::StateDict("the TorchScript module does not return (image, cam_logit, heatmap)".into())),
            },
            other => Err(Error::StateDict(format!("the TorchScript module returned {other:?}, not an image"))),
        }
    }
}
