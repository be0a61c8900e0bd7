//! Coarse-to-fine (method.md §1): one rate per decade, then finer log grids around the best
//! rate, the last round on the grid strategy's lattice, and optionally a hypergradient stage
//! started from the best rate.

use lrsweep_proto::spec::{CoarseToFineSpec, SearchSpec};

use super::lattice::{decade_grid, grid_len, log_grid, span_point};
use super::outcome::{best_index, candidates, CandidateResult, TrialResult};
use super::recommendation::{recommend, HypergradientOutcome, Recommendation};
use super::{RoundPlan, Strategy};

/// Scores within this share of the best count as a tie when placing the last round.
const NEAR_TIE: f64 = 0.02;

/// Where the last round goes: the smallest usable rate scoring within `NEAR_TIE` of the best.
/// At a short budget such a tie is noise, and the full budget's best lies lower (short runs
/// favour large rates), so the smaller rate is the better guess.
fn final_anchor(candidates: &[CandidateResult]) -> Option<f64> {
    let best = candidates[best_index(candidates)?].score?;
    let tied = best + best.abs() * NEAR_TIE;
    candidates
        .iter()
        .filter(|c| c.usable() && c.score.is_some_and(|s| s <= tied))
        .map(|c| c.lr)
        .reduce(f64::min)
}

/// Coarse-to-fine (method.md §1): the decade grid, then finer grids around the best rate.
pub struct CoarseToFine {
    search: SearchSpec,
    spec: CoarseToFineSpec,
    /// The round handed out last and its grid ratio.
    round: u32,
    ratio: f64,
    /// Results of every finished round, each ascending by rate.
    finished: Vec<Vec<CandidateResult>>,
    /// Smallest rate that ever diverged: by monotone stability no larger rate is worth trying.
    min_diverged: Option<f64>,
    hypergradient: HypergradientStage,
}

/// The optional last stage (`search.hypergradient`).
#[derive(Clone, Copy, Debug)]
enum HypergradientStage {
    NotYet,
    Running { start_lr: f64 },
    Done(HypergradientOutcome),
}

impl CoarseToFine {
    pub fn new(search: &SearchSpec, spec: &CoarseToFineSpec) -> CoarseToFine {
        CoarseToFine {
            search: search.clone(),
            spec: spec.clone(),
            round: 0,
            ratio: 10.0,
            finished: Vec::new(),
            min_diverged: None,
            hypergradient: HypergradientStage::NotYet,
        }
    }

    fn plan(&self, round: u32, lrs: Vec<f64>) -> RoundPlan {
        RoundPlan {
            round,
            lrs,
            steps: self.search.round_steps(round),
            data_fraction: self.search.round_fraction(round),
            replicates: self.search.replicates,
            schedule: None,
            optimizer: None,
            incumbent: None,
        }
    }

    /// Starts the search afresh with round `round` on `lrs` (ascending, at least two, evenly
    /// log-spaced): their spacing is the grid ratio the refinement goes on from.
    pub(crate) fn start(&mut self, round: u32, lrs: Vec<f64>) -> RoundPlan {
        self.round = round;
        self.ratio = lrs[1] / lrs[0];
        self.finished.clear();
        self.min_diverged = None;
        self.plan(round, lrs)
    }

