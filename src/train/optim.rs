//! Adam with coupled L2 weight decay, as `torch.optim.Adam(params, lr, betas, weight_decay)`,
//! over flat buffers.
//!
//! At construction the parameters are copied into one contiguous buffer and each parameter is
//! re-pointed (`set_data`) at its slice of it. On CUDA an update is a dozen kernels over groups
//! of parameters instead of a dozen per parameter tensor; on the CPU it is one fused loop in Rust
//! over each parameter's slot. The element-wise arithmetic is PyTorch's (`_single_tensor_adam`),
//! operation for operation:
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

/// Most elements updated per CUDA group (64 MiB of float32).
const CUDA_GROUP: i64 = 1 << 24;

struct Scalars {
    weight_decay: f64,
    one_minus_beta1: f64,
    beta2: f64,
    one_minus_beta2: f64,
    neg_step_size: f64,
    bias_correction2_sqrt: f64,
    eps: f64,
}

/// The numbers the CUDA update reads from the device, as 0-d float32 tensors there: the two that
/// change with the step count (through the bias corrections and the LR), so that the update's
/// kernels can be captured once in a CUDA graph and replayed at every later step
/// ([`Adam::advance`] refills them between replays), and the weight decay, which is a tensor
/// operand of `addcmul` (a CPU scalar tensor there would be refused on CUDA).
struct DeviceScalars {
    neg_step_size: Tensor,
    bias_correction2_sqrt: Tensor,
    weight_decay: Tensor,
}

/// The Adam update of one contiguous segment, in place. `addcmul_`/`addcdiv_` (whose `value`
/// tch cannot pass) get their operand pre-scaled: `v + (s·g)·g` and `p + (s·m)/d` are exactly
/// PyTorch's `addcmul_(g, g, value=s)` and `addcdiv_(m, d, value=s)`.
fn update_segment(p: &Tensor, grad: &Tensor, m: &Tensor, v: &Tensor, s: &Scalars, t: &DeviceScalars) -> Result<()> {
    let (mut p, mut m, mut v) = (p.shallow_clone(), m.shallow_clone(), v.shallow_clone());
    // `grad.add(p, alpha=wd)`, which PyTorch's CPU kernels compute as one fused multiply-add:
    // so does `addcmul` (grad + p·wd) there, where `grad + p * wd` would round twice.
    let grad = if s.weight_decay != 0.0 { grad.f_addcmul(&p, &t.weight_decay)? } else { grad.shallow_clone() };
    let _ = m.f_lerp_(&grad, s.one_minus_beta1)?;
    let _ = v.f_mul_scalar_(s.beta2)?;
    let _ = v.f_addcmul_(&grad.f_mul_scalar(s.one_minus_beta2)?, &grad)?;
    let mut denom = v.f_sqrt()?;
    let _ = denom.f_div_(&t.bias_correction2_sqrt)?;
    let _ = denom.f_add_scalar_(s.eps)?;
    let _ = p.f_addcdiv_(&m.f_mul(&t.neg_step_size)?, &denom)?;
    Ok(())
}

/// The first half of the CPU update: the weight-decayed gradient and both moments, in place.
/// `mul_add` is one fused multiply-add, as PyTorch's compiled kernels do it; with the CPU's FMA
/// instruction enabled it is that instruction, otherwise a (much slower) library call.
fn moments(p: &[f32], g: &[f32], m: &mut [f32], v: &mut [f32], scalars: [f32; 4]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has just been found to support FMA.
        return unsafe { moments_fma(p, g, m, v, scalars) };
    }
    moments_portable(p, g, m, v, scalars)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
fn moments_fma(p: &[f32], g: &[f32], m: &mut [f32], v: &mut [f32], scalars: [f32; 4]) {
    moments_portable(p, g, m, v, scalars)
}

#[inline(always)]
fn moments_portable(p: &[f32], g: &[f32], m: &mut [f32], v: &mut [f32], [wd, w1, b2, ob2]: [f32; 4]) {
    for i in 0..p.len() {
        let grad = if wd != 0.0 { p[i].mul_add(wd, g[i]) } else { g[i] };
        // torch.lerp: start + w·(end − start) below w = ½, end − (end − start)·(1 − w) from it.
        m[i] = if w1 < 0.5 { m[i] + w1 * (grad - m[i]) } else { grad - (grad - m[i]) * (1.0 - w1) };
        v[i] = (ob2 * grad).mul_add(grad, v[i] * b2);
    }
}

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

