//! Plain layers with PyTorch's default initialisation: `Conv2d` (U-GAT-IT pads explicitly with
//! reflection; CycleGAN also zero-pads inside some convolutions), `ConvTranspose2d` and `Linear`,
//! plus the activations tch lacks.

use super::compute::{conv_operand, current, lowered, official_ops};
use super::store::{Init, Path};
use crate::Result;
use tch::{Device, Kind, Tensor};

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
        let (x, weight) = (lowered(x)?, lowered(&self.weight)?);
        if self.runs_transposed(&x)? {
            // The same correlation: a transposed convolution correlates with the kernel flipped
            // and its channel axes swapped, and padding k-1-p undoes its implicit full padding.
            let kernel = weight.size()[2];
            let swapped = weight.f_flip([2, 3])?.f_transpose(0, 1)?;
            let padding = kernel - 1 - self.padding;
            return Ok(x.f_conv_transpose2d(&swapped, bias.as_ref(), [1, 1], [padding; 2], [0, 0], 1, [1, 1])?);
        }
        Ok(x.f_conv2d(&weight, bias.as_ref(), [self.stride; 2], [self.padding; 2], [1, 1], 1)?)
    }

    /// Whether to run this convolution as the equal transposed one: on the CPU, in float32, for
    /// a large kernel with few output channels, the 7×7 output convolution of the generators.
    /// oneDNN's backward for such a convolution is slow (it vectorises over the 3 output
    /// channels), while the transposed form's backward is a convolution with many output
    /// channels. Measured with libtorch 2.11 on this project's 2-core CPU, forward + backward:
    /// 16→3 at 96 px 3.7 → 1.9 ms, 64→3 at 256 px 116 → 66 ms; the forwards cost the same, and
    /// 4×4 kernels with one output channel (the discriminators' last layers) gain nothing.
    fn runs_transposed(&self, x: &Tensor) -> Result<bool> {
        let size = self.weight.size();
        let (c_out, c_in, kernel) = (size[0], size[1], size[2]);
        Ok(x.device() == Device::Cpu
            && x.f_kind()? == Kind::Float
            && !current().channels_last
            && !official_ops()
            && self.stride == 1
            && self.padding < kernel
            && kernel >= 7
            && c_out <= 4
            && c_in >= 4 * c_out)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::compute::with_official_ops;
    use crate::nn::store::ParamStore;
    use crate::testing::fixed_normal;

    /// The transposed form of the output convolution computes the same forward and gradients as
    /// the plain one, to rounding: each is compared with a float64 evaluation, and the
    /// transposed form's error must stay within a small multiple of the plain form's.
    #[test]
    fn transposed_output_conv_matches_the_plain_one() {
        for (c_in, c_out, bias) in [(16, 3, false), (8, 1, true)] {
            let store = ParamStore::new(Device::Cpu);
            let config = ConvConfig { bias, ..ConvConfig::NO_BIAS };
            let conv = Conv2d::new(&store.root(), c_in, c_out, 7, config).unwrap();
            let x = fixed_normal(&[2, c_in, 30, 30], 7);
            assert!(conv.runs_transposed(&x).unwrap());
            assert!(with_official_ops(|| !conv.runs_transposed(&x).unwrap()));
            let grad_out = fixed_normal(&[2, c_out, 24, 24], 8);
            // (output, input gradient, weight gradient[, bias gradient]) of one path.
            let run = |kind: Kind, official: bool| {
                let cast = |t: &Tensor| t.to_kind(kind).detach().set_requires_grad(true);
                let (x, weight) = (cast(&x), cast(&conv.weight));
                let bias = conv.bias.as_ref().map(cast);
                let layer = Conv2d {
                    weight: weight.shallow_clone(),
                    bias: bias.as_ref().map(|b| b.shallow_clone()),
                    stride: 1,
                    padding: 0,
                };
                let out = if official { with_official_ops(|| layer.forward(&x)) } else { layer.forward(&x) }.unwrap();
                let mut inputs = vec![x, weight];
                inputs.extend(bias);
                // The output gradient `grad_out`, as the gradient of a weighted sum.
                let weighted = (&out * grad_out.to_kind(kind)).sum(kind);
                let mut all = vec![out.detach()];
                all.extend(Tensor::run_backward(&[weighted], &inputs, false, false));
                all
            };
            let (exact, plain, transposed) = (run(Kind::Double, true), run(Kind::Float, true), run(Kind::Float, false));
            for (i, ((e, p), t)) in exact.iter().zip(&plain).zip(&transposed).enumerate() {
                let error = |y: &Tensor| (y.to_kind(Kind::Double) - e).abs().max().double_value(&[]);
                let scale = e.abs().max().double_value(&[]);
                let (plain_error, transposed_error) = (error(p), error(t));
                assert!(
                    transposed_error <= 4.0 * plain_error + 1e-7 * scale,
                    "{c_in}->{c_out}, tensor {i}: transposed {transposed_error:e}, plain {plain_error:e}"
                );
            }
        }
    }
}
