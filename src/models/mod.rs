//! The official U-GAT-IT networks: `ResnetGenerator` and `Discriminator` (SPEC §1, §2).

pub mod discriminator;
pub mod generator;
pub mod input;

pub use discriminator::Discriminator;
pub use generator::Generator;

use tch::Tensor;

/// What both networks return: the image (or patch logits), the CAM logits (B, 2) and the
/// attention heatmap (B, 1, h, w).
pub struct Output {
    pub out: Tensor,
    pub cam_logit: Tensor,
    pub heatmap: Tensor,
}
