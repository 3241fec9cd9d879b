//! `Discriminator(input_nc, ndf, n_layers)` (SPEC §2): spectral-normalised PatchGAN with a CAM
//! module. `n_layers=7` is the global discriminator, 5 the local one.

use super::input::check_image_batch;
use super::{Network, Output};
use crate::config::DiscriminatorConfig;
use crate::nn::layers::{leaky_relu, reflection_pad, Conv2d};
use crate::nn::spectral_norm::SpectralNorm;
use crate::nn::store::{Init, Path};
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Tensor};

const SLOPE: f64 = 0.2;

/// `spectral_norm(nn.Conv2d(c_in, c_out, 4, stride, padding=0, bias))`. The official state
/// dict lists `bias` before `weight_orig`, `weight_u`, `weight_v`.
struct SnConv2d {
    bias: Option<Tensor>,
    sn: SpectralNorm,
    stride: i64,
}

impl SnConv2d {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, bias: bool) -> Result<Self> {
        let fan_in = c_in * 16;
        let bias = match bias {
            true => Some(p.param("bias", &[c_out], Init::pytorch_bias(fan_in))?),
            false => None,
        };
        let sn = SpectralNorm::new(p, &[c_out, c_in, 4, 4], Init::pytorch_weight(fan_in))?;
        Ok(Self { bias, sn, stride })
    }

    /// `conv(x, weight_orig / sigma) + bias`. Convolution is linear in the weight, so when the
    /// weight has more elements than the output, `conv(x, weight_orig) / sigma + bias` computes
    /// the same thing (to float rounding) at a fraction of the cost, forward and backward.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let size = x.size();
        let out_h = (size[2] - 4) / self.stride + 1;
        let out_w = (size[3] - 4) / self.stride + 1;
        let weight_numel = self.sn.weight_orig.numel() as i64;
        let out_numel = size[0] * self.sn.weight_orig.size()[0] * out_h * out_w;
        if weight_numel > out_numel {
            let sigma = self.sn.sigma(training)?;
            let out =
                x.f_conv2d::<Tensor>(&self.sn.weight_orig, None, [self.stride; 2], [0, 0], [1, 1], 1)?.f_div(&sigma)?;
            match &self.bias {
                Some(bias) => Ok(out.f_add(&bias.f_view_([1, -1, 1, 1])?)?),
                None => Ok(out),
            }
        } else {
            let weight = self.sn.weight(training)?;
            Ok(x.f_conv2d(&weight, self.bias.as_ref(), [self.stride; 2], [0, 0], [1, 1], 1)?)
        }
    }
}

/// `spectral_norm(nn.Linear(c, 1, bias=False))`, one per pooling branch of the CAM.
struct SnLinear {
    sn: SpectralNorm,
}

impl SnLinear {
    fn new(p: &Path, c_in: i64, c_out: i64) -> Result<Self> {
        Ok(Self { sn: SpectralNorm::new(p, &[c_out, c_in], Init::pytorch_weight(c_in))? })
    }

    /// `x @ (weight_orig / sigma)ᵀ`, computed as `(x @ weight_origᵀ) / sigma`: the output
    /// (B, 1) is far smaller than the weight.
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let sigma = self.sn.sigma(training)?;
        Ok(x.f_linear::<Tensor>(&self.sn.weight_orig, None)?.f_div(&sigma)?)
    }

    /// The attention re-weighting uses the *un-normalised* `weight_orig`, because the official
    /// code reads `list(gap_fc.parameters())[0]` (SPEC §2.1, §7.2).
    fn channel_weights(&self) -> Result<Tensor> {
        Ok(self.sn.weight_orig.f_unsqueeze(2)?.f_unsqueeze(3)?)
    }
}

pub struct Discriminator {
    config: DiscriminatorConfig,
    store: ParamStore,
    training: bool,
    gap_fc: SnLinear,
    gmp_fc: SnLinear,
    conv1x1: Conv2d,
    conv: SnConv2d,
    model: Vec<SnConv2d>,
}

impl Discriminator {
    /// Builds a freshly initialised discriminator; tensors are registered in the official order
    /// (gap_fc, gmp_fc, conv1x1, conv, model.*).
    pub fn new(config: DiscriminatorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::new(device);
        let root = store.root();
        let ndf = config.ndf;
        let c = config.cam_channels();

        let gap_fc = SnLinear::new(&(&root / "gap_fc"), c, 1)?;
        let gmp_fc = SnLinear::new(&(&root / "gmp_fc"), c, 1)?;
        let conv1x1 = Conv2d::new(&(&root / "conv1x1"), 2 * c, c, 1, 1, true)?;
        let conv = SnConv2d::new(&(&root / "conv"), c, 1, 1, false)?;

        // model: [RP, SN-conv, LeakyReLU] triples, so the convs sit at indices 1, 4, 7, ...
        let model_path = &root / "model";
        let mut model = vec![SnConv2d::new(&(&model_path / 1), config.input_nc, ndf, 2, true)?];
        for i in 1..config.n_layers - 2 {
            let mult = 1 << (i - 1);
            model.push(SnConv2d::new(&(&model_path / (3 * i + 1)), ndf * mult, ndf * mult * 2, 2, true)?);
        }
        let mult = 1 << (config.n_layers - 3);
        let last = 3 * (config.n_layers - 2) + 1;
        model.push(SnConv2d::new(&(&model_path / last), ndf * mult, ndf * mult * 2, 1, true)?);

        Ok(Self { config, store, training: true, gap_fc, gmp_fc, conv1x1, conv, model })
    }