/// A parameter's gradient as the optimizer receives it.
pub enum Gradient {
    Dense(Tensor),
    /// The weight gradient of a bias-free Linear layer `y = x Wᵀ`, kept as the factors autograd
    /// would multiply: `dW = grad_outputᵀ · input`, with the calls of one step concatenated
    /// along the batch (B rows, so a rank-B matrix). The optimizer multiplies it out a slice at
    /// a time, so the full model's 268M-element FC.0 gradient never exists whole (see
    /// `Trainer::step`).
    Outer {
        /// dL/dy, (B, out).
        grad_output: Tensor,
        /// x, (B, in).
        input: Tensor,
    },
    /// No gradient this step: the parameter is frozen (`requires_grad=False`) or the loss does
    /// not use it (U-GAT-IT's AdaILN MLP when there are no residual blocks). The update skips
    /// it, as `torch.optim.Adam` skips a parameter whose `.grad` is None.
    None,
}

impl Gradient {
    /// Wraps an autograd gradient (undefined: the input did not reach the loss).
    pub fn from_autograd(grad: Tensor) -> Gradient {
        if grad.defined() {
            Gradient::Dense(grad)
        } else {
            Gradient::None
        }
    }

    /// Autograd's gradients of `loss` for `params`, in order. A frozen parameter is not asked
    /// for (autograd refuses inputs that do not require grad) and gets [`Gradient::None`], as
    /// does one the loss does not reach.
    pub fn of(loss: &Tensor, params: &[Tensor]) -> Result<Vec<Gradient>> {
        let trainable: Vec<&Tensor> = params.iter().filter(|p| p.requires_grad()).collect();
        let mut grads =
            if trainable.is_empty() { Vec::new() } else { Tensor::f_run_backward(&[loss], &trainable, false, false)? }
                .into_iter();
        params
            .iter()
            .map(|p| match p.requires_grad() {
                true => grads.next().map(Gradient::from_autograd).ok_or_else(|| Error::internal("too few gradients")),
                false => Ok(Gradient::None),
            })
            .collect()
    }

    /// Passes the gradients of `optim`'s parameters through a hook that rewrites whole dense
    /// gradients in place (averaging across processes): a parameter without a gradient shows
    /// as zeros, so that every process hands the hook the same layout; it stays without one
    /// afterwards. Where a tensor hook may have kept an autograd gradient
    /// ([`Adam::set_keep_gradients`]), the hook gets a copy: the kept tensor stays this
    /// process's own gradient, as under PyTorch's DistributedDataParallel.
    pub fn through_hook(
        grads: Vec<Gradient>,
        optim: &Adam,
        hook: &mut dyn FnMut(&[Tensor]) -> Result<()>,
    ) -> Result<Vec<Gradient>> {
        let dense = grads
            .iter()
            .zip(optim.params())
            .map(|(g, p)| match g {
                Gradient::None => Ok(p.f_zeros_like()?),
                Gradient::Dense(kept) if optim.keep_gradients => {
                    let mut copy = kept.f_empty_like()?;
                    copy.f_copy_(kept)?;
                    Ok(copy)
                }
                g => g.dense(),
            })
            .collect::<Result<Vec<_>>>()?;
        hook(&dense)?;
        Ok(grads
            .into_iter()
            .zip(dense)
            .map(|(g, d)| if matches!(g, Gradient::None) { Gradient::None } else { Gradient::Dense(d) })
            .collect())
    }

    fn numel(&self) -> i64 {
        match self {
            Gradient::Dense(g) => g.numel() as i64,
            Gradient::Outer { grad_output, input } => grad_output.size()[1] * input.size()[1],
            Gradient::None => 0,
        }
    }

