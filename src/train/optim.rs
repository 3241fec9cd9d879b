//! Adam with coupled L2 weight decay, as `torch.optim.Adam(params, lr, betas, weight_decay)`,
//! over flat buffers.
//!
//! At construction the parameters are copied into one contiguous buffer and each parameter is
//! re-pointed (`set_data`) at its slice of it, so an update is a dozen kernels over the whole
//! group instead of a dozen per parameter tensor. The element-wise arithmetic is PyTorch's
//! (`_single_tensor_adam`), operation for operation:
//!
//! ```text
//! g  = grad + wd * p
//! m  = m.lerp(g, 1 - beta1)
//! v  = v * beta2 + ((1 - beta2) * g) * g
//! p += ((-lr / (1 - beta1^t)) * m) / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//! ```
//! The state (m, v, t) can be read and restored, so checkpoints resume exactly.

use crate::{Error, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamConfig {
    /// U-GAT-IT's optimiser settings: betas (0.5, 0.999), eps 1e-8.
    pub fn ugatit(lr: f64, weight_decay: f64) -> Self {
        Self { lr, beta1: 0.5, beta2: 0.999, eps: 1e-8, weight_decay }
    }
}

pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Tensor>,
    /// All parameters, back to back; `params[i]` is a view into it.
    flat_params: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: i64,
}

impl Adam {
    /// Takes ownership of the parameters' storage: afterwards each parameter is a view into one
    /// flat buffer (values unchanged, gradients untouched).
    pub fn new(params: Vec<Tensor>, config: AdamConfig) -> Result<Self> {
        let first = params.first().ok_or_else(|| Error::config("Adam needs at least one parameter"))?;
        let device = first.device();
        let flats = params.iter().map(|p| p.f_detach()?.f_reshape([-1])).collect::<std::result::Result<Vec<_>, _>>()?;
        let flat_params = tch::no_grad(|| Tensor::f_cat(&flats, 0))?;
        let mut offset = 0;
        for p in &params {
            let n = p.numel() as i64;
            let view = flat_params.f_narrow(0, offset, n)?.f_view_(p.size())?;
            p.shallow_clone().f_set_data(&view)?;
            offset += n;
        }
        let exp_avg = Tensor::f_zeros_like(&flat_params)?;
        let exp_avg_sq = Tensor::f_zeros_like(&flat_params)?;
        debug_assert_eq!(flat_params.device(), device);
        Ok(Self { config, params, flat_params, exp_avg, exp_avg_sq, step: 0 })
    }

    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Number of updates done so far (PyTorch's `state['step']`).
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Checks that the parameters still alias the flat buffer (they stop doing so if someone
    /// replaced their storage, e.g. by moving the network to another device).
    fn check_aliasing(&self) -> Result<()> {
        if self.params[0].data_ptr() != self.flat_params.data_ptr() {
            return Err(Error::Device(
                "the optimizer's parameters were moved or replaced after the optimizer was built; \
                 build a new Trainer on the target device instead of moving its networks"
                    .into(),
            ));
        }
        Ok(())
    }

    /// One update from gradients given in parameter order (as returned by `run_backward`).
    pub fn step(&mut self, grads: &[Tensor]) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(Error::config(format!(
                "Adam.step got {} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.check_aliasing()?;
        let flats = grads.iter().map(|g| g.f_reshape([-1])).collect::<std::result::Result<Vec<_>, _>>()?;
        tch::no_grad(|| -> Result<()> {
            let grad = Tensor::f_cat(&flats, 0)?;
            self.update(grad)
        })
    }

    fn update(&mut self, grad: Tensor) -> Result<()> {
        let AdamConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        self.step += 1;
        let step = self.step as f64;
        let grad = if weight_decay != 0.0 {
            grad.f_add(&self.flat_params.f_mul_scalar(weight_decay)?)?
        } else {
            grad
        };
        let _ = self.exp_avg.f_lerp_(&grad, 1.0 - beta1)?;
        let _ = self.exp_avg_sq.f_mul_scalar_(beta2)?;
        let _ = self.exp_avg_sq.f_add_(&grad.f_mul_scalar(1.0 - beta2)?.f_mul(&grad)?)?;
        // Python float arithmetic, as torch.optim.Adam does it.
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        let step_size = lr / bias_correction1;
        let bias_correction2_sqrt = bias_correction2.powf(0.5);
        let mut denom = self.exp_avg_sq.f_sqrt()?.f_div_scalar(bias_correction2_sqrt)?;
        let _ = denom.f_add_scalar_(eps)?;
        let update = self.exp_avg.f_mul_scalar(-step_size)?.f_div(&denom)?;
        let _ = self.flat_params.f_add_(&update)?;
        Ok(())
    }

    /// The state to checkpoint: (exp_avg, exp_avg_sq) as flat tensors, and the step count.
    pub fn state(&self) -> (&Tensor, &Tensor, i64) {
        (&self.exp_avg, &self.exp_avg_sq, self.step)
    }

    /// Checks that a saved state fits this optimizer.
    pub fn check_state(&self, exp_avg: &Tensor, exp_avg_sq: &Tensor) -> Result<()> {
        for (name, src) in [("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)] {
            if src.size() != self.exp_avg.size() || src.f_kind()? != Kind::Float {
                return Err(Error::StateDict(format!(
                    "optimizer {name}: expected float32 {:?}, got {:?} {:?}",
                    self.exp_avg.size(),
                    src.f_kind().ok(),
                    src.size()
                )));
            }
        }
        Ok(())
    }

    /// Forgets the moments and the step count (a fresh optimizer over the same parameters).
    pub fn reset_state(&mut self) -> Result<()> {
        let _ = self.exp_avg.f_zero_()?;
        let _ = self.exp_avg_sq.f_zero_()?;
        self.step = 0;
        Ok(())
    }

    /// Restores a state saved by [`Adam::state`].
    pub fn load_state(&mut self, exp_avg: &Tensor, exp_avg_sq: &Tensor, step: i64) -> Result<()> {
        self.check_state(exp_avg, exp_avg_sq)?;
        tch::no_grad(|| -> Result<()> {
            self.exp_avg.f_copy_(exp_avg)?;
            self.exp_avg_sq.f_copy_(exp_avg_sq)?;
            Ok(())
        })?;
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn params_become_views_and_move_downhill() {
        let a = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut adam = Adam::new(vec![a.shallow_clone(), b.shallow_clone()], AdamConfig::ugatit(0.1, 0.0)).unwrap();
        assert_eq!(a.data_ptr(), adam.flat_params.data_ptr());
        let grads = [Tensor::ones([2, 3], (Kind::Float, Device::Cpu)), -Tensor::ones([4], (Kind::Float, Device::Cpu))];
        adam.step(&grads).unwrap();
        // First Adam step moves each element by lr against the gradient's sign.
        assert!((a.mean(Kind::Float).double_value(&[]) - 0.9).abs() < 1e-6);
        assert!((b.mean(Kind::Float).double_value(&[]) - 1.1).abs() < 1e-6);
        assert_eq!(adam.step_count(), 1);
    }
}