    /// Records the results of the round handed out last (every candidate, in any order) and
    /// plans the next one. None ends the search: rounds used up, the finished round's grid
    /// already finer than `resolution`, no candidate of the finished round scored, or no rate
    /// left below the smallest diverged one.
    fn advance(&mut self, results: &[CandidateResult]) -> Option<RoundPlan> {
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
        if next >= self.search.rounds || ratio < self.spec.resolution {
            return None;
        }
        // Only this round's scores count: budgets differ between rounds, so do scores.
        let candidates = &self.finished[self.finished.len() - 1];
        if let Some(anchor) = final_anchor(candidates).filter(|_| next == self.search.rounds - 1) {
            let lrs = self.final_window(anchor);
            // Empty only when noise put every rate of the window at or above a divergence.
            if lrs.is_empty() {
                return None;
            }
            self.round = next;
            self.ratio = self.spec.resolution;
            return Some(self.plan(next, lrs));
        }
        let (lo, hi) = match best_index(candidates) {
            Some(i) => {
                let best = candidates[i].lr;
                // The larger neighbour bounds the bracket whether or not it diverged: if it did,
                // it is the open upper end (the grid stays strictly below it).
                let lo = match i {
                    0 => (best / ratio).max(self.search.min_lr),
                    _ => candidates[i - 1].lr,
                };
                let hi = match candidates.get(i + 1) {
                    Some(c) => c.lr,
                    None => (best * ratio).min(self.search.max_lr),
                };
                (lo, hi)
            }
            // Every rate of the round diverged (as when a range test's suggested range lies past
            // the edge): the stable edge is below, so search the same span below the lowest.
            None if !candidates.is_empty() && candidates.iter().all(|c| c.diverged) => {
                let lowest = candidates[0].lr;
                let span = (candidates[candidates.len() - 1].lr / lowest).max(ratio);
                let lo = (lowest / span).max(self.search.min_lr);
                if lo >= lowest {
                    return None;
                }
                (lo, lowest)
            }
            None => return None,
        };

        let n = self.spec.candidates_per_round;
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

    /// The last round: the grid strategy's rates from `final_below` below to `final_above` above
    /// the one nearest `anchor`, inside the search range and below every divergence. Being the
    /// grid's own points, they are rates an exhaustive grid at `resolution` would train.
    fn final_window(&self, anchor: f64) -> Vec<f64> {
        let s = &self.search;
        let n = grid_len(s.min_lr, s.max_lr, self.spec.resolution);
        let step = (s.max_lr / s.min_lr).ln() / (n - 1) as f64;
        let at = ((anchor / s.min_lr).ln() / step).round() as i64;
        // Both are validated to at most 1000.
        let (below, above) = (
            i64::from(self.spec.final_below),
            i64::from(self.spec.final_above),
        );
        (at - below..=at + above)
            .filter(|&j| 0 <= j && j < i64::from(n))
            .map(|j| span_point(s.min_lr, s.max_lr, n, j as u32))
            .filter(|&lr| self.min_diverged.is_none_or(|d| lr < d))
            .collect()
    }
}

impl CoarseToFine {
    /// After the search: the best rate once more at the last round's budget, with the
    /// hypergradient optimizer starting from it, when the spec asks for that.
    fn hypergradient_round(&mut self) -> Option<RoundPlan> {
        let optimizer = self.spec.hypergradient.clone()?;
        if !matches!(self.hypergradient, HypergradientStage::NotYet) {
            return None;
        }
        let start_lr = recommend(&self.finished)?.best_lr;
        let last = self.search.rounds - 1;
        self.round += 1;
        self.hypergradient = HypergradientStage::Running { start_lr };
        Some(RoundPlan {
            round: self.round,
            lrs: vec![start_lr],
            steps: self.search.round_steps(last),
            data_fraction: self.search.round_fraction(last),
            replicates: self.search.replicates,
            schedule: None,
            optimizer: Some(optimizer),
            incumbent: None,
        })
    }
}

impl Strategy for CoarseToFine {
    /// Round 0: one rate per decade.
    fn first_round(&mut self) -> RoundPlan {
        let lrs = decade_grid(self.search.min_lr, self.search.max_lr);
        self.start(0, lrs)
    }

    fn next_round(&mut self, results: &[TrialResult]) -> Option<RoundPlan> {
        if let HypergradientStage::Running { start_lr } = self.hypergradient {
            let outcome = HypergradientOutcome::from_results(start_lr, results);
            self.hypergradient = HypergradientStage::Done(outcome);
            return None;
        }
        self.advance(&candidates(results))
            .or_else(|| self.hypergradient_round())
    }

    fn recommendation(&self) -> Option<Recommendation> {
        let rec = recommend(&self.finished)?;
        Some(Recommendation {
            hypergradient: match self.hypergradient {
                HypergradientStage::Done(outcome) => Some(outcome),
                _ => None,
            },
            ..rec
        })
    }

