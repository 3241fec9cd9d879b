//! Network configurations. Defaults are the official `main.py` ones; `validate` rejects values the
//! official code would crash on later (or silently get wrong), naming the field.

use crate::{Error, Result};

/// `ResnetGenerator(input_nc, output_nc, ngf, n_blocks, img_size, light)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub input_nc: i64,
    pub output_nc: i64,
    pub ngf: i64,
    pub n_blocks: i64,
    pub img_size: i64,
    pub light: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self { input_nc: 3, output_nc: 3, ngf: 64, n_blocks: 4, img_size: 256, light: false }
    }
}

impl GeneratorConfig {
    /// Channels of the bottleneck (after the two down-sampling convs): `ngf * 4`.
    pub fn bottleneck_channels(&self) -> i64 {
        self.ngf * 4
    }

    /// A lower bound on the parameter count (both variants): the 3×3 convolutions of the
    /// encoder's and the decoder's residual blocks, and the full model's first MLP layer,
    /// which sees the flattened bottleneck. Lets a configuration too large for the machine be
    /// refused before anything is allocated.
    pub fn min_parameters(&self) -> f64 {
        let c = self.bottleneck_channels() as f64;
        let blocks = 4.0 * self.n_blocks as f64 * 9.0 * c * c;
        let side = (self.img_size / 4) as f64;
        blocks + if self.light { 0.0 } else { side * side * c * c }
    }

    /// `in_features` of `FC.0`: the flattened attention feature map (full mode) or its
    /// channel means (light mode).
    pub fn mlp_in_features(&self) -> i64 {
        let mult = 4;
        if self.light {
            self.ngf * mult
        } else {
            // Evaluated left to right exactly as the official code does.
            self.img_size / mult * self.img_size / mult * self.ngf * mult
        }
    }

    pub fn validate(&self) -> Result<()> {
        bounded("input_nc", self.input_nc, 1, 64)?;
        bounded("output_nc", self.output_nc, 1, 64)?;
        bounded("ngf", self.ngf, 1, 4096)?;
        bounded("n_blocks", self.n_blocks, 0, 256)?;
        bounded("img_size", self.img_size, 8, 8192)?;
        if self.img_size % 4 != 0 || self.img_size < 8 {
            return Err(Error::config(format!(
                "img_size must be a multiple of 4 and at least 8 (two stride-2 convs then 3x3 \
                 reflection-padded convs), got {}",
                self.img_size
            )));
        }
        Ok(())
    }
}

/// `Discriminator(input_nc, ndf, n_layers)`: `n_layers=7` is the global one, 5 the local one.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscriminatorConfig {
    pub input_nc: i64,
    pub ndf: i64,
    pub n_layers: i64,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self { input_nc: 3, ndf: 64, n_layers: 7 }
    }
}

impl DiscriminatorConfig {
    /// Channels entering the CAM module: `ndf * 2^(n_layers-2)`.
    pub fn cam_channels(&self) -> i64 {
        self.ndf << (self.n_layers - 2)
    }

    /// A lower bound on the parameter count (both variants): the last 4×4 convolution, from
    /// half the CAM channels to all of them.
    pub fn min_parameters(&self) -> f64 {
        let c = self.cam_channels() as f64;
        8.0 * c * c
    }

    pub fn validate(&self) -> Result<()> {
        bounded("input_nc", self.input_nc, 1, 64)?;
        bounded("ndf", self.ndf, 1, 4096)?;
        if !(3..=12).contains(&self.n_layers) {
            return Err(Error::config(format!(
                "n_layers must be between 3 and 12 (7 = global, 5 = local), got {}",
                self.n_layers
            )));
        }
        Ok(())
    }

    /// The smallest square input this discriminator accepts: reflection padding by 1 needs
    /// every feature map to be at least 2 wide (the official global D needs 96).
    pub fn min_input_size(&self) -> i64 {
        (2..4096).find(|&s| self.accepts(s)).unwrap_or(4096)
    }

    /// Whether a spatial extent `size` survives every padded conv of this discriminator.
    pub fn accepts(&self, mut size: i64) -> bool {
        // n_layers-2 stride-2 convs, then two stride-1 k4 convs (model's last, then the logit conv).
        for _ in 0..self.n_layers - 2 {
            if size < 2 {
                return false;
            }
            size = (size + 2 - 4) / 2 + 1;
        }
        for _ in 0..2 {
            if size < 2 {
                return false;
            }
            size = size + 2 - 4 + 1;
        }
        size >= 1
    }
}

