//! The coarse-to-fine learning-rate search (method.md §1), as pure decisions: which rates to try
//! next given the results so far, and what to recommend at the end. No I/O, no clock, no
//! randomness, so every decision can be replayed in a test.

use serde::Serialize;

use crate::spec::{SearchSpec, SweepSpec};

/// One round of the search: the rates to train, and the budget each gets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundPlan {
    pub round: u32,
    /// Ascending.
    pub lrs: Vec<f64>,
    pub steps: u64,
    pub data_fraction: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    Queued,
    Running,
    Completed,
    Pruned,
    Failed,
    Cancelled,
}

/// How one replicate (one data subset) of a candidate rate ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReplicateOutcome {
    pub status: TrialStatus,
    pub diverged: bool,
    /// Smoothed final validation loss, when the trial finished with one.
    pub score: Option<f64>,
}

/// One candidate rate's result in a round, over all its replicates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CandidateResult {
    pub lr: f64,
    pub diverged: bool,
    /// Mean validation score over the replicates; lower is better.
    pub score: Option<f64>,
}

impl CandidateResult {
    /// Diverged if any replicate diverged (stability is a property of the rate, so one
    /// divergence condemns it). Scored only if every replicate completed with a finite score: a
    /// mean over a partial set would not be paired with the other candidates' means.
    pub fn from_replicates(lr: f64, outcomes: &[ReplicateOutcome]) -> CandidateResult {
        let diverged = outcomes.iter().any(|o| o.diverged);
        let scores: Option<Vec<f64>> = outcomes
            .iter()
            .map(|o| match (o.status, o.score) {
                (TrialStatus::Completed, Some(s)) if s.is_finite() => Some(s),
                _ => None,
            })
            .collect();
        let score = scores
            .filter(|s| !s.is_empty())
            .map(|s| s.iter().sum::<f64>() / s.len() as f64);
        CandidateResult {
            lr,
            diverged,
            score,
        }
    }

    /// Trained to the end of its budget on every replicate without diverging.
    fn usable(&self) -> bool {
        !self.diverged && self.score.is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub best_lr: f64,
    pub best_score: f64,
    /// Largest rate that trained to the end of its budget without diverging.
    pub max_stable_lr: f64,
    /// Cyclical-schedule range [max_stable/4, max_stable] (Smith; method.md §1).
    pub suggested_min_lr: f64,
    pub suggested_max_lr: f64,
}

/// One rate per decade from `min_lr`: `min_lr·10^k` for every k with `min_lr·10^k ≤ max_lr`,
/// ascending. When `min_lr` is a power of ten the values are exact powers of ten (1e-7, 1e-6, …,
/// 1 for the default range), so they print as the user expects. `max_lr` is included only when it
/// lies a whole number of decades above `min_lr`: anchoring at `min_lr` keeps the grid uniform in
/// log space, which the bracketing relies on. A range narrower than one decade gives
/// `[min_lr, max_lr]` so round 0 still compares two rates. Expects `0 < min_lr < max_lr`.
pub fn decade_grid(min_lr: f64, max_lr: f64) -> Vec<f64> {
    // The tolerance absorbs rounding in the ratio (1.0 / 1e-7 is not exactly 1e7).
    let decades = ((max_lr / min_lr).log10() + 1e-9).floor() as i32;
    if decades < 1 {
        return vec![min_lr, max_lr];
    }
    let exponent = min_lr.log10();
    let power_of_ten = (exponent - exponent.round()).abs() < 1e-9;
    (0..=decades)
        .map(|k| {
            let lr = if power_of_ten {
                pow10(exponent.round() as i32 + k)
            } else {
                min_lr * pow10(k)
            };
            lr.min(max_lr)
        })
        .collect()
}

/// 10^e, correctly rounded for |e| ≤ 22 (powers of ten up to 1e22 are exact doubles, and one
/// division of exact values rounds once), unlike `10f64.powf(e)`.
fn pow10(e: i32) -> f64 {
    if e >= 0 {
        10f64.powi(e)
    } else {
        1.0 / 10f64.powi(-e)
    }
}

/// `n` log-spaced points strictly inside (lo, hi): lo·(hi/lo)^(j/(n+1)), j = 1..=n.
fn log_grid(lo: f64, hi: f64, n: u32) -> Vec<f64> {
    let (a, b) = (lo.ln(), hi.ln());
    (1..=n)
        .map(|j| (a + (b - a) * j as f64 / (n + 1) as f64).exp())
        .collect()
}

/// Lowest-scoring usable candidate; ties go to the smaller rate (the safer one).
fn best_index(candidates: &[CandidateResult]) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.usable())
        .min_by(|(_, a), (_, b)| a.score.unwrap().total_cmp(&b.score.unwrap()))
        .map(|(i, _)| i)
}

