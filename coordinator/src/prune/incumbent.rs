//! Holding a trial against the incumbent: a finished trial of an earlier round, trained with the
//! same budget on the same data, whose validation losses are known at every step. Like for like
//! (the same step, the same replicate), and trend-aware: a trial is stopped only when its
//! current rate of improvement, fading like 1/step to the end, would not bring it level with
//! the incumbent's final score. Learning curves that follow a power law in the step flatten
//! faster than that, so for them the projection is optimistic and the rule errs on the side of
//! letting a trial run.
//!
//! The decision reads the trial's own trace and the incumbent alone, so it is the same whatever
//! the order in which trials report.

use serde::Serialize;

/// How many of the latest validation losses make a level (as the score averages them).
const LEVEL_POINTS: usize = 3;
/// No verdict before this share of the budget: a smaller rate starts slower by nature.
const GRACE: f64 = 0.25;

/// What later candidates are held against (`RoundPlan::incumbent`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Incumbent {
    pub lr: f64,
    /// Its score: the mean of its last validation losses, over replicates.
    pub score: f64,
    /// Its validation losses (step, loss) in step order, per replicate (index = replicate).
    pub validation: Vec<Vec<(u64, f64)>>,
}

/// Mean of the (up to) `LEVEL_POINTS` losses ending at index `end` (inclusive).
fn level(points: &[(u64, f64)], end: usize) -> f64 {
    let start = (end + 1).saturating_sub(LEVEL_POINTS);
    let window = &points[start..=end];
    window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64
}

/// Whether a trial with validation losses `own` (step order, finite) and `budget` steps is
/// clearly behind `incumbent` on replicate `replicate`, judged at its latest point.
pub fn behind(own: &[(u64, f64)], budget: u64, incumbent: &Incumbent, replicate: u32) -> bool {
    let Some(&(step, _)) = own.last() else {
        return false;
    };
    let Some(reference) = incumbent.validation.get(replicate as usize) else {
        return false;
    };
    if (step as f64) < GRACE * budget as f64 || own.len() < 2 * LEVEL_POINTS {
        return false;
    }
    // The incumbent at the same step (its latest point at or before it).
    let at = reference.partition_point(|p| p.0 <= step);
    if at == 0 {
        return false;
    }
    let now = level(own, own.len() - 1);
    if now <= level(reference, at - 1) {
        return false;
    }
    // The trend over the second half of the trace so far.
    let half = own.partition_point(|p| p.0 <= step / 2).max(LEVEL_POINTS) - 1;
    let span = step.saturating_sub(own[half].0);
    if span == 0 {
        return false;
    }
    let slope = (now - level(own, half)) / span as f64;
    // The improvement still to come if the slope fades like 1/step (the loss falling as
    // −ln step); a slope kept up unchanged to the end credits a curve with a fall it will not
    // have.
    let ahead = step as f64 * (budget as f64 / step as f64).ln().max(0.0);
    let projected = now + slope.min(0.0) * ahead;
    projected > incumbent.score
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incumbent(values: impl Fn(u64) -> f64) -> Incumbent {
        let curve: Vec<(u64, f64)> = (1..=40).map(|k| (k * 25, values(k * 25))).collect();
        Incumbent {
            lr: 0.1,
            score: (curve[37].1 + curve[38].1 + curve[39].1) / 3.0,
            validation: vec![curve],
        }
    }

    fn trace(upto: u64, values: impl Fn(u64) -> f64) -> Vec<(u64, f64)> {
        (1..=upto / 25).map(|k| (k * 25, values(k * 25))).collect()
    }

    #[test]
    fn a_trial_rising_above_the_incumbent_is_behind() {
        let best = incumbent(|s| 1.0 / (1.0 + s as f64 / 100.0));
        // Overfitting: falls, then rises, and is above the incumbent at the same step.
        let over = |s: u64| 0.5 + ((s as f64 - 200.0) / 400.0).powi(2);
        assert!(behind(&trace(500, over), 1000, &best, 0));
        // Not before the grace period, nor on a replicate the incumbent does not have.
        assert!(!behind(&trace(200, over), 1000, &best, 0));
        assert!(!behind(&trace(500, over), 1000, &best, 1));
    }

    #[test]
    fn a_slow_trial_still_improving_fast_enough_runs_on() {
        let best = incumbent(|s| 0.2 + 0.8 / (1.0 + s as f64 / 50.0));
        // Behind at step 500, but falling steeply: projected to pass the incumbent's end
        // (0.501 at step 475 on average, slope −0.00105, 500·ln 2 steps of it: 0.137 < 0.239).
        let slow = |s: u64| 1.0 - 0.00105 * s as f64;
        assert!(!behind(&trace(500, slow), 1000, &best, 0));
        // Falling too slowly to catch up: behind.
        let crawl = |s: u64| 1.0 - 0.0001 * s as f64;
        assert!(behind(&trace(500, crawl), 1000, &best, 0));
        // Ahead at the same step: never behind.
        assert!(!behind(
            &trace(500, |s| 0.1 + 0.0 * s as f64),
            1000,
            &best,
            0
        ));
    }
}
