//! Training: losses, the Adam optimizer, the LR schedules, the U-GAT-IT and CycleGAN trainers,
//! CycleGAN's image pool, and checkpoints.

pub mod checkpoint;
pub mod cyclegan_trainer;
pub mod image_pool;
pub mod losses;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use cyclegan_trainer::{CycleGanTrainer, CYCLEGAN_NETWORK_NAMES};
pub use trainer::{StepLosses, Trainer, NETWORK_NAMES};
