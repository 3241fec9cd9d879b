//! `ResnetGenerator` (docs/architecture.md §1): encoder, CAM attention, γ/β MLP, AdaILN residual decoder.

use super::input::check_image_batch;
use super::{Network, Output};
use crate::config::GeneratorConfig;
use crate::nn::blocks::{ResnetAdaILNBlock, ResnetBlock};
use crate::nn::cam::{Activation, Cam};
use crate::nn::layers::{reflection_pad, Conv2d, ConvConfig, Linear};
use crate::nn::norm::{instance_norm, ILN};
use crate::nn::recorded_linear::{LinearCalls, LinearRecorder};
use crate::nn::spectral_norm::Passes;
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Tensor};

/// Sequential indices that name the official state-dict entries.
mod index {
    /// `DownBlock`: the stem conv (after RP(3)), then the two stride-2 convs (each after RP(1)),
    /// every conv followed by IN and ReLU.
    pub const DOWN_CONVS: [i64; 3] = [1, 5, 9];
    /// `DownBlock`: the residual blocks follow the three conv stages.
    pub const FIRST_RES_BLOCK: i64 = 12;
    /// `FC`: `[Linear, ReLU, Linear, ReLU]`.
    pub const FC: [i64; 2] = [0, 2];
    /// `UpBlock2`: `[Upsample, RP, Conv, ILN, ReLU]` twice, then RP(3), the output conv, tanh.
    pub const UP_CONVS: [i64; 2] = [2, 7];
    pub const UP_NORMS: [i64; 2] = [3, 8];
    pub const OUT_CONV: i64 = 11;
}

/// One up-sampling stage of `UpBlock2`: nearest ×2, RP(1), 3x3 conv, ILN, ReLU.
struct UpStage {
    conv: Conv2d,
    norm: ILN,
}

pub struct Generator {
    config: GeneratorConfig,
    store: ParamStore,
    training: bool,
    cam: Cam<Linear>,
    gamma: Linear,
    beta: Linear,
    up_blocks1: Vec<ResnetAdaILNBlock>,
    down_convs: Vec<Conv2d>,
    res_blocks: Vec<ResnetBlock>,
    fc: Vec<Linear>,
    /// Records FC.0's calls while the trainer leaves its weight gradient to the optimizer.
    fc0_recorder: LinearRecorder,
    up_stages: Vec<UpStage>,
    out_conv: Conv2d,
}