    pub fn config(&self) -> &DiscriminatorConfig {
        &self.config
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (h, w) = check_image_batch(x, "Discriminator", self.config.input_nc, self.device())?;
        if !self.config.accepts(h) || !self.config.accepts(w) {
            let min = self.config.min_input_size();
            return Err(Error::shape(format!(
                "a Discriminator with n_layers={} needs images of at least {min}x{min} \
                 (every reflection-padded feature map must be 2 or wider), got {h}x{w}",
                self.config.n_layers
            )));
        }
        Ok(())
    }

    fn forward_impl(&self, input: &Tensor) -> Result<Output> {
        self.check_input(input)?;
        let train = self.training;
        let batch = input.size()[0];
        let mut x = input.shallow_clone();
        for conv in &self.model {
            x = leaky_relu(&conv.forward(&reflection_pad(&x, 1)?, train)?, SLOPE)?;
        }

        let gap = x.f_adaptive_avg_pool2d([1, 1])?;
        let gap_logit = self.gap_fc.forward(&gap.f_reshape([batch, -1])?, train)?;
        let gap = x.f_mul(&self.gap_fc.channel_weights()?)?;
        let (gmp, _) = x.f_adaptive_max_pool2d([1, 1])?;
        let gmp_logit = self.gmp_fc.forward(&gmp.f_reshape([batch, -1])?, train)?;
        let gmp = x.f_mul(&self.gmp_fc.channel_weights()?)?;
        let cam_logit = Tensor::f_cat(&[gap_logit, gmp_logit], 1)?;

        let x = leaky_relu(&self.conv1x1.forward(&Tensor::f_cat(&[gap, gmp], 1)?)?, SLOPE)?;
        let heatmap = x.f_sum_dim_intlist(&[1i64][..], true, None)?;
        let out = self.conv.forward(&reflection_pad(&x, 1)?, train)?;
        Ok(Output { out, cam_logit, heatmap })
    }
}

impl Network for Discriminator {
    const NAME: &'static str = "Discriminator";

    fn store(&self) -> &ParamStore {
        &self.store
    }

    fn store_mut(&mut self) -> &mut ParamStore {
        &mut self.store
    }

    fn is_training(&self) -> bool {
        self.training
    }

    /// Train mode runs one spectral-norm power iteration per forward (updating `weight_u` and `weight_v`); eval mode uses them as stored.
    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn forward(&self, input: &Tensor) -> Result<Output> {
        self.forward_impl(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Network;
    use tch::Kind;

    #[test]
    fn official_layout_and_counts() {
        let global = Discriminator::new(DiscriminatorConfig::default(), Device::Cpu).unwrap();
        assert_eq!(global.named_tensors().len(), 35);
        assert_eq!(global.store().num_parameters(), 53_130_176);
        let local = Discriminator::new(DiscriminatorConfig { n_layers: 5, ..Default::default() }, Device::Cpu).unwrap();
        assert_eq!(local.named_tensors().len(), 27);
        assert_eq!(local.store().num_parameters(), 3_290_560);
        let names: Vec<_> = local.named_tensors().into_iter().map(|v| v.name).collect();
        assert_eq!(&names[..3], ["gap_fc.weight_orig", "gap_fc.weight_u", "gap_fc.weight_v"]);
        assert!(names.contains(&"model.10.weight_v".to_string()));
    }

    #[test]
    fn output_shapes_and_size_check() {
        let cfg = DiscriminatorConfig { ndf: 4, n_layers: 7, input_nc: 3 };
        let d = Discriminator::new(cfg, Device::Cpu).unwrap();
        let x = Tensor::randn([2, 3, 128, 128], (Kind::Float, Device::Cpu));
        let o = d.forward(&x).unwrap();
        assert_eq!(o.out.size(), [2, 1, 2, 2]);
        assert_eq!(o.cam_logit.size(), [2, 2]);
        assert_eq!(o.heatmap.size(), [2, 1, 3, 3]);
        let small = Tensor::randn([1, 3, 64, 64], (Kind::Float, Device::Cpu));
        let err = d.forward(&small).err().unwrap().to_string();
        assert!(err.contains("96x96"), "{err}");
    }
}
