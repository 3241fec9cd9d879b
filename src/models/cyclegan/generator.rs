//! CycleGAN's `ResnetGenerator`: c7s1-ngf, two stride-2 downsamplings, `n_blocks` residual
//! blocks, two transposed-conv upsamplings, c7s1-3 and tanh, all in one `model` Sequential.

use crate::config::CycleGeneratorConfig;
use crate::models::input::check_image_batch;
use crate::models::{Network, Output};
use crate::nn::blocks::ResnetBlock;
use crate::nn::layers::{reflection_pad, Conv2d, ConvConfig, ConvTranspose2d};
use crate::nn::norm::instance_norm;
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Tensor};

/// Positions in `model` (each conv is followed by IN and ReLU, which hold no tensors):
/// `[RP3, Conv7, IN, ReLU, Conv3/s2, IN, ReLU, Conv3/s2, IN, ReLU, blocks..., ConvT, IN, ReLU,
/// ConvT, IN, ReLU, RP3, Conv7, Tanh]`.
mod index {
    pub const STEM: i64 = 1;
    pub const DOWN: [i64; 2] = [4, 7];
    pub const FIRST_BLOCK: i64 = 10;
    /// After the blocks: the two transposed convs, then the output conv.
    pub const UP_AFTER_BLOCKS: [i64; 2] = [0, 3];
    pub const OUT_AFTER_BLOCKS: i64 = 7;
}

pub struct CycleGenerator {
    config: CycleGeneratorConfig,
    store: ParamStore,
    training: bool,
    stem: Conv2d,
    down: Vec<Conv2d>,
    blocks: Vec<ResnetBlock>,
    up: Vec<ConvTranspose2d>,
    out: Conv2d,
}

impl CycleGenerator {
    /// A generator initialised as theirs: PyTorch's defaults, then N(0, 0.02) weights, zero biases.
    pub fn new(config: CycleGeneratorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        let store = ParamStore::sized(device, config.min_parameters(), "CycleGenerator")?;
        let model = store.root() / "model";
        let ngf = config.ngf;
        // Instance norm without affine parameters: `use_bias=True` for every conv.
        let stem = Conv2d::new(&(&model / index::STEM), config.input_nc, ngf, 7, ConvConfig::default())?;
        let down_config = ConvConfig { stride: 2, padding: 1, bias: true };
        let down = (0..2)
            .map(|i| Conv2d::new(&(&model / index::DOWN[i]), ngf << i, ngf << (i + 1), 3, down_config))
            .collect::<Result<Vec<_>>>()?;
        let blocks = (0..config.n_blocks)
            .map(|i| ResnetBlock::new(&(&model / (index::FIRST_BLOCK + i)), ngf * 4, true))
            .collect::<Result<Vec<_>>>()?;
        let after = index::FIRST_BLOCK + config.n_blocks;
        let up = (0..2)
            .map(|i| {
                let c_in = (ngf * 4) >> i;
                ConvTranspose2d::new(&(&model / (after + index::UP_AFTER_BLOCKS[i])), c_in, c_in / 2, 3, down_config, 1)
            })
            .collect::<Result<Vec<_>>>()?;
        let out = Conv2d::new(
            &(&model / (after + index::OUT_AFTER_BLOCKS)),
            ngf,
            config.output_nc,
            7,
            ConvConfig::default(),
        )?;
        super::init_normal(&store, 0.02)?;
        Ok(Self { config, store, training: true, stem, down, blocks, up, out })
    }

    pub fn config(&self) -> &CycleGeneratorConfig {
        &self.config
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (h, w) = check_image_batch(x, "CycleGAN generator", self.config.input_nc, self.device())?;
        if h % 4 != 0 || w % 4 != 0 || h < 8 || w < 8 {
            return Err(Error::shape(format!(
                "CycleGAN generator input height and width must be multiples of 4 and at least 8 \
                 (so that the output has the input's size), got {h}x{w}"
            )));
        }
        Ok(())
    }
}

impl Network for CycleGenerator {
    const NAME: &'static str = "CycleGenerator";

    fn feature_channels(&self) -> f64 {
        self.config.ngf as f64
    }
    // No dropout and no running statistics: the mode changes nothing, as in theirs.
    crate::models::store_and_mode_accessors!();

    /// The translation; `cam_logit` and `heatmap` are empty (CycleGAN has no attention).
    fn forward(&self, input: &Tensor) -> Result<Output> {
        self.check_input(input)?;
        let mut x = instance_norm(&self.stem.forward(&reflection_pad(input, 3)?)?)?.f_relu()?;
        for conv in &self.down {
            x = instance_norm(&conv.forward(&x)?)?.f_relu()?;
        }
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        for conv in &self.up {
            x = instance_norm(&conv.forward(&x)?)?.f_relu()?;
        }
        let out = self.out.forward(&reflection_pad(&x, 3)?)?.f_tanh()?;
        Ok(Output::image_only(out))
    }
}