pub struct CoarseToFine {
    spec: SweepSpec,
    /// The round handed out last and its grid ratio.
    round: u32,
    ratio: f64,
    /// Results of every finished round, each ascending by rate.
    finished: Vec<Vec<CandidateResult>>,
    /// Smallest rate that ever diverged: by monotone stability no larger rate is worth trying.
    min_diverged: Option<f64>,
}

impl CoarseToFine {
    pub fn new(spec: &SweepSpec) -> CoarseToFine {
        CoarseToFine {
            spec: spec.clone(),
            round: 0,
            ratio: 10.0,
            finished: Vec::new(),
            min_diverged: None,
        }
    }

    fn search(&self) -> &SearchSpec {
        &self.spec.search
    }

    fn plan(&self, round: u32, lrs: Vec<f64>) -> RoundPlan {
        RoundPlan {
            round,
            lrs,
            steps: self.spec.round_steps(round),
            data_fraction: self.spec.round_fraction(round),
        }
    }

    /// Round 0: one rate per decade. Starts the search afresh.
    pub fn first_round(&mut self) -> RoundPlan {
        let lrs = decade_grid(self.search().min_lr, self.search().max_lr);
        self.round = 0;
        self.ratio = lrs[1] / lrs[0];
        self.finished.clear();
        self.min_diverged = None;
        self.plan(0, lrs)
    }

    /// Records the results of the round handed out last (every candidate, in any order) and
    /// plans the next one. None ends the search: rounds used up, the finished round's grid
    /// already finer than `resolution`, no candidate of the finished round scored, or no rate
    /// left below the smallest diverged one. Do not call again after None.
    pub fn next_round(&mut self, results: &[CandidateResult]) -> Option<RoundPlan> {
        let mut candidates = results.to_vec();
        candidates.sort_by(|a, b| a.lr.total_cmp(&b.lr));
        if let Some(d) = candidates.iter().find(|c| c.diverged).map(|c| c.lr) {
            self.min_diverged = Some(self.min_diverged.map_or(d, |m| m.min(d)));
        }
        let ratio = self.ratio;
        self.finished.push(candidates);

        let next = self.round + 1;
        // Refine while the finished grid is still coarser than the resolution asked for, so the
        // last round's neighbours are within `resolution` of each other when rounds allow.
        if next >= self.search().rounds || ratio < self.search().resolution {
            return None;
        }
        // Only this round's scores count: budgets differ between rounds, so do scores.
        let candidates = &self.finished[self.finished.len() - 1];
        let i = best_index(candidates)?;
        let best = candidates[i].lr;
        // The larger neighbour bounds the bracket whether or not it diverged: if it did, it is
        // the open upper end (the grid stays strictly below it).
        let lo = match i {
            0 => (best / ratio).max(self.search().min_lr),
            _ => candidates[i - 1].lr,
        };
        let hi = match candidates.get(i + 1) {
            Some(c) => c.lr,
            None => (best * ratio).min(self.search().max_lr),
        };

        let n = self.search().candidates_per_round;
        let mut lrs = log_grid(lo, hi, n);
        let mut new_ratio = (hi / lo).powf(1.0 / (n + 1) as f64);
        if let Some(d) = self.min_diverged {
            lrs.retain(|&lr| lr < d);
            if lrs.len() < 2 {
                // Too few safe points left: spend the whole grid below the diverged rate.
                if lo >= d {
                    return None;
                }
                lrs = log_grid(lo, d, n);
                new_ratio = (d / lo).powf(1.0 / (n + 1) as f64);
            }
        }
        self.round = next;
        self.ratio = new_ratio;
        Some(self.plan(next, lrs))
    }

