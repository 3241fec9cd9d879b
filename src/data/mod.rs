//! The image pipeline: find, decode, transform and batch domain images, in background threads.

pub mod decode;
pub mod demo;
pub mod encode;
pub mod inception;
pub mod loader;
pub mod prepare;
pub mod resample;
pub mod rng;
pub mod scan;
pub mod transforms;

pub use loader::{load_image, DomainLoader, LoaderConfig};
