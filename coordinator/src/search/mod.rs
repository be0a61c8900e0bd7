//! The learning-rate search strategies (method.md §1, §2) as pure decisions: which rates to try
//! next given the results so far, and what to recommend at the end. A file per strategy; the
//! lattice arithmetic, the round outcomes and the range test's curve analysis beside them.

mod coarse_to_fine;
mod edge_descent;
mod lattice;
pub mod loss_curve;
mod lr_range;
pub mod outcome;
mod parabola;
mod recommendation;
mod single_round;
#[cfg(test)]
pub(crate) mod test_support;

use lrsweep_proto::domain::{OptimizerSpec, ScheduleSpec};
use lrsweep_proto::spec::{StrategySpec, SweepSpec};
use serde::Serialize;

use crate::prune::Incumbent;

pub use coarse_to_fine::CoarseToFine;
pub use edge_descent::EdgeDescent;
pub use lattice::decade_grid;
pub use lr_range::RangeTest;
pub use outcome::{CandidateResult, CurvePoint, ReplicateOutcome, TrialResult, TrialStatus};
pub use recommendation::{Confidence, HypergradientOutcome, Recommendation};
pub use single_round::SingleRound;

/// A search the sweep drives round by round, whatever the strategy.
///
/// A strategy is deterministic in its inputs: the same spec and the same results, in the same
/// order, give the same plans and the same recommendation. No clock, no I/O, no unseeded
/// randomness. Resuming a sweep relies on this: the coordinator replans every round from the
/// stored results and checks the plans against the stored trials.
pub trait Strategy: Send {
    /// The first round. Starts the search afresh.
    fn first_round(&mut self) -> RoundPlan;
    /// Every trial of the round just finished. None when the search is over; do not call again
    /// after None.
    fn next_round(&mut self, results: &[TrialResult]) -> Option<RoundPlan>;
    /// Whether the round handed out last is judged by rung pruning and by monotone cancellation.
    /// False for a range-test round: its runs are meant to climb until they diverge, and its
    /// shards share one start rate, so one shard's divergence must not cancel the others.
    fn uses_rungs(&self) -> bool {
        true
    }
    fn recommendation(&self) -> Option<Recommendation>;
    /// Strategy-specific report content (the range test's merged and per-shard curves), or Null.
    fn report(&self) -> serde_json::Value;
}

/// The strategy `spec.search.strategy` names, with its own fields. The spec must be valid.
pub fn build_strategy(spec: &SweepSpec) -> Box<dyn Strategy> {
    let search = &spec.search;
    match &search.strategy {
        StrategySpec::CoarseToFine(c) => Box::new(CoarseToFine::new(search, c)),
        StrategySpec::EdgeDescent(e) => Box::new(EdgeDescent::new(search, e)),
        StrategySpec::RangeTest(r) => Box::new(RangeTest::new(search, r)),
        StrategySpec::Grid(g) => Box::new(SingleRound::grid(search, g)),
        StrategySpec::Random(r) => Box::new(SingleRound::random(search, r)),
    }
}

/// One round of the search: the rates to train, and the budget each gets.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RoundPlan {
    pub round: u32,
    /// Ascending.
    pub lrs: Vec<f64>,
    pub steps: u64,
    pub data_fraction: f64,
    /// Trials per rate: replicate r of `replicates` disjoint parts of `data_fraction`.
    pub replicates: u32,
    /// The schedule every trial of the round trains with; None keeps the trainer's own.
    pub schedule: Option<ScheduleSpec>,
    /// The optimizer every trial of the round trains with; None keeps the trainer's own.
    pub optimizer: Option<OptimizerSpec>,
    /// A finished trial of an earlier round, same budget and data: a trial clearly behind it at
    /// the same step is stopped (prune/incumbent.rs).
    pub incumbent: Option<Incumbent>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_support::{c2f_spec, spec_from};
    use lrsweep_proto::domain::Ramp;

    #[test]
    fn build_strategy_plans_each_strategy() {
        let mut c2f = build_strategy(&c2f_spec());
        let plan = c2f.first_round();
        assert_eq!(plan.lrs, decade_grid(1e-7, 10.0));
        assert_eq!((plan.replicates, plan.schedule.clone()), (1, None));
        assert!(c2f.uses_rungs());
        assert_eq!(c2f.report(), serde_json::Value::Null);

        let mut range = build_strategy(&spec_from("[search]\nstrategy = \"range-test\""));
        assert_eq!(
            range.first_round(),
            RoundPlan {
                round: 0,
                lrs: vec![1e-7],
                steps: 100,
                data_fraction: 1.0,
                replicates: 2,
                schedule: Some(ScheduleSpec::RangeTest {
                    end_lr: 10.0,
                    ramp: Ramp::Exponential
                }),
                optimizer: None,
                incumbent: None,
            }
        );
        assert!(!range.uses_rungs());
        assert_eq!(range.report(), serde_json::Value::Null);

        let grid = build_strategy(&spec_from("[search]\nstrategy = \"grid\"")).first_round();
        assert_eq!(grid.lrs.len(), 84);
        let random = build_strategy(&spec_from("[search]\nstrategy = \"random\"")).first_round();
        assert_eq!(random.lrs.len(), 16);
        for plan in [grid, random] {
            assert_eq!((plan.round, plan.steps, plan.data_fraction), (0, 1000, 1.0));
            assert_eq!((plan.replicates, plan.schedule), (1, None));
        }
    }
}
