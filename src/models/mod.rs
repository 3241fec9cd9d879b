//! The official U-GAT-IT networks: `ResnetGenerator` and `Discriminator` (docs/architecture.md §1, §3).

pub mod cyclegan;
pub mod discriminator;
pub mod exported;
pub mod generator;
pub mod input;
pub mod tf_variant;

pub use discriminator::Discriminator;
pub use exported::ExportedGenerator;
pub use generator::Generator;

use crate::config::{DiscriminatorConfig, GeneratorConfig};
use crate::nn::recorded_linear::LinearCalls;
use crate::nn::{ParamStore, Var};
use crate::Result;
use tch::{Device, Tensor};

/// What both networks return: the image (or patch logits), the CAM logits (B, 2) and the
/// attention heatmap (B, 1, h, w).
pub struct Output {
    pub out: Tensor,
    pub cam_logit: Tensor,
    pub heatmap: Tensor,
}

impl Output {
    /// The output of a network without attention (CycleGAN's): empty CAM logits and heatmap.
    pub fn image_only(out: Tensor) -> Self {
        let empty = || Tensor::empty([0], (tch::Kind::Float, out.device()));
        Self { cam_logit: empty(), heatmap: empty(), out }
    }

    /// The output in float32: networks return float32 whatever the compute kind
    /// (`crate::nn::compute`).
    pub fn full(self) -> Result<Self> {
        use crate::nn::compute::full;
        Ok(Self { out: full(&self.out)?, cam_logit: full(&self.cam_logit)?, heatmap: full(&self.heatmap)? })
    }

    /// Splits the output of a concatenated batch into its first `n` images and the rest (views).
    pub fn split_batch(self, n: i64) -> Result<(Output, Output)> {
        let part = |t: &Tensor, first: bool| -> Result<Tensor> {
            let total = t.size()[0];
            Ok(if first { t.f_narrow(0, 0, n)? } else { t.f_narrow(0, n, total - n)? })
        };
        Ok((
            Output {
                out: part(&self.out, true)?,
                cam_logit: part(&self.cam_logit, true)?,
                heatmap: part(&self.heatmap, true)?,
            },
            Output {
                out: part(&self.out, false)?,
                cam_logit: part(&self.cam_logit, false)?,
                heatmap: part(&self.heatmap, false)?,
            },
        ))
    }
}

/// The four [`Network`] accessors of a network struct whose parameter store is its `store` field
/// and whose train/eval flag is its `training` field (every network here), for its
/// `impl Network` block.
macro_rules! store_and_mode_accessors {
    () => {
        fn store(&self) -> &$crate::nn::ParamStore {
            &self.store
        }

        fn store_mut(&mut self) -> &mut $crate::nn::ParamStore {
            &mut self.store
        }

        fn is_training(&self) -> bool {
            self.training
        }

        fn set_training(&mut self, training: bool) {
            self.training = training;
        }
    };
}
pub(crate) use store_and_mode_accessors;

/// What the generator and the discriminator share as modules: a parameter store, a train/eval
/// flag and a forward pass returning [`Output`].
pub trait Network: Send {
    /// The class name used in messages ("Generator", "Discriminator").
    const NAME: &'static str;
    /// Channels of the feature maps at the input's resolution, what a forward's memory scales
    /// with ([`check_forward_memory`]).
    fn feature_channels(&self) -> f64;
    fn store(&self) -> &ParamStore;
    fn store_mut(&mut self) -> &mut ParamStore;
    fn is_training(&self) -> bool;
    fn set_training(&mut self, training: bool);
    fn forward(&self, input: &Tensor) -> Result<Output>;

    fn device(&self) -> Device {
        self.store().device()
    }

    /// Every tensor under its official state-dict name, in official order.
    fn named_tensors(&self) -> Vec<Var> {
        self.store().vars()
    }
}

/// Refuses a CPU forward whose activations cannot fit in the memory this machine has available
/// (`Error::OutOfMemory`, Python `MemoryError`), before anything is allocated: with memory
/// overcommit the process would otherwise be killed in the middle of it. The estimate is a lower
/// one, so nothing that fits is refused. Measured peaks of a forward, in units of the batch's
/// pixels × `feature_channels` × 4 bytes (CPU, 256 px): U-GAT-IT's generator 12-13 without
/// autograd (40-60 with the backward), TensorFlow's 9.6 / 50 (forward only), CycleGAN's 6.1 /
/// 26.6, the discriminators 1.0-1.5 / 2-5; this takes 4, and 8 while autograd records.
pub fn check_forward_memory<N: Network>(network: &N, input: &Tensor) -> Result<()> {
    let units = if grad_enabled() { 8.0 } else { 4.0 };
    check_activation_memory(network, input, units, || format!("a {} forward", N::NAME))
}

