//! U-GAT-IT as the TensorFlow release computes it (taki0112/UGATIT; docs/tensorflow.md), the
//! network the authors' released selfie2anime weights belong to. What differs from the PyTorch
//! networks (checked against the real TensorFlow: tests/test_tf_variant.py):
//!
//! - every convolution and dense layer has a bias; the encoder's instance norms are affine;
//! - the generator's CAM scores GAP and GMP with one dense layer, and weights the features by a
//!   *separate* kernel + bias (`CAM_logit/kernel` + `CAM_logit/bias`, beside
//!   `CAM_logit/dense/*`), so both halves of the concatenation are the same product;
//! - the γ/β MLP is `ch * n_res` wide, with biases; the full model flattens H, W, C (NHWC);
//! - AdaLIN/LIN use the biased variance; AdaLIN's rho starts at 1 and is smoothed:
//!   `clip(rho - 0.1, 0, 1)`;
//! - the discriminators: reflect padding, with the stride-1 4x4 convolutions padded 1 above and
//!   left and 2 below and right (the size is kept); biases everywhere; spectral norm iterated
//!   from the stored `u` on every call (TensorFlow has no eval mode for it); the CAM layer is
//!   spectrally normalised for the logit but weights the features with its raw kernel + bias;
//!   leaky-ReLU slope 0.2 everywhere.

pub mod discriminator;
pub mod generator;
pub mod layers;

pub use discriminator::TfDiscriminator;
pub use generator::TfGenerator;