    fn report(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::decade_grid;
    use crate::search::outcome::{CurvePoint, Learning, TrialStatus};
    use crate::search::test_support::*;
    use lrsweep_proto::domain::OptimizerSpec;

    #[test]
    fn first_round_is_the_decade_grid_with_round_zero_budget() {
        let spec = spec_with(|s| {
            s.search.steps = vec![50, 70];
            s.search.data_fraction = vec![0.1, 0.3];
        });
        let mut search = c2f(&spec);
        let plan = search.first_round();
        assert_eq!(plan.round, 0);
        assert_eq!(plan.lrs, decade_grid(1e-7, 10.0));
        assert_eq!((plan.steps, plan.data_fraction), (50, 0.1));
        let next = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert_eq!((next.round, next.steps, next.data_fraction), (1, 70, 0.3));
        let last = search.advance(&synthetic(&next.lrs, 1e-3, 1.0)).unwrap();
        // Lists shorter than `rounds` repeat their last entry.
        assert_eq!((last.round, last.steps, last.data_fraction), (2, 70, 0.3));
    }

    #[test]
    fn interior_best_is_bracketed_by_its_neighbours() {
        let mut search = c2f(&c2f_spec());
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert_grid(&next.lrs, 1e-4, 1e-2, 5);
        // Five points in a two-decade bracket land the middle one on the best rate itself.
        assert!(close(next.lrs[2], 1e-3));
    }

    #[test]
    fn best_at_the_lower_edge_extends_by_the_grid_ratio() {
        let mut search = c2f(&four_rounds());
        let plan = search.first_round();
        let round1 = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        // Best is now the smallest candidate of round 1: extend below it by round 1's ratio.
        let ratio = round1.lrs[1] / round1.lrs[0];
        let results = synthetic(&round1.lrs, 1e-5, 1.0);
        let round2 = search.advance(&results).unwrap();
        assert_grid(&round2.lrs, round1.lrs[0] / ratio, round1.lrs[1], 5);
    }

    #[test]
    fn best_at_the_range_edge_is_clamped_to_the_range() {
        let mut search = c2f(&c2f_spec());
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 1e-9, 1.0)).unwrap();
        assert_grid(&next.lrs, 1e-7, 1e-6, 5);

