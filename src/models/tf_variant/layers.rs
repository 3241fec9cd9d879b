//! The TensorFlow release's layers, in NCHW: biased convolutions with its padding rule, affine
//! instance norm, AdaLIN/LIN with the biased variance, and its spectral norm.

use crate::nn::store::{Init, Path};
use crate::Result;
use tch::{Kind, Tensor};

const EPS: f64 = 1e-5;
/// TensorFlow's kernel initialiser in the release: N(0, 0.02).
pub const KERNEL_INIT: Init = Init::Normal { std: 0.02 };

/// `conv(x, channels, kernel, stride, pad, pad_type='reflect')`: reflect padding by `pad`, except
/// that when `kernel - stride` is odd the bottom/right side gets `kernel - stride - pad`.
pub fn tf_pad(x: &Tensor, kernel: i64, stride: i64, pad: i64) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.shallow_clone());
    }
    let far = if (kernel - stride) % 2 == 0 { pad } else { kernel - stride - pad };
    Ok(x.f_reflection_pad2d([pad, far, pad, far])?)
}

/// A convolution with bias (`conv2d/kernel`, `conv2d/bias`), no spectral norm.
pub struct Conv {
    pub weight: Tensor,
    pub bias: Tensor,
    kernel: i64,
    stride: i64,
    pad: i64,
}

impl Conv {
    pub fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, pad: i64) -> Result<Self> {
        let weight = p.param("weight", &[c_out, c_in, kernel, kernel], KERNEL_INIT)?;
        let bias = p.param("bias", &[c_out], Init::Const(0.0))?;
        Ok(Self { weight, bias, kernel, stride, pad })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = tf_pad(x, self.kernel, self.stride, self.pad)?;
        Ok(x.f_conv2d(&self.weight, Some(&self.bias), [self.stride; 2], [0, 0], [1, 1], 1)?)
    }
}

