//! One U-GAT-IT training iteration in the official order (docs/architecture.md §5), with the speed-ups that
//! leave the update unchanged:
//! - the two translations `G_A2B(real_A)`, `G_B2A(real_B)` are computed once and serve both the
//!   D step (detached) and the G step — G's weights do not change in between;
//! - each backward asks autograd only for the gradients its optimizer uses (D's for the D loss,
//!   G's for the G loss), instead of filling and then discarding the other networks' grads;
//! - the full model's FC.0 weight gradient reaches Adam as its factors (`nn::recorded_linear`).
//!
//! The step also comes in two halves for CUDA graphs: [`Trainer::step_kernels`] (device work,
//! captured once) and [`Trainer::prepare_replay`] (the host bookkeeping before each replay).

use super::checkpoint::Checkpointable;
use super::losses::{bce_with_logits_to, l1, mse_to};
use super::optim::{Adam, AdamConfig, Gradient};
use super::schedule::lr_at;
use crate::config::TrainConfig;
use crate::device::parse_device;
use crate::models::{Discriminator, Generator, Output, UgatitDiscriminator, UgatitGenerator};
use crate::nn::compute::{with_compute, Compute};
use crate::nn::recorded_linear::LinearCalls;
use crate::{Error, Result};
use std::sync::{Arc, Mutex, MutexGuard};
use tch::{Device, Tensor};

/// Rewrites one optimizer's gradients in place before its update (see [`Trainer::step_reduced`]);
/// `None` for a plain step.
pub type GradientHook<'a> = Option<&'a mut dyn FnMut(&[Tensor]) -> Result<()>>;

/// A network shared between the trainer and the Python objects that expose it.
pub type Shared<T> = Arc<Mutex<T>>;

/// Locks a shared network; a mutex poisoned by a panic (already reported as an error) still opens.
pub(crate) fn lock<T>(m: &Shared<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The names of the six networks, as in the official checkpoint.
pub const NETWORK_NAMES: [&str; 6] = ["genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB"];

/// Every loss of one iteration (0-d tensors, detached) in a fixed order, plus the learning rate.
pub struct StepLosses {
    pub values: Vec<(&'static str, Tensor)>,
    pub lr: f64,
}

/// The U-GAT-IT trainer over either variant's networks: `Trainer` (the default types) trains the
/// PyTorch networks, `Trainer<TfGenerator, TfDiscriminator>` the TensorFlow release's, with the
/// same losses, order and schedule.
pub struct Trainer<G = Generator, D = Discriminator> {
    config: TrainConfig,
    device: Device,
    /// `config.precision` and `config.channels_last`, in force during each step.
    compute: Compute,
    pub gen_a2b: Shared<G>,
    pub gen_b2a: Shared<G>,
    pub dis_ga: Shared<D>,
    pub dis_gb: Shared<D>,
    pub dis_la: Shared<D>,
    pub dis_lb: Shared<D>,
    pub(crate) g_optim: Adam,
    pub(crate) d_optim: Adam,
    /// Completed iterations.
    pub(crate) step: i64,
}

/// Who counts an iteration: the step itself ([`Trainer::step`]), or [`Trainer::prepare_replay`]
/// before it (CUDA graphs, whose replays run no host code).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Counting {
    InStep,
    Prepared,
}

/// FC.0's calls are recorded (`crate::nn::recorded_linear`) while this lives. Declared after the
/// generators' locks, it is dropped before them on every way out of a step, so no other
/// caller's forward ever runs the recorded layer.
struct Recording<'a, G: UgatitGenerator>([&'a G; 2]);

impl<'a, G: UgatitGenerator> Recording<'a, G> {
    fn start(generators: [&'a G; 2]) -> Self {
        for gen in generators {
            gen.record_linear_calls(true);
        }
        Self(generators)
    }
}

impl<G: UgatitGenerator> Drop for Recording<'_, G> {
    fn drop(&mut self) {
        for gen in self.0 {
            gen.record_linear_calls(false);
        }
    }
}

/// The global and local discriminators' outputs on one domain's images.
struct Judged {
    global: Output,
    local: Output,
}

impl Judged {
    /// Splits a judgement of a concatenated batch into its first `n` images and the rest.
    fn split(self, n: i64) -> Result<(Judged, Judged)> {
        let (global_first, global_rest) = self.global.split_batch(n)?;
        let (local_first, local_rest) = self.local.split_batch(n)?;
        Ok((Judged { global: global_first, local: local_first }, Judged { global: global_rest, local: local_rest }))
    }
}