        let mut search = c2f(&c2f_spec());
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 50.0, 100.0)).unwrap();
        assert_grid(&next.lrs, 1.0, 10.0, 5);
    }

    #[test]
    fn upper_edge_next_to_a_diverged_rate_stays_below_it() {
        let mut search = c2f(&c2f_spec());
        let plan = search.first_round();
        // 0.1 is best and 1.0 diverged: 1.0 is the open upper end.
        let next = search.advance(&synthetic(&plan.lrs, 0.5, 0.5)).unwrap();
        assert_grid(&next.lrs, 0.01, 1.0, 5);
        assert!(next.lrs.iter().all(|&lr| lr < 1.0));
    }

    #[test]
    fn never_proposes_a_rate_at_or_above_an_earlier_divergence() {
        // Results that do not follow the plan (as after noisy or partial rounds) let the
        // bracket's extension reach past a rate that diverged in an earlier round.
        let mut search = c2f(&four_rounds());
        search.first_round();
        let round1 = search
            .advance(&[scored(1e-3, 1.0), scored(1e-2, 0.5), diverged(0.1)])
            .unwrap();
        let ratio = round1.lrs[1] / round1.lrs[0];
        // 0.09 is the best and largest: the extension 0.09·ratio passes 0.1; the grid point
        // above 0.1 is dropped, the rest keep their spacing.
        let round2 = search
            .advance(&[scored(0.02, 0.3), scored(0.09, 0.2)])
            .unwrap();
        let full = log_grid(0.02, 0.09 * ratio, 5);
        let expected: Vec<f64> = full.into_iter().filter(|&lr| lr < 0.1).collect();
        assert_eq!(expected.len(), 4);
        assert_eq!(round2.lrs.len(), 4, "{:?}", round2.lrs);
        assert!(round2.lrs.iter().zip(&expected).all(|(&a, &b)| close(a, b)));
    }

    #[test]
    fn too_few_safe_points_move_the_grid_below_the_divergence() {
        let mut search = c2f(&four_rounds());
        search.first_round();
        search
            .advance(&[scored(1e-3, 1.0), scored(1e-2, 0.5), diverged(0.1)])
            .unwrap();
        // Bracket (0.08, 0.09·2.15): only one of its points lies below 0.1.
        let round2 = search
            .advance(&[scored(0.08, 0.3), scored(0.09, 0.2)])
            .unwrap();
        assert_grid(&round2.lrs, 0.08, 0.1, 5);
    }

    #[test]
    fn a_round_where_every_rate_diverged_is_followed_by_one_below_it() {
        let spec = spec_with(|s| {
            s.search.min_lr = 1e-4;
            s.search.max_lr = 1e2;
        });
        let mut search = c2f(&spec);
        let plan = Strategy::first_round(&mut search);
        // Decades 1e-4 .. 1e2 where everything at or above 1e-4 diverges except nothing: the
        // lowest rate is the floor, so there is nowhere below to go.
        let all: Vec<CandidateResult> = plan.lrs.iter().map(|&lr| diverged(lr)).collect();
        assert!(search.advance(&all).is_none());

        let mut search = c2f(&spec);
        let plan = Strategy::first_round(&mut search);
        let next = search.advance(&synthetic(&plan.lrs, 1.0, 10.0)).unwrap();
        // Round 1 brackets 1.0; suppose all of it diverged: round 2 searches below its lowest.
        let lowest = next.lrs[0];
        let down = search
            .advance(&next.lrs.iter().map(|&lr| diverged(lr)).collect::<Vec<_>>())
            .unwrap();
        assert!(down.lrs.iter().all(|&lr| lr < lowest), "{:?}", down.lrs);
        assert!(down.lrs[0] >= lowest / (next.lrs[next.lrs.len() - 1] / lowest) * 0.999);
    }

    #[test]
    fn the_hypergradient_stage_starts_from_the_best_rate_after_the_search() {
        let hd = OptimizerSpec::SgdHd {
            hypergrad_lr: 1e-3,
            weight_decay: 0.0,
        };
        let spec = spec_with(|s| {
            s.search.rounds = 2;
            s.search.steps = vec![100, 400];
            s.search.data_fraction = vec![0.5, 1.0];
            coarse(s).hypergradient = Some(hd.clone());
        });
        let mut search = c2f(&spec);
        let plan = Strategy::first_round(&mut search);
        let refine = search.advance(&synthetic(&plan.lrs, 0.03, 1.0)).unwrap();
        let results: Vec<TrialResult> = synthetic(&refine.lrs, 0.03, 1.0)
            .into_iter()
            .map(|c| TrialResult {
                lr: c.lr,
                replicate: 0,
                status: TrialStatus::Completed,
                diverged: false,
                score: c.score,
                curve: Vec::new(),
                validation: Vec::new(),
            })
            .collect();
        let stage = Strategy::next_round(&mut search, &results).expect("the stage");
        let best = search.recommendation().unwrap().best_lr;
        assert_eq!(stage.lrs, vec![best]);
        assert_eq!(stage.optimizer, Some(hd));
        assert_eq!((stage.steps, stage.data_fraction), (400, 1.0));
        assert!(search.recommendation().unwrap().hypergradient.is_none());
        let run = |replicate: u32, last_lr: f64| TrialResult {
            lr: best,
            replicate,
            status: TrialStatus::Completed,
            diverged: false,
            score: Some(0.5),
            curve: vec![
                CurvePoint {
                    step: 1,
                    lr: best,
                    smoothed: 1.0,
                },
                CurvePoint {
                    step: 400,
                    lr: last_lr,
                    smoothed: 0.5,
                },
            ],
            validation: Vec::new(),
        };
        assert!(Strategy::next_round(&mut search, &[run(0, 0.1), run(1, 0.3)]).is_none());
        let outcome = search.recommendation().unwrap().hypergradient.unwrap();
        assert_eq!(outcome.start_lr, best);
        assert!((outcome.final_lr - 0.2).abs() < 1e-12);
        assert_eq!(outcome.final_loss, Some(0.5));
        // The stage does not change the fixed-rate recommendation.
        assert_eq!(search.recommendation().unwrap().best_lr, best);
    }

    #[test]
    fn the_last_round_is_the_grid_lattice_around_the_best_rate() {
        let spec = c2f_spec();
        let mut search = c2f(&spec);
        let plan = search.first_round();
        let round1 = search.advance(&synthetic(&plan.lrs, 0.02, 1.0)).unwrap();
        let results = synthetic(&round1.lrs, 0.02, 1.0);
        let best = results[best_index(&results).unwrap()].lr;
        let last = search.advance(&results).unwrap();
        // The grid strategy's rates from 3 below the one nearest the best to 1 above: the same
        // floats, so the last round trains rates an exhaustive grid would train.
        let (grid, at) = lattice_near(&spec, best);
        assert_eq!(last.lrs, grid[at - 3..=at + 1].to_vec());
        assert_eq!((last.round, last.steps, last.data_fraction), (2, 1000, 1.0));
        assert!(search.advance(&synthetic(&last.lrs, 0.02, 1.0)).is_none());
    }

    #[test]
    fn the_window_sits_on_the_smallest_near_tie_and_below_divergence() {
        let spec = spec_with(|s| {
            s.search.rounds = 2;
            s.search.steps = vec![100, 1000];
            coarse(s).final_below = 2;
            coarse(s).final_above = 2;
        });
        let mut search = c2f(&spec);
        search.first_round();
        // 1e-2 scores best; 1e-3 is within 2% of it, so the window sits on 1e-3. Its top point
        // (about 1e-3·1.25²) lies above the diverged 1.5e-3 and is dropped.
        let last = search
            .advance(&[
                scored(1e-4, 2.0),
                scored(1e-3, 1.015),
                diverged(1.5e-3),
                scored(1e-2, 1.0),
            ])
            .unwrap();
        let (grid, at) = lattice_near(&spec, 1e-3);
        assert_eq!(last.lrs, grid[at - 2..=at + 1].to_vec());
        assert!(grid[at + 2] > 1.5e-3);

        // Not a tie (3% worse): the best itself anchors; the range's top clips the window.
        let spec = spec_with(|s| {
            s.search.rounds = 2;
            s.search.steps = vec![100, 1000];
            s.search.max_lr = 1e-2;
        });
        let mut search = c2f(&spec);
        search.first_round();
        let last = search
            .advance(&[scored(1e-3, 1.03), scored(1e-2, 1.0)])
            .unwrap();
        let (grid, at) = lattice_near(&spec, 1e-2);
        assert_eq!(at, grid.len() - 1);
        assert_eq!(last.lrs, grid[at - 3..].to_vec());
    }

    #[test]
    fn stops_when_nothing_is_left_below_a_divergence() {
        let mut search = c2f(&c2f_spec());
        search.first_round();
        // Noise: 1e-3 diverged but 1e-2 scored best. Its whole bracket lies at or above 1e-3.
        let results = [diverged(1e-3), scored(1e-2, 0.5), scored(0.1, 1.0)];
        assert!(search.advance(&results).is_none());
        assert_eq!(search.recommendation().unwrap().best_lr, 1e-2);
    }

    #[test]
    fn stops_once_the_grid_is_finer_than_the_resolution() {
        let spec = spec_with(|s| s.search.rounds = 10);
        let mut search = c2f(&spec);
        let mut plan = search.first_round();
        let mut ratios = vec![];
        loop {
            ratios.push(plan.lrs[1] / plan.lrs[0]);
            match search.advance(&synthetic(&plan.lrs, 0.03, 0.3)) {
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
        let mut search = c2f(&spec);
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert!(search.advance(&synthetic(&next.lrs, 1e-3, 1.0)).is_none());

        let mut search = c2f(&c2f_spec());
        let plan = search.first_round();
        let all_diverged: Vec<_> = plan.lrs.iter().map(|&lr| diverged(lr)).collect();
        assert!(search.advance(&all_diverged).is_none());
        assert!(search.recommendation().is_none());
    }

    #[test]
    fn recommendation_uses_latest_scores_and_largest_stable_rate() {
        let mut search = c2f(&c2f_spec());
        assert!(search.recommendation().is_none());
        search.first_round();
        let pruned = CandidateResult {
            lr: 0.3,
            diverged: false,
            score: None,
            learning: Learning::Little,
        };
        search
            .advance(&[
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
            .advance(&[scored(5e-3, 3.0), scored(2e-2, 4.0)])
            .is_some());
        assert_eq!(search.recommendation().unwrap().best_lr, 5e-3);
        assert_eq!(search.recommendation().unwrap().max_stable_lr, 0.1);
    }

    #[test]
    fn recommendation_falls_back_to_an_earlier_round() {
        let mut search = c2f(&c2f_spec());
        search.first_round();
        search
            .advance(&[scored(1e-3, 2.0), scored(1e-2, 1.0), scored(0.1, 1.5)])
            .unwrap();
        // No score in the latest round (one rate diverged, the other was pruned unscored).
        let unscored = CandidateResult {
            lr: 2e-2,
            diverged: false,
            score: None,
            learning: Learning::Little,
        };
        assert!(search.advance(&[diverged(5e-3), unscored]).is_none());
        assert_eq!(search.recommendation().unwrap().best_lr, 1e-2);
    }

    #[test]
    fn simulated_sweep_converges_to_the_optimum() {
        let spec = spec_with(|s| s.search.rounds = 10);
        let mut search = c2f(&spec);
        let mut plan = search.first_round();
        let mut rounds = 1;
        while let Some(next) = search.advance(&synthetic(&plan.lrs, 0.03, 0.3)) {
            // 1.0 diverged in round 0: nothing at or above it is tried again.
            assert!(next.lrs.iter().all(|&lr| lr < 1.0), "{next:?}");
            plan = next;
            rounds += 1;
        }
        assert!(rounds < 10, "stopped by resolution, not by rounds");
        let rec = search.recommendation().unwrap();
        let ratio = (rec.best_lr / 0.03).max(0.03 / rec.best_lr);
        assert!(
            ratio < spec.search.coarse_to_fine().unwrap().resolution,
            "{rec:?}"
        );
        assert!(rec.max_stable_lr <= 0.3, "{rec:?}");
        assert!(rec.best_lr <= rec.max_stable_lr);
    }

    #[test]
    fn trial_results_group_into_candidates_by_rate() {
        let results = [
            trial(0.1, 1, Some(3.0), false),
            trial(0.01, 0, Some(1.0), false),
            trial(0.1, 0, Some(1.0), false),
            trial(0.01, 1, Some(2.0), false),
            trial(1.0, 0, None, true),
        ];
        assert_eq!(
            candidates(&results),
            vec![scored(0.01, 1.5), scored(0.1, 2.0), diverged(1.0)]
        );
        assert!(candidates(&[]).is_empty());

        // The trait's next_round is the candidate-level one on the grouped results.
        let mut by_trials = c2f(&c2f_spec());
        let mut by_candidates = c2f(&c2f_spec());
        let plan = Strategy::first_round(&mut by_trials);
        by_candidates.start(0, plan.lrs.clone());
        let results: Vec<TrialResult> = synthetic(&plan.lrs, 1e-3, 1.0)
            .iter()
            .flat_map(|c| (0..2).map(move |r| trial(c.lr, r, c.score, c.diverged)))
            .collect();
        assert_eq!(
            Strategy::next_round(&mut by_trials, &results),
            by_candidates.advance(&synthetic(&plan.lrs, 1e-3, 1.0))
        );
    }
}