impl Generator {
    /// Builds a freshly initialised generator. Tensors are registered in the official
    /// `state_dict()` order: gap_fc, gmp_fc, conv1x1, gamma, beta, UpBlock1_*, DownBlock, FC, UpBlock2.
    pub fn new(config: GeneratorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::sized(device, config.min_parameters(), "Generator")?;
        let root = store.root();
        let ngf = config.ngf;
        let c = config.bottleneck_channels();

        let cam = Cam::new(&root, c, Activation::Relu)?;
        let gamma = Linear::new(&(&root / "gamma"), c, c)?;
        let beta = Linear::new(&(&root / "beta"), c, c)?;
        let up_blocks1 = (1..=config.n_blocks)
            .map(|i| ResnetAdaILNBlock::new(&(&root / format!("UpBlock1_{i}")), c))
            .collect::<Result<Vec<_>>>()?;

        let down = &root / "DownBlock";
        let mut down_convs =
            vec![Conv2d::new(&(&down / index::DOWN_CONVS[0]), config.input_nc, ngf, 7, ConvConfig::NO_BIAS)?];
        for i in 0..2 {
            let mult = 1 << i;
            let path = &down / index::DOWN_CONVS[i + 1];
            down_convs.push(Conv2d::new(
                &path,
                ngf * mult,
                ngf * mult * 2,
                3,
                ConvConfig { stride: 2, ..ConvConfig::NO_BIAS },
            )?);
        }
        let res_blocks = (0..config.n_blocks)
            .map(|i| ResnetBlock::new(&(&down / (index::FIRST_RES_BLOCK + i)), c, false))
            .collect::<Result<Vec<_>>>()?;

        let fc_path = &root / "FC";
        let fc = vec![
            Linear::new(&(&fc_path / index::FC[0]), config.mlp_in_features(), c)?,
            Linear::new(&(&fc_path / index::FC[1]), c, c)?,
        ];

        let up = &root / "UpBlock2";
        let mut up_stages = Vec::new();
        for i in 0..2 {
            let mult = 4 >> i;
            let (c_in, c_out) = (ngf * mult, ngf * mult / 2);
            up_stages.push(UpStage {
                conv: Conv2d::new(&(&up / index::UP_CONVS[i]), c_in, c_out, 3, ConvConfig::NO_BIAS)?,
                norm: ILN::new(&(&up / index::UP_NORMS[i]), c_out)?,
            });
        }
        let out_conv = Conv2d::new(&(&up / index::OUT_CONV), ngf, config.output_nc, 7, ConvConfig::NO_BIAS)?;

        Ok(Self {
            config,
            store,
            training: true,
            cam,
            gamma,
            beta,
            up_blocks1,
            down_convs,
            res_blocks,
            fc,
            fc0_recorder: LinearRecorder::default(),
            up_stages,
            out_conv,
        })
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Every `rho` (AdaILN and ILN), which the trainer clamps to [0, 1] after each update.
    pub fn rhos(&self) -> Vec<&Tensor> {
        let mut rhos: Vec<&Tensor> = self.up_blocks1.iter().flat_map(|b| b.rhos()).collect();
        rhos.extend(self.up_stages.iter().map(|s| &s.norm.rho));
        rhos
    }

    /// Starts or stops recording FC.0's calls (`crate::nn::recorded_linear`). Only the full
    /// model's FC.0, which sees the whole feature map, is recorded: light mode's is C×C.
    pub fn record_linear_calls(&self, on: bool) {
        self.fc0_recorder.set_recording(on && !self.config.light);
    }

    /// FC.0's calls recorded so far (none while not recording).
    pub fn take_linear_calls(&self) -> Vec<LinearCalls> {
        self.fc0_recorder.take(&self.fc[0]).into_iter().collect()
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (h, w) = check_image_batch(x, "Generator", self.config.input_nc, self.device())?;
        let size = self.config.img_size;
        if !self.config.light && (h != size || w != size) {
            return Err(Error::shape(format!(
                "this full (light=False) Generator was built for img_size={size} and only takes \
                 {size}x{size} images (its FC.0 layer sees the whole feature map), got {h}x{w}"
            )));
        }
        if h % 4 != 0 || w % 4 != 0 || h < 8 || w < 8 {
            return Err(Error::shape(format!(
                "Generator input height and width must be multiples of 4 and at least 8, got {h}x{w}"
            )));
        }
        Ok(())
    }

    fn forward_impl(&self, input: &Tensor) -> Result<Output> {
        self.check_input(input)?;
        let (x, cam_logit, heatmap) = self.body(self.stem(input)?)?;
        Output { out: self.head(&x)?, cam_logit, heatmap }.full()
    }

    /// `(forward(first), forward(second))` for two batches of one shape, the middle of the
    /// network run once over both. On the CPU the 7×7 stem and output convolutions, whose 3
    /// channels oneDNN handles worse batched than one batch at a time, run per batch; that also
    /// spares the stem the input gradient of a batch that needs none (real images). Elsewhere
    /// (GPU: fewer launches) the whole network runs over the concatenated batch.
    pub fn forward_pair(&self, first: &Tensor, second: &Tensor) -> Result<(Output, Output)> {
        if first.device() != Device::Cpu || first.size() != second.size() {
            return super::forward_concatenated(self, first, second);
        }
        self.check_input(first)?;
        self.check_input(second)?;
        let n = first.size()[0];
        let stems = Tensor::f_cat(&[self.stem(first)?, self.stem(second)?], 0)?;
        let (x, cam_logit, heatmap) = self.body(stems)?;
        let half = |t: &Tensor, second: bool| -> Result<Tensor> {
            Ok(if second { t.f_narrow(0, n, n)? } else { t.f_narrow(0, 0, n)? })
        };
        let output = |second: bool| -> Result<Output> {
            Output {
                out: self.head(&half(&x, second)?)?,
                cam_logit: half(&cam_logit, second)?,
                heatmap: half(&heatmap, second)?,
            }
            .full()
        };
        Ok((output(false)?, output(true)?))
    }

    /// RP3 and the 7×7 stem convolution.
    fn stem(&self, input: &Tensor) -> Result<Tensor> {
        self.down_convs[0].forward(&reflection_pad(input, 3)?)
    }

    /// From the stem's output to the last up-sampling stage: `(features, cam_logit, heatmap)`.
    fn body(&self, stem: Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        // Encoder: (stem)-IN-ReLU, two RP1-conv3/s2-IN-ReLU, then the residual blocks.
        let mut x = instance_norm(&stem)?.f_relu()?;
        for conv in &self.down_convs[1..] {
            x = instance_norm(&conv.forward(&reflection_pad(&x, 1)?)?)?.f_relu()?;
        }
        for block in &self.res_blocks {
            x = block.forward(&x)?;
        }

        let cam = self.cam.forward(&x, self.training, Passes::One)?;
        let (x, cam_logit, heatmap) = (cam.features, cam.cam_logit, cam.heatmap);

        // γ/β MLP: light mode pools the attention features; full mode flattens them (NCHW).
        let mlp_in =
            if self.config.light { x.f_adaptive_avg_pool2d([1, 1])?.f_flatten(1, -1)? } else { x.f_flatten(1, -1)? };
        let mut h = self.fc0_recorder.forward(&self.fc[0], &mlp_in)?.f_relu()?;
        for fc in &self.fc[1..] {
            h = fc.forward(&h)?.f_relu()?;
        }
        let gamma = self.gamma.forward(&h)?;
        let beta = self.beta.forward(&h)?;

        let mut x = x;
        for block in &self.up_blocks1 {
            x = block.forward(&x, &gamma, &beta)?;
        }
        for stage in &self.up_stages {
            // `nn.Upsample(scale_factor=2)`: scale factors only, no output size, so that a traced
            // graph (export) keeps the image size dynamic.
            x = x.f_upsample_nearest2d_vec(None::<&[i64]>, &[2.0, 2.0][..])?;
            x = stage.norm.forward(&stage.conv.forward(&reflection_pad(&x, 1)?)?)?.f_relu()?;
        }
        Ok((x, cam_logit, heatmap))
    }

    /// RP3, the 7×7 output convolution and tanh.
    fn head(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.out_conv.forward(&reflection_pad(x, 3)?)?.f_tanh()?)
    }
}

