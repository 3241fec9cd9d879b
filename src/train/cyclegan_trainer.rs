//! One CycleGAN iteration exactly as `CycleGANModel.optimize_parameters()` runs it
//! (docs/cyclegan.md): translations and cycles, then the generators' update (LSGAN, cycle λ,
//! identity 0.5·λ) with the discriminators frozen, then the discriminators' update on real images
//! and on generated ones drawn through the 50-image pools, each loss halved.
//!
//! `G_A: A → B` is judged by `D_A` (which sees domain B), `G_B: B → A` by `D_B`, as in theirs.

use super::checkpoint::Checkpointable;
use super::image_pool::ImagePool;
use super::losses::{l1, mse_to};
use super::optim::{Adam, AdamConfig, Gradient};
use super::schedule::cyclegan_lr_at;
use super::trainer::{lock, GradientHook, Shared, StepLosses};
use crate::config::TrainConfig;
use crate::device::parse_device;
use crate::models::cyclegan::{CycleGenerator, PatchDiscriminator};
use crate::models::Network;
use crate::{Error, Result};
use std::sync::{Arc, Mutex};
use tch::{Device, Tensor};

/// The four networks under their checkpoint names (their files are `latest_net_<name>.pth`).
pub const CYCLEGAN_NETWORK_NAMES: [&str; 4] = ["G_A", "G_B", "D_A", "D_B"];

/// Tags the pools' random streams apart from the data pipeline's.
const POOL_STREAM: u64 = 0x9001;

pub struct CycleGanTrainer {
    config: TrainConfig,
    device: Device,
    pub gen_a: Shared<CycleGenerator>,
    pub gen_b: Shared<CycleGenerator>,
    pub dis_a: Shared<PatchDiscriminator>,
    pub dis_b: Shared<PatchDiscriminator>,
    pub(crate) g_optim: Adam,
    pub(crate) d_optim: Adam,
    /// Generated B images (for `D_A`), generated A images (for `D_B`).
    pub(crate) pools: [ImagePool; 2],
    pub(crate) step: i64,
}