/// CycleGAN's `ResnetGenerator(input_nc, output_nc, ngf, norm='instance', use_dropout=False,
/// n_blocks)` (junyanz/pytorch-CycleGAN-and-pix2pix; docs/cyclegan.md).
#[derive(Debug, Clone, PartialEq)]
pub struct CycleGeneratorConfig {
    pub input_nc: i64,
    pub output_nc: i64,
    pub ngf: i64,
    pub n_blocks: i64,
}

impl Default for CycleGeneratorConfig {
    fn default() -> Self {
        Self { input_nc: 3, output_nc: 3, ngf: 64, n_blocks: 9 }
    }
}

impl CycleGeneratorConfig {
    /// A lower bound on the parameter count: the residual blocks' 3×3 convolutions.
    pub fn min_parameters(&self) -> f64 {
        let c = 4.0 * self.ngf as f64;
        2.0 * self.n_blocks as f64 * 9.0 * c * c
    }

    pub fn validate(&self) -> Result<()> {
        bounded("input_nc", self.input_nc, 1, 64)?;
        bounded("output_nc", self.output_nc, 1, 64)?;
        bounded("ngf", self.ngf, 1, 4096)?;
        bounded("n_blocks", self.n_blocks, 0, 256)
    }
}

/// CycleGAN's PatchGAN `NLayerDiscriminator(input_nc, ndf, n_layers, norm='instance')`;
/// `n_layers=3` is the 70x70 PatchGAN.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchDiscriminatorConfig {
    pub input_nc: i64,
    pub ndf: i64,
    pub n_layers: i64,
}

impl Default for PatchDiscriminatorConfig {
    fn default() -> Self {
        Self { input_nc: 3, ndf: 64, n_layers: 3 }
    }
}

impl PatchDiscriminatorConfig {
    /// A lower bound on the parameter count: the last 4×4 convolution before the output one
    /// (channel multipliers capped at 8, as theirs).
    pub fn min_parameters(&self) -> f64 {
        let ndf = self.ndf as f64;
        let out = ndf * (1i64 << self.n_layers.min(3)) as f64;
        let c_in = ndf * (1i64 << (self.n_layers - 1).min(3)) as f64;
        16.0 * c_in * out
    }

    pub fn validate(&self) -> Result<()> {
        bounded("input_nc", self.input_nc, 1, 64)?;
        bounded("ndf", self.ndf, 1, 4096)?;
        bounded("n_layers", self.n_layers, 1, 8)
    }

    /// The smallest square input: `n_layers` stride-2 4x4 convs (padding 1) halve the size, then
    /// two stride-1 ones take one pixel each, and one logit must remain.
    pub fn min_input_size(&self) -> i64 {
        3 << self.n_layers
    }
}

/// `lo <= value <= hi`; the upper bounds keep every shape computation far from i64 overflow.
fn bounded(field: &str, value: i64, lo: i64, hi: i64) -> Result<()> {
    if value < lo || value > hi {
        return Err(Error::config(format!("{field} must be between {lo} and {hi}, got {value}")));
    }
    Ok(())
}

