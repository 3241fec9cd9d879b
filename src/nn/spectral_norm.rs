//! Spectral normalisation exactly as the legacy `torch.nn.utils.spectral_norm` hook (docs/architecture.md §4):
//! state `weight_orig` (parameter), `weight_u` (out,) and `weight_v` (in·kh·kw,) (buffers).
//! In training mode each forward runs one power iteration, updating u and v in place; in eval
//! mode the stored u and v are used as they are.

use super::compute::{conv_operand, current, lowered};
use super::layers::ConvConfig;
use super::store::{Init, Path};
use crate::Result;
use tch::{Device, Kind, Tensor};

const EPS: f64 = 1e-12;

/// `F.normalize(x, dim=0, eps=1e-12)`: `x / max(||x||, eps)`.
fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.f_norm_scalaropt_dim(2, [0], true)?.f_clamp_min(EPS)?;
    Ok(x.f_div(&norm)?)
}

/// How many spectral-norm estimates a forward makes, and which images each one serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passes {
    /// One estimate (one power iteration in training mode) for the whole batch: a plain forward.
    One,
    /// Two consecutive estimates: the first `n` images are judged with the first, the rest with
    /// the second. Exactly two official forwards — on the first `n` images, then on the rest —
    /// batched into one (`Discriminator::forward_twice`).
    Two(i64),
}

pub struct SpectralNorm {
    pub weight_orig: Tensor,
    pub weight_u: Tensor,
    pub weight_v: Tensor,
}

impl SpectralNorm {
    /// Registers `weight_orig` with `init`, then u and v as normalised N(0, 1) vectors.
    pub fn new(p: &Path, shape: &[i64], init: Init) -> Result<Self> {
        let weight_orig = p.param("weight_orig", shape, init)?;
        let rows = shape[0];
        let cols: i64 = shape[1..].iter().product();
        let options = (Kind::Float, p.device());
        let weight_u = p.buffer("weight_u", normalize(&Tensor::f_randn([rows], options)?)?)?;
        let weight_v = p.buffer("weight_v", normalize(&Tensor::f_randn([cols], options)?)?)?;
        Ok(Self { weight_orig, weight_u, weight_v })
    }

    /// The normalised weight `weight_orig / sigma`, differentiable through sigma.
    pub fn weight(&self, training: bool) -> Result<Tensor> {
        let sigma = self.sigma(training)?;
        Ok(self.weight_orig.f_div(&sigma)?)
    }

    /// The spectral-norm estimate `sigma = u · (W v)` (a 0-d tensor, differentiable through W),
    /// after one power iteration in training mode. Layers that are linear in their weight can
    /// divide their *output* by sigma instead of the weight: the same function, and much less
    /// work when the weight is larger than the output (the deep discriminator layers).
    pub fn sigma(&self, training: bool) -> Result<Tensor> {
        let w_mat = self.matrix()?;
        if !training {
            return Ok(self.weight_u.f_dot(&w_mat.f_mv(&self.weight_v)?)?);
        }
        // One power iteration. `W v` serves both the new `u` (detached) and σ = uᵀ(W v) (with its
        // graph): the official code computes this product twice, bit for bit the same.
        let v = self.advance_v(&w_mat.f_detach()?)?;
        let w_v = w_mat.f_mv(&v)?;
        let u = self.advance_u(&w_v.f_detach()?)?;
        Ok(u.f_dot(&w_v)?)
    }

    /// A power iteration's first half, stored: `v = normalize(Wᵀ u)` (`w`: the detached matrix).
    fn advance_v(&self, w: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| {
            let v = normalize(&w.f_transpose(0, 1)?.f_mv(&self.weight_u)?)?;
            self.weight_v.shallow_clone().f_copy_(&v)?;
            Ok(v)
        })
    }

    /// Its second half, stored: `u = normalize(W v)`, from the detached product `w_v`.
    fn advance_u(&self, w_v: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| {
            let u = normalize(w_v)?;
            self.weight_u.shallow_clone().f_copy_(&u)?;
            Ok(u)
        })
    }

    /// `weight_orig` as the (out, in·kh·kw) matrix the power iteration works on (a view).
    fn matrix(&self) -> Result<Tensor> {
        Ok(self.weight_orig.f_reshape([self.weight_orig.size()[0], -1])?)
    }

    /// The `(u, v)` pairs that `count` consecutive training-mode forwards would use — each after
    /// one more power iteration, all without autograd, left in the buffers as those forwards
    /// would leave them — or the stored pair `count` times in eval mode. σ_k = u_kᵀ W v_k.
    fn estimates(&self, training: bool, count: usize) -> Result<Vec<(Tensor, Tensor)>> {
        if !training {
            return Ok((0..count).map(|_| (self.weight_u.shallow_clone(), self.weight_v.shallow_clone())).collect());
        }
        let w_mat = self.matrix()?.f_detach()?;
        (0..count)
            .map(|_| {
                let v = self.advance_v(&w_mat)?;
                let u = self.advance_u(&tch::no_grad(|| w_mat.f_mv(&v))?)?;
                Ok((u, v))
            })
            .collect()
    }

    /// σ for each image of a `batch`-image forward, shaped to divide an output with `rank`
    /// dimensions: (batch, 1, ...) for [`Passes::Two`], a single broadcast value for [`Passes::One`].
    pub fn divisor(&self, training: bool, passes: Passes, batch: i64, rank: usize) -> Result<Tensor> {
        let sigmas = match passes {
            Passes::One => vec![self.sigma(training)?],
            Passes::Two(_) => vec![self.sigma(training)?, self.sigma(training)?],
        };
        per_image(&sigmas, passes, batch, rank)
    }
}

