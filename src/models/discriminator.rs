//! `Discriminator(input_nc, ndf, n_layers)` (docs/architecture.md §3): spectral-normalised PatchGAN with a CAM
//! module. `n_layers=7` is the global discriminator, 5 the local one.

use super::input::check_image_batch;
use super::{Network, Output};
use crate::config::DiscriminatorConfig;
use crate::nn::cam::{Activation, Cam};
use crate::nn::layers::{leaky_relu, reflection_pad, ConvConfig};
use crate::nn::spectral_norm::{Passes, SnConv2d, SnLinear};
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Tensor};

const SLOPE: f64 = 0.2;

/// The trunk `model` is a Sequential of `[RP, SN-conv, LeakyReLU]` triples: conv `i` sits at
/// index `3 i + 1` (1, 4, 7, ...), which names its tensors in the official state dict.
fn model_index(i: i64) -> i64 {
    3 * i + 1
}

pub struct Discriminator {
    config: DiscriminatorConfig,
    store: ParamStore,
    training: bool,
    cam: Cam<SnLinear>,
    conv: SnConv2d,
    model: Vec<SnConv2d>,
}

impl Discriminator {
    /// Builds a freshly initialised discriminator; tensors are registered in the official order
    /// (gap_fc, gmp_fc, conv1x1, conv, model.*).
    pub fn new(config: DiscriminatorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::sized(device, config.min_parameters(), "Discriminator")?;
        let root = store.root();
        let ndf = config.ndf;
        let c = config.cam_channels();

        let cam = Cam::new(&root, c, Activation::LeakyRelu(SLOPE))?;
        let conv = SnConv2d::new(&(&root / "conv"), c, 1, ConvConfig::NO_BIAS)?;

        let model_path = &root / "model";
        let down = ConvConfig { stride: 2, ..Default::default() };
        let mut model = vec![SnConv2d::new(&(&model_path / model_index(0)), config.input_nc, ndf, down)?];
        for i in 1..config.n_layers - 2 {
            let mult = 1 << (i - 1);
            model.push(SnConv2d::new(&(&model_path / model_index(i)), ndf * mult, ndf * mult * 2, down)?);
        }
        let mult = 1 << (config.n_layers - 3);
        let last = model_index(config.n_layers - 2);
        model.push(SnConv2d::new(&(&model_path / last), ndf * mult, ndf * mult * 2, ConvConfig::default())?);

        Ok(Self { config, store, training: true, cam, conv, model })
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

    fn forward_impl(&self, input: &Tensor, passes: Passes) -> Result<Output> {
        self.check_input(input)?;
        let train = self.training;
        let mut x = input.shallow_clone();
        for conv in &self.model {
            x = leaky_relu(&conv.forward(&reflection_pad(&x, 1)?, train, passes)?, SLOPE)?;
        }
        let cam = self.cam.forward(&x, train, passes)?;
        let out = self.conv.forward(&reflection_pad(&cam.features, 1)?, train, passes)?;
        Output { out, cam_logit: cam.cam_logit, heatmap: cam.heatmap }.full()
    }

    /// `(self.forward(first), self.forward(second))` — in training mode two power iterations
    /// per layer, in that order — computed as one batched forward: every spectral-norm layer
    /// divides its output for `first`'s images by the first estimate and for `second`'s by the
    /// second. Half the calls of two forwards, the same function to float rounding.
    pub fn forward_twice(&self, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
        if first.size()[1..] != second.size()[1..] {
            return Err(Error::shape(format!(
                "Discriminator.forward_twice needs images of one size, got {:?} and {:?}",
                first.size(),
                second.size()
            )));
        }
        let n = first.size()[0];
        let both = Tensor::f_cat(&[first.shallow_clone(), second.shallow_clone()], 0)?;
        self.forward_impl(&both, Passes::Two(n))?.split_batch(n)
    }
}

impl Network for Discriminator {
    const NAME: &'static str = "Discriminator";