fn positive(field: &str, value: i64) -> Result<()> {
    if value <= 0 {
        return Err(Error::config(format!("{field} must be positive, got {value}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_sizes() {
        let g = GeneratorConfig::default();
        assert_eq!(g.mlp_in_features(), 1_048_576);
        let d = DiscriminatorConfig::default();
        assert_eq!(d.cam_channels(), 2048);
        assert_eq!(d.min_input_size(), 96);
        let local = DiscriminatorConfig { n_layers: 5, ..Default::default() };
        assert_eq!(local.cam_channels(), 512);
        assert!(local.accepts(64));
    }

    #[test]
    fn rejects_bad_values() {
        let g = GeneratorConfig { img_size: 130, ..Default::default() };
        assert!(g.validate().unwrap_err().to_string().contains("img_size"));
        let d = DiscriminatorConfig { n_layers: 2, ..Default::default() };
        assert!(d.validate().unwrap_err().to_string().contains("n_layers"));
    }
}

/// Everything a training run needs. Field names and defaults mirror the official `main.py`
/// flags, plus `dataset` (a folder with trainA/ trainB/ testA/ testB/), `seed` and
/// `num_workers` for the data loader. Python's constructor validates the fields it is given;
/// a field set afterwards is checked for its type at once, and for its range by `validate()`
/// and again by `Trainer(config)`.
#[cfg_attr(feature = "python", pyo3::pyclass(module = "ugatit_rs._native", get_all))]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The dataset folder, holding `trainA/`, `trainB/`, `testA/` and `testB/`; its last part
    /// names the run folder (`<result_dir>/<name>/`) and the checkpoints.
    pub dataset: String,
    /// The paper's light model: the γ/β MLP sees the globally pooled feature map instead of the
    /// whole flattened one (far fewer parameters; any multiple-of-4 image size).
    pub light: bool,
    /// Training iterations (one D update and one G update each).
    pub iteration: i64,
    /// Images per domain in each step (per rank in a data-parallel run).
    pub batch_size: i64,
    /// Every this many steps, `fit()` writes the sample grids `img/A2B_<step>.png` and
    /// `img/B2A_<step>.png`.
    pub print_freq: i64,
    /// Every this many steps (and at the end, and when stopped), `fit()` saves a checkpoint.
    pub save_freq: i64,
    /// How many of the newest `_params_<step>` checkpoints `fit()` keeps, deleting older ones as
    /// it saves; 0 = all (the official behaviour). Keep at least 2 for `resume` to fall back on
    /// if the newest is damaged. The in-training KID's best checkpoint is never deleted.
    pub keep_checkpoints: i64,
    /// Decay the learning rate linearly to 0 over the second half of the iterations.
    pub decay_flag: bool,
    /// Adam's learning rate, the same for the generators' and the discriminators' optimizer.
    pub lr: f64,
    /// L2 penalty added to each gradient before Adam (torch.optim.Adam's coupled form).
    pub weight_decay: f64,
    /// Weight of the adversarial losses, on the images and on the discriminators' CAM logits.
    pub adv_weight: f64,
    /// Weight of the L1 cycle-consistency loss (A → B → A and B → A → B).
    pub cycle_weight: f64,
    /// Weight of the L1 identity loss (a B image through A → B should stay itself).
    pub identity_weight: f64,
    /// Weight of the generators' CAM loss (telling their own domain from the other).
    pub cam_weight: f64,
    /// Channels of the generators' first convolution and of the discriminators' (`ngf`, `ndf`).
    pub ch: i64,
    /// Residual blocks in each generator's encoder, and as many AdaLIN blocks in its decoder.
    pub n_res: i64,
    /// Side of the square training images, a multiple of 4 (96 or more for the global
    /// discriminators); the full model's dense layers are sized by it.
    pub img_size: i64,
    /// Where the run folder goes: `<result_dir>/<dataset name>/`.
    pub result_dir: String,
    /// `"cpu"`, `"cuda"` or `"cuda:N"`; the official default is `"cuda"`.
    pub device: String,
    /// `fit()` continues from the newest loadable checkpoint in the run folder.
    pub resume: bool,
    /// Seeds the initial weights and both data streams: the same seed gives the same run.
    pub seed: u64,
    /// Image decoding threads per domain in `fit()`'s data pipeline; 0 decodes in the training
    /// thread.
    pub num_workers: i64,
    /// Opt-in speed-up that changes the numbers: each discriminator sees the real and the fake
    /// batch in one call during the D step (one spectral-norm power iteration instead of two).
    pub fused_discriminator: bool,
    /// Every this many steps, measure KID (both directions) on held-out test images; 0 = never.
    /// Needs the metrics extra (`docs/metrics.md`).
    pub eval_freq: i64,
    /// How many test images of each domain the in-training KID uses (at most).
    pub eval_images: i64,
    /// `"ugatit"`, or `"cyclegan"`: the paper's baseline (docs/cyclegan.md), which reads `ch` as
    /// ngf = ndf, `n_res` as its residual blocks, `cycle_weight` as λ and uses `pool_size` and
    /// `lambda_identity`; `TrainConfig(model="cyclegan")` starts from its defaults.
    pub model: String,
    /// CycleGAN: the discriminators' history of generated images (0 = none).
    pub pool_size: i64,
    /// CycleGAN: the identity loss weight as a fraction of `cycle_weight` (their `lambda_identity`).
    pub lambda_identity: f64,
    /// U-GAT-IT's networks: `"pytorch"` (znxlwm/UGATIT-pytorch) or `"tf"` (the TensorFlow
    /// release, which the authors' selfie2anime weights belong to; docs/tensorflow.md).
    pub variant: String,
    /// A checkpoint whose networks start this run (fresh optimizers, step 0): ours, an
    /// official `.pt`, or a converted TensorFlow checkpoint. Empty: the usual initialisation.
    pub init_from: String,
    /// Opt-in mixed precision that changes the numbers: `"fp32"` (the default), or `"bf16"` —
    /// convolutions and matrix products in bfloat16 on float32 master weights; normalisation
    /// statistics, the spectral norm, losses and the optimizer in float32 (src/nn/compute.rs).
    /// U-GAT-IT's PyTorch networks only.
    pub precision: String,
    /// Opt-in: images and activations in channels-last (NHWC) memory order, which cuDNN's tensor
    /// core kernels prefer. The same function; the rounding may differ.
    pub channels_last: bool,
    /// Opt-in, CUDA only: after a few eager steps, capture one training step in a CUDA graph and
    /// replay it for every later step of the same batch shape (`ugatit_rs.trainer`); the same
    /// kernels, so the same numbers, without their launch cost. U-GAT-IT, one process.
    pub cuda_graph: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: String::new(),
            light: false,
            iteration: 1_000_000,
            batch_size: 1,
            print_freq: 1000,
            save_freq: 100_000,
            keep_checkpoints: 0,
            decay_flag: true,
            lr: 1e-4,
            weight_decay: 1e-4,
            adv_weight: 1.0,
            cycle_weight: 10.0,
            identity_weight: 10.0,
            cam_weight: 1000.0,
            ch: 64,
            n_res: 4,
            img_size: 256,
            result_dir: "results".into(),
            device: "cuda".into(),
            resume: false,
            seed: 0,
            num_workers: 2,
            fused_discriminator: false,
            eval_freq: 0,
            eval_images: 100,
            model: MODELS[0].into(),
            pool_size: 50,
            lambda_identity: 0.5,
            variant: VARIANTS[0].into(),
            init_from: String::new(),
            precision: PRECISIONS[0].into(),
            channels_last: false,
            cuda_graph: false,
        }
    }
}