impl CycleGanTrainer {
    /// Builds the networks in their order (G_A, G_B, D_A, D_B; seeded by `config.seed`), both
    /// Adam optimizers (betas 0.5, 0.999) and the pools.
    pub fn new(config: TrainConfig) -> Result<Self> {
        config.validate()?;
        if !config.is_cyclegan() {
            return Err(Error::config(format!("CycleGanTrainer needs model=\"cyclegan\", got {:?}", config.model)));
        }
        let device = parse_device(&config.device)?;
        if device.is_cuda() {
            tch::Cuda::cudnn_set_benchmark(true);
        } else {
            // The pools fill to pool_size images each over the first steps: refuse now what
            // this machine cannot hold, rather than be killed by the kernel when they are full.
            let image_bytes = config.cycle_generator().output_nc as u64 * (config.img_size as u64).pow(2) * 4;
            let bytes = 2 * config.pool_size as u64 * image_bytes;
            crate::error::check_host_memory(bytes, || {
                format!("the two image pools (pool_size={}, {} px images)", config.pool_size, config.img_size)
            })?;
        }
        tch::manual_seed(config.seed as i64);
        let gen_a = CycleGenerator::new(config.cycle_generator(), device)?;
        let gen_b = CycleGenerator::new(config.cycle_generator(), device)?;
        let dis_a = PatchDiscriminator::new(config.patch_discriminator(), device)?;
        let dis_b = PatchDiscriminator::new(config.patch_discriminator(), device)?;
        let adam = AdamConfig::ugatit(config.lr, config.weight_decay);
        let [g_a, g_b, d_a, d_b] = CYCLEGAN_NETWORK_NAMES;
        let mut g_params = gen_a.store().named_parameters(g_a);
        g_params.extend(gen_b.store().named_parameters(g_b));
        let mut d_params = dis_a.store().named_parameters(d_a);
        d_params.extend(dis_b.store().named_parameters(d_b));
        let capacity = config.pool_size as usize;
        let pools = [0, 1].map(|k| ImagePool::new(capacity, &[config.seed, POOL_STREAM, k]));
        Ok(Self {
            device,
            gen_a: Arc::new(Mutex::new(gen_a)),
            gen_b: Arc::new(Mutex::new(gen_b)),
            dis_a: Arc::new(Mutex::new(dis_a)),
            dis_b: Arc::new(Mutex::new(dis_b)),
            g_optim: Adam::new(g_params, adam)?,
            d_optim: Adam::new(d_params, adam)?,
            pools,
            step: 0,
            config,
        })
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// The learning rate of the last completed update.
    pub fn lr(&self) -> f64 {
        cyclegan_lr_at(self.config.lr, self.step.max(1), self.config.iteration, self.config.decay_flag)
    }

    pub(crate) fn set_step(&mut self, step: i64) {
        self.step = step;
    }

    /// Calls `f(name, store)` for G_A, G_B, D_A, D_B.
    pub fn for_each_network(
        &self,
        mut f: impl FnMut(&'static str, &crate::nn::ParamStore) -> Result<()>,
    ) -> Result<()> {
        f("G_A", lock(&self.gen_a).store())?;
        f("G_B", lock(&self.gen_b).store())?;
        f("D_A", lock(&self.dis_a).store())?;
        f("D_B", lock(&self.dis_b).store())
    }

    /// Refuses a batch whose generator passes cannot fit in the host memory.
    pub(crate) fn check_step_memory(&self, batch: &Tensor) -> Result<()> {
        crate::models::check_step_memory(&*lock(&self.gen_a), batch)
    }

    pub fn step(&mut self, real_a: &Tensor, real_b: &Tensor) -> Result<StepLosses> {
        self.step_reduced(real_a, real_b, None)
    }

    /// One iteration; `reduce` may rewrite each optimizer's gradients before its update (called
    /// with the generators' first, then the discriminators', in parameter order). A step that
    /// fails before the generators' update leaves the pools as they were.
    pub fn step_reduced(&mut self, real_a: &Tensor, real_b: &Tensor, reduce: GradientHook<'_>) -> Result<StepLosses> {
        self.check_step(real_a, real_b)?;
        let saved = self.pools.iter().map(|p| p.state()).collect::<Result<Vec<_>>>()?;
        let g_updates = self.g_optim.step_count();
        let result = tch::with_grad(|| self.step_inner(real_a, real_b, reduce));
        if result.is_err() && self.g_optim.step_count() == g_updates {
            for (pool, (images, rng)) in self.pools.iter_mut().zip(saved) {
                pool.restore(images.as_ref(), rng)?;
            }
        }
        result
    }

    fn step_inner(&mut self, real_a: &Tensor, real_b: &Tensor, mut reduce: GradientHook<'_>) -> Result<StepLosses> {
        let cfg = self.config.clone();
        let step = self.step + 1;
        let lr = cyclegan_lr_at(cfg.lr, step, cfg.iteration, cfg.decay_flag);
        self.g_optim.set_lr(lr);
        self.d_optim.set_lr(lr);
        let (gen_a, gen_b, dis_a, dis_b) = (lock(&self.gen_a), lock(&self.gen_b), lock(&self.dis_a), lock(&self.dis_b));
        let (lambda_a, lambda_b, lambda_idt) = (cfg.cycle_weight, cfg.cycle_weight, cfg.lambda_identity);

        // forward(): translations and cycles.
        let fake_b = gen_a.forward(real_a)?.out;
        let rec_a = gen_b.forward(&fake_b)?.out;
        let fake_a = gen_b.forward(real_b)?.out;
        let rec_b = gen_a.forward(&fake_a)?.out;

        // backward_G(), the discriminators frozen (only the generators' gradients are asked for).
        let (loss_idt_a, loss_idt_b) = if lambda_idt > 0.0 {
            let idt_a = gen_a.forward(real_b)?.out;
            let idt_b = gen_b.forward(real_a)?.out;
            (
                l1(&idt_a, real_b)?.f_mul_scalar(lambda_b)?.f_mul_scalar(lambda_idt)?,
                l1(&idt_b, real_a)?.f_mul_scalar(lambda_a)?.f_mul_scalar(lambda_idt)?,
            )
        } else {
            (real_a.f_zeros_like()?.f_sum(None)?, real_a.f_zeros_like()?.f_sum(None)?)
        };
        let loss_g_a = mse_to(&dis_a.forward(&fake_b)?.out, 1.0)?;
        let loss_g_b = mse_to(&dis_b.forward(&fake_a)?.out, 1.0)?;
        let loss_cycle_a = l1(&rec_a, real_a)?.f_mul_scalar(lambda_a)?;
        let loss_cycle_b = l1(&rec_b, real_b)?.f_mul_scalar(lambda_b)?;
        let loss_g = loss_g_a
            .f_add(&loss_g_b)?
            .f_add(&loss_cycle_a)?
            .f_add(&loss_cycle_b)?
            .f_add(&loss_idt_a)?
            .f_add(&loss_idt_b)?;
        // No graph although a generator parameter is trainable (all frozen: nothing to do).
        if !loss_g.requires_grad() && self.g_optim.params().iter().any(Tensor::requires_grad) {
            return Err(Error::Config(
                "the generator loss has no autograd graph: Trainer.step cannot run under torch.inference_mode()".into(),
            ));
        }
        let mut g_grads = Gradient::of(&loss_g, self.g_optim.params())?;
        if let Some(reduce) = reduce.as_mut() {
            g_grads = Gradient::through_hook(g_grads, &self.g_optim, *reduce)?;
        }
        self.g_optim.step(&g_grads)?;
        drop(g_grads);

        // backward_D_A(), backward_D_B(): real vs pooled fakes (from before the G update).
        let pooled_b = self.pools[0].query(&fake_b)?;
        let loss_d_a = mse_to(&dis_a.forward(real_b)?.out, 1.0)?
            .f_add(&mse_to(&dis_a.forward(&pooled_b)?.out, 0.0)?)?
            .f_mul_scalar(0.5)?;
        let pooled_a = self.pools[1].query(&fake_a)?;
        let loss_d_b = mse_to(&dis_b.forward(real_a)?.out, 1.0)?
            .f_add(&mse_to(&dis_b.forward(&pooled_a)?.out, 0.0)?)?
            .f_mul_scalar(0.5)?;
        let loss_d = loss_d_a.f_add(&loss_d_b)?;
        let mut d_grads = Gradient::of(&loss_d, self.d_optim.params())?;
        if let Some(reduce) = reduce.as_mut() {
            d_grads = Gradient::through_hook(d_grads, &self.d_optim, *reduce)?;
        }
        self.d_optim.step(&d_grads)?;
        self.step = step;

        let values = [
            ("d_loss", &loss_d),
            ("g_loss", &loss_g),
            ("D_A", &loss_d_a),
            ("G_A", &loss_g_a),
            ("cycle_A", &loss_cycle_a),
            ("idt_A", &loss_idt_a),
            ("D_B", &loss_d_b),
            ("G_B", &loss_g_b),
            ("cycle_B", &loss_cycle_b),
            ("idt_B", &loss_idt_b),
        ]
        .into_iter()
        .map(|(name, t)| Ok((name, t.f_detach()?)))
        .collect::<Result<Vec<_>>>()?;
        Ok(StepLosses { values, lr })
    }
}
