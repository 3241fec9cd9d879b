//! The TensorFlow release's generator (`UGATIT.generator`), state-dict names laid out like the
//! PyTorch generator's where the structure is the same (`DownBlock.1.weight`, ...), with the
//! release's extra tensors: conv biases, instance-norm `weight`/`bias`, `cam_fc` (the CAM
//! logit) beside `cam_w` (the attention weights), MLP biases. docs/tensorflow.md has the map
//! from the release's variable names.

use super::layers::{AdaLin, Conv, Dense, InstanceNorm, Lin};
use crate::config::GeneratorConfig;
use crate::models::input::check_image_batch;
use crate::models::{Network, Output};
use crate::nn::store::Init;
use crate::nn::ParamStore;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// `DownBlock` positions, as in the PyTorch layout: convs at 1, 5, 9, their norms after them,
/// then the residual blocks (`conv_block.1`/`.5` convs, `.2`/`.6` norms).
const DOWN: [(i64, i64); 3] = [(1, 2), (5, 6), (9, 10)];
const FIRST_RES_BLOCK: i64 = 12;
const RES_BLOCK: [(i64, i64); 2] = [(1, 2), (5, 6)];
/// `UpBlock2`: the two up-sampling convs and their LIN, then the output conv.
const UP: [(i64, i64); 2] = [(2, 3), (7, 8)];
const OUT: i64 = 11;

struct ResBlock {
    convs: [Conv; 2],
    norms: [InstanceNorm; 2],
}

struct AdaResBlock {
    convs: [Conv; 2],
    norms: [AdaLin; 2],
}

pub struct TfGenerator {
    config: GeneratorConfig,
    store: ParamStore,
    training: bool,
    cam_logit: Dense,
    cam_w: (Tensor, Tensor),
    conv1x1: Conv,
    gamma: Dense,
    beta: Dense,
    ada_blocks: Vec<AdaResBlock>,
    down: Vec<(Conv, InstanceNorm)>,
    blocks: Vec<ResBlock>,
    mlp: Vec<Dense>,
    up: Vec<(Conv, Lin)>,
    out: Conv,
}