/// The models a [`TrainConfig`] can train.
pub const MODELS: [&str; 2] = ["ugatit", "cyclegan"];
/// The U-GAT-IT network variants.
pub const VARIANTS: [&str; 2] = ["pytorch", "tf"];
/// The training precisions (fp16 is for inference only: training it needs loss scaling).
pub const PRECISIONS: [&str; 2] = ["fp32", "bf16"];

impl TrainConfig {
    /// The defaults of `model`: U-GAT-IT's `main.py`, or CycleGAN's options (lr 2e-4, no weight
    /// decay, 9 residual blocks, cycle λ 10, identity 0.5·λ, a 50-image pool).
    pub fn defaults_for(model: &str) -> Self {
        match model {
            "cyclegan" => Self {
                model: model.into(),
                lr: 2e-4,
                weight_decay: 0.0,
                n_res: 9,
                cycle_weight: 10.0,
                ..Self::default()
            },
            _ => Self::default(),
        }
    }

    pub fn is_cyclegan(&self) -> bool {
        self.model == "cyclegan"
    }

    pub fn cycle_generator(&self) -> CycleGeneratorConfig {
        CycleGeneratorConfig { input_nc: 3, output_nc: 3, ngf: self.ch, n_blocks: self.n_res }
    }

    pub fn patch_discriminator(&self) -> PatchDiscriminatorConfig {
        PatchDiscriminatorConfig { input_nc: 3, ndf: self.ch, n_layers: 3 }
    }
}

