//! ugatit-rs: U-GAT-IT (Kim et al., ICLR 2020) on libtorch through tch.
//!
//! The crate is the whole engine; the Python package (`python/ugatit_rs`) only wraps it.
//! - [`nn`]: building blocks — an ordered parameter store with PyTorch-default initialisation,
//!   normalisations (InstanceNorm, ILN, AdaILN), spectral norm, residual blocks.
//! - [`models`]: the official `ResnetGenerator` and `Discriminator`, with the official
//!   state-dict names and shapes.
//! - [`config`]: network configurations and their validation.
//!
//! The Python bindings live in [`python`] behind the `python` feature.

pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod files;
pub mod models;
pub mod nn;
pub mod train;

#[cfg(feature = "python")]
pub mod python;

pub use error::{Error, Result};
