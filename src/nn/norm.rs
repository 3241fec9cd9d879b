//! The three normalisations of U-GAT-IT (docs/architecture.md §2):
//! - `instance_norm`: the encoder's `nn.InstanceNorm2d` — biased variance, no affine, no stats.
//! - [`AdaILN`]: rho-mix of instance and layer norm with γ, β from the MLP — *unbiased* variance.
//! - [`ILN`]: the same mix with learned per-channel γ, β — *unbiased* variance.

use super::compute::{full, official_ops};
use super::store::{Init, Path};
use crate::Result;
use tch::Tensor;

const EPS: f64 = 1e-5;

/// `nn.InstanceNorm2d(C)` with the defaults (affine=False, track_running_stats=False).
pub fn instance_norm(x: &Tensor) -> Result<Tensor> {
    Ok(full(x)?.f_instance_norm::<Tensor>(None, None, None, None, true, 0.1, EPS, true)?)
}

/// `(x - mean) / sqrt(var + eps)` over `dims`, with torch.var's default unbiased estimator:
/// the official formulation.
fn standardize(x: &Tensor, dims: &[i64]) -> Result<Tensor> {
    let mean = x.f_mean_dim(dims, true, None)?;
    let var = x.f_var_dim(dims, true, true)?;
    Ok(x.f_sub(&mean)?.f_div(&var.f_add_scalar(EPS)?.f_sqrt()?)?)
}

/// `(rho * IN(x) + (1 - rho) * LN(x)) * gamma + beta` with the *unbiased* variance, rho per
/// channel (1, C, 1, 1), gamma and beta per image and channel (anything that broadcasts to (N, C)).
///
/// The official code spells each norm out as `(x - mean) / sqrt(var_unbiased + eps)`, six
/// element-wise passes and as many in the backward. With n elements per statistic,
/// `var_unbiased = var_biased · n/(n-1)`, so the same value is
/// `sqrt((n-1)/n) · (x - mean) / sqrt(var_biased + eps·(n-1)/n)`: libtorch's fused norm kernels
/// (biased variance) with a rescaled eps, times a constant folded into the per-channel factors.
/// The instance half is batch norm over the (1, N·C, H, W) view, as `instance_norm` itself is,
/// with `rho·sqrt(..)·gamma` as its weight and `beta` as its bias, so the whole affine step rides
/// in that kernel; the layer half is added with one `addcmul`. Equal to float rounding, and
/// several times cheaper than the official formula.
///
/// Exception: on CUDA the layer-norm part keeps the official reductions. libtorch's layer-norm
/// kernel gives each sample one thread block, which for a whole (C, H, W) feature map with a
/// batch of 1 leaves the GPU nearly idle (it made the generator 2-4x slower on an H100).
fn instance_layer_mix(x: &Tensor, rho: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
    // Statistics in float32 whatever the compute kind (src/nn/compute.rs).
    let (x, gamma, beta) = (&full(x)?, &full(gamma)?, &full(beta)?);
    if official_ops() {
        let one_minus_rho = rho.f_rsub_scalar(1.0)?;
        let mixed = standardize(x, &[2, 3])?.f_mul(rho)?.f_add(&standardize(x, &[1, 2, 3])?.f_mul(&one_minus_rho)?)?;
        return Ok(mixed.f_mul(&per_image(gamma, x)?)?.f_add(&per_image(beta, x)?)?);
    }
    let size = x.size();
    let (n, c, h, w) = (size[0], size[1], size[2], size[3]);
    let rho = rho.f_view([1, c])?;
    let gamma = gamma.f_reshape([-1, c])?;
    let n_in = (h * w) as f64;
    let in_weight = rho.f_mul_scalar(((n_in - 1.0) / n_in).sqrt())?.f_mul(&gamma)?.f_expand([n, c], false)?;
    let in_bias = beta.f_reshape([-1, c])?.f_expand([n, c], false)?;
    let instance = x.f_reshape([1, n * c, h, w])?.f_batch_norm(
        Some(&in_weight.f_reshape([n * c])?),
        Some(&in_bias.f_reshape([n * c])?),
        None::<&Tensor>,
        None::<&Tensor>,
        true,
        0.1,
        EPS * (n_in - 1.0) / n_in,
        true,
    )?;
    let one_minus_rho = rho.f_rsub_scalar(1.0)?;
    let (layer, layer_weight) = if x.device().is_cuda() {
        (standardize(x, &[1, 2, 3])?, one_minus_rho)
    } else {
        let n_ln = (c * h * w) as f64;
        let out_ln = x.f_layer_norm::<Tensor>(&size[1..], None, None, EPS * (n_ln - 1.0) / n_ln, true)?;
        (out_ln, one_minus_rho.f_mul_scalar(((n_ln - 1.0) / n_ln).sqrt())?)
    };
    let layer_weight = layer_weight.f_mul(&gamma)?.f_view([-1, c, 1, 1])?;
    Ok(instance.f_view([n, c, h, w])?.f_addcmul(&layer, &layer_weight)?)
}