impl TrainConfig {
    /// The fields by name, in declaration order (the Python surface is built from this).
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => unreachable!("a struct of scalars serialises to a map"),
        }
    }

    pub fn generator(&self) -> GeneratorConfig {
        GeneratorConfig {
            input_nc: 3,
            output_nc: 3,
            ngf: self.ch,
            n_blocks: self.n_res,
            img_size: self.img_size,
            light: self.light,
        }
    }

    /// The global (`n_layers=7`) or local (`n_layers=5`) discriminator.
    pub fn discriminator(&self, global: bool) -> DiscriminatorConfig {
        DiscriminatorConfig { input_nc: 3, ndf: self.ch, n_layers: if global { 7 } else { 5 } }
    }

    /// The architecture fields, which a checkpoint must share with the trainer loading it.
    pub fn architecture(&self) -> [(&'static str, String); 6] {
        [
            ("model", self.model.clone()),
            ("variant", self.variant.clone()),
            ("light", self.light.to_string()),
            ("ch", self.ch.to_string()),
            ("n_res", self.n_res.to_string()),
            ("img_size", self.img_size.to_string()),
        ]
    }

    pub fn validate(&self) -> Result<()> {
        for (field, value) in
            [("iteration", self.iteration), ("print_freq", self.print_freq), ("save_freq", self.save_freq)]
        {
            positive(field, value)?;
        }
        bounded("batch_size", self.batch_size, 1, 65_536)?;
        bounded("eval_freq", self.eval_freq, 0, i64::MAX)?;
        bounded("keep_checkpoints", self.keep_checkpoints, 0, 1_000_000)?;
        bounded("eval_images", self.eval_images, 2, 1_000_000)?;
        bounded("ch", self.ch, 1, 4096)?;
        bounded("n_res", self.n_res, 0, 256)?;
        bounded("img_size", self.img_size, 8, 8192)?;
        if !(0..=64).contains(&self.num_workers) {
            return Err(Error::config(format!("num_workers must be between 0 and 64, got {}", self.num_workers)));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(format!("lr must be a positive number, got {}", self.lr)));
        }
        for (field, value) in [
            ("weight_decay", self.weight_decay),
            ("adv_weight", self.adv_weight),
            ("cycle_weight", self.cycle_weight),
            ("identity_weight", self.identity_weight),
            ("cam_weight", self.cam_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(Error::config(format!("{field} must be a finite number >= 0, got {value}")));
            }
        }
        if !MODELS.contains(&self.model.as_str()) {
            return Err(Error::config(format!("model must be one of {MODELS:?}, got {:?}", self.model)));
        }
        bounded("pool_size", self.pool_size, 0, 100_000)?;
        if !VARIANTS.contains(&self.variant.as_str()) {
            return Err(Error::config(format!("variant must be one of {VARIANTS:?}, got {:?}", self.variant)));
        }
        if self.variant == "tf" && (self.is_cyclegan() || self.n_res != 4) {
            return Err(Error::config(format!(
                "variant=\"tf\" is U-GAT-IT's TensorFlow network, which needs model=\"ugatit\" and n_res=4 (got model={:?}, n_res={})",
                self.model, self.n_res
            )));
        }
        if !PRECISIONS.contains(&self.precision.as_str()) {
            return Err(Error::config(format!("precision must be one of {PRECISIONS:?}, got {:?}", self.precision)));
        }
        if (self.precision != "fp32" || self.channels_last) && (self.is_cyclegan() || self.variant != "pytorch") {
            return Err(Error::config(format!(
                "precision={:?} and channels_last are for U-GAT-IT's PyTorch networks (got model={:?}, variant={:?})",
                self.precision, self.model, self.variant
            )));
        }
        if self.cuda_graph && (self.is_cyclegan() || !self.device.starts_with("cuda")) {
            return Err(Error::config(format!(
                "cuda_graph=True needs model=\"ugatit\" on a CUDA device (got model={:?}, device={:?})",
                self.model, self.device
            )));
        }
        if !(self.lambda_identity.is_finite() && self.lambda_identity >= 0.0) {
            return Err(Error::config(format!(
                "lambda_identity must be a finite number >= 0, got {}",
                self.lambda_identity
            )));
        }
        if self.is_cyclegan() {
            let patch = self.patch_discriminator();
            if self.img_size % 4 != 0 || self.img_size < patch.min_input_size() {
                return Err(Error::config(format!(
                    "img_size must be a multiple of 4 and at least {} (the PatchGAN's minimum), got {}",
                    patch.min_input_size(),
                    self.img_size
                )));
            }
            return Ok(());
        }
        let global = self.discriminator(true);
        if self.img_size % 4 != 0 || self.img_size < global.min_input_size() {
            return Err(Error::config(format!(
                "img_size must be a multiple of 4 and at least {} (the global discriminator's \
                 minimum), got {}",
                global.min_input_size(),
                self.img_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod train_config_tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_errors_name_the_field() {
        TrainConfig::default().validate().unwrap();
        let bad = TrainConfig { img_size: 64, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("img_size"));
        let bad = TrainConfig { lr: f64::NAN, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("lr"));
        let bad = TrainConfig { batch_size: 0, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("batch_size"));
    }
}