    /// Best rate of the latest round that has a usable score (earlier rounds only when later ones
    /// have none), and the stable range over every round. None before any candidate scored.
    ///
    /// `max_stable_lr` counts only candidates that trained their full budget on every replicate
    /// without diverging (`diverged == false` and a score): a rate that was pruned, cancelled or
    /// failed early has not shown it is stable.
    pub fn recommendation(&self) -> Option<Recommendation> {
        let best = self
            .finished
            .iter()
            .rev()
            .find_map(|r| best_index(r).map(|i| r[i]))?;
        let max_stable_lr = self
            .finished
            .iter()
            .flatten()
            .filter(|c| c.usable())
            .map(|c| c.lr)
            .fold(best.lr, f64::max);
        Some(Recommendation {
            best_lr: best.lr,
            best_score: best.score?,
            max_stable_lr,
            suggested_min_lr: max_stable_lr / 4.0,
            suggested_max_lr: max_stable_lr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(lr: f64, score: f64) -> CandidateResult {
        CandidateResult {
            lr,
            diverged: false,
            score: Some(score),
        }
    }

    fn diverged(lr: f64) -> CandidateResult {
        CandidateResult {
            lr,
            diverged: true,
            score: None,
        }
    }

    /// Scores by distance (in decades) from `best`; every rate above `limit` diverges.
    fn synthetic(lrs: &[f64], best: f64, limit: f64) -> Vec<CandidateResult> {
        lrs.iter()
            .map(|&lr| {
                if lr > limit {
                    diverged(lr)
                } else {
                    scored(lr, (lr.log10() - best.log10()).powi(2))
                }
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a / b - 1.0).abs() < 1e-9
    }

    fn assert_grid(lrs: &[f64], lo: f64, hi: f64, n: usize) {
        assert_eq!(lrs.len(), n, "{lrs:?}");
        let ratio = (hi / lo).powf(1.0 / (n + 1) as f64);
        for (j, &lr) in lrs.iter().enumerate() {
            assert!(lo < lr && lr < hi, "{lr} outside ({lo}, {hi})");
            assert!(close(lr, lo * ratio.powi(j as i32 + 1)), "{lrs:?}");
        }
    }

    fn spec_with(f: impl FnOnce(&mut SweepSpec)) -> SweepSpec {
        let mut spec = SweepSpec::default();
        f(&mut spec);
        spec.validate().unwrap();
        spec
    }

    #[test]
    fn decade_grid_default_range_is_eight_exact_powers() {
        let grid = decade_grid(1e-7, 1.0);
        assert_eq!(grid, vec![1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
    }

    #[test]
    fn decade_grid_anchors_at_min_when_not_a_power_of_ten() {
        let grid = decade_grid(3e-5, 0.5);
        assert_eq!(grid.len(), 5);
        assert!(close(grid[0], 3e-5) && close(grid[4], 0.3), "{grid:?}");
        assert!(grid.windows(2).all(|w| close(w[1] / w[0], 10.0)));
        // An exact whole number of decades includes max, never beyond it.
        let grid = decade_grid(3e-5, 0.3);
        assert_eq!(grid.len(), 5);
        assert!(*grid.last().unwrap() <= 0.3);
        // Narrower than a decade: both ends.
        assert_eq!(decade_grid(0.2, 0.5), vec![0.2, 0.5]);
    }

    #[test]
    fn first_round_is_the_decade_grid_with_round_zero_budget() {
        let spec = spec_with(|s| {
            s.search.steps = vec![50, 70];
            s.search.data_fraction = vec![0.1, 0.3];
        });
        let mut search = CoarseToFine::new(&spec);
        let plan = search.first_round();
        assert_eq!(plan.round, 0);
        assert_eq!(plan.lrs, decade_grid(1e-7, 10.0));
        assert_eq!((plan.steps, plan.data_fraction), (50, 0.1));
        let next = search.next_round(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert_eq!((next.round, next.steps, next.data_fraction), (1, 70, 0.3));
        let last = search.next_round(&synthetic(&next.lrs, 1e-3, 1.0)).unwrap();
        // Lists shorter than `rounds` repeat their last entry.
        assert_eq!((last.round, last.steps, last.data_fraction), (2, 70, 0.3));
    }

    #[test]
    fn interior_best_is_bracketed_by_its_neighbours() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let next = search.next_round(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert_grid(&next.lrs, 1e-4, 1e-2, 5);
        // Five points in a two-decade bracket land the middle one on the best rate itself.
        assert!(close(next.lrs[2], 1e-3));
    }

    #[test]
    fn best_at_the_lower_edge_extends_by_the_grid_ratio() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let round1 = search.next_round(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        // Best is now the smallest candidate of round 1: extend below it by round 1's ratio.
        let ratio = round1.lrs[1] / round1.lrs[0];
        let results = synthetic(&round1.lrs, 1e-5, 1.0);
        let round2 = search.next_round(&results).unwrap();
        assert_grid(&round2.lrs, round1.lrs[0] / ratio, round1.lrs[1], 5);
    }

    #[test]
    fn best_at_the_range_edge_is_clamped_to_the_range() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let next = search.next_round(&synthetic(&plan.lrs, 1e-9, 1.0)).unwrap();
        assert_grid(&next.lrs, 1e-7, 1e-6, 5);

        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let next = search
            .next_round(&synthetic(&plan.lrs, 50.0, 100.0))
            .unwrap();
        assert_grid(&next.lrs, 1.0, 10.0, 5);
    }

    #[test]
    fn upper_edge_next_to_a_diverged_rate_stays_below_it() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        // 0.1 is best and 1.0 diverged: 1.0 is the open upper end.
        let next = search.next_round(&synthetic(&plan.lrs, 0.5, 0.5)).unwrap();
        assert_grid(&next.lrs, 0.01, 1.0, 5);
        assert!(next.lrs.iter().all(|&lr| lr < 1.0));
    }

    #[test]
    fn never_proposes_a_rate_at_or_above_an_earlier_divergence() {
        // Results that do not follow the plan (as after noisy or partial rounds) let the
        // bracket's extension reach past a rate that diverged in an earlier round.
        let mut search = CoarseToFine::new(&SweepSpec::default());
        search.first_round();
        let round1 = search
            .next_round(&[scored(1e-3, 1.0), scored(1e-2, 0.5), diverged(0.1)])
            .unwrap();
        let ratio = round1.lrs[1] / round1.lrs[0];
        // 0.09 is the best and largest: the extension 0.09·ratio passes 0.1; the grid point
        // above 0.1 is dropped, the rest keep their spacing.
        let round2 = search
            .next_round(&[scored(0.02, 0.3), scored(0.09, 0.2)])
            .unwrap();
        let full = log_grid(0.02, 0.09 * ratio, 5);
        let expected: Vec<f64> = full.into_iter().filter(|&lr| lr < 0.1).collect();
        assert_eq!(expected.len(), 4);
        assert_eq!(round2.lrs.len(), 4, "{:?}", round2.lrs);
        assert!(round2.lrs.iter().zip(&expected).all(|(&a, &b)| close(a, b)));
    }

    #[test]
    fn too_few_safe_points_move_the_grid_below_the_divergence() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        search.first_round();
        search
            .next_round(&[scored(1e-3, 1.0), scored(1e-2, 0.5), diverged(0.1)])
            .unwrap();
        // Bracket (0.08, 0.09·2.15): only one of its points lies below 0.1.
        let round2 = search
            .next_round(&[scored(0.08, 0.3), scored(0.09, 0.2)])
            .unwrap();
        assert_grid(&round2.lrs, 0.08, 0.1, 5);
    }

    #[test]
    fn stops_when_nothing_is_left_below_a_divergence() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        search.first_round();
        // Noise: 1e-3 diverged but 1e-2 scored best. Its whole bracket lies at or above 1e-3.
        let results = [diverged(1e-3), scored(1e-2, 0.5), scored(0.1, 1.0)];
        assert!(search.next_round(&results).is_none());
        assert_eq!(search.recommendation().unwrap().best_lr, 1e-2);
    }

    #[test]
    fn stops_once_the_grid_is_finer_than_the_resolution() {
        let spec = spec_with(|s| s.search.rounds = 10);
        let mut search = CoarseToFine::new(&spec);
        let mut plan = search.first_round();
        let mut ratios = vec![];
        loop {
            ratios.push(plan.lrs[1] / plan.lrs[0]);
            match search.next_round(&synthetic(&plan.lrs, 0.03, 0.3)) {
                Some(next) => plan = next,
                None => break,
            }
        }
        // 10 → 100^(1/6) ≈ 2.15 → ≈ 1.29 → ≈ 1.09: the first grid finer than 1.25 is the last.
        assert_eq!(ratios.len(), 4, "{ratios:?}");
        assert!(ratios[..3].iter().all(|&r| r >= 1.25));
        assert!(ratios[3] < 1.25);
    }

    #[test]
    fn stops_after_the_last_round_and_without_scores() {
        let spec = spec_with(|s| {
            s.search.rounds = 2;
            s.search.steps = vec![200];
            s.search.data_fraction = vec![1.0];
        });
        let mut search = CoarseToFine::new(&spec);
        let plan = search.first_round();
        let next = search.next_round(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert!(search
            .next_round(&synthetic(&next.lrs, 1e-3, 1.0))
            .is_none());

        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let all_diverged: Vec<_> = plan.lrs.iter().map(|&lr| diverged(lr)).collect();
        assert!(search.next_round(&all_diverged).is_none());
        assert!(search.recommendation().is_none());
    }

    #[test]
    fn candidate_result_needs_every_replicate_to_score() {
        let done = |score| ReplicateOutcome {
            status: TrialStatus::Completed,
            diverged: false,
            score: Some(score),
        };
        let r = CandidateResult::from_replicates(0.1, &[done(1.0), done(2.0)]);
        assert_eq!((r.diverged, r.score), (false, Some(1.5)));

        let pruned = ReplicateOutcome {
            status: TrialStatus::Pruned,
            diverged: false,
            score: Some(0.5),
        };
        let r = CandidateResult::from_replicates(0.1, &[done(1.0), pruned]);
        assert_eq!((r.diverged, r.score), (false, None));

        let blew_up = ReplicateOutcome {
            status: TrialStatus::Pruned,
            diverged: true,
            score: None,
        };
        let r = CandidateResult::from_replicates(0.1, &[done(1.0), blew_up]);
        assert_eq!((r.diverged, r.score), (true, None));

        assert_eq!(CandidateResult::from_replicates(0.1, &[]).score, None);
        assert_eq!(
            CandidateResult::from_replicates(0.1, &[done(f64::NAN)]).score,
            None
        );
    }

    #[test]
    fn recommendation_uses_latest_scores_and_largest_stable_rate() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        assert!(search.recommendation().is_none());
        search.first_round();
        let pruned = CandidateResult {
            lr: 0.3,
            diverged: false,
            score: None,
        };
        search
            .next_round(&[
                scored(1e-3, 2.0),
                scored(1e-2, 1.0),
                scored(0.1, 1.5),
                pruned,
                diverged(1.0),
            ])
            .unwrap();
        let rec = search.recommendation().unwrap();
        assert_eq!((rec.best_lr, rec.best_score), (1e-2, 1.0));
        // 0.3 never finished, 1.0 diverged: 0.1 is the largest rate shown stable.
        assert_eq!(rec.max_stable_lr, 0.1);
        assert_eq!(rec.suggested_max_lr, 0.1);
        assert_eq!(rec.suggested_min_lr, 0.025);

        // A later round's best wins even with a worse number (longer budget, other scale); with
        // no scores at all in it, the earlier round still answers.
        assert!(search
            .next_round(&[scored(5e-3, 3.0), scored(2e-2, 4.0)])
            .is_some());
        assert_eq!(search.recommendation().unwrap().best_lr, 5e-3);
        assert_eq!(search.recommendation().unwrap().max_stable_lr, 0.1);
    }

    #[test]
    fn recommendation_falls_back_to_an_earlier_round() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        search.first_round();
        search
            .next_round(&[scored(1e-3, 2.0), scored(1e-2, 1.0), scored(0.1, 1.5)])
            .unwrap();
        assert!(search
            .next_round(&[diverged(5e-3), diverged(2e-2)])
            .is_none());
        assert_eq!(search.recommendation().unwrap().best_lr, 1e-2);
    }

    #[test]
    fn simulated_sweep_converges_to_the_optimum() {
        let spec = spec_with(|s| s.search.rounds = 10);
        let mut search = CoarseToFine::new(&spec);
        let mut plan = search.first_round();
        let mut rounds = 1;
        while let Some(next) = search.next_round(&synthetic(&plan.lrs, 0.03, 0.3)) {
            // 1.0 diverged in round 0: nothing at or above it is tried again.
            assert!(next.lrs.iter().all(|&lr| lr < 1.0), "{next:?}");
            plan = next;
            rounds += 1;
        }
        assert!(rounds < 10, "stopped by resolution, not by rounds");
        let rec = search.recommendation().unwrap();
        let ratio = (rec.best_lr / 0.03).max(0.03 / rec.best_lr);
        assert!(ratio < spec.search.resolution, "{rec:?}");
        assert!(rec.max_stable_lr <= 0.3, "{rec:?}");
        assert!(rec.best_lr <= rec.max_stable_lr);
    }
}