impl Network for Generator {
    const NAME: &'static str = "Generator";

    fn feature_channels(&self) -> f64 {
        self.config.ngf as f64
    }
    // Train/eval mode. The generator has no mode-dependent layer; the flag is kept so that it behaves like a PyTorch module.
    crate::models::store_and_mode_accessors!();

    fn forward(&self, input: &Tensor) -> Result<Output> {
        self.forward_impl(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Network;
    use tch::Kind;

    fn tiny(light: bool) -> GeneratorConfig {
        GeneratorConfig { ngf: 4, n_blocks: 2, img_size: 16, light, ..Default::default() }
    }

    #[test]
    fn official_parameter_count_light() {
        let cfg = GeneratorConfig { light: true, ..Default::default() };
        let g = Generator::new(cfg, Device::Cpu).unwrap();
        assert_eq!(g.store().num_parameters(), 10_589_888);
        assert_eq!(g.named_tensors().len(), 44);
        assert_eq!(g.named_tensors()[0].name, "gap_fc.weight");
    }

    #[test]
    fn output_shapes() {
        for light in [true, false] {
            let g = Generator::new(tiny(light), Device::Cpu).unwrap();
            let x = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
            let o = g.forward(&x).unwrap();
            assert_eq!(o.out.size(), [2, 3, 16, 16]);
            assert_eq!(o.cam_logit.size(), [2, 2]);
            assert_eq!(o.heatmap.size(), [2, 1, 4, 4]);
            assert!(o.out.abs().max().double_value(&[]) <= 1.0);
        }
    }

    #[test]
    fn forward_pair_is_two_forwards() {
        for light in [true, false] {
            let g = Generator::new(tiny(light), Device::Cpu).unwrap();
            let first = (Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0).set_requires_grad(true);
            let second = Tensor::rand([2, 3, 16, 16], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
            let (a, b) = g.forward_pair(&first, &second).unwrap();
            for (pair, single) in [(a, g.forward(&first).unwrap()), (b, g.forward(&second).unwrap())] {
                for (x, y) in
                    [(&pair.out, &single.out), (&pair.cam_logit, &single.cam_logit), (&pair.heatmap, &single.heatmap)]
                {
                    assert_eq!(x.size(), y.size());
                    assert!((x - y).abs().max().double_value(&[]) < 1e-5, "light={light}");
                }
            }
            // Gradients reach the first batch (the second, real images, needs none).
            let grad = Tensor::run_backward(
                &[&g.forward_pair(&first, &second).unwrap().0.out.sum(Kind::Float)],
                &[&first],
                false,
                false,
            );
            assert!(grad[0].abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
    }

    #[test]
    fn full_mode_rejects_other_sizes() {
        let g = Generator::new(tiny(false), Device::Cpu).unwrap();
        let x = Tensor::zeros([1, 3, 20, 20], (Kind::Float, Device::Cpu));
        let err = g.forward(&x).err().unwrap().to_string();
        assert!(err.contains("img_size=16"), "{err}");
    }
}
