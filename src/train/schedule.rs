//! The official learning-rate schedule: constant for the first half of the run, then at every
//! step `step > iteration // 2` the rate drops by `lr / (iteration // 2)` *before* that step's
//! update, reaching ~0 at the last step.
//!
//! The rate is a pure function of the step and the config, so a step that fails, a resumed run
//! or a checkpoint from elsewhere cannot shift it. It is computed as the same cumulative f64
//! subtraction the official loop performs, so an uninterrupted run agrees bit for bit; past the
//! end of the schedule (and where rounding would dip below zero) it is 0.

/// The learning rate of step `step` (1-based).
pub fn lr_at(base_lr: f64, step: i64, iteration: i64, decay: bool) -> f64 {
    let half = iteration / 2;
    if !decay || half <= 0 || step <= half {
        return base_lr;
    }
    let decrement = base_lr / half as f64;
    let mut lr = base_lr;
    // At most iteration/2 subtractions (0.5 M at the paper's length: well under a millisecond).
    for _ in half..step.min(iteration) {
        lr -= decrement;
    }
    if step > iteration {
        return 0.0;
    }
    lr.max(0.0)
}

/// CycleGAN's `lambda` policy at step `step` (1-based), an epoch of theirs being one iteration
/// here: the base rate for the first `iteration // 2` steps, then
/// `lr * (1 - (step - n) / (n_decay + 1))` with `n_decay = iteration - n`, as their `LambdaLR`
/// (stepped at the end of each epoch) computes it; 0 past the end.
pub fn cyclegan_lr_at(base_lr: f64, step: i64, iteration: i64, decay: bool) -> f64 {
    let n = iteration / 2;
    let n_decay = iteration - n;
    if !decay {
        return base_lr;
    }
    if step > iteration {
        return 0.0;
    }
    base_lr * (1.0 - (step - n).max(0) as f64 / (n_decay + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyclegan_schedule_is_constant_then_linear() {
        assert_eq!(cyclegan_lr_at(2e-4, 1, 10, true), 2e-4);
        assert_eq!(cyclegan_lr_at(2e-4, 5, 10, true), 2e-4);
        assert_eq!(cyclegan_lr_at(2e-4, 6, 10, true), 2e-4 * (1.0 - 1.0 / 6.0));
        assert_eq!(cyclegan_lr_at(2e-4, 10, 10, true), 2e-4 * (1.0 - 5.0 / 6.0));
        assert_eq!(cyclegan_lr_at(2e-4, 11, 10, true), 0.0);
        assert_eq!(cyclegan_lr_at(2e-4, 9, 10, false), 2e-4);
    }

    #[test]
    fn constant_then_linear_to_zero_and_never_negative() {
        let (base, iteration) = (1e-4, 10);
        let seen: Vec<f64> = (1..=iteration).map(|step| lr_at(base, step, iteration, true)).collect();
        assert!(seen[..5].iter().all(|&v| v == base));
        assert!((seen[5] - 0.8e-4).abs() < 1e-15);
        assert!(seen[9].abs() < 1e-15);
        // Bitwise the official cumulative subtraction.
        let mut official = base;
        for (step, &lr) in (1..=iteration).zip(&seen) {
            if step > iteration / 2 {
                official -= base / (iteration / 2) as f64;
            }
            assert_eq!(lr.to_bits(), official.max(0.0).to_bits());
        }
        assert_eq!(lr_at(base, 11, 10, true), 0.0);
        assert_eq!(lr_at(base, i64::MAX, 10, true), 0.0);
        assert_eq!(lr_at(base, 9, 10, false), base);
    }
}
