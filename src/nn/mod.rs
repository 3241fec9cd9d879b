//! Building blocks shared by the generator and the discriminator.

pub mod blocks;
pub mod cam;
pub mod compute;
pub mod layers;
pub mod norm;
pub mod recorded_linear;
pub mod spectral_norm;
pub mod store;

pub use store::{Init, ParamStore, Path, TensorSpec, Var, VarKind};
