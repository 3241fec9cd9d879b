//! ugatit-rs: U-GAT-IT (Kim et al., ICLR 2020) on libtorch through tch.
//!
//! The crate is the whole engine; the Python package (`python/ugatit_rs`) only wraps it.
//! The model itself (layers, formulas, the official quirks kept) is described in
//! `docs/architecture.md`.
//! - [`nn`]: building blocks — an ordered parameter store with PyTorch-default initialisation,
//!   convolutions and linear layers, normalisations (InstanceNorm, ILN, AdaILN), spectral norm,
//!   the CAM attention module, residual blocks.
//! - [`models`]: the official `ResnetGenerator` and `Discriminator`, with the official
//!   state-dict names and shapes.
//! - [`train`]: losses, Adam over flat buffers, the learning-rate schedule, the training
//!   iteration and checkpoints.
//! - [`data`]: folder scans, decoding, the official transforms, the batch loader, dataset
//!   preparation and the built-in demo domains.
//! - [`config`]: network and training configurations and their validation.
//! - [`files`]: non-blocking opens of regular files; [`device`], [`error`].
//!
//! The Python bindings live in [`python`] behind the `python` feature.

pub mod archive;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod files;
pub mod models;
pub mod nn;
pub mod tf;
pub mod train;

#[cfg(test)]
mod testing;

#[cfg(feature = "python")]
pub mod python;

pub use error::{Error, Result};