/// [`check_forward_memory`] for a whole training step with `generator` on `batch`: measured
/// peaks are 205 units (U-GAT-IT, light, 256 px) and 92 (CycleGAN); this takes 40.
pub fn check_step_memory<N: Network>(generator: &N, batch: &Tensor) -> Result<()> {
    check_activation_memory(generator, batch, 40.0, || "a training step".to_string())
}

fn check_activation_memory<N: Network>(
    network: &N,
    input: &Tensor,
    units: f64,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if input.device() != Device::Cpu || input.dim() != 4 {
        return Ok(()); // a CUDA allocation fails cleanly; other ranks are refused by the forward
    }
    let size = input.size();
    let pixels = size[0].max(0) as f64 * size[2].max(0) as f64 * size[3].max(0) as f64;
    let bytes = pixels * network.feature_channels() * 4.0 * units;
    // `as` saturates: an estimate beyond u64 is refused like any other too large.
    crate::error::check_host_memory(bytes as u64, || format!("{} on a batch of shape {size:?}", what()))
}

/// Whether autograd records on this thread (libtorch's thread-local grad mode; tch has no getter).
fn grad_enabled() -> bool {
    // SAFETY: sets the thread-local flag and puts the previous value straight back.
    unsafe {
        let previous = torch_sys::at_grad_set_enabled(1);
        torch_sys::at_grad_set_enabled(previous);
        previous != 0
    }
}

/// A U-GAT-IT generator as the trainer builds and trains it: the PyTorch network
/// ([`Generator`]) or the TensorFlow release's ([`tf_variant::TfGenerator`]).
pub trait UgatitGenerator: Network + Sized {
    /// `TrainConfig::variant` of this network: "pytorch" or "tf".
    const VARIANT: &'static str;
    fn build(config: GeneratorConfig, device: Device) -> Result<Self>;
    /// Every rho, clamped to [0, 1] after each update.
    fn rhos(&self) -> Vec<&Tensor>;

    /// Starts or stops recording the calls of the layers whose weight gradient the trainer
    /// leaves to the optimizer as factors (`crate::nn::recorded_linear`); none by default.
    fn record_linear_calls(&self, _on: bool) {}

    /// The calls recorded so far, one entry per recorded layer.
    fn take_linear_calls(&self) -> Vec<LinearCalls> {
        Vec::new()
    }

    /// `(forward(first), forward(second))` in one batched call: the same per-image result
    /// (every layer works per image) with half the calls.
    fn forward_pair(&self, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
        forward_concatenated(self, first, second)
    }
}

/// `net` over `first` and `second` concatenated along the batch, split back into two outputs.
pub(crate) fn forward_concatenated<N: Network>(net: &N, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
    let both = Tensor::f_cat(&[first.shallow_clone(), second.shallow_clone()], 0)?;
    net.forward(&both)?.split_batch(first.size()[0])
}

/// A U-GAT-IT discriminator as the trainer builds it (either variant).
pub trait UgatitDiscriminator: Network + Sized {
    fn build(config: DiscriminatorConfig, device: Device) -> Result<Self>;

    /// `(forward(first), forward(second))`, in that order (in training mode, two power
    /// iterations). Networks that can batch the two calls exactly do so.
    fn forward_twice(&self, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
        Ok((self.forward(first)?, self.forward(second)?))
    }
}

impl UgatitGenerator for Generator {
    const VARIANT: &'static str = "pytorch";
    fn build(config: GeneratorConfig, device: Device) -> Result<Self> {
        Generator::new(config, device)
    }
    fn rhos(&self) -> Vec<&Tensor> {
        Generator::rhos(self)
    }
    fn record_linear_calls(&self, on: bool) {
        Generator::record_linear_calls(self, on)
    }
    fn take_linear_calls(&self) -> Vec<LinearCalls> {
        Generator::take_linear_calls(self)
    }
    fn forward_pair(&self, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
        Generator::forward_pair(self, first, second)
    }
}