    /// The first convolution has stride 2 (`ndf` channels over a quarter of the pixels); an
    /// eighth of `ndf` keeps the estimate below the measured peaks (`check_forward_memory`).
    fn feature_channels(&self) -> f64 {
        self.config.ndf as f64 / 8.0
    }
    // Train mode runs one spectral-norm power iteration per forward (updating `weight_u` and `weight_v`); eval mode uses them as stored.
    crate::models::store_and_mode_accessors!();

    fn forward(&self, input: &Tensor) -> Result<Output> {
        self.forward_impl(input, Passes::One)
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

    /// `forward_twice` is two consecutive forwards: outputs, the gradients of a loss over both,
    /// and the spectral-norm vectors it leaves behind. The global D at 96 px with ndf 4 takes the
    /// CPU GEMM path in its deepest layer (weight 128× its output), the local D does not.
    ///
    /// Weights and inputs are fixed, not random: the max-pool branch of CAM sends its gradient to
    /// one position per channel, and with random data a near tie between two positions is broken
    /// differently by rounding about once in 300 draws, moving the gradient (measured: a 6.9e-3
    /// relative difference, as large as a 1-ulp change of the inputs causes in other draws).
    #[test]
    fn forward_twice_is_two_forwards() {
        for n_layers in [7, 5] {
            let build =
                || Discriminator::new(DiscriminatorConfig { ndf: 4, n_layers, input_nc: 3 }, Device::Cpu).unwrap();
            let (one_by_one, batched) = (build(), build());
            tch::no_grad(|| {
                for (seed, (a, b)) in one_by_one.named_tensors().iter().zip(batched.named_tensors()).enumerate() {
                    // Unit-norm rows (the initial scale of weights and of the u/v vectors), from
                    // the shape alone: scaling by the random initial draw made it random again.
                    let size = a.tensor.size();
                    let scale = 1.0 / (size[1..].iter().product::<i64>().max(size[0]) as f64).sqrt();
                    let fixed = crate::testing::fixed_normal(&size, seed as u64) * scale;
                    a.tensor.shallow_clone().copy_(&fixed);
                    b.tensor.shallow_clone().copy_(&fixed);
                }
            });
            let real = crate::testing::fixed_normal(&[2, 3, 96, 96], 1000);
            let fake = crate::testing::fixed_normal(&[2, 3, 96, 96], 1001);
            let loss = |r: &Output, f: &Output| {
                (&r.out - 1.0).square().mean(Kind::Float)
                    + f.out.square().mean(Kind::Float)
                    + (&r.cam_logit - 1.0).square().mean(Kind::Float)
                    + f.cam_logit.square().mean(Kind::Float)
            };
            let (r1, f1) = (one_by_one.forward(&real).unwrap(), one_by_one.forward(&fake).unwrap());
            let (r2, f2) = batched.forward_twice(&real, &fake).unwrap();
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                let diff = (a - b).abs().max().double_value(&[]);
                let scale = b.abs().max().double_value(&[]).max(1.0);
                assert!(diff <= 1e-5 * scale, "n_layers {n_layers}, {what}: {diff}");
            };
            for (a, b, what) in [(&r1, &r2, "real"), (&f1, &f2, "fake")] {
                close(&a.out, &b.out, what);
                close(&a.cam_logit, &b.cam_logit, what);
                close(&a.heatmap, &b.heatmap, what);
            }
            let params = |d: &Discriminator| d.store().parameters();
            let g1 = Tensor::run_backward(&[loss(&r1, &f1)], &params(&one_by_one), false, false);
            let g2 = Tensor::run_backward(&[loss(&r2, &f2)], &params(&batched), false, false);
            for (a, b) in g1.iter().zip(&g2) {
                close(a, b, "gradient");
            }
            for (a, b) in one_by_one.named_tensors().iter().zip(batched.named_tensors()) {
                close(&a.tensor, &b.tensor, &a.name);
            }
        }
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
