//! The class-activation-map (CAM) attention module shared by the generator and the
//! discriminator (docs/architecture.md §1, §3): two bias-free FCs score the average- and
//! max-pooled features (the CAM logits); their raw weights re-weight the feature map's channels;
//! the two re-weighted maps are concatenated and reduced by a 1x1 conv and an activation; the
//! heatmap is the channel sum of the result.

use super::layers::{leaky_relu, Conv2d, ConvConfig, Linear};
use super::spectral_norm::{Passes, SnLinear};
use super::store::Path;
use crate::Result;
use tch::Tensor;

/// What scores a pooled feature vector: a plain `Linear` (generator) or a spectral-normalised
/// one (discriminator).
pub trait CamScorer: Sized {
    fn build(p: &Path, channels: i64) -> Result<Self>;
    /// The logit of a pooled (B, C) vector.
    fn logit(&self, pooled: &Tensor, training: bool, passes: Passes) -> Result<Tensor>;
    /// The (1, C) weight that re-weights the channels: the *raw* weight, also under spectral
    /// norm (the official code reads `parameters()[0]`, which is then `weight_orig`).
    fn channel_weight(&self) -> &Tensor;
}

impl CamScorer for Linear {
    fn build(p: &Path, channels: i64) -> Result<Self> {
        Linear::new(p, channels, 1)
    }

    fn logit(&self, pooled: &Tensor, _training: bool, _passes: Passes) -> Result<Tensor> {
        self.forward(pooled)
    }

    fn channel_weight(&self) -> &Tensor {
        &self.weight
    }
}

impl CamScorer for SnLinear {
    fn build(p: &Path, channels: i64) -> Result<Self> {
        SnLinear::new(p, channels, 1)
    }

    fn logit(&self, pooled: &Tensor, training: bool, passes: Passes) -> Result<Tensor> {
        self.forward(pooled, training, passes)
    }

    fn channel_weight(&self) -> &Tensor {
        &self.sn.weight_orig
    }
}

/// The activation after `conv1x1`: ReLU in the generator, LeakyReLU(0.2) in the discriminator.
#[derive(Debug, Clone, Copy)]
pub enum Activation {
    Relu,
    LeakyRelu(f64),
}

/// `gap_fc`, `gmp_fc` and `conv1x1` (registered in that order, as in the official modules).
pub struct Cam<F: CamScorer> {
    pub gap_fc: F,
    pub gmp_fc: F,
    pub conv1x1: Conv2d,
    activation: Activation,
}

/// The CAM's outputs: the attention feature map, the logits (B, 2) and the heatmap (B, 1, h, w).
pub struct CamOutput {
    pub features: Tensor,
    pub cam_logit: Tensor,
    pub heatmap: Tensor,
}

impl<F: CamScorer> Cam<F> {
    pub fn new(p: &Path, channels: i64, activation: Activation) -> Result<Self> {
        Ok(Self {
            gap_fc: F::build(&(p / "gap_fc"), channels)?,
            gmp_fc: F::build(&(p / "gmp_fc"), channels)?,
            conv1x1: Conv2d::new(&(p / "conv1x1"), 2 * channels, channels, 1, ConvConfig::default())?,
            activation,
        })
    }

    /// Shapes stay symbolic (flatten, not a reshape to a Rust-side batch size), so a traced graph
    /// of the network keeps a dynamic batch and image size.
    pub fn forward(&self, x: &Tensor, training: bool, passes: Passes) -> Result<CamOutput> {
        let reweight =
            |fc: &F| -> Result<Tensor> { Ok(x.f_mul(&fc.channel_weight().f_unsqueeze(2)?.f_unsqueeze(3)?)?) };
        let gap = x.f_adaptive_avg_pool2d([1, 1])?;
        let gap_logit = self.gap_fc.logit(&gap.f_flatten(1, -1)?, training, passes)?;
        let gap = reweight(&self.gap_fc)?;
        let (gmp, _) = x.f_adaptive_max_pool2d([1, 1])?;
        let gmp_logit = self.gmp_fc.logit(&gmp.f_flatten(1, -1)?, training, passes)?;
        let gmp = reweight(&self.gmp_fc)?;
        let cam_logit = Tensor::f_cat(&[gap_logit, gmp_logit], 1)?;
        let reduced = self.conv1x1.forward(&Tensor::f_cat(&[gap, gmp], 1)?)?;
        let features = match self.activation {
            Activation::Relu => reduced.f_relu()?,
            Activation::LeakyRelu(slope) => leaky_relu(&reduced, slope)?,
        };
        let heatmap = features.f_sum_dim_intlist(&[1i64][..], true, None)?;
        Ok(CamOutput { features, cam_logit, heatmap })
    }
}