/// A per-image-and-channel factor, (N, C) or (1, C, 1, 1), as (N or 1, C, 1, 1) for broadcasting.
fn per_image(t: &Tensor, x: &Tensor) -> Result<Tensor> {
    Ok(t.f_reshape([-1, x.size()[1], 1, 1])?)
}

/// `adaILN(C)`: `rho` (1,C,1,1) starts at 0.9; γ and β (B,C) come from the generator's MLP.
pub struct AdaILN {
    pub rho: Tensor,
}

impl AdaILN {
    pub fn new(p: &Path, channels: i64) -> Result<Self> {
        Ok(Self { rho: p.param("rho", &[1, channels, 1, 1], Init::Const(0.9))? })
    }

    pub fn forward(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<Tensor> {
        instance_layer_mix(x, &self.rho, gamma, beta)
    }
}

/// `ILN(C)`: `rho` starts at 0.0, learned `gamma` (1.0) and `beta` (0.0), all (1,C,1,1).
pub struct ILN {
    pub rho: Tensor,
    pub gamma: Tensor,
    pub beta: Tensor,
}

impl ILN {
    pub fn new(p: &Path, channels: i64) -> Result<Self> {
        let shape = [1, channels, 1, 1];
        Ok(Self {
            rho: p.param("rho", &shape, Init::Const(0.0))?,
            gamma: p.param("gamma", &shape, Init::Const(1.0))?,
            beta: p.param("beta", &shape, Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        instance_layer_mix(x, &self.rho, &self.gamma, &self.beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ParamStore;
    use tch::{Device, Kind};

    #[test]
    fn instance_norm_uses_biased_variance() {
        let x = Tensor::randn([2, 3, 5, 5], (Kind::Float, Device::Cpu));
        let y = instance_norm(&x).unwrap();
        let var = y.var_dim(&[2i64, 3][..], false, false);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-3);
    }

    #[test]
    fn iln_at_init_is_layer_norm_with_unbiased_variance() {
        let store = ParamStore::new(Device::Cpu);
        let iln = ILN::new(&store.root(), 3).unwrap();
        let x = Tensor::randn([2, 3, 4, 4], (Kind::Float, Device::Cpu));
        let y = iln.forward(&x).unwrap();
        // rho = 0: pure layer norm, so the unbiased variance over (C,H,W) is ~1.
        let var = y.var_dim(&[1i64, 2, 3][..], true, false);
        assert!((var - 1.0).abs().max().double_value(&[]) < 1e-4);
    }

    #[test]
    fn adailn_applies_gamma_and_beta() {
        let store = ParamStore::new(Device::Cpu);
        let norm = AdaILN::new(&store.root(), 3).unwrap();
        let x = Tensor::randn([2, 3, 4, 4], (Kind::Float, Device::Cpu));
        let gamma = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
        let beta = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)) * 2.0;
        let y = norm.forward(&x, &gamma, &beta).unwrap();
        assert!((y - 2.0).abs().max().double_value(&[]) < 1e-6);
    }
}
