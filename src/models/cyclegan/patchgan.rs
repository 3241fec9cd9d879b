//! CycleGAN's PatchGAN (`NLayerDiscriminator`): 4x4 convs with padding 1 — a stride-2 one with
//! leaky ReLU, `n_layers - 1` stride-2 ones and one stride-1 one with instance norm and leaky
//! ReLU (channels doubling up to 8·ndf), then a stride-1 conv to one logit per patch.

use crate::config::PatchDiscriminatorConfig;
use crate::models::input::check_image_batch;
use crate::models::{Network, Output};
use crate::nn::layers::{leaky_relu, Conv2d, ConvConfig};
use crate::nn::norm::instance_norm;
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Tensor};

const SLOPE: f64 = 0.2;

pub struct PatchDiscriminator {
    config: PatchDiscriminatorConfig,
    store: ParamStore,
    training: bool,
    first: Conv2d,
    /// The normalised convolutions (stride 2, then the last one stride 1).
    normed: Vec<Conv2d>,
    logit: Conv2d,
}

impl PatchDiscriminator {
    pub fn new(config: PatchDiscriminatorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::sized(device, config.min_parameters(), "PatchDiscriminator")?;
        let model = store.root() / "model";
        let (ndf, n) = (config.ndf, config.n_layers);
        let stride2 = ConvConfig { stride: 2, padding: 1, bias: true };
        let stride1 = ConvConfig { stride: 1, padding: 1, bias: true };
        // `model` positions: 0 conv, 1 LReLU, then [conv, IN, LReLU] per normalised layer.
        let first = Conv2d::new(&(&model / 0), config.input_nc, ndf, 4, stride2)?;
        let mult = |k: i64| (1i64 << k.min(3)) * ndf; // min(2^k, 8) * ndf
        let mut normed = Vec::new();
        for k in 1..=n {
            let position = 2 + 3 * (k - 1);
            let conv_config = if k < n { stride2 } else { stride1 };
            normed.push(Conv2d::new(&(&model / position), mult(k - 1), mult(k), 4, conv_config)?);
        }
        let logit = Conv2d::new(&(&model / (2 + 3 * n)), mult(n), 1, 4, stride1)?;
        super::init_normal(&store, 0.02)?;
        Ok(Self { config, store, training: true, first, normed, logit })
    }

    pub fn config(&self) -> &PatchDiscriminatorConfig {
        &self.config
    }
}

impl Network for PatchDiscriminator {
    const NAME: &'static str = "PatchDiscriminator";

    /// The first convolution has stride 2 (`ndf` channels over a quarter of the pixels); an
    /// eighth of `ndf` keeps the estimate below the measured peaks (`check_forward_memory`).
    fn feature_channels(&self) -> f64 {
        self.config.ndf as f64 / 8.0
    }
    crate::models::store_and_mode_accessors!();

    /// One logit per patch, `(B, 1, h, w)`; no attention outputs.
    fn forward(&self, input: &Tensor) -> Result<Output> {
        let (h, w) = check_image_batch(input, "PatchGAN discriminator", self.config.input_nc, self.device())?;
        let min = self.config.min_input_size();
        if h < min || w < min {
            return Err(Error::shape(format!(
                "this PatchGAN (n_layers={}) needs images of at least {min}x{min}, got {h}x{w}",
                self.config.n_layers
            )));
        }
        let mut x = leaky_relu(&self.first.forward(input)?, SLOPE)?;
        for conv in &self.normed {
            x = leaky_relu(&instance_norm(&conv.forward(&x)?)?, SLOPE)?;
        }
        Ok(Output::image_only(self.logit.forward(&x)?))
    }
}
