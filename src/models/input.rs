//! Validation of network inputs, so that a wrong tensor gets a message naming the problem
//! instead of a libtorch stack trace from deep inside a conv.

use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// Checks that `x` is a float32 (B, channels, H, W) batch on `device`; returns (H, W).
pub fn check_image_batch(x: &Tensor, network: &str, channels: i64, device: Device) -> Result<(i64, i64)> {
    if x.is_sparse() {
        return Err(Error::shape(format!("{network} expects a dense (strided) tensor, got a sparse one")));
    }
    let shape = x.size();
    if shape.len() != 4 {
        return Err(Error::shape(format!("{network} expects a 4-D (B, C, H, W) tensor, got shape {shape:?}")));
    }
    let kind = x.f_kind().map_err(|_| Error::Dtype(format!("{network} input has an unsupported dtype")))?;
    if kind != Kind::Float {
        return Err(Error::Dtype(format!("{network} expects a float32 tensor, got {kind:?}")));
    }
    if x.device() != device {
        return Err(Error::Device(format!(
            "{network} input is on {} but the network is on {}; move one of them with .to(...)",
            crate::device::device_name(x.device()),
            crate::device::device_name(device)
        )));
    }
    if shape.contains(&0) {
        return Err(Error::shape(format!("{network} got an empty batch or a 0-pixel image (shape {shape:?})")));
    }
    if shape[1] != channels {
        return Err(Error::shape(format!(
            "{network} expects {channels} input channels, got {} (shape {shape:?})",
            shape[1]
        )));
    }
    Ok((shape[2], shape[3]))
}

/// Checks a training batch: float32 `(B, 3, size, size)` on `device` (the trainers' inputs).
pub fn check_training_batch(x: &Tensor, name: &str, size: i64, device: Device) -> Result<()> {
    let (h, w) = check_image_batch(x, name, 3, device)?;
    if h != size || w != size {
        return Err(Error::shape(format!(
            "{name} must be a (B, 3, {size}, {size}) batch (img_size={size}), got {:?}",
            x.size()
        )));
    }
    Ok(())
}
