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

#[cfg(test)]
mod tests {
    use super::*;

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