impl UgatitGenerator for tf_variant::TfGenerator {
    const VARIANT: &'static str = "tf";
    fn build(config: GeneratorConfig, device: Device) -> Result<Self> {
        tf_variant::TfGenerator::new(config, device)
    }
    fn rhos(&self) -> Vec<&Tensor> {
        tf_variant::TfGenerator::rhos(self)
    }
}

impl UgatitDiscriminator for Discriminator {
    fn build(config: DiscriminatorConfig, device: Device) -> Result<Self> {
        Discriminator::new(config, device)
    }
    fn forward_twice(&self, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
        Discriminator::forward_twice(self, first, second)
    }
}

impl UgatitDiscriminator for tf_variant::TfDiscriminator {
    fn build(config: DiscriminatorConfig, device: Device) -> Result<Self> {
        tf_variant::TfDiscriminator::new(config, device)
    }
}

#[cfg(test)]
mod tests {
    use super::cyclegan::{CycleGenerator, PatchDiscriminator};
    use super::tf_variant::{TfDiscriminator, TfGenerator};
    use super::*;
    use crate::config::{CycleGeneratorConfig, PatchDiscriminatorConfig};

    /// `min_parameters` (the up-front memory check) is a lower bound, and a tight enough one to
    /// catch what matters: within 2× of the real count for all but the tiniest widths.
    #[test]
    fn min_parameters_bound_the_real_counts() {
        let check = |what: &str, bound: f64, real: i64, tight: bool| {
            assert!(bound <= real as f64, "{what}: bound {bound} above the real {real}");
            assert!(!tight || 2.0 * bound >= real as f64, "{what}: bound {bound} far below the real {real}");
        };
        for (ngf, n_blocks, img_size, light) in
            [(16, 4, 128, false), (32, 4, 256, true), (8, 2, 32, false), (4, 1, 16, true)]
        {
            let cfg = GeneratorConfig { ngf, n_blocks, img_size, light, ..Default::default() };
            let tight = ngf >= 16;
            let g = Generator::new(cfg.clone(), Device::Cpu).unwrap();
            check(&format!("{cfg:?}"), cfg.min_parameters(), g.store().num_parameters(), tight);
            if n_blocks == 4 {
                let tf = TfGenerator::new(cfg.clone(), Device::Cpu).unwrap();
                check(&format!("tf {cfg:?}"), cfg.min_parameters(), tf.store().num_parameters(), tight);
            }
        }
        for (ndf, n_layers) in [(16, 7), (16, 5), (4, 3), (2, 12)] {
            let cfg = DiscriminatorConfig { ndf, n_layers, ..Default::default() };
            let tight = ndf >= 16;
            let d = Discriminator::new(cfg.clone(), Device::Cpu).unwrap();
            check(&format!("{cfg:?}"), cfg.min_parameters(), d.store().num_parameters(), tight);
            let tf = TfDiscriminator::new(cfg.clone(), Device::Cpu).unwrap();
            check(&format!("tf {cfg:?}"), cfg.min_parameters(), tf.store().num_parameters(), false);
        }
        for (ngf, n_blocks) in [(16, 9), (32, 6), (4, 1)] {
            let cfg = CycleGeneratorConfig { ngf, n_blocks, ..Default::default() };
            let g = CycleGenerator::new(cfg.clone(), Device::Cpu).unwrap();
            check(&format!("{cfg:?}"), cfg.min_parameters(), g.store().num_parameters(), ngf >= 16);
        }
        for (ndf, n_layers) in [(32, 3), (64, 1), (8, 5)] {
            let cfg = PatchDiscriminatorConfig { ndf, n_layers, ..Default::default() };
            let d = PatchDiscriminator::new(cfg.clone(), Device::Cpu).unwrap();
            check(&format!("{cfg:?}"), cfg.min_parameters(), d.store().num_parameters(), ndf == 32);
        }
    }

    #[test]
    fn a_network_beyond_the_machine_is_refused_before_allocating() {
        let cfg = GeneratorConfig { ngf: 4096, n_blocks: 256, light: true, ..Default::default() };
        let start = std::time::Instant::now();
        let err = Generator::new(cfg, Device::Cpu).err().expect("2.5 TB of parameters");
        assert!(matches!(err, crate::Error::OutOfMemory(_)) && err.to_string().contains("this Generator"), "{err}");
        assert!(start.elapsed().as_secs_f64() < 1.0, "refused up front, not after filling the memory");
    }
}
