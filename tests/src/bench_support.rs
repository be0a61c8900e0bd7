//! What the search benchmarks share (bench-search, bench-generalization): one full-budget run's
//! final validation loss, and a median.

use std::cell::Cell;
use std::sync::Arc;

use lrsweep_worker::one_trial::OneTrial;
use lrsweep_worker::trainer::{run_trial, PreparedData};

/// Validation loss after a full-budget run at `lr` on the whole training split (+inf if not
/// finite). Stops a run as soon as its training loss is not finite: its end would be NaN.
pub fn full_loss(trial: &OneTrial, data: &Arc<PreparedData>, lr: f64) -> f64 {
    let mut assignment = trial.assignment(lr);
    // Only the final validation loss is needed; evaluation does not change training.
    assignment.eval_every = assignment.steps;
    let blown = Cell::new(false);
    let mut last = f64::NAN;
    let run = run_trial(&assignment, data.clone(), &|| blown.get(), &mut |p| {
        if !p.train_loss.is_finite() {
            blown.set(true);
        }
        if let Some(v) = p.val_loss {
            last = v;
        }
    })
    .unwrap_or_else(|e| panic!("full-budget run at {lr}: {e}"));
    if run.stopped || !last.is_finite() {
        f64::INFINITY
    } else {
        last
    }
}

/// The median (mean of the middle two for an even count); NaN for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