impl Trainer {
    /// The PyTorch-variant trainer (`config.variant` must be "pytorch").
    pub fn new(config: TrainConfig) -> Result<Self> {
        Self::create(config)
    }
}

impl<G: UgatitGenerator, D: UgatitDiscriminator> Trainer<G, D> {
    /// Builds the six networks (seeded by `config.seed`) and both optimizers.
    pub fn create(config: TrainConfig) -> Result<Self> {
        config.validate()?;
        if config.variant != G::VARIANT {
            return Err(Error::config(format!(
                "this trainer builds the {:?} networks but config.variant is {:?}",
                G::VARIANT,
                config.variant
            )));
        }
        let device = parse_device(&config.device)?;
        let compute = Compute::new(&config.precision, config.channels_last)?;
        if device.is_cuda() {
            // Same convolutions every step at fixed sizes: let cuDNN pick the fastest algorithms.
            tch::Cuda::cudnn_set_benchmark(true);
        }
        tch::manual_seed(config.seed as i64);
        let gen_a2b = G::build(config.generator(), device)?;
        let gen_b2a = G::build(config.generator(), device)?;
        let dis_ga = D::build(config.discriminator(true), device)?;
        let dis_gb = D::build(config.discriminator(true), device)?;
        let dis_la = D::build(config.discriminator(false), device)?;
        let dis_lb = D::build(config.discriminator(false), device)?;

        let adam = AdamConfig::ugatit(config.lr, config.weight_decay);
        let [a2b, b2a, ga, gb, la, lb] = NETWORK_NAMES;
        let mut g_params = gen_a2b.store().named_parameters(a2b);
        g_params.extend(gen_b2a.store().named_parameters(b2a));
        let mut d_params = Vec::new();
        for (name, d) in [(ga, &dis_ga), (gb, &dis_gb), (la, &dis_la), (lb, &dis_lb)] {
            d_params.extend(d.store().named_parameters(name));
        }
        let g_optim = Adam::new(g_params, adam)?;
        let d_optim = Adam::new(d_params, adam)?;
        Ok(Self {
            config,
            device,
            compute,
            gen_a2b: Arc::new(Mutex::new(gen_a2b)),
            gen_b2a: Arc::new(Mutex::new(gen_b2a)),
            dis_ga: Arc::new(Mutex::new(dis_ga)),
            dis_gb: Arc::new(Mutex::new(dis_gb)),
            dis_la: Arc::new(Mutex::new(dis_la)),
            dis_lb: Arc::new(Mutex::new(dis_lb)),
            g_optim,
            d_optim,
            step: 0,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Completed iterations.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// The learning rate of the last completed update (both optimizers share it): a function of
    /// the step count and the config alone.
    pub fn lr(&self) -> f64 {
        lr_at(self.config.lr, self.step.max(1), self.config.iteration, self.config.decay_flag)
    }

    /// Sets the number of completed iterations (after restoring a checkpoint).
    pub(crate) fn set_step(&mut self, step: i64) {
        self.step = step;
    }

    /// Every spectral-norm vector of the four discriminators, copied: restored if a step fails,
    /// so a failed step leaves no trace.
    fn snapshot_buffers(&self) -> Result<Vec<(Tensor, Tensor)>> {
        let mut saved = Vec::new();
        for d in [&self.dis_ga, &self.dis_gb, &self.dis_la, &self.dis_lb] {
            for var in lock(d).store().vars().into_iter().filter(|v| v.kind == crate::nn::VarKind::Buffer) {
                saved.push((var.tensor.shallow_clone(), var.tensor.f_detach()?.f_contiguous()?.f_mul_scalar(1.0)?));
            }
        }
        Ok(saved)
    }

    /// Refuses a batch whose generator passes cannot fit in the host memory.
    pub(crate) fn check_step_memory(&self, batch: &Tensor) -> Result<()> {
        crate::models::check_step_memory(&*lock(&self.gen_a2b), batch)
    }

    /// Refuses a frozen parameter (see [`crate::nn::ParamStore::check_trainable`]): both halves of
    /// a CUDA-graph step check, since a captured update cannot skip one.
    fn check_trainable(&self) -> Result<()> {
        self.for_each_network(|name, store: &crate::nn::ParamStore| store.check_trainable(name))
    }

    /// Calls `f(name, store)` for each of the six networks, in the official order.
    pub fn for_each_network(
        &self,
        mut f: impl FnMut(&'static str, &crate::nn::ParamStore) -> Result<()>,
    ) -> Result<()> {
        f("genA2B", lock(&self.gen_a2b).store())?;
        f("genB2A", lock(&self.gen_b2a).store())?;
        f("disGA", lock(&self.dis_ga).store())?;
        f("disGB", lock(&self.dis_gb).store())?;
        f("disLA", lock(&self.dis_la).store())?;
        f("disLB", lock(&self.dis_lb).store())
    }

    /// One official iteration: D update, G update, rho clipping, at the scheduled LR.
    ///
    /// Inputs are validated before anything changes, and the step count (hence the LR) only
    /// advances when the iteration completes. If the iteration fails part-way (out of memory),
    /// the spectral-norm vectors are restored; a failure after the D update (only possible from
    /// an allocation failure in the G half) leaves that update applied, which is reported.
    /// Autograd is enabled for the duration, whatever the caller's grad mode.
    pub fn step(&mut self, real_a: &Tensor, real_b: &Tensor) -> Result<StepLosses> {
        self.step_reduced(real_a, real_b, None)
    }

    /// [`Trainer::step`] with a hook that may rewrite each optimizer's gradients in place between
    /// the backward pass and the update: data-parallel training averages them across processes
    /// there (`python/ugatit_rs/distributed.py`). It is called once with the discriminators'
    /// gradients and once with the generators', in parameter order.
    pub fn step_reduced(&mut self, real_a: &Tensor, real_b: &Tensor, reduce: GradientHook<'_>) -> Result<StepLosses> {
        self.check_step(real_a, real_b)?;
        let buffers = self.snapshot_buffers()?;
        let d_updates = self.d_optim.step_count();
        let result = self.run_inner(real_a, real_b, reduce, Counting::InStep);
        if result.is_err() {
            if self.d_optim.step_count() != d_updates {
                // The D update happened: its buffers moved on with it, so keep them too.
                return result;
            }
            tch::no_grad(|| -> Result<()> {
                for (live, saved) in &buffers {
                    live.shallow_clone().f_copy_(saved)?;
                }
                Ok(())
            })?;
        }
        result
    }

    /// CUDA graphs, host half: counts the next iteration and writes its LR and Adam's bias
    /// corrections to the device, for a replay of the kernels [`Trainer::step_kernels`]
    /// captured. Returns the iteration's LR.
    pub fn prepare_replay(&mut self) -> Result<f64> {
        self.check_trainable()?;
        let step = self.step + 1;
        let lr = lr_at(self.config.lr, step, self.config.iteration, self.config.decay_flag);
        for optim in [&mut self.d_optim, &mut self.g_optim] {
            optim.set_lr(lr);
            optim.advance()?;
        }
        self.step = step;
        Ok(lr)
    }

    /// CUDA graphs, device half: one iteration's kernels and nothing else (no step count, LR
    /// or rollback bookkeeping, no host synchronisation), as a CUDA graph captures them. Each
    /// replay must follow a [`Trainer::prepare_replay`]; the losses it returns are the graph's
    /// output tensors, overwritten by the next replay.
    pub fn step_kernels(&mut self, real_a: &Tensor, real_b: &Tensor) -> Result<StepLosses> {
        self.check_step(real_a, real_b)?;
        self.check_trainable()?;
        self.run_inner(real_a, real_b, None, Counting::Prepared)
    }

    /// `step_inner` with autograd on and this trainer's compute settings.
    fn run_inner(
        &mut self,
        real_a: &Tensor,
        real_b: &Tensor,
        reduce: GradientHook<'_>,
        counting: Counting,
    ) -> Result<StepLosses> {
        let compute = self.compute;
        tch::with_grad(|| with_compute(compute, || self.step_inner(real_a, real_b, reduce, counting)))
    }

    fn step_inner(
        &mut self,
        real_a: &Tensor,
        real_b: &Tensor,
        mut reduce: GradientHook<'_>,
        counting: Counting,
    ) -> Result<StepLosses> {
        let cfg = self.config.clone();
        let step = self.step + 1;
        let lr = match counting {
            Counting::InStep => lr_at(cfg.lr, step, cfg.iteration, cfg.decay_flag),
            Counting::Prepared => self.lr(),
        };
        self.g_optim.set_lr(lr);
        self.d_optim.set_lr(lr);
        let update = |optim: &mut Adam, grads: &[Gradient]| match counting {
            Counting::InStep => optim.step(grads),
            Counting::Prepared => optim.apply(grads),
        };

        let gen_a2b = lock(&self.gen_a2b);
        let gen_b2a = lock(&self.gen_b2a);
        let _recording = Recording::start([&*gen_a2b, &*gen_b2a]);
        let mut dis = [&self.dis_ga, &self.dis_gb, &self.dis_la, &self.dis_lb].map(lock);
        for d in dis.iter_mut() {
            d.set_training(true);
        }
        let [dis_ga, dis_gb, dis_la, dis_lb] = &dis;
        let judge_a =
            |x: &Tensor| -> Result<Judged> { Ok(Judged { global: dis_ga.forward(x)?, local: dis_la.forward(x)? }) };
        let judge_b =
            |x: &Tensor| -> Result<Judged> { Ok(Judged { global: dis_gb.forward(x)?, local: dis_lb.forward(x)? }) };
        let mut values: Vec<(&'static str, Tensor)> = Vec::with_capacity(32);

        // Translations shared by both steps.
        let a2b = gen_a2b.forward(real_a)?;
        let b2a = gen_b2a.forward(real_b)?;

        // ---- D update: real then fake through each discriminator (one power iteration each),
        // or, opted in, both in one batched call.
        let (real_judged_a, fake_judged_a, real_judged_b, fake_judged_b) = if cfg.fused_discriminator {
            let (ra, fa) =
                judge_a(&Tensor::f_cat(&[real_a.shallow_clone(), b2a.out.f_detach()?], 0)?)?.split(real_a.size()[0])?;
            let (rb, fb) =
                judge_b(&Tensor::f_cat(&[real_b.shallow_clone(), a2b.out.f_detach()?], 0)?)?.split(real_b.size()[0])?;
            (ra, fa, rb, fb)
        } else {
            let twice = |global: &D, local: &D, real: &Tensor, fake: &Tensor| -> Result<(Judged, Judged)> {
                let (real_global, fake_global) = global.forward_twice(real, fake)?;
                let (real_local, fake_local) = local.forward_twice(real, fake)?;
                Ok((
                    Judged { global: real_global, local: real_local },
                    Judged { global: fake_global, local: fake_local },
                ))
            };
            let (ra, fa) = twice(dis_ga, dis_la, real_a, &b2a.out.f_detach()?)?;
            let (rb, fb) = twice(dis_gb, dis_lb, real_b, &a2b.out.f_detach()?)?;
            (ra, fa, rb, fb)
        };
        let d_loss_a = d_domain_loss(&real_judged_a, &fake_judged_a, cfg.adv_weight, ["GA", "LA"], &mut values)?;
        let d_loss_b = d_domain_loss(&real_judged_b, &fake_judged_b, cfg.adv_weight, ["GB", "LB"], &mut values)?;
        let d_loss = d_loss_a.f_add(&d_loss_b)?;
        // No graph although a discriminator parameter is trainable (all frozen: nothing to do).
        if !d_loss.requires_grad() && self.d_optim.params().iter().any(Tensor::requires_grad) {
            return Err(Error::Config(
                "the discriminator loss has no autograd graph: Trainer.step cannot run under \
                 torch.inference_mode()"
                    .into(),
            ));
        }
        let mut d_grads = Gradient::of(&d_loss, self.d_optim.params())?;
        if let Some(reduce) = reduce.as_mut() {
            d_grads = Gradient::through_hook(d_grads, &self.d_optim, *reduce)?;
        }
        update(&mut self.d_optim, &d_grads)?;
        drop(d_grads);

        // ---- G update.
        let (a2b2a, a2a) = gen_b2a.forward_pair(&a2b.out, real_a)?;
        let (b2a2b, b2b) = gen_a2b.forward_pair(&b2a.out, real_b)?;
        let fake_judged_a = judge_a(&b2a.out)?;
        let fake_judged_b = judge_b(&a2b.out)?;
        let g_loss_a = g_domain_loss(
            &fake_judged_a,
            [&a2b2a.out, &a2a.out, real_a],
            [&b2a.cam_logit, &a2a.cam_logit],
            &cfg,
            ["GA", "LA", "A"],
            &mut values,
        )?;
        let g_loss_b = g_domain_loss(
            &fake_judged_b,
            [&b2a2b.out, &b2b.out, real_b],
            [&a2b.cam_logit, &b2b.cam_logit],
            &cfg,
            ["GB", "LB", "B"],
            &mut values,
        )?;
        let g_loss = g_loss_a.f_add(&g_loss_b)?;
        let recorded: Vec<LinearCalls> =
            gen_a2b.take_linear_calls().into_iter().chain(gen_b2a.take_linear_calls()).collect();
        let mut g_grads = factored_gradients(&g_loss, self.g_optim.params(), recorded)?;
        if let Some(reduce) = reduce.as_mut() {
            // The hook (gradient averaging across processes) works on whole gradients.
            g_grads = Gradient::through_hook(g_grads, &self.g_optim, *reduce)?;
        }
        update(&mut self.g_optim, &g_grads)?;
        drop(g_grads);

        // RhoClipper(0, 1) on both generators.
        tch::no_grad(|| -> Result<()> {
            for rho in gen_a2b.rhos().into_iter().chain(gen_b2a.rhos()) {
                let _ = rho.shallow_clone().f_clamp_(0.0, 1.0)?;
            }
            Ok(())
        })?;
        if counting == Counting::InStep {
            self.step = step;
        }

        values.insert(0, ("g_loss", g_loss.f_detach()?));
        values.insert(0, ("d_loss", d_loss.f_detach()?));
        Ok(StepLosses { values, lr })
    }
}

/// The gradients of `loss` for `params`, in order; the weights of the `recorded` layers come as
/// [`Gradient::Outer`] factors (autograd is asked for the gradient at their recorded outputs
/// instead), every other parameter's as autograd's dense gradient, and a frozen or unused
/// parameter's as [`Gradient::None`] (see [`Gradient::of`]).
fn factored_gradients(loss: &Tensor, params: &[Tensor], recorded: Vec<LinearCalls>) -> Result<Vec<Gradient>> {
    let recorded: Vec<LinearCalls> =
        recorded.into_iter().filter(|r| !r.calls.is_empty() && r.weight.requires_grad()).collect();
    let owner =
        |p: &Tensor| recorded.iter().position(|r| r.weight.data_ptr() == p.data_ptr() && r.weight.size() == p.size());
    let mut inputs: Vec<&Tensor> = params.iter().filter(|p| owner(p).is_none() && p.requires_grad()).collect();
    let plain = inputs.len();
    inputs.extend(recorded.iter().flat_map(|r| r.calls.iter().map(|(_, output)| output)));
    if inputs.is_empty() {
        return Ok(params.iter().map(|_| Gradient::None).collect()); // every parameter is frozen
    }
    let mut grads = Tensor::f_run_backward(&[loss], &inputs, false, false)?;
    let mut at_outputs = grads.split_off(plain).into_iter();
    let mut outer = Vec::with_capacity(recorded.len());
    for r in &recorded {
        let grad_output: Vec<Tensor> = at_outputs.by_ref().take(r.calls.len()).collect();
        if grad_output.iter().all(|g| !g.defined()) {
            outer.push(Some(Gradient::None)); // the layer's outputs do not reach the loss
            continue;
        }
        // A call whose output the loss does not use contributes nothing.
        let grad_output = grad_output
            .into_iter()
            .zip(&r.calls)
            .map(|(g, (_, output))| if g.defined() { Ok(g) } else { output.f_zeros_like() })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let input: Vec<Tensor> = r.calls.iter().map(|(x, _)| x.shallow_clone()).collect();
        outer.push(Some(Gradient::Outer {
            grad_output: Tensor::f_cat(&grad_output, 0)?,
            input: Tensor::f_cat(&input, 0)?,
        }));
    }
    let mut dense = grads.into_iter();
    params
        .iter()
        .map(|p| match owner(p) {
            Some(k) => {
                outer[k].take().ok_or_else(|| Error::internal("a recorded weight appears twice in the optimizer"))
            }
            None if !p.requires_grad() => Ok(Gradient::None),
            None => dense
                .next()
                .map(Gradient::from_autograd)
                .ok_or_else(|| Error::internal("autograd returned too few gradients")),
        })
        .collect()
}

/// `adv_weight * (D_ad_G + D_ad_cam_G + D_ad_L + D_ad_cam_L)` for one domain.
fn d_domain_loss(
    real: &Judged,
    fake: &Judged,
    adv_weight: f64,
    [global, local]: [&str; 2],
    values: &mut Vec<(&'static str, Tensor)>,
) -> Result<Tensor> {
    let ad_g = mse_to(&real.global.out, 1.0)?.f_add(&mse_to(&fake.global.out, 0.0)?)?;
    let cam_g = mse_to(&real.global.cam_logit, 1.0)?.f_add(&mse_to(&fake.global.cam_logit, 0.0)?)?;
    let ad_l = mse_to(&real.local.out, 1.0)?.f_add(&mse_to(&fake.local.out, 0.0)?)?;
    let cam_l = mse_to(&real.local.cam_logit, 1.0)?.f_add(&mse_to(&fake.local.cam_logit, 0.0)?)?;
    let total = ad_g.f_add(&cam_g)?.f_add(&ad_l)?.f_add(&cam_l)?.f_mul_scalar(adv_weight)?;
    for (kind, branch, value) in
        [("ad", global, &ad_g), ("ad_cam", global, &cam_g), ("ad", local, &ad_l), ("ad_cam", local, &cam_l)]
    {
        values.push((loss_name("D", kind, branch), value.f_detach()?));
    }
    Ok(total)
}

/// The generator loss of one target domain:
/// `adv * (G_ad_G + G_ad_cam_G + G_ad_L + G_ad_cam_L) + cycle * recon + identity * ident + cam * cam`.
fn g_domain_loss(
    fake: &Judged,
    [cycled, identity, real]: [&Tensor; 3],
    [cam_source, cam_identity]: [&Tensor; 2],
    cfg: &TrainConfig,
    [global, local, domain]: [&str; 3],
    values: &mut Vec<(&'static str, Tensor)>,
) -> Result<Tensor> {
    let ad_g = mse_to(&fake.global.out, 1.0)?;
    let cam_g = mse_to(&fake.global.cam_logit, 1.0)?;
    let ad_l = mse_to(&fake.local.out, 1.0)?;
    let cam_l = mse_to(&fake.local.cam_logit, 1.0)?;
    let recon = l1(cycled, real)?;
    let ident = l1(identity, real)?;
    // The generator's CAM classifier: "this input is from my source domain" (1) for the
    // translation, "this is already my target domain" (0) for the identity pass.
    let cam = bce_with_logits_to(cam_source, 1.0)?.f_add(&bce_with_logits_to(cam_identity, 0.0)?)?;
    let adversarial = ad_g.f_add(&cam_g)?.f_add(&ad_l)?.f_add(&cam_l)?.f_mul_scalar(cfg.adv_weight)?;
    let total = adversarial
        .f_add(&recon.f_mul_scalar(cfg.cycle_weight)?)?
        .f_add(&ident.f_mul_scalar(cfg.identity_weight)?)?
        .f_add(&cam.f_mul_scalar(cfg.cam_weight)?)?;
    for (kind, branch, value) in
        [("ad", global, &ad_g), ("ad_cam", global, &cam_g), ("ad", local, &ad_l), ("ad_cam", local, &cam_l)]
    {
        values.push((loss_name("G", kind, branch), value.f_detach()?));
    }
    values.push((loss_name("G", "recon", domain), recon.f_detach()?));
    values.push((loss_name("G", "identity", domain), ident.f_detach()?));
    values.push((loss_name("G", "cam", domain), cam.f_detach()?));
    Ok(total)
}

/// Official-style loss names, e.g. `D_ad_cam_loss_GA`, `G_recon_loss_A`.
fn loss_name(net: &str, kind: &str, branch: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "D_ad_loss_GA",
        "D_ad_cam_loss_GA",
        "D_ad_loss_LA",
        "D_ad_cam_loss_LA",
        "D_ad_loss_GB",
        "D_ad_cam_loss_GB",
        "D_ad_loss_LB",
        "D_ad_cam_loss_LB",
        "G_ad_loss_GA",
        "G_ad_cam_loss_GA",
        "G_ad_loss_LA",
        "G_ad_cam_loss_LA",
        "G_ad_loss_GB",
        "G_ad_cam_loss_GB",
        "G_ad_loss_LB",
        "G_ad_cam_loss_LB",
        "G_recon_loss_A",
        "G_identity_loss_A",
        "G_cam_loss_A",
        "G_recon_loss_B",
        "G_identity_loss_B",
        "G_cam_loss_B",
    ];
    let wanted = format!("{net}_{kind}_loss_{branch}");
    NAMES.iter().find(|n| **n == wanted).copied().unwrap_or("unknown_loss")
}
