//! The three criteria of U-GAT-IT, all with `reduction='mean'` (docs/architecture.md §5): LSGAN's MSE against a
//! constant target, L1 for cycle and identity, BCE-with-logits for the generator's CAM.

use crate::Result;
use tch::{Reduction, Tensor};

/// `MSELoss()(x, full_like(x, target))`.
pub fn mse_to(x: &Tensor, target: f64) -> Result<Tensor> {
    let target = x.f_full_like(target)?;
    Ok(x.f_mse_loss(&target, Reduction::Mean)?)
}

/// `BCEWithLogitsLoss()(x, full_like(x, target))`.
pub fn bce_with_logits_to(x: &Tensor, target: f64) -> Result<Tensor> {
    let target = x.f_full_like(target)?;
    Ok(x.f_binary_cross_entropy_with_logits::<Tensor>(&target, None, None, Reduction::Mean)?)
}

/// `L1Loss()(x, y)`.
pub fn l1(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    Ok(x.f_l1_loss(y, Reduction::Mean)?)
}
