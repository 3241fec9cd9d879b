//! CycleGAN's networks, exactly as junyanz/pytorch-CycleGAN-and-pix2pix defines them
//! (docs/cyclegan.md): the ResNet generator and the PatchGAN discriminator, with instance norm
//! (no affine, no running statistics), their state-dict names, and their initialisation.

pub mod generator;
pub mod patchgan;

pub use generator::CycleGenerator;
pub use patchgan::PatchDiscriminator;

use crate::nn::{ParamStore, VarKind};
use crate::Result;

/// `init_weights(net, 'normal', gain)`: every conv weight ~ N(0, gain), every bias 0, in module
/// order. It runs after PyTorch's default initialisation has drawn its numbers, as theirs does,
/// so that a seeded construction consumes the random stream the same way.
pub(crate) fn init_normal(store: &ParamStore, gain: f64) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for var in store.vars().into_iter().filter(|v| v.kind == VarKind::Parameter) {
            let mut t = var.tensor;
            if var.name.ends_with(".weight") {
                let _ = t.f_normal_(0.0, gain)?;
            } else if var.name.ends_with(".bias") {
                let _ = t.f_zero_()?;
            }
        }
        Ok(())
    })
}
