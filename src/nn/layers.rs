//! Plain layers with PyTorch's default initialisation: `Conv2d` (U-GAT-IT pads explicitly with
//! reflection; CycleGAN also zero-pads inside some convolutions), `ConvTranspose2d` and `Linear`,
//! plus the activations tch lacks.

use super::compute::{conv_operand, lowered};
use super::store::{Init, Path};
use crate::Result;
use tch::Tensor;

/// The options of a convolution besides its channels and kernel, as in tch's and candle's
/// `ConvConfig`. Defaults are PyTorch's (`stride=1, padding=0, bias=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    pub stride: i64,
    pub padding: i64,
    pub bias: bool,
}

impl Default for ConvConfig {
    fn default() -> Self {
        Self { stride: 1, padding: 0, bias: true }
    }
}

impl ConvConfig {
    /// Stride 1 without bias: every convolution of the U-GAT-IT generator but `conv1x1`.
    pub const NO_BIAS: Self = Self { stride: 1, padding: 0, bias: false };
}

/// `nn.Conv2d(in, out, kernel, stride, padding, bias)`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
}

impl Conv2d {
    pub fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, config: ConvConfig) -> Result<Self> {
        let fan_in = c_in * kernel * kernel;
        let weight = p.param("weight", &[c_out, c_in, kernel, kernel], Init::pytorch_weight(fan_in))?;
        let bias = match config.bias {
            true => Some(p.param("bias", &[c_out], Init::pytorch_bias(fan_in))?),
            false => None,
        };
        Ok(Self { weight, bias, stride: config.stride, padding: config.padding })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let bias = self.bias.as_ref().map(lowered).transpose()?;
        Ok(lowered(x)?.f_conv2d(
            &lowered(&self.weight)?,
            bias.as_ref(),
            [self.stride; 2],
            [self.padding; 2],
            [1, 1],
            1,
        )?)
    }
}

/// `nn.ConvTranspose2d(in, out, kernel, stride, padding, output_padding, bias)`. The weight is
/// `(in, out, k, k)`, so PyTorch's default init takes its fan-in from `out * k * k`.
pub struct ConvTranspose2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub config: ConvConfig,
    pub output_padding: i64,
}

impl ConvTranspose2d {
    pub fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, config: ConvConfig, output_padding: i64) -> Result<Self> {
        let fan_in = c_out * kernel * kernel;
        let weight = p.param("weight", &[c_in, c_out, kernel, kernel], Init::pytorch_weight(fan_in))?;
        let bias = match config.bias {
            true => Some(p.param("bias", &[c_out], Init::pytorch_bias(fan_in))?),
            false => None,
        };
        Ok(Self { weight, bias, config, output_padding })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let bias = self.bias.as_ref().map(lowered).transpose()?;
        Ok(conv_operand(x)?.f_conv_transpose2d(
            &conv_operand(&self.weight)?,
            bias.as_ref(),
            [c.stride; 2],
            [c.padding; 2],
            [self.output_padding; 2],
            1,
            [1, 1],
        )?)
    }
}

/// `nn.Linear(in, out, bias=False)` — every Linear in U-GAT-IT's generator is bias-free.
pub struct Linear {
    pub weight: Tensor,
}

impl Linear {
    pub fn new(p: &Path, c_in: i64, c_out: i64) -> Result<Self> {
        let weight = p.param("weight", &[c_out, c_in], Init::pytorch_weight(c_in))?;
        Ok(Self { weight })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(lowered(x)?.f_linear::<Tensor>(&lowered(&self.weight)?, None)?)
    }
}

/// `nn.ReflectionPad2d(pad)`.
pub fn reflection_pad(x: &Tensor, pad: i64) -> Result<Tensor> {
    Ok(x.f_reflection_pad2d([pad, pad, pad, pad])?)
}

/// `nn.LeakyReLU(slope)`. tch's `leaky_relu` has a fixed slope of 0.01, so this goes through
/// `prelu` with a constant one-element weight: same forward (x > 0 ? x : slope·x) and the same
/// gradient (1 or slope), in one kernel.
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    let weight = Tensor::f_full([1], slope, (x.f_kind()?, x.device()))?;
    Ok(x.f_prelu(&weight)?)
}