impl TfGenerator {
    pub fn new(config: GeneratorConfig, device: Device) -> Result<Self> {
        config.validate()?;
        if config.n_blocks != 4 {
            return Err(Error::config(format!(
                "the TensorFlow variant needs n_blocks (n_res) = 4: its MLP is ngf·n_res wide while AdaLIN's γ/β scale \
                 ngf·4 channels, as in the release (got {})",
                config.n_blocks
            )));
        }
        let store = ParamStore::sized(device, config.min_parameters(), "Generator")?;
        let root = store.root();
        let (ngf, c) = (config.ngf, config.bottleneck_channels());
        let width = ngf * config.n_blocks;
        let cam_logit = Dense::new(&(&root / "cam_fc"), c, 1)?;
        let cam_path = &root / "cam_w";
        let cam_w = (
            cam_path.param("weight", &[1, c], super::layers::KERNEL_INIT)?,
            cam_path.param("bias", &[1], Init::Const(0.0))?,
        );
        let conv1x1 = Conv::new(&(&root / "conv1x1"), 2 * c, c, 1, 1, 0)?;
        let gamma = Dense::new(&(&root / "gamma"), width, c)?;
        let beta = Dense::new(&(&root / "beta"), width, c)?;
        let ada_blocks = (1..=config.n_blocks)
            .map(|i| {
                let p = &root / format!("UpBlock1_{i}");
                Ok(AdaResBlock {
                    convs: [Conv::new(&(&p / "conv1"), c, c, 3, 1, 1)?, Conv::new(&(&p / "conv2"), c, c, 3, 1, 1)?],
                    norms: [AdaLin::new(&(&p / "norm1"), c)?, AdaLin::new(&(&p / "norm2"), c)?],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let down_path = &root / "DownBlock";
        let mut down = vec![(
            Conv::new(&(&down_path / DOWN[0].0), config.input_nc, ngf, 7, 1, 3)?,
            InstanceNorm::new(&(&down_path / DOWN[0].1), ngf)?,
        )];
        for (i, (conv, norm)) in DOWN[1..].iter().enumerate() {
            let (c_in, c_out) = (ngf << i, ngf << (i + 1));
            down.push((
                Conv::new(&(&down_path / *conv), c_in, c_out, 3, 2, 1)?,
                InstanceNorm::new(&(&down_path / *norm), c_out)?,
            ));
        }
        let blocks = (0..config.n_blocks)
            .map(|i| {
                let p = &down_path / (FIRST_RES_BLOCK + i) / "conv_block";
                let [(c1, n1), (c2, n2)] = RES_BLOCK;
                Ok(ResBlock {
                    convs: [Conv::new(&(&p / c1), c, c, 3, 1, 1)?, Conv::new(&(&p / c2), c, c, 3, 1, 1)?],
                    norms: [InstanceNorm::new(&(&p / n1), c)?, InstanceNorm::new(&(&p / n2), c)?],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let fc = &root / "FC";
        let mlp_in = if config.light { c } else { config.mlp_in_features() };
        let mlp = vec![Dense::new(&(&fc / 0), mlp_in, width)?, Dense::new(&(&fc / 2), width, width)?];
        let up_path = &root / "UpBlock2";
        let mut up = Vec::new();
        for (i, (conv, norm)) in UP.iter().enumerate() {
            let (c_in, c_out) = (c >> i, c >> (i + 1));
            up.push((Conv::new(&(&up_path / *conv), c_in, c_out, 3, 1, 1)?, Lin::new(&(&up_path / *norm), c_out)?));
        }
        let out = Conv::new(&(&up_path / OUT), ngf, config.output_nc, 7, 1, 3)?;
        Ok(Self {
            config,
            store,
            training: true,
            cam_logit,
            cam_w,
            conv1x1,
            gamma,
            beta,
            ada_blocks,
            down,
            blocks,
            mlp,
            up,
            out,
        })
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Every rho (AdaLIN, LIN): the release clips them to [0, 1] after each update.
    pub fn rhos(&self) -> Vec<&Tensor> {
        let mut rhos: Vec<&Tensor> = self.ada_blocks.iter().flat_map(|b| [&b.norms[0].rho, &b.norms[1].rho]).collect();
        rhos.extend(self.up.iter().map(|(_, lin)| &lin.rho));
        rhos
    }

    fn check_input(&self, x: &Tensor) -> Result<()> {
        let (h, w) = check_image_batch(x, "Generator", self.config.input_nc, self.device())?;
        let size = self.config.img_size;
        if !self.config.light && (h != size || w != size) {
            return Err(Error::shape(format!(
                "this full (light=False) Generator was built for img_size={size} and only takes {size}x{size} images, got {h}x{w}"
            )));
        }
        if h % 4 != 0 || w % 4 != 0 || h < 8 || w < 8 {
            return Err(Error::shape(format!(
                "Generator input height and width must be multiples of 4 and at least 8, got {h}x{w}"
            )));
        }
        Ok(())
    }
}

impl Network for TfGenerator {
    const NAME: &'static str = "Generator";

    fn feature_channels(&self) -> f64 {
        self.config.ngf as f64
    }
    crate::models::store_and_mode_accessors!();

    fn forward(&self, input: &Tensor) -> Result<Output> {
        self.check_input(input)?;
        let mut x = input.shallow_clone();
        for (conv, norm) in &self.down {
            x = norm.forward(&conv.forward(&x)?)?.f_relu()?;
        }
        for block in &self.blocks {
            let h = block.norms[0].forward(&block.convs[0].forward(&x)?)?.f_relu()?;
            let h = block.norms[1].forward(&block.convs[1].forward(&h)?)?;
            x = h.f_add(&x)?;
        }
        // CAM: one dense layer scores GAP and GMP; the features are weighted by the separate
        // kernel + bias, the same for both halves.
        let gap = x.f_mean_dim(&[2i64, 3][..], false, Kind::Float)?;
        let gmp = x.f_amax(&[2i64, 3][..], false)?;
        let cam_logit = Tensor::f_cat(&[self.cam_logit.forward(&gap)?, self.cam_logit.forward(&gmp)?], 1)?;
        let weights = self.cam_w.0.f_add(&self.cam_w.1)?.f_view([1, -1, 1, 1])?;
        let weighted = x.f_mul(&weights)?;
        let x = self.conv1x1.forward(&Tensor::f_cat(&[&weighted, &weighted], 1)?)?.f_relu()?;
        let heatmap = x.f_sum_dim_intlist(&[1i64][..], true, Kind::Float)?;
        // γ, β: light pools first; full flattens in TensorFlow's H, W, C order.
        let mut h = if self.config.light {
            x.f_mean_dim(&[2i64, 3][..], false, Kind::Float)?
        } else {
            x.f_permute([0, 2, 3, 1])?.f_flatten(1, -1)?
        };
        for dense in &self.mlp {
            h = dense.forward(&h)?.f_relu()?;
        }
        let (gamma, beta) = (self.gamma.forward(&h)?, self.beta.forward(&h)?);
        let mut x = x;
        for block in &self.ada_blocks {
            let h = block.norms[0].forward(&block.convs[0].forward(&x)?, &gamma, &beta)?.f_relu()?;
            let h = block.norms[1].forward(&block.convs[1].forward(&h)?, &gamma, &beta)?;
            x = h.f_add(&x)?;
        }
        for (conv, lin) in &self.up {
            x = x.f_upsample_nearest2d_vec(None::<&[i64]>, &[2.0, 2.0][..])?;
            x = lin.forward(&conv.forward(&x)?)?.f_relu()?;
        }
        let out = self.out.forward(&x)?.f_tanh()?;
        Ok(Output { out, cam_logit, heatmap })
    }
}
