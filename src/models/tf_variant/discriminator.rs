//! The TensorFlow release's discriminator branch (`discriminator_local` / `discriminator_global`):
//! `n_layers - 2` spectrally normalised stride-2 convs, a stride-1 one (`conv_last`), the CAM, a
//! 1x1 conv and the stride-1 logit conv (`D_logit`). `n_layers` follows the PyTorch convention
//! (7 global, 5 local), which is the release's `--n_dis 6`.

use super::layers::{Conv, SnConv, SpectralNorm};
use crate::config::DiscriminatorConfig;
use crate::models::input::check_image_batch;
use crate::models::{Network, Output};
use crate::nn::store::Init;
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

const SLOPE: f64 = 0.2;

pub struct TfDiscriminator {
    config: DiscriminatorConfig,
    store: ParamStore,
    training: bool,
    /// `model.0` ... : the strided convs, then `conv_last`.
    convs: Vec<SnConv>,
    cam_fc: (SpectralNorm, Tensor),
    conv1x1: Conv,
    logit: SnConv,
}

impl TfDiscriminator {
    pub fn new(config: DiscriminatorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::sized(device, config.min_parameters(), "Discriminator")?;
        let root = store.root();
        let (ndf, strided) = (config.ndf, config.n_layers - 2);
        let model = &root / "model";
        let mut convs = vec![SnConv::new(&(&model / 0), config.input_nc, ndf, 2)?];
        for i in 1..strided {
            convs.push(SnConv::new(&(&model / i), ndf << (i - 1), ndf << i, 2)?);
        }
        convs.push(SnConv::new(&(&model / strided), ndf << (strided - 1), ndf << strided, 1)?);
        let c = ndf << strided;
        let cam_path = &root / "cam_fc";
        let cam_bias = cam_path.param("bias", &[1], Init::Const(0.0))?;
        let cam_fc = (SpectralNorm::new(&cam_path, &[1, c])?, cam_bias);
        let conv1x1 = Conv::new(&(&root / "conv1x1"), 2 * c, c, 1, 1, 0)?;
        let logit = SnConv::new(&(&root / "conv"), c, 1, 1)?;
        Ok(Self { config, store, training: true, convs, cam_fc, conv1x1, logit })
    }

    pub fn config(&self) -> &DiscriminatorConfig {
        &self.config
    }

    /// The smallest square input: every reflect padding must be smaller than its feature map.
    pub fn min_input_size(&self) -> i64 {
        (2..4096).find(|&s| self.accepts(s)).unwrap_or(4096)
    }

    fn accepts(&self, mut size: i64) -> bool {
        for _ in 0..self.config.n_layers - 2 {
            if size < 2 {
                return false;
            }
            size = (size + 2 - 4) / 2 + 1;
        }
        size >= 3 // conv_last and D_logit pad 2 below/right and keep the size
    }
}

impl Network for TfDiscriminator {
    const NAME: &'static str = "Discriminator";

    /// The first convolution has stride 2 (`ndf` channels over a quarter of the pixels); an
    /// eighth of `ndf` keeps the estimate below the measured peaks (`check_forward_memory`).
    fn feature_channels(&self) -> f64 {
        self.config.ndf as f64 / 8.0
    }
    // In training mode every call advances each `u` by one power iteration (as the release's
    // every call does); in eval mode the iteration's result is used without being stored.
    crate::models::store_and_mode_accessors!();

    fn forward(&self, input: &Tensor) -> Result<Output> {
        let (h, w) = check_image_batch(input, "Discriminator", self.config.input_nc, self.device())?;
        let min = self.min_input_size();
        if h < min || w < min {
            return Err(Error::shape(format!(
                "this TensorFlow-variant Discriminator (n_layers={}) needs images of at least {min}x{min}, got {h}x{w}",
                self.config.n_layers
            )));
        }
        let update = self.training;
        let mut x = input.shallow_clone();
        for conv in &self.convs {
            x = leaky(&conv.forward(&x, update)?)?;
        }
        // CAM: the logit through the normalised kernel; the features weighted by the raw one.
        let (sn, bias) = &self.cam_fc;
        let sigma = sn.sigma(update)?;
        let score = |pooled: Tensor| -> Result<Tensor> {
            Ok(pooled.f_linear::<Tensor>(&sn.weight_orig, None)?.f_div(&sigma)?.f_add(bias)?)
        };
        let gap = x.f_mean_dim(&[2i64, 3][..], false, Kind::Float)?;
        let gmp = x.f_amax(&[2i64, 3][..], false)?;
        let cam_logit = Tensor::f_cat(&[score(gap)?, score(gmp)?], 1)?;
        let weighted = x.f_mul(&sn.weight_orig.f_add(bias)?.f_view([1, -1, 1, 1])?)?;
        let x = leaky(&self.conv1x1.forward(&Tensor::f_cat(&[&weighted, &weighted], 1)?)?)?;
        let heatmap = x.f_sum_dim_intlist(&[1i64][..], true, Kind::Float)?;
        let out = self.logit.forward(&x, update)?;
        Ok(Output { out, cam_logit, heatmap })
    }
}

fn leaky(x: &Tensor) -> Result<Tensor> {
    crate::nn::layers::leaky_relu(x, SLOPE)
}
