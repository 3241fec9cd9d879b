//! Training: losses, the Adam optimizer, the LR schedule and the trainer.

pub mod checkpoint;
pub mod losses;
pub mod optim;
pub mod schedule;
pub mod trainer;

pub use trainer::{StepLosses, Trainer, NETWORK_NAMES};