/// Spreads one σ per estimate over the images each serves (see [`Passes`]), shaped to divide an
/// output with `rank` dimensions.
fn per_image(sigmas: &[Tensor], passes: Passes, batch: i64, rank: usize) -> Result<Tensor> {
    let sigma = match (passes, sigmas) {
        (Passes::One, [sigma]) => sigma.shallow_clone(),
        (Passes::Two(n), [first, second]) => {
            Tensor::f_cat(&[first.f_expand([n], false)?, second.f_expand([batch - n], false)?], 0)?
        }
        _ => return Err(crate::Error::internal("one spectral-norm estimate per pass")),
    };
    let mut shape = vec![1i64; rank];
    shape[0] = -1;
    Ok(sigma.f_reshape(shape)?)
}

impl Passes {
    fn count(self) -> usize {
        match self {
            Passes::One => 1,
            Passes::Two(_) => 2,
        }
    }
}

/// `spectral_norm(nn.Conv2d(c_in, c_out, 4, stride, padding=0, bias))`, the discriminator's convolution. The official state
/// dict lists `bias` before `weight_orig`, `weight_u`, `weight_v`.
pub struct SnConv2d {
    bias: Option<Tensor>,
    sn: SpectralNorm,
    stride: i64,
}

impl SnConv2d {
    pub fn new(p: &Path, c_in: i64, c_out: i64, config: ConvConfig) -> Result<Self> {
        let fan_in = c_in * 16;
        let stride = config.stride;
        let bias = match config.bias {
            true => Some(p.param("bias", &[c_out], Init::pytorch_bias(fan_in))?),
            false => None,
        };
        let sn = SpectralNorm::new(p, &[c_out, c_in, 4, 4], Init::pytorch_weight(fan_in))?;
        Ok(Self { bias, sn, stride })
    }

    /// `conv(x, weight_orig / sigma) + bias`. Convolution is linear in the weight, so
    /// `conv(x, weight_orig) / sigma + bias` computes the same thing (to float rounding); when the
    /// weight has more elements than the output that is a fraction of the cost, forward and
    /// backward, and it is the only way to judge a batch with two estimates ([`Passes::Two`]).
    pub fn forward(&self, x: &Tensor, training: bool, passes: Passes) -> Result<Tensor> {
        let size = x.size();
        let out_h = (size[2] - 4) / self.stride + 1;
        let out_w = (size[3] - 4) / self.stride + 1;
        let weight_numel = self.sn.weight_orig.numel() as i64;
        let out_numel = size[0] * self.sn.weight_orig.size()[0] * out_h * out_w;
        if weight_numel > out_numel || passes != Passes::One {
            let (c_out, n) = (self.sn.weight_orig.size()[0], size[0]);
            // (The GEMM would compute σ in the compute kind: float32 only.)
            let gemm = x.device() == Device::Cpu && current().kind.is_none() && passes != Passes::One;
            let (conv, sigma) = if gemm && weight_numel >= 64 * out_numel {
                self.forward_gemm(x, training, passes)?
            } else {
                let (x, w) = (conv_operand(x)?, conv_operand(&self.sn.weight_orig)?);
                let conv = x.f_conv2d::<Tensor>(&w, None, [self.stride; 2], [0, 0], [1, 1], 1)?;
                (conv, self.sn.divisor(training, passes, n, 4)?)
            };
            let conv = conv.f_view([n, c_out, out_h, out_w])?;
            let out = conv.f_div(&sigma)?;
            match &self.bias {
                Some(bias) => Ok(out.f_add(&bias.f_view_([1, -1, 1, 1])?)?),
                None => Ok(out),
            }
        } else {
            let weight = conv_operand(&self.sn.weight(training)?)?;
            let bias = self.bias.as_ref().map(lowered).transpose()?;
            Ok(conv_operand(x)?.f_conv2d(&weight, bias.as_ref(), [self.stride; 2], [0, 0], [1, 1], 1)?)
        }
    }