    /// The gradient as one float32 tensor (the parameter's shape for `Dense`, (out, in) for
    /// `Outer`): a new tensor for `Outer`, so a caller may overwrite it.
    pub fn dense(&self) -> Result<Tensor> {
        match self {
            Gradient::Dense(g) => Ok(g.shallow_clone()),
            Gradient::Outer { grad_output, .. } => {
                let out = grad_output.size()[1];
                Ok(self.rows(0, out)?.f_view([out, -1])?)
            }
            Gradient::None => Err(Error::internal("a parameter without a gradient has no dense form")),
        }
    }

    /// Rows `start..end` of an `Outer` gradient (`Dense`: of its flattened form, one element a
    /// row), flattened, float32. Products run in the factors' kind (bf16 under mixed
    /// precision), as autograd's would, and are then widened.
    fn rows(&self, start: i64, end: i64) -> Result<Tensor> {
        match self {
            Gradient::Dense(g) => Ok(g.f_reshape([-1])?.f_narrow(0, start, end - start)?),
            Gradient::Outer { grad_output, input } => Ok(grad_output
                .f_narrow(1, start, end - start)?
                .f_tr()?
                .f_mm(input)?
                .f_to_kind(Kind::Float)?
                .f_reshape([-1])?),
            Gradient::None => Err(Error::internal("a parameter without a gradient has no rows")),
        }
    }

    /// Elements a row of [`Gradient::rows`] holds.
    fn row_len(&self) -> i64 {
        match self {
            Gradient::Dense(_) | Gradient::None => 1,
            Gradient::Outer { input, .. } => input.size()[1],
        }
    }
}

/// Each parameter starts at a multiple of this many elements (256 bytes) of the flat buffer:
/// cuDNN picks its fast kernels only for well-aligned pointers (a weight at an odd 4-byte offset
/// made the generator 3-4x slower on an H100).
const ALIGN: i64 = 64;

pub struct Adam {
    pub config: AdamConfig,
    params: Vec<Tensor>,
    /// The parameters' names in messages (`genA2B.gap_fc.weight`).
    names: Vec<String>,
    /// Where each parameter starts in the flat buffers.
    offsets: Vec<i64>,
    /// Zero fillers that keep the concatenated gradient aligned like the parameters.
    paddings: Vec<Option<Tensor>>,
    /// All parameters, back to back (aligned); `params[i]` is a view into it.
    flat_params: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// The scalars the CUDA update reads from the device.
    device_scalars: DeviceScalars,
    step: i64,
    /// Something outside may hold the gradients handed to the update (a tensor hook kept one):
    /// the CPU update then leaves them intact instead of reusing their memory as scratch.
    keep_gradients: bool,
}