/// A dense layer with bias (`dense/kernel`, `dense/bias`), stored as `(out, in)`.
pub struct Dense {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Dense {
    pub fn new(p: &Path, c_in: i64, c_out: i64) -> Result<Self> {
        Ok(Self {
            weight: p.param("weight", &[c_out, c_in], KERNEL_INIT)?,
            bias: p.param("bias", &[c_out], Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_linear(&self.weight, Some(&self.bias))?)
    }
}

/// `tf.contrib.layers.instance_norm(center=True, scale=True, epsilon=1e-5)`.
pub struct InstanceNorm {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl InstanceNorm {
    pub fn new(p: &Path, channels: i64) -> Result<Self> {
        Ok(Self {
            weight: p.param("weight", &[channels], Init::Const(1.0))?,
            bias: p.param("bias", &[channels], Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.f_instance_norm(
            Some(&self.weight),
            Some(&self.bias),
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.1,
            EPS,
            true,
        )?)
    }
}

/// `(x - mean) / sqrt(var + eps)` over `dims` with the biased variance (`tf.nn.moments`).
fn standardize(x: &Tensor, dims: &[i64]) -> Result<Tensor> {
    let mean = x.f_mean_dim(dims, true, Kind::Float)?;
    let var = x.f_var_dim(dims, false, true)?;
    Ok(x.f_sub(&mean)?.f_div(&var.f_add_scalar(EPS)?.f_sqrt()?)?)
}

/// `rho * IN(x) + (1 - rho) * LN(x)`, rho per channel (`[C]`).
fn mix(x: &Tensor, rho: &Tensor) -> Result<Tensor> {
    let rho = rho.f_view([1, -1, 1, 1])?;
    let one_minus = rho.f_rsub_scalar(1.0)?;
    Ok(standardize(x, &[2, 3])?.f_mul(&rho)?.f_add(&standardize(x, &[1, 2, 3])?.f_mul(&one_minus)?)?)
}

/// `adaptive_instance_layer_norm(smoothing=True)`: `rho` starts at 1; the mix uses
/// `clip(rho - 0.1, 0, 1)`; γ, β `(B, C)` come from the MLP.
pub struct AdaLin {
    pub rho: Tensor,
}

impl AdaLin {
    pub fn new(p: &Path, channels: i64) -> Result<Self> {
        Ok(Self { rho: p.param("rho", &[channels], Init::Const(1.0))? })
    }

    pub fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        let rho = self.rho.f_sub_scalar(0.1)?.f_clamp(0.0, 1.0)?;
        // (B, C) -> (B, C, 1, 1) by unsqueezing: no size becomes a constant of a traced graph.
        let spatial = |t: &Tensor| -> Result<Tensor> { Ok(t.f_unsqueeze(-1)?.f_unsqueeze(-1)?) };
        Ok(mix(x, &rho)?.f_mul(&spatial(gamma)?)?.f_add(&spatial(beta)?)?)
    }
}

/// `layer_instance_norm`: rho (starts at 0, no smoothing), learned γ (1) and β (0).
pub struct Lin {
    pub rho: Tensor,
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl Lin {
    pub fn new(p: &Path, channels: i64) -> Result<Self> {
        Ok(Self {
            rho: p.param("rho", &[channels], Init::Const(0.0))?,
            gamma: p.param("gamma", &[channels], Init::Const(1.0))?,
            beta: p.param("beta", &[channels], Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(mix(x, &self.rho)?.f_mul(&self.gamma.f_view([1, -1, 1, 1])?)?.f_add(&self.beta.f_view([1, -1, 1, 1])?)?)
    }
}

/// `tf.nn.l2_normalize`: `x * rsqrt(max(sum(x²), 1e-12))`.
fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    Ok(x.f_mul(&x.f_square()?.f_sum(Kind::Float)?.f_clamp_min(1e-12)?.f_rsqrt()?)?)
}

/// The release's `spectral_norm(w)`: one power iteration from the stored `u` on every call
/// (`u` is then updated; here only in training mode), `w / sigma` with gradients through `w`.
/// `weight_orig` is stored `(out, ...)`, `weight_u` `(out,)`.
pub struct SpectralNorm {
    pub weight_orig: Tensor,
    pub weight_u: Tensor,
}

impl SpectralNorm {
    pub fn new(p: &Path, shape: &[i64]) -> Result<Self> {
        let weight_orig = p.param("weight_orig", shape, KERNEL_INIT)?;
        let u = Tensor::f_randn([shape[0]], (Kind::Float, p.device()))?;
        Ok(Self { weight_orig, weight_u: p.buffer("weight_u", u)? })
    }

    pub fn sigma(&self, update: bool) -> Result<Tensor> {
        let out = self.weight_orig.size()[0];
        let w = self.weight_orig.f_view([out, -1])?;
        let (u, v) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
            let v = l2_normalize(&w.f_tr()?.f_mv(&self.weight_u)?)?;
            let u = l2_normalize(&w.f_mv(&v)?)?;
            Ok((u, v))
        })?;
        if update {
            tch::no_grad(|| self.weight_u.shallow_clone().f_copy_(&u))?;
        }
        Ok(w.f_mv(&v)?.f_dot(&u)?)
    }

    pub fn weight(&self, update: bool) -> Result<Tensor> {
        Ok(self.weight_orig.f_div(&self.sigma(update)?)?)
    }
}

/// A spectrally normalised convolution with bias (the discriminators' `conv_*`, `D_logit`).
pub struct SnConv {
    pub sn: SpectralNorm,
    pub bias: Tensor,
    stride: i64,
}

impl SnConv {
    pub fn new(p: &Path, c_in: i64, c_out: i64, stride: i64) -> Result<Self> {
        let bias = p.param("bias", &[c_out], Init::Const(0.0))?;
        Ok(Self { sn: SpectralNorm::new(p, &[c_out, c_in, 4, 4])?, bias, stride })
    }

    pub fn forward(&self, x: &Tensor, update: bool) -> Result<Tensor> {
        let x = tf_pad(x, 4, self.stride, 1)?;
        Ok(x.f_conv2d(&self.sn.weight(update)?, Some(&self.bias), [self.stride; 2], [0, 0], [1, 1], 1)?)
    }
}
