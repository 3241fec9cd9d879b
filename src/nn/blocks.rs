//! Residual blocks (docs/architecture.md §1): U-GAT-IT's two kinds; the plain one is also CycleGAN's.

use super::layers::{reflection_pad, Conv2d, ConvConfig};
use super::norm::{instance_norm, AdaILN};
use super::store::Path;
use crate::Result;
use tch::Tensor;

/// Indices of the two convolutions in the official `conv_block` Sequential
/// `[RP1, Conv3, IN, ReLU, RP1, Conv3, IN]`: the state-dict names `conv_block.1.weight` and
/// `conv_block.5.weight` come from them.
const CONV_BLOCK_CONVS: [i64; 2] = [1, 5];

/// `ResnetBlock(C, use_bias)`: `x + [RP1, Conv3, IN, ReLU, RP1, Conv3, IN](x)`. U-GAT-IT's
/// generator builds it without biases, CycleGAN's (instance norm, hence `use_bias=True`) with.
pub struct ResnetBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResnetBlock {
    pub fn new(p: &Path, channels: i64, bias: bool) -> Result<Self> {
        let block = p / "conv_block";
        let config = ConvConfig { bias, ..ConvConfig::NO_BIAS };
        Ok(Self {
            conv1: Conv2d::new(&(&block / CONV_BLOCK_CONVS[0]), channels, channels, 3, config)?,
            conv2: Conv2d::new(&(&block / CONV_BLOCK_CONVS[1]), channels, channels, 3, config)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = instance_norm(&self.conv1.forward(&reflection_pad(x, 1)?)?)?.f_relu()?;
        let h = instance_norm(&self.conv2.forward(&reflection_pad(&h, 1)?)?)?;
        Ok(x.f_add(&h)?)
    }
}

/// `ResnetAdaILNBlock(C, use_bias=False)`: two reflection-padded 3x3 convs, each followed by
/// AdaILN with the shared (γ, β), ReLU between, and the residual added (docs/architecture.md §1: the official
/// code gained `+ x` on 2019-08-27).
pub struct ResnetAdaILNBlock {
    conv1: Conv2d,
    norm1: AdaILN,
    conv2: Conv2d,
    norm2: AdaILN,
}

impl ResnetAdaILNBlock {
    pub fn new(p: &Path, channels: i64) -> Result<Self> {
        Ok(Self {
            conv1: Conv2d::new(&(p / "conv1"), channels, channels, 3, ConvConfig::NO_BIAS)?,
            norm1: AdaILN::new(&(p / "norm1"), channels)?,
            conv2: Conv2d::new(&(p / "conv2"), channels, channels, 3, ConvConfig::NO_BIAS)?,
            norm2: AdaILN::new(&(p / "norm2"), channels)?,
        })
    }

    pub fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&reflection_pad(x, 1)?)?;
        let h = self.norm1.forward(&h, gamma, beta)?.f_relu()?;
        let h = self.conv2.forward(&reflection_pad(&h, 1)?)?;
        let h = self.norm2.forward(&h, gamma, beta)?;
        Ok(h.f_add(x)?)
    }

    /// The AdaILN rho parameters (clamped to [0, 1] after every generator update).
    pub fn rhos(&self) -> [&Tensor; 2] {
        [&self.norm1.rho, &self.norm2.rho]
    }
}