    /// The D step's batched forward on the CPU for a weight far larger than the output (the
    /// deepest discriminator layers): `(conv(x, W), σ per image)` as im2col and one GEMM, with
    /// each estimate's `v` appended to the im2col columns so that `W v` — hence σ = uᵀ(W v) —
    /// comes out of the same product. Its backward then computes the weight gradient, the
    /// convolution's and every σ's rank-1 term alike, in one GEMM, where a libtorch convolution
    /// plus `mv` takes a convolution backward (slow on the CPU for these shapes: measured twice
    /// the GEMM's time) and a full-size outer product and sum per estimate.
    fn forward_gemm(&self, x: &Tensor, training: bool, passes: Passes) -> Result<(Tensor, Tensor)> {
        let n = x.size()[0];
        let w_mat = self.sn.matrix()?;
        let estimates = self.sn.estimates(training, passes.count())?;
        // Rows, not columns: (rows, K) @ W_matᵀ reads W in its stored order, which MKL does
        // about three times faster than W_mat @ (K, rows) at these shapes.
        let cols = x.f_im2col([4, 4], [1, 1], [0, 0], [self.stride; 2])?; // (n, K = in·16, L)
        let (k, l) = (cols.size()[1], cols.size()[2]);
        let mut rows = vec![cols.f_transpose(1, 2)?.f_reshape([n * l, k])?];
        for (_, v) in &estimates {
            rows.push(v.f_unsqueeze(0)?);
        }
        let product = Tensor::f_cat(&rows, 0)?.f_mm(&w_mat.f_transpose(0, 1)?)?; // (n·L + estimates, out)
        let sigmas = estimates
            .iter()
            .enumerate()
            .map(|(i, (u, _))| Ok(u.f_dot(&product.f_select(0, n * l + i as i64)?)?))
            .collect::<Result<Vec<_>>>()?;
        let conv = product.f_narrow(0, 0, n * l)?.f_reshape([n, l, -1])?.f_transpose(1, 2)?.f_contiguous()?;
        Ok((conv, per_image(&sigmas, passes, n, 4)?))
    }
}

/// `spectral_norm(nn.Linear(c_in, c_out, bias=False))` (the discriminator's CAM scorers).
pub struct SnLinear {
    pub sn: SpectralNorm,
}

impl SnLinear {
    pub fn new(p: &Path, c_in: i64, c_out: i64) -> Result<Self> {
        Ok(Self { sn: SpectralNorm::new(p, &[c_out, c_in], Init::pytorch_weight(c_in))? })
    }

    /// `x @ (weight_orig / sigma)ᵀ`, computed as `(x @ weight_origᵀ) / sigma`: the output
    /// (B, 1) is far smaller than the weight.
    pub fn forward(&self, x: &Tensor, training: bool, passes: Passes) -> Result<Tensor> {
        let sigma = self.sn.divisor(training, passes, x.size()[0], 2)?;
        Ok(lowered(x)?.f_linear::<Tensor>(&lowered(&self.sn.weight_orig)?, None)?.f_div(&sigma)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ParamStore;
    use tch::Device;

    #[test]
    fn power_iteration_converges_to_largest_singular_value() {
        let store = ParamStore::new(Device::Cpu);
        let sn = SpectralNorm::new(&store.root(), &[6, 4], Init::pytorch_weight(4)).unwrap();
        for _ in 0..200 {
            let _ = sn.weight(true).unwrap();
        }
        let w = sn.weight(false).unwrap();
        let w = w.detach();
        let gram = w.tr().matmul(&w);
        let top = Tensor::linalg_eigvalsh(&gram, "L").max().double_value(&[]).sqrt();
        assert!((top - 1.0).abs() < 1e-4, "top singular value {top}");
    }

    #[test]
    fn eval_mode_leaves_u_unchanged() {
        let store = ParamStore::new(Device::Cpu);
        let sn = SpectralNorm::new(&store.root(), &[3, 2, 2, 2], Init::pytorch_weight(8)).unwrap();
        let before = sn.weight_u.copy();
        let _ = sn.weight(false).unwrap();
        assert!(before.equal(&sn.weight_u));
        let _ = sn.weight(true).unwrap();
        assert!(!before.equal(&sn.weight_u));
    }
}
