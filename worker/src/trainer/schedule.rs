//! Learning-rate schedules within a trial (method.md §2 and §3).

use std::f64::consts::PI;

use lrsweep_proto::domain::{CyclicalMode, Ramp, ScheduleSpec};

/// The rate for update `step` (0-based) of a trial of `total_steps` updates whose rate is `lr`:
/// the start of a range test, the peak of a cyclical or 1cycle schedule.
pub fn scheduled_lr(schedule: &ScheduleSpec, lr: f64, step: u64, total_steps: u64) -> f64 {
    let (k, n) = (step as f64, total_steps as f64);
    match *schedule {
        ScheduleSpec::Constant => lr,
        ScheduleSpec::RangeTest {
            end_lr,
            ramp: Ramp::Exponential,
        } => lr * (end_lr / lr).powf(k / n),
        ScheduleSpec::RangeTest {
            end_lr,
            ramp: Ramp::Linear,
        } => {
            // One step has no ramp to climb: it stays at the start (and avoids 0/0).
            let progress = if total_steps > 1 { k / (n - 1.0) } else { 0.0 };
            lr + progress * (end_lr - lr)
        }
        ScheduleSpec::Cyclical {
            step_size,
            base_fraction,
            mode,
        } => {
            let s = step_size as f64;
            let cycle = (1.0 + k / (2.0 * s)).floor();
            let x = (k / s - 2.0 * cycle + 1.0).abs();
            let scale = match mode {
                CyclicalMode::Triangular => 1.0,
                CyclicalMode::Triangular2 => 0.5f64.powf(cycle - 1.0),
                CyclicalMode::ExpRange { gamma } => gamma.powf(k),
            };
            let base = lr * base_fraction;
            base + (lr - base) * (1.0 - x).max(0.0) * scale
        }
        ScheduleSpec::OneCycle {
            pct_start,
            div_factor,
            final_div_factor,
        } => {
            // PyTorch's OneCycleLR (two phases, cosine annealing): the rate reaches its peak at
            // step pct_start·N − 1 and its floor at the last step N − 1.
            let initial = lr / div_factor;
            let floor = initial / final_div_factor;
            let peak_step = pct_start * n - 1.0;
            let (start_step, end_step, from, to) = if k <= peak_step {
                (0.0, peak_step, initial, lr)
            } else {
                (peak_step, n - 1.0, lr, floor)
            };
            let span = end_step - start_step;
            // A phase shorter than one step is already over (PyTorch would divide by zero).
            let pct = if span > 0.0 {
                ((k - start_step) / span).min(1.0)
            } else {
                1.0
            };
            to + (from - to) / 2.0 * (1.0 + (PI * pct).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_near(got: f64, want: f64) {
        assert!(
            (got - want).abs() <= 1e-12 * want.abs().max(1e-12),
            "got {got}, want {want}"
        );
    }

    fn cyclical(mode: CyclicalMode) -> ScheduleSpec {
        // Rate 1 → base 0.25, half-cycle 4 steps: peaks at 4, 12, 20; troughs at 0, 8, 16.
        ScheduleSpec::Cyclical {
            step_size: 4,
            base_fraction: 0.25,
            mode,
        }
    }

    #[test]
    fn constant_is_the_trial_rate() {
        for step in [0, 1, 99] {
            assert_eq!(scheduled_lr(&ScheduleSpec::Constant, 0.3, step, 100), 0.3);
        }
    }

    #[test]
    fn exponential_range_test() {
        let s = ScheduleSpec::RangeTest {
            end_lr: 1.0,
            ramp: Ramp::Exponential,
        };
        // lr_k = 1e-3·1000^(k/4).
        assert_near(scheduled_lr(&s, 1e-3, 0, 4), 1e-3);
        assert_near(scheduled_lr(&s, 1e-3, 2, 4), 0.031_622_776_601_683_79);
        assert_near(scheduled_lr(&s, 1e-3, 3, 4), 0.177_827_941_003_892_3);
    }

    #[test]
    fn linear_range_test() {
        let s = ScheduleSpec::RangeTest {
            end_lr: 1.0,
            ramp: Ramp::Linear,
        };
        // lr_k = 0.1 + k/9·0.9: the last of 10 steps reaches the end exactly.
        assert_near(scheduled_lr(&s, 0.1, 0, 10), 0.1);
        assert_near(scheduled_lr(&s, 0.1, 3, 10), 0.4);
        assert_near(scheduled_lr(&s, 0.1, 9, 10), 1.0);
        assert_near(scheduled_lr(&s, 0.1, 0, 1), 0.1);
    }

    #[test]
    fn triangular_cycles_between_base_and_peak() {
        let s = cyclical(CyclicalMode::Triangular);
        // t = 2: cycle 1, x = |0.5 − 1| = 0.5 → 0.25 + 0.75·0.5.
        for (t, want) in [
            (0, 0.25),
            (2, 0.625),
            (4, 1.0),
            (6, 0.625),
            (8, 0.25),
            (12, 1.0),
        ] {
            assert_near(scheduled_lr(&s, 1.0, t, 100), want);
        }
    }

    #[test]
    fn triangular2_halves_the_amplitude_each_cycle() {
        let s = cyclical(CyclicalMode::Triangular2);
        // Peaks: cycle 1 → 1.0; cycle 2 → 0.25 + 0.75/2; cycle 3 → 0.25 + 0.75/4.
        // Cycle boundaries (t = 8, 16) sit at the base whatever the scale.
        for (t, want) in [
            (4, 1.0),
            (8, 0.25),
            (12, 0.625),
            (14, 0.4375),
            (16, 0.25),
            (20, 0.4375),
        ] {
            assert_near(scheduled_lr(&s, 1.0, t, 100), want);
        }
    }

    #[test]
    fn exp_range_decays_by_gamma_per_step() {
        let s = cyclical(CyclicalMode::ExpRange { gamma: 0.9 });
        // t = 4: 0.25 + 0.75·0.9^4 = 0.25 + 0.75·0.6561; t = 12: 0.9^12 = 0.282429536481.
        for (t, want) in [
            (0, 0.25),
            (4, 0.742_075),
            (8, 0.25),
            (12, 0.25 + 0.75 * 0.282_429_536_481),
        ] {
            assert_near(scheduled_lr(&s, 1.0, t, 100), want);
        }
    }

    #[test]
    fn one_cycle_starts_peaks_and_ends_like_pytorch() {
        let s = ScheduleSpec::OneCycle {
            pct_start: 0.3,
            div_factor: 25.0,
            final_div_factor: 1e4,
        };
        // Start 2/25 = 0.08; peak 2 at step 0.3·100 − 1 = 29; end 0.08/1e4 at step 99.
        assert_near(scheduled_lr(&s, 2.0, 0, 100), 0.08);
        assert_near(scheduled_lr(&s, 2.0, 29, 100), 2.0);
        assert_near(scheduled_lr(&s, 2.0, 99, 100), 8e-6);
        // Halfway down (step 64 of 29..99): the mean of peak and end.
        assert_near(scheduled_lr(&s, 2.0, 64, 100), (2.0 + 8e-6) / 2.0);
        // Warm-up: step 14.5 would be halfway up; step 14 lies just below the mean.
        let up = scheduled_lr(&s, 2.0, 14, 100);
        let want = 2.0 + (0.08 - 2.0) / 2.0 * (1.0 + (PI * 14.0 / 29.0).cos());
        assert_near(up, want);
        // Too few steps for a warm-up: no division by zero.
        assert!(scheduled_lr(&s, 2.0, 0, 1).is_finite());
        assert!(scheduled_lr(&s, 2.0, 0, 3).is_finite());
    }
}
