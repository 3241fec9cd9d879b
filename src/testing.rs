//! Helpers shared by the unit tests.

use crate::data::rng::Rng;
use tch::Tensor;

/// Float32 normal draws that depend only on `seed`: libtorch's generator is shared by every
/// test thread, so its draws differ from run to run.
pub fn fixed_normal(shape: &[i64], seed: u64) -> Tensor {
    let mut rng = Rng::from_parts(&[seed]);
    let count = shape.iter().product::<i64>() as usize;
    let values: Vec<f32> = (0..count)
        .map(|_| {
            // Box-Muller; 1 - u keeps the logarithm's argument in (0, 1].
            let (u, v) = (1.0 - rng.uniform(), rng.uniform());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    Tensor::from_slice(&values).reshape(shape)
}