impl Adam {
    /// Takes ownership of the parameters' storage: afterwards each parameter is a view into one
    /// flat buffer (values unchanged, gradients untouched). `params` are `(name, tensor)`.
    pub fn new(named_params: Vec<(String, Tensor)>, config: AdamConfig) -> Result<Self> {
        let (names, params): (Vec<String>, Vec<Tensor>) = named_params.into_iter().unzip();
        let first = params.first().ok_or_else(|| Error::internal("Adam needs at least one parameter"))?;
        let device = first.device();
        let mut offsets = Vec::with_capacity(params.len());
        let mut paddings = Vec::with_capacity(params.len());
        let mut total = 0i64;
        for p in &params {
            offsets.push(total);
            let n = p.numel() as i64;
            let padded = (n + ALIGN - 1) / ALIGN * ALIGN;
            paddings.push(match padded - n {
                0 => None,
                pad => Some(Tensor::f_zeros([pad], (Kind::Float, device))?),
            });
            total += padded;
        }
        if device == tch::Device::Cpu {
            // The flat parameters and the two moment buffers, before any of them is touched.
            crate::error::check_host_memory(3 * 4 * total as u64, || {
                format!("the optimizer's state for {} parameters", params.len())
            })?;
        }
        let flat_params = Tensor::f_zeros([total], (Kind::Float, device))?;
        tch::no_grad(|| -> Result<()> {
            for (p, &offset) in params.iter().zip(&offsets) {
                let n = p.numel() as i64;
                let view = flat_params.f_narrow(0, offset, n)?.f_view_(p.size())?;
                view.shallow_clone().f_copy_(&p.f_detach()?)?;
                p.shallow_clone().f_set_data(&view)?;
            }
            Ok(())
        })?;
        let exp_avg = Tensor::f_zeros_like(&flat_params)?;
        let exp_avg_sq = Tensor::f_zeros_like(&flat_params)?;
        let scalar = || Tensor::f_zeros([], (Kind::Float, device));
        let device_scalars =
            DeviceScalars { neg_step_size: scalar()?, bias_correction2_sqrt: scalar()?, weight_decay: scalar()? };
        Ok(Self {
            config,
            params,
            names,
            offsets,
            paddings,
            flat_params,
            exp_avg,
            exp_avg_sq,
            device_scalars,
            step: 0,
            keep_gradients: false,
        })
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

    /// Checks that every parameter still aliases its slot of the flat buffer. It stops doing so
    /// if someone replaced its storage (`p.data = p.data.clone()`, moving the network to another
    /// device); the update would then silently miss that parameter. The trainers call it before
    /// a step's first kernel too, so such a step fails whole.
    pub fn check_aliasing(&self) -> Result<()> {
        let base = self.flat_params.data_ptr() as usize;
        for ((p, &offset), name) in self.params.iter().zip(&self.offsets).zip(&self.names) {
            let expected = base + 4 * offset as usize;
            let aliased = p.data_ptr() as usize == expected
                && p.device() == self.flat_params.device()
                && p.f_kind().ok() == Some(Kind::Float)
                && p.is_contiguous();
            if !aliased {
                return Err(Error::Device(format!(
                    "parameter {name} {:?} no longer shares the optimizer's storage: its data was replaced or \
                     moved after the Trainer was built (e.g. `p.data = ...` or `.to(...)`); copy values in \
                     place instead (`p.data.copy_(...)`, `load_state_dict` before it happens) or build a new \
                     Trainer",
                    p.size()
                )));
            }
        }
        Ok(())
    }

    /// One update from gradients given in parameter order (as returned by `run_backward`).
    ///
    /// On CUDA the parameters are updated in groups (their gradients concatenated): a dozen
    /// kernel launches per group. On the CPU each parameter gets two fused Rust passes; that path
    /// uses the (contiguous) gradients' storage as scratch, so they are spent afterwards.
    pub fn step(&mut self, grads: &[Gradient]) -> Result<()> {
        self.check_gradients(grads)?;
        self.advance()?;
        self.update(grads)
    }

    /// Counts one more update and writes its step-dependent scalars to the device (kernels
    /// launched now, outside any captured graph). [`Adam::step`] is `advance` then `apply`; a
    /// CUDA graph that captured `apply` replays it after each `advance`.
    pub fn advance(&mut self) -> Result<()> {
        self.step += 1;
        let s = self.scalars();
        tch::no_grad(|| -> Result<()> {
            let DeviceScalars { neg_step_size, bias_correction2_sqrt, weight_decay } = &self.device_scalars;
            let _ = neg_step_size.shallow_clone().f_fill_(s.neg_step_size)?;
            let _ = bias_correction2_sqrt.shallow_clone().f_fill_(s.bias_correction2_sqrt)?;
            let _ = weight_decay.shallow_clone().f_fill_(s.weight_decay)?;
            Ok(())
        })
    }

    /// The update of the step counted by the last [`Adam::advance`], from these gradients.
    pub fn apply(&self, grads: &[Gradient]) -> Result<()> {
        self.check_gradients(grads)?;
        self.update(grads)
    }

    fn check_gradients(&self, grads: &[Gradient]) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(Error::internal(format!(
                "Adam.step got {} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        if let Some(i) = grads.iter().position(|g| matches!(g, Gradient::Dense(g) if !g.defined())) {
            return Err(Error::internal(format!("parameter {i}'s gradient is undefined: use Gradient::None")));
        }
        self.check_aliasing()
    }

    fn update(&self, grads: &[Gradient]) -> Result<()> {
        let scalars = self.scalars();
        let cuda = self.flat_params.device().is_cuda();
        tch::no_grad(|| {
            if cuda {
                self.update_grouped(grads, &scalars, CUDA_GROUP)
            } else {
                self.update_cpu(grads, &scalars)
            }
        })
    }

    /// CUDA: consecutive parameters are updated together, up to `CUDA_GROUP` elements at a time,
    /// so the concatenated gradient never costs more than one group of memory. A parameter larger
    /// than a group (the full model's FC.0: 268M elements at 256 px) is not copied at all: it is
    /// updated in group-sized slices of its own gradient, so the update's temporaries (the
    /// decayed gradient, sqrt(v), the scaled moment) stay a few groups in size instead of three
    /// copies of the parameter at the moment the step's memory peaks.
    fn update_grouped(&self, grads: &[Gradient], scalars: &Scalars, group: i64) -> Result<()> {
        let total = self.flat_params.size()[0];
        let mut i = 0;
        while i < grads.len() {
            let start = self.offsets[i];
            let grad = &grads[i];
            if matches!(grad, Gradient::None) {
                i += 1; // no gradient: parameter and moments stay as they are
                continue;
            }
            if grad.numel() > group {
                // Whole rows at a time (an `Outer` gradient is made one slice of rows at a
                // time); its padding (zero parameter, zero gradient) would stay zero: skipped.
                let (row_len, rows) = (grad.row_len(), grad.numel() / grad.row_len());
                let chunk = (group / row_len).max(1);
                let mut row = 0;
                while row < rows {
                    let end = (row + chunk).min(rows);
                    self.update_slice(start + row * row_len, &grad.rows(row, end)?, scalars)?;
                    row = end;
                }
                i += 1;
                continue;
            }
            let mut pieces = Vec::new();
            let mut end = start;
            while i < grads.len()
                && !matches!(grads[i], Gradient::None)
                && grads[i].numel() <= group
                && (pieces.is_empty() || end - start + grads[i].numel() <= group)
            {
                pieces.push(grads[i].dense()?.f_reshape([-1])?);
                if let Some(pad) = &self.paddings[i] {
                    pieces.push(pad.shallow_clone());
                }
                end = self.offsets.get(i + 1).copied().unwrap_or(total);
                i += 1;
            }
            let grad = if pieces.len() == 1 { pieces.pop().expect("one piece") } else { Tensor::f_cat(&pieces, 0)? };
            self.update_slice(start, &grad, scalars)?;
        }
        Ok(())
    }

    /// Updates the flat buffers' elements `start..start + grad.len()` from `grad`.
    fn update_slice(&self, start: i64, grad: &Tensor, scalars: &Scalars) -> Result<()> {
        let len = grad.size()[0];
        update_segment(
            &self.flat_params.f_narrow(0, start, len)?,
            grad,
            &self.exp_avg.f_narrow(0, start, len)?,
            &self.exp_avg_sq.f_narrow(0, start, len)?,
            scalars,
            &self.device_scalars,
        )
    }

    /// The CPU update, bitwise equal to `torch.optim.Adam`'s (`_single_tensor_adam`) on the same
    /// machine: two fused Rust passes per parameter around one libtorch `sqrt`, instead of ten
    /// libtorch kernels and their temporaries. Bitwise because each step rounds as PyTorch's CPU
    /// kernels do: `grad.add(p, alpha=wd)` and `addcmul_` are compiled to fused multiply-adds
    /// (one rounding; `mul_add` here), `lerp_`, `div`, `add_` and `addcdiv_` round each operation,
    /// and its vectorised `sqrt` is not correctly rounded, so libtorch computes that one, over
    /// exactly the parameter's elements (the vector/tail split must match too).
    /// One thread: libtorch's own worker threads are still spinning after the backward, and
    /// sharing the cores with them was slower.
    fn update_cpu(&self, grads: &[Gradient], s: &Scalars) -> Result<()> {
        let f = |x: f64| x as f32;
        let (wd, w1, b2, ob2, neg_step, bc2, eps) = (
            f(s.weight_decay),
            f(s.one_minus_beta1),
            f(s.beta2),
            f(s.one_minus_beta2),
            f(s.neg_step_size),
            f(s.bias_correction2_sqrt),
            f(s.eps),
        );
        for ((g, p), &offset) in grads.iter().zip(&self.params).zip(&self.offsets) {
            if matches!(g, Gradient::None) {
                continue; // no gradient: parameter and moments stay as they are
            }
            // An `Outer` gradient is multiplied out here, one parameter at a time.
            let g = g.dense()?.f_contiguous()?;
            if g.f_kind()? != Kind::Float || g.device() != tch::Device::Cpu || g.numel() != p.numel() {
                return Err(Error::internal(format!(
                    "Adam: gradient {:?} {:?} does not fit its float32 CPU parameter {:?}",
                    g.f_kind()?,
                    g.size(),
                    p.size()
                )));
            }
            let (n, at) = (g.numel(), offset as usize);
            let v_view = self.exp_avg_sq.f_narrow(0, offset, n as i64)?;
            // SAFETY (both blocks): `check_aliasing` confirmed the flat buffers are contiguous
            // float32 and `offset..offset + n` is this parameter's own slot in each of them; `g`
            // is a live, contiguous float32 tensor of n elements that aliases none of them. No
            // slice outlives its block, so none is held while libtorch writes `g` in between.
            let slot =
                |buffer: &Tensor| unsafe { std::slice::from_raw_parts_mut((buffer.data_ptr() as *mut f32).add(at), n) };
            {
                let g_values = unsafe { std::slice::from_raw_parts(g.data_ptr() as *const f32, n) };
                moments(
                    slot(&self.flat_params),
                    g_values,
                    slot(&self.exp_avg),
                    slot(&self.exp_avg_sq),
                    [wd, w1, b2, ob2],
                );
            }
            // The gradient is spent: its storage takes sqrt(v), so a step allocates nothing (a
            // per-step scratch the size of the largest parameter raised glibc's mmap threshold,
            // and with it the resident memory of whatever the process did next). Unless a tensor
            // hook may have kept it: then it must still read as the gradient afterwards.
            let root = if self.keep_gradients {
                v_view.f_sqrt()?
            } else {
                let _ = v_view.f_sqrt_out(&g.f_view([-1])?)?;
                g
            };
            {
                let (p, m) = (slot(&self.flat_params), slot(&self.exp_avg));
                // SAFETY: as above; `root` is a contiguous float32 tensor of n elements.
                let root = unsafe { std::slice::from_raw_parts(root.data_ptr() as *const f32, n) };
                for i in 0..n {
                    p[i] += (neg_step * m[i]) / (root[i] / bc2 + eps);
                }
            }
        }
        Ok(())
    }

    fn scalars(&self) -> Scalars {
        let AdamConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2 = 1.0 - beta2.powf(step);
        Scalars {
            weight_decay,
            one_minus_beta1: 1.0 - beta1,
            beta2,
            one_minus_beta2: 1.0 - beta2,
            neg_step_size: -(lr / bias_correction1),
            bias_correction2_sqrt: bias_correction2.powf(0.5),
            eps,
        }
    }

    /// The state to checkpoint: (exp_avg, exp_avg_sq) as flat tensors, and the step count.
    pub fn state(&self) -> (&Tensor, &Tensor, i64) {
        (&self.exp_avg, &self.exp_avg_sq, self.step)
    }

    /// Checks that a saved moment's shape and dtype (e.g. from a file header) fit this optimizer.
    pub fn check_state_spec(&self, shape: &[i64], kind: Kind) -> Result<()> {
        if shape != self.exp_avg.size() || kind != Kind::Float {
            return Err(Error::StateDict(format!(
                "optimizer state: expected float32 {:?}, got {kind:?} {shape:?} (another architecture?)",
                self.exp_avg.size()
            )));
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

    /// Restores one moment (`"exp_avg"` or `"exp_avg_sq"`) saved by [`Adam::state`], so that a
    /// checkpoint can be restored one tensor at a time; [`Adam::set_step_count`] completes it.
    pub fn load_moment(&mut self, name: &str, src: &Tensor) -> Result<()> {
        self.check_state_spec(&src.size(), src.f_kind()?)?;
        let target = match name {
            "exp_avg" => &mut self.exp_avg,
            "exp_avg_sq" => &mut self.exp_avg_sq,
            other => return Err(Error::internal(format!("no Adam moment {other:?}"))),
        };
        tch::no_grad(|| target.f_copy_(src))?;
        Ok(())
    }

    /// Whether the gradients given to the update must stay as they are (see `keep_gradients`).
    pub fn set_keep_gradients(&mut self, keep: bool) {
        self.keep_gradients = keep;
    }

    pub fn set_step_count(&mut self, step: i64) {
        self.step = step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// `(p0, a), (p1, b), ...`: parameters named by position.
    fn named(params: &[&Tensor]) -> Vec<(String, Tensor)> {
        params.iter().enumerate().map(|(i, t)| (format!("p{i}"), t.shallow_clone())).collect()
    }

    #[test]
    fn params_become_views_and_move_downhill() {
        let a = Tensor::ones([2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::ones([4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut adam = Adam::new(named(&[&a, &b]), AdamConfig::ugatit(0.1, 0.0)).unwrap();
        assert_eq!(a.data_ptr(), adam.flat_params.data_ptr());
        assert_eq!(b.data_ptr() as usize - a.data_ptr() as usize, 4 * ALIGN as usize, "aligned slots");
        let grads = [Tensor::ones([2, 3], (Kind::Float, Device::Cpu)), -Tensor::ones([4], (Kind::Float, Device::Cpu))];
        adam.step(&grads.iter().map(|g| Gradient::Dense(g.shallow_clone())).collect::<Vec<_>>()).unwrap();
        // First Adam step moves each element by lr against the gradient's sign.
        assert!((a.mean(Kind::Float).double_value(&[]) - 0.9).abs() < 1e-6);
        assert!((b.mean(Kind::Float).double_value(&[]) - 1.1).abs() < 1e-6);
        assert_eq!(adam.step_count(), 1);
    }

    #[test]
    fn libtorch_and_fused_cpu_updates_agree() {
        let make = || {
            tch::manual_seed(0);
            let shapes: [&[i64]; 4] = [&[3, 5], &[1000], &[7, 1, 2], &[70]];
            shapes
                .iter()
                .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)).set_requires_grad(true))
                .collect::<Vec<_>>()
        };
        // One draw, copied: the global RNG is shared with tests running in other threads.
        let pa = make();
        let pb: Vec<Tensor> = pa.iter().map(|t| t.detach().copy().set_requires_grad(true)).collect();
        let mut a = Adam::new(named(&pa.iter().collect::<Vec<_>>()), AdamConfig::ugatit(0.01, 1e-4)).unwrap();
        let mut b = Adam::new(named(&pb.iter().collect::<Vec<_>>()), AdamConfig::ugatit(0.01, 1e-4)).unwrap();
        for group in [CUDA_GROUP, 100, 300, 1] {
            let grads: Vec<Gradient> = pa.iter().map(|p| Gradient::Dense(p.randn_like())).collect();
            a.advance().unwrap();
            b.advance().unwrap();
            let s = a.scalars();
            tch::no_grad(|| a.update_grouped(&grads, &s, group)).unwrap();
            tch::no_grad(|| b.update_cpu(&grads, &s)).unwrap();
        }
        let relative = |x: &Tensor, y: &Tensor| ((x - y).abs() / (y.abs() + 1e-30)).max().double_value(&[]);
        assert!(a.exp_avg.equal(&b.exp_avg));
        assert!(a.exp_avg_sq.equal(&b.exp_avg_sq), "{}", relative(&a.exp_avg_sq, &b.exp_avg_sq));
        for (x, y) in pa.iter().zip(&pb) {
            assert!(x.equal(y), "{}", relative(x, y));
        }
        assert!(b
            .update_cpu(&[Gradient::Dense(Tensor::zeros([2], (Kind::Float, Device::Cpu)))], &a.scalars())
            .is_err());
    }

    /// A parameter without a gradient (`Gradient::None`: frozen, or outside the loss) keeps its
    /// value and moments on both paths, wherever it sits among the others and however the CUDA
    /// path groups them; the others update bitwise as on the CPU path.
    #[test]
    fn parameters_without_gradients_stay_put_on_both_paths() {
        let options = (Kind::Float, Device::Cpu);
        tch::manual_seed(2);
        let shapes: [&[i64]; 5] = [&[3, 5], &[1000], &[7, 1, 2], &[70], &[9]];
        let initial: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, options)).collect();
        let fresh = || {
            let params: Vec<Tensor> = initial.iter().map(|t| t.copy().set_requires_grad(true)).collect();
            let adam = Adam::new(named(&params.iter().collect::<Vec<_>>()), AdamConfig::ugatit(0.01, 1e-4));
            (params, adam.unwrap())
        };
        let dense: Vec<Tensor> = initial.iter().map(|t| t.randn_like()).collect();
        let frozen = [false, true, false, false, true]; // between groups, mid-group and last
        let grads: Vec<Gradient> =
            dense.iter().zip(frozen).map(|(g, f)| if f { Gradient::None } else { Gradient::Dense(g.copy()) }).collect();
        let (expected, mut cpu) = fresh();
        cpu.set_keep_gradients(true); // the grouped runs below read the same gradients
        cpu.step(&grads).unwrap();
        for (g, d) in grads.iter().zip(&dense) {
            assert!(matches!(g, Gradient::None) || g.dense().unwrap().equal(d), "a kept gradient is intact");
        }
        for group in [CUDA_GROUP, 100, 16, 1] {
            let (got, mut adam) = fresh();
            adam.advance().unwrap();
            let s = adam.scalars();
            tch::no_grad(|| adam.update_grouped(&grads, &s, group)).unwrap();
            for (i, (x, y)) in got.iter().zip(&expected).enumerate() {
                assert!(x.equal(y), "group {group}, parameter {i}");
                let n = x.numel() as i64;
                let moments = adam.exp_avg.narrow(0, adam.offsets[i], n);
                assert_eq!(frozen[i], moments.abs().max().double_value(&[]) == 0.0, "group {group}, moments {i}");
            }
            assert!(adam.exp_avg_sq.equal(&cpu.exp_avg_sq), "group {group}");
        }
        for (x, (start, f)) in expected.iter().zip(initial.iter().zip(frozen)) {
            assert_eq!(x.equal(start), f, "the CPU path moves exactly the parameters with gradients");
        }
    }

    /// An `Outer` gradient updates its parameter as the dense gradient `grad_outputᵀ · input`
    /// does, on both paths and whatever the slicing (whole, several rows, one row).
    #[test]
    fn outer_gradients_update_like_their_product() {
        let options = (Kind::Float, Device::Cpu);
        tch::manual_seed(1);
        let (out, inputs, batch) = (6, 50, 3);
        let weight = Tensor::randn([out, inputs], options);
        let small = Tensor::randn([7], options);
        let grad_output = Tensor::randn([batch, out], options);
        let input = Tensor::randn([batch, inputs], options);
        let product = grad_output.tr().mm(&input);
        let fresh = || {
            let params = vec![weight.copy().set_requires_grad(true), small.copy().set_requires_grad(true)];
            let adam = Adam::new(named(&params.iter().collect::<Vec<_>>()), AdamConfig::ugatit(0.01, 1e-4));
            (params, adam.unwrap())
        };
        let small_grad = Tensor::randn([7], options);
        let dense = [Gradient::Dense(product.copy()), Gradient::Dense(small_grad.copy())];
        let outer = [
            Gradient::Outer { grad_output: grad_output.copy(), input: input.copy() },
            Gradient::Dense(small_grad.copy()),
        ];
        let (expected, mut reference) = fresh();
        reference.advance().unwrap();
        let s = reference.scalars();
        tch::no_grad(|| reference.update_grouped(&dense, &s, CUDA_GROUP)).unwrap();
        for group in [CUDA_GROUP, 120, 7, 1] {
            let (got, mut adam) = fresh();
            adam.advance().unwrap();
            tch::no_grad(|| adam.update_grouped(&outer, &s, group)).unwrap();
            for (x, y) in got.iter().zip(&expected) {
                assert!((x - y).abs().max().double_value(&[]) < 1e-7, "group {group}");
            }
            let scale = reference.exp_avg_sq.abs().max().double_value(&[]);
            assert!((&adam.exp_avg_sq - &reference.exp_avg_sq).abs().max().double_value(&[]) < 1e-6 * scale);
        }
        let (got, mut adam) = fresh();
        adam.step(&outer).unwrap();
        for (x, y) in got.iter().zip(&expected) {
            assert!((x - y).abs().max().double_value(&[]) < 1e-7, "cpu path");
        }
    }
}
