//! The official learning-rate schedule (SPEC §3.4): constant for the first half of the run, then
//! at every step `step > iteration // 2` the rate drops by `lr / (iteration // 2)` *before* that
//! step's update, reaching ~0 at the last step. Kept as the same cumulative f64 subtraction as the
//! official Python so the values agree bit for bit.

/// The learning rate to use for `step` (1-based), given the rate used at `step - 1`.
pub fn decayed_lr(previous_lr: f64, base_lr: f64, step: i64, iteration: i64, decay: bool) -> f64 {
    let half = iteration / 2;
    if decay && half > 0 && step > half {
        previous_lr - base_lr / half as f64
    } else {
        previous_lr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_then_linear_to_zero() {
        let (base, iteration) = (1e-4, 10);
        let mut lr = base;
        let mut seen = Vec::new();
        for step in 1..=iteration {
            lr = decayed_lr(lr, base, step, iteration, true);
            seen.push(lr);
        }
        assert!(seen[..5].iter().all(|&v| v == base));
        assert!((seen[5] - 0.8e-4).abs() < 1e-15);
        assert!(seen[9].abs() < 1e-15);
        assert_eq!(decayed_lr(base, base, 9, 10, false), base);
    }
}
