//! One trial's own trace: NaN, divergence, and the smoothed values its score needs.

use std::collections::VecDeque;

use lrsweep_proto::domain::TracePoint;
use lrsweep_proto::spec::PruningSpec;

use super::PruneReason;

/// How many of the latest validation losses the final score averages.
const SCORE_WINDOW: usize = 3;

/// Watches one trial's trace for NaN and divergence, and keeps what its score needs.
#[derive(Clone, Debug)]
pub struct TraceMonitor {
    beta: f64,
    divergence_factor: f64,
    /// Biased EMA v_k and β^k, so the debiased value is v_k / (1 − β^k).
    ema: f64,
    beta_pow: f64,
    smoothed: Option<f64>,
    best_smoothed: f64,
    last_step: u64,
    last_train_loss: Option<f64>,
    recent_val: VecDeque<f64>,
}

impl TraceMonitor {
    pub fn new(spec: &PruningSpec) -> TraceMonitor {
        TraceMonitor {
            beta: spec.smoothing,
            divergence_factor: spec.divergence_factor,
            ema: 0.0,
            beta_pow: 1.0,
            smoothed: None,
            best_smoothed: f64::INFINITY,
            last_step: 0,
            last_train_loss: None,
            recent_val: VecDeque::with_capacity(SCORE_WINDOW),
        }
    }

    /// Feeds one point (in step order). `Nan` if the training or validation loss is not finite,
    /// `Diverged` if the smoothed training loss exceeds `divergence_factor` × its best so far.
    ///
    /// That also covers "× the initial loss": the debiased EMA starts at s_1 = loss_1, so the
    /// best smoothed loss is never above the initial loss.
    pub fn observe(&mut self, point: &TracePoint) -> Option<PruneReason> {
        self.last_step = point.step;
        self.last_train_loss = Some(point.train_loss);
        if let Some(val) = point.val_loss {
            if self.recent_val.len() == SCORE_WINDOW {
                self.recent_val.pop_front();
            }
            self.recent_val.push_back(val);
        }
        if !point.train_loss.is_finite() || point.val_loss.is_some_and(|v| !v.is_finite()) {
            // Kept out of the EMA: one NaN would poison every later smoothed value.
            return Some(PruneReason::Nan);
        }
        self.ema = self.beta * self.ema + (1.0 - self.beta) * point.train_loss;
        self.beta_pow *= self.beta;
        let smoothed = self.ema / (1.0 - self.beta_pow);
        self.smoothed = Some(smoothed);
        let diverged = smoothed > self.divergence_factor * self.best_smoothed;
        self.best_smoothed = self.best_smoothed.min(smoothed);
        diverged.then_some(PruneReason::Diverged)
    }

    /// Debiased EMA of the training loss; None before the first finite loss.
    pub fn smoothed(&self) -> Option<f64> {
        self.smoothed
    }

    pub fn last_step(&self) -> u64 {
        self.last_step
    }

    /// Mean of the last (up to) three validation losses: one measurement is noisy, and the
    /// trailing ones are what the trained model is worth. None if there is none or any of them
    /// is not finite.
    pub fn final_score(&self) -> Option<f64> {
        if self.recent_val.is_empty() || self.recent_val.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(self.recent_val.iter().sum::<f64>() / self.recent_val.len() as f64)
    }

    pub fn last_train_loss(&self) -> Option<f64> {
        self.last_train_loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::test_support::*;

    #[test]
    fn debiased_ema_matches_hand_computation() {
        // β = 0.5, losses 4, 2, 1:
        //   v1 = 2,    s1 = 2 / 0.5     = 4
        //   v2 = 2,    s2 = 2 / 0.75    = 8/3
        //   v3 = 1.5,  s3 = 1.5 / 0.875 = 12/7
        let mut m = TraceMonitor::new(&pruning(|p| p.smoothing = 0.5));
        assert_eq!(m.smoothed(), None);
        let expected = [4.0, 8.0 / 3.0, 12.0 / 7.0];
        for (k, (loss, s)) in [4.0, 2.0, 1.0].into_iter().zip(expected).enumerate() {
            assert_eq!(m.observe(&point(k as u64 + 1, loss)), None);
            assert!(close(m.smoothed().unwrap(), s), "step {}", k + 1);
        }
        assert_eq!(m.last_step(), 3);
        assert_eq!(m.last_train_loss(), Some(1.0));
    }

    #[test]
    fn no_smoothing_is_the_raw_loss() {
        let mut m = TraceMonitor::new(&pruning(|p| p.smoothing = 0.0));
        m.observe(&point(1, 3.0));
        m.observe(&point(2, 2.5));
        assert_eq!(m.smoothed(), Some(2.5));
    }

    #[test]
    fn non_finite_losses_are_nan() {
        let mut m = TraceMonitor::new(&PruningSpec::default());
        assert_eq!(m.observe(&point(1, 2.3)), None);
        assert_eq!(m.observe(&point(2, f64::NAN)), Some(PruneReason::Nan));
        // The NaN stayed out of the EMA.
        assert_eq!(m.smoothed(), Some(2.3));
        assert_eq!(m.observe(&point(3, f64::INFINITY)), Some(PruneReason::Nan));
        assert_eq!(m.observe(&with_val(4, f64::NAN)), Some(PruneReason::Nan));
        assert_eq!(m.final_score(), None);
    }

    #[test]
    fn exploding_loss_diverges_at_the_hand_computed_step() {
        // β = 0.5, factor 4, losses 1, 1, 1, 5, 5: smoothed stays 1 for three steps (best 1),
        //   v4 = 0.4375 + 2.5 = 2.9375,   s4 = 2.9375 / 0.9375   ≈ 3.133 (≤ 4: keep going)
        //   v5 = 1.46875 + 2.5 = 3.96875, s5 = 3.96875 / 0.96875 ≈ 4.097 (> 4: diverged)
        let mut m = TraceMonitor::new(&pruning(|p| p.smoothing = 0.5));
        let losses = [1.0, 1.0, 1.0, 5.0, 5.0];
        let verdicts: Vec<_> = losses
            .iter()
            .enumerate()
            .map(|(k, &l)| m.observe(&point(k as u64 + 1, l)))
            .collect();
        assert_eq!(
            verdicts,
            vec![None, None, None, None, Some(PruneReason::Diverged)]
        );
        assert!(close(m.smoothed().unwrap(), 3.96875 / 0.96875));
    }

    #[test]
    fn divergence_is_relative_to_the_best_smoothed_loss() {
        // Loss falls from 2 to 0.1, then climbs back to 0.5: below the initial loss, but 5×
        // the best, which is divergence.
        let mut m = TraceMonitor::new(&pruning(|p| p.smoothing = 0.0));
        for (k, l) in [2.0, 1.0, 0.1, 0.3].into_iter().enumerate() {
            assert_eq!(m.observe(&point(k as u64 + 1, l)), None);
        }
        assert_eq!(m.observe(&point(5, 0.5)), Some(PruneReason::Diverged));
    }

    #[test]
    fn final_score_averages_the_last_three_validation_losses() {
        let mut m = TraceMonitor::new(&PruningSpec::default());
        assert_eq!(m.final_score(), None);
        m.observe(&with_val(25, 9.0));
        assert_eq!(m.final_score(), Some(9.0));
        for (step, v) in [(50, 3.0), (75, 2.0), (100, 1.0)] {
            m.observe(&with_val(step, v));
        }
        m.observe(&point(101, 1.0));
        assert_eq!(m.final_score(), Some(2.0));
    }
}
