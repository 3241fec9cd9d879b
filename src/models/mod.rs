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
