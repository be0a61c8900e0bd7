//! Trials of one round against each other at milestone steps: ASHA, the median rule and the
//! dominated rule.

use std::collections::HashMap;

use lrsweep_proto::spec::{PruningSpec, RungRule};

use super::PruneReason;

#[derive(Clone, Copy, Debug)]
struct TrialProgress {
    /// Milestones passed so far (an index into `milestones`).
    passed: usize,
    /// Best (lowest) value seen, for the median rule.
    best: f64,
    /// A verdict on it was returned: it is not named again.
    condemned: bool,
}

/// One trial's value at a milestone.
#[derive(Clone, Copy, Debug)]
struct Recorded {
    trial: u64,
    lr: f64,
    /// Never NaN.
    value: f64,
}

/// Rung milestones of one round and the values trials recorded there, kept apart per replicate:
/// trials of the same replicate train on the same data subset, so only they compare fairly.
#[derive(Clone, Debug)]
pub struct RungBoard {
    rule: RungRule,
    eta: f64,
    min_peers: usize,
    milestones: Vec<u64>,
    /// `recorded[m][replicate]`: what trials recorded at milestone `m`.
    recorded: Vec<HashMap<u32, Vec<Recorded>>>,
    trials: HashMap<u64, TrialProgress>,
}

impl RungBoard {
    /// Milestones at grace·budget·η^k for k = 0, 1, … while below `budget`, rounded to whole
    /// steps (at least 1); duplicates after rounding are dropped, as is a rung that rounds up to
    /// the budget (the trial is finished there anyway). The spec must be valid (η > 1, grace > 0).
    pub fn new(spec: &PruningSpec, budget: u64) -> RungBoard {
        assert!(
            spec.reduction_factor > 1.0 && spec.grace_fraction > 0.0,
            "RungBoard needs a validated PruningSpec"
        );
        let mut milestones: Vec<u64> = Vec::new();
        let mut at = spec.grace_fraction * budget as f64;
        while at < budget as f64 {
            let step = (at.round() as u64).max(1);
            if step < budget && milestones.last() != Some(&step) {
                milestones.push(step);
            }
            at *= spec.reduction_factor;
        }
        RungBoard {
            rule: spec.rule,
            eta: spec.reduction_factor,
            min_peers: spec.min_peers as usize,
            recorded: vec![HashMap::new(); milestones.len()],
            milestones,
            trials: HashMap::new(),
        }
    }

    pub fn milestones(&self) -> &[u64] {
        &self.milestones
    }

    /// Feeds one point of `trial` (rate `lr`, on data subset `replicate`) with its current
    /// value. On first passing a milestone the value is recorded there and judged against the
    /// other trials of the same replicate; a non-finite value counts as the worst possible.
    ///
    /// Returns the trials to stop, this one first if it is among them. Under the dominated rule
    /// a value can also condemn larger rates that recorded a worse one there before it: with
    /// trials running in parallel, a larger rate may pass a milestone first.
    pub fn observe(
        &mut self,
        trial: u64,
        lr: f64,
        replicate: u32,
        step: u64,
        value: f64,
    ) -> Vec<(u64, PruneReason)> {
        let value = if value.is_finite() {
            value
        } else {
            f64::INFINITY
        };
        let progress = self.trials.entry(trial).or_insert(TrialProgress {
            passed: 0,
            best: f64::INFINITY,
            condemned: false,
        });
        progress.best = progress.best.min(value);
        let mut verdicts = Vec::new();
        let mut milestone = progress.passed;
        // A point may jump past several milestones at once: record and judge each.
        while milestone < self.milestones.len() && step >= self.milestones[milestone] {
            let peers = self.recorded[milestone].entry(replicate).or_default();
            milestone += 1;
            let here = Recorded { trial, lr, value };
            let own = judge(
                self.rule,
                self.eta,
                self.min_peers,
                peers,
                here,
                progress.best,
            );
            if self.rule == RungRule::Dominated {
                verdicts.extend(
                    peers
                        .iter()
                        .filter(|p| p.lr > lr && p.value > value)
                        .map(|p| (p.trial, PruneReason::Dominated)),
                );
            }
            peers.push(here);
            if let Some(reason) = own {
                verdicts.insert(0, (trial, reason));
                break;
            }
        }
        progress.passed = milestone;
        // Each trial is named once, however many milestones or later values condemn it.
        verdicts.retain(|(id, _)| {
            let p = self
                .trials
                .get_mut(id)
                .expect("every recorded trial has progress");
            !std::mem::replace(&mut p.condemned, true)
        });
        verdicts
    }
}

/// One trial at one milestone against its peers' values there (lower is better).
fn judge(
    rule: RungRule,
    eta: f64,
    min_peers: usize,
    peers: &[Recorded],
    here: Recorded,
    best: f64,
) -> Option<PruneReason> {
    let values = || peers.iter().map(|p| p.value).collect::<Vec<f64>>();
    match rule {
        RungRule::Dominated => peers
            .iter()
            .any(|p| p.lr < here.lr && p.value < here.value)
            .then_some(PruneReason::Dominated),
        _ if peers.len() < min_peers => None,
        // Ray Tune's ASHA keeps rewards at or above their (1 − 1/η) quantile. Our values are
        // losses (reward = −loss), so that is a loss at or below the 1/η quantile: the top 1/η
        // of the trials that reached the rung, this one included.
        RungRule::Asha => {
            let mut all = values();
            all.push(here.value);
            (here.value > quantile(&mut all, 1.0 / eta)).then_some(PruneReason::Rung)
        }
        // Golovin et al.: stop if the best value so far is worse than the peers' median.
        RungRule::Median => (best > quantile(&mut values(), 0.5)).then_some(PruneReason::Median),
        RungRule::None => None,
    }
}

/// Linear-interpolation quantile (numpy's default) of non-empty, NaN-free values, some of which
/// may be +inf.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let h = (values.len() - 1) as f64 * q;
    let (i, frac) = (h.floor() as usize, h.fract());
    let (a, b) = (values[i], values[(i + 1).min(values.len() - 1)]);
    // Interpolating between two infinities would give inf − inf = NaN.
    if frac == 0.0 || a == b {
        a
    } else {
        a + (b - a) * frac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prune::test_support::*;
    use crate::prune::TraceMonitor;

    /// The verdict on `trial` itself from one observation (its rate does not matter to ASHA,
    /// median or none).
    fn own(
        board: &mut RungBoard,
        trial: u64,
        replicate: u32,
        step: u64,
        value: f64,
    ) -> Option<PruneReason> {
        let verdicts = board.observe(trial, 0.1, replicate, step, value);
        verdicts
            .first()
            .filter(|(t, _)| *t == trial)
            .map(|&(_, reason)| reason)
    }

    #[test]
    fn milestones_follow_grace_and_eta() {
        let spec = asha();
        assert_eq!(RungBoard::new(&spec, 200).milestones(), &[40, 120]);
        assert_eq!(RungBoard::new(&spec, 1000).milestones(), &[200, 600]);
        let eta2 = pruning(|p| {
            p.reduction_factor = 2.0;
            p.grace_fraction = 0.1;
        });
        assert_eq!(RungBoard::new(&eta2, 100).milestones(), &[10, 20, 40, 80]);
        // Tiny budgets: rounded to at least step 1, no duplicates, none at the budget.
        let eta_small = pruning(|p| p.reduction_factor = 1.1);
        assert_eq!(RungBoard::new(&eta_small, 3).milestones(), &[1, 2]);
        assert!(RungBoard::new(&spec, 1).milestones().is_empty());
    }

    #[test]
    fn asha_keeps_the_top_third_once_peers_exist() {
        // η = 3, min_peers 2, milestone at step 40 (budget 200). Values arrive 1, 2, 3, 1.5, 1.6:
        //   1, 2: fewer than 2 others, not judged.
        //   3:    [1, 2, 3],           1/3 quantile at h = 2/3: 1 + 2/3·1 ≈ 1.667; 3 > it: rung.
        //   1.5:  [1, 1.5, 2, 3],      h = 1: 1.5; 1.5 is not above it: continue.
        //   1.6:  [1, 1.5, 1.6, 2, 3], h = 4/3: 1.5 + 1/3·0.1 ≈ 1.533; 1.6 > it: rung.
        let mut board = RungBoard::new(&asha(), 200);
        let values = [1.0, 2.0, 3.0, 1.5, 1.6];
        let verdicts: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(t, &v)| own(&mut board, t as u64, 0, 40, v))
            .collect();
        let rung = Some(PruneReason::Rung);
        assert_eq!(verdicts, vec![None, None, rung, None, rung]);
    }

    #[test]
    fn judged_only_when_passing_a_milestone_the_first_time() {
        let mut board = RungBoard::new(&asha(), 200);
        own(&mut board, 1, 0, 40, 1.0);
        own(&mut board, 2, 0, 40, 1.0);
        // Before the milestone nothing is judged, however bad.
        assert_eq!(own(&mut board, 3, 0, 39, 100.0), None);
        assert_eq!(own(&mut board, 3, 0, 40, 100.0), Some(PruneReason::Rung));
        // Trial 1 already passed step 40: later points there are not judged again.
        assert_eq!(own(&mut board, 1, 0, 41, 100.0), None);
    }

    #[test]
    fn a_jump_past_several_milestones_is_judged_at_each() {
        let mut board = RungBoard::new(&asha(), 200);
        for t in 0..2 {
            own(&mut board, t, 0, 40, 1.0);
        }
        // Trial 2 jumps straight to step 120: judged at 40 (2 peers) and stopped there.
        assert_eq!(own(&mut board, 2, 0, 120, 5.0), Some(PruneReason::Rung));
    }

    #[test]
    fn fewer_than_min_peers_are_never_judged() {
        let spec = pruning(|p| p.min_peers = 3);
        let mut board = RungBoard::new(&spec, 200);
        assert_eq!(own(&mut board, 1, 0, 40, 1.0), None);
        assert_eq!(own(&mut board, 2, 0, 40, 1.0), None);
        assert_eq!(own(&mut board, 3, 0, 40, 50.0), None);
        assert_eq!(own(&mut board, 4, 0, 40, 50.0), Some(PruneReason::Rung));
    }

    #[test]
    fn replicates_are_compared_only_among_themselves() {
        let mut board = RungBoard::new(&asha(), 200);
        own(&mut board, 1, 0, 40, 1.0);
        own(&mut board, 2, 0, 40, 1.0);
        // Replicate 1 has no peers yet: a value that replicate 0 would prune passes.
        assert_eq!(own(&mut board, 3, 1, 40, 100.0), None);
        assert_eq!(own(&mut board, 4, 1, 40, 100.0), None);
        assert_eq!(own(&mut board, 5, 1, 40, 50.0), None);
        assert_eq!(own(&mut board, 6, 1, 40, 200.0), Some(PruneReason::Rung));
    }

    #[test]
    fn median_rule_compares_the_best_value_with_the_peers_median() {
        let spec = pruning(|p| p.rule = RungRule::Median);
        let mut board = RungBoard::new(&spec, 200);
        own(&mut board, 1, 0, 40, 1.0);
        own(&mut board, 2, 0, 40, 3.0);
        // Peers' median is 2. Trial 3 is at 2.5 now but was at 1.8 earlier: its best counts.
        own(&mut board, 3, 0, 10, 1.8);
        assert_eq!(own(&mut board, 3, 0, 40, 2.5), None);
        // Trial 4: peers [1, 3, 2.5], median 2.5; 2.2 is better.
        assert_eq!(own(&mut board, 4, 0, 40, 2.2), None);
        // Trial 5: peers [1, 3, 2.5, 2.2], median 2.35; 2.4 is worse.
        assert_eq!(own(&mut board, 5, 0, 40, 2.4), Some(PruneReason::Median));
    }

    #[test]
    fn rule_none_never_prunes() {
        let spec = pruning(|p| p.rule = RungRule::None);
        let mut board = RungBoard::new(&spec, 200);
        for t in 0..10 {
            assert_eq!(own(&mut board, t, 0, 40, t as f64 * 100.0), None);
        }
    }

    #[test]
    fn non_finite_smoothed_values_count_as_worst_without_poisoning() {
        let mut board = RungBoard::new(&asha(), 200);
        own(&mut board, 1, 0, 40, 1.0);
        own(&mut board, 2, 0, 40, 2.0);
        // NaN and −inf are recorded as +inf, the worst value: pruned, no panic.
        assert_eq!(own(&mut board, 3, 0, 40, f64::NAN), Some(PruneReason::Rung));
        assert_eq!(
            own(&mut board, 4, 0, 40, -f64::INFINITY),
            Some(PruneReason::Rung)
        );
        // The cutoff stays a number: [1, 2, 3, inf, inf] → h = 4/3 → 2 + 1/3 ≈ 2.33. A NaN
        // cutoff would let 3 through (every comparison with NaN is false).
        assert_eq!(own(&mut board, 5, 0, 40, 3.0), Some(PruneReason::Rung));
        // [1, 1.2, 2, 3, inf, inf] → h = 5/3 → 1.2 + 0.8·2/3 ≈ 1.73.
        assert_eq!(own(&mut board, 6, 0, 40, 1.2), None);

        let spec = pruning(|p| p.rule = RungRule::Median);
        let mut board = RungBoard::new(&spec, 200);
        own(&mut board, 1, 0, 40, 1.0);
        own(&mut board, 2, 0, 40, 2.0);
        assert_eq!(
            own(&mut board, 3, 0, 40, f64::NAN),
            Some(PruneReason::Median)
        );
        // Peers [1, 2, inf]: median 2.
        assert_eq!(own(&mut board, 4, 0, 40, 2.5), Some(PruneReason::Median));
        assert_eq!(own(&mut board, 5, 0, 40, 1.5), None);
    }

    #[test]
    fn default_milestones_sit_at_a_tenth_doubling() {
        let board = RungBoard::new(&PruningSpec::default(), 1000);
        assert_eq!(board.milestones(), &[100, 200, 400, 800]);
    }

    #[test]
    fn dominated_stops_a_rate_beaten_by_a_smaller_one() {
        let mut board = RungBoard::new(&PruningSpec::default(), 1000);
        // Smallest first, as the sweep dispatches under this rule. No peer is needed to pass.
        assert!(board.observe(1, 0.01, 0, 100, 2.0).is_empty());
        // A larger rate that does better passes; one that does worse than any smaller is stopped.
        assert!(board.observe(2, 0.02, 0, 100, 1.5).is_empty());
        assert_eq!(
            board.observe(3, 0.04, 0, 100, 1.8),
            vec![(3, PruneReason::Dominated)]
        );
        // A smaller rate is never stopped by a larger one's better value: short runs favour
        // large rates.
        assert!(board.observe(4, 0.005, 0, 100, 3.0).is_empty());
        // Equal values do not dominate.
        assert!(board.observe(5, 0.03, 0, 100, 1.5).is_empty());
    }

    #[test]
    fn dominated_condemns_larger_rates_that_passed_first() {
        let mut board = RungBoard::new(&PruningSpec::default(), 1000);
        assert!(board.observe(1, 0.1, 0, 100, 1.0).is_empty());
        assert!(board.observe(2, 0.4, 0, 100, 0.4).is_empty());
        assert!(board.observe(3, 0.2, 0, 100, 0.9).is_empty());
        // Rate 0.05 arrives last: the larger rates it beats go (trials 1 and 3), the one that
        // beats it (trial 2) stays, and it is not judged worse than anything smaller.
        assert_eq!(
            board.observe(4, 0.05, 0, 100, 0.5),
            vec![(1, PruneReason::Dominated), (3, PruneReason::Dominated)]
        );
        // A trial is condemned once: a later, even better small rate names only the others.
        assert_eq!(
            board.observe(5, 0.01, 0, 100, 0.45),
            vec![(4, PruneReason::Dominated)]
        );
        assert_eq!(
            board.observe(6, 0.005, 0, 100, 0.1),
            vec![(2, PruneReason::Dominated), (5, PruneReason::Dominated)]
        );
        // Another replicate trains on other data: it neither judges nor is judged by these.
        assert!(board.observe(7, 0.4, 1, 100, 9.0).is_empty());
    }

    #[test]
    fn dominated_judges_each_milestone_a_jump_passes() {
        let mut board = RungBoard::new(&PruningSpec::default(), 1000);
        board.observe(1, 0.01, 0, 100, 1.0);
        board.observe(1, 0.01, 0, 200, 0.5);
        // Trial 2 jumps from step 99 to 250 at 0.8: better than trial 1 at 100 (1.0), worse at
        // 200 (0.5), so stopped at 200.
        board.observe(2, 0.1, 0, 99, 0.9);
        assert_eq!(
            board.observe(2, 0.1, 0, 250, 0.8),
            vec![(2, PruneReason::Dominated)]
        );
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        assert_eq!(quantile(&mut [3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&mut [4.0, 1.0, 2.0, 3.0], 0.5), 2.5);
        assert!(close(quantile(&mut [1.0, 2.0, 3.0], 1.0 / 3.0), 5.0 / 3.0));
        assert_eq!(quantile(&mut [7.0], 0.3), 7.0);
        // Between two infinities: inf, not inf − inf = NaN.
        let inf = f64::INFINITY;
        assert_eq!(quantile(&mut [inf, inf], 0.5), inf);
        assert_eq!(
            quantile(&mut [1.0, f64::INFINITY, f64::INFINITY], 0.9),
            f64::INFINITY
        );
    }

    #[test]
    fn steady_decreasing_loss_is_never_pruned() {
        let spec = PruningSpec::default();
        let mut m = TraceMonitor::new(&spec);
        let mut board = RungBoard::new(&spec, 1000);
        for step in 1..=1000u64 {
            // Noisy but decreasing: ±20% minibatch noise around 2.3·e^(−step/300).
            let noise = if step % 2 == 0 { 1.2 } else { 0.8 };
            let loss = 2.3 * (-(step as f64) / 300.0).exp() * noise;
            assert_eq!(m.observe(&point(step, loss)), None, "step {step}");
            assert_eq!(own(&mut board, 1, 0, step, m.smoothed().unwrap()), None);
        }
    }
}
