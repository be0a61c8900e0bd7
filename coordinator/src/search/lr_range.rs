//! The LR range test as a strategy (method.md §2): `shards` ramped runs, merged into one
//! loss-vs-LR curve (`loss_curve`), optionally refined coarse-to-fine.

use lrsweep_proto::domain::ScheduleSpec;
use lrsweep_proto::spec::{RangeTestSpec, SearchSpec};

use super::coarse_to_fine::CoarseToFine;
use super::lattice::log_span;
use super::loss_curve::{self, Analysis};
use super::outcome::{TrialResult, TrialStatus};
use super::recommendation::Recommendation;
use super::{RoundPlan, Strategy};

/// The LR range test (method.md §2): `shards` ramped runs from `min_lr` to `max_lr`, each on
/// its own shard, merged into one curve (loss_curve.rs). With `refine`, coarse-to-fine then
/// searches [max_stable/4, max_stable] from round 1 on.
pub struct RangeTest {
    search: SearchSpec,
    spec: RangeTestSpec,
    analysis: Option<Analysis>,
    /// The coarse-to-fine search of the suggested range, once it started.
    refinement: Option<CoarseToFine>,
}

impl RangeTest {
    pub fn new(search: &SearchSpec, spec: &RangeTestSpec) -> RangeTest {
        RangeTest {
            search: search.clone(),
            spec: spec.clone(),
            analysis: None,
            refinement: None,
        }
    }

    /// Starts the refinement on `candidates_per_round` rates spanning the suggested range, both
    /// ends included, kept inside [min_lr, max_lr]. None when that range is empty (the loss was
    /// lowest at `min_lr` itself), or when the spec does not refine.
    fn start_refinement(&mut self, max_stable_lr: f64) -> Option<RoundPlan> {
        let spec = self.spec.refine.as_ref()?;
        let s = &self.search;
        let hi = max_stable_lr.min(s.max_lr);
        let lo = (hi / 4.0).max(s.min_lr);
        if lo >= hi {
            return None;
        }
        let lrs = log_span(lo, hi, spec.candidates_per_round);
        let mut refinement = CoarseToFine::new(s, spec);
        let plan = refinement.start(1, lrs);
        self.refinement = Some(refinement);
        Some(plan)
    }
}

impl Strategy for RangeTest {
    /// Round 0: every shard ramps from `min_lr` to `max_lr` over `range_steps` steps on the
    /// whole of its shard.
    fn first_round(&mut self) -> RoundPlan {
        self.analysis = None;
        self.refinement = None;
        RoundPlan {
            round: 0,
            lrs: vec![self.search.min_lr],
            steps: self.spec.range_steps,
            data_fraction: 1.0,
            replicates: self.spec.shards,
            schedule: Some(ScheduleSpec::RangeTest {
                end_lr: self.search.max_lr,
                ramp: self.spec.ramp,
            }),
            optimizer: None,
            incumbent: None,
        }
    }

    fn next_round(&mut self, results: &[TrialResult]) -> Option<RoundPlan> {
        if let Some(refinement) = self.refinement.as_mut() {
            return Strategy::next_round(refinement, results);
        }
        // Diverging is a run's normal end; a failed or cancelled run stopped for reasons that
        // say nothing about the rate, and its partial curve would cut the others short.
        let mut runs: Vec<&TrialResult> = results
            .iter()
            .filter(|r| r.status == TrialStatus::Completed || r.diverged)
            .collect();
        runs.sort_by_key(|r| r.replicate);
        let curves = runs.iter().map(|r| r.curve.clone()).collect();
        let blew_up = runs.iter().any(|r| r.diverged);
        let analysis = loss_curve::analyse(curves, self.spec.range_steps, blew_up);
        let max_stable_lr = analysis.suggestions.map(|s| s.max_stable_lr);
        self.analysis = Some(analysis);
        self.start_refinement(max_stable_lr?)
    }

    fn uses_rungs(&self) -> bool {
        self.refinement.is_some()
    }

    /// From the refinement when it scored a rate (trained evidence beats a ramp's), else from
    /// the curve: best is the valley (the steep point without one, the minimum without either),
    /// scored by the merged smoothed training loss there. Steep and valley are always the
    /// curve's.
    fn recommendation(&self) -> Option<Recommendation> {
        let s = self.analysis.as_ref()?.suggestions?;
        let refined = self.refinement.as_ref().and_then(Strategy::recommendation);
        let rec = refined.unwrap_or_else(|| {
            let best = s.valley.or(s.steep).unwrap_or(s.minimum);
            Recommendation::new(best.lr, best.loss, s.max_stable_lr)
        });
        Some(Recommendation {
            steep_lr: s.steep.map(|p| p.lr),
            valley_lr: s.valley.map(|p| p.lr),
            ..rec
        })
    }

    /// `{merged: [{step, lr, mean, min, max, shards}], shards: [[{step, lr, smoothed}]],
    /// suggestions: {steep, valley, minimum, max_stable_lr, suggested_min_lr,
    /// suggested_max_lr} | null}` once the range test has finished; Null before.
    fn report(&self) -> serde_json::Value {
        self.analysis.as_ref().map_or(serde_json::Value::Null, |a| {
            serde_json::to_value(a).expect("plain numbers and lists serialize")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::build_strategy;
    use crate::search::outcome::CurvePoint;
    use crate::search::test_support::*;

    /// One shard's range-test curve on the default ramp (1e-7 → 10, 100 steps, 0.08 decades a
    /// step): loss (log10 lr + 1)² + offset, lowest at step 76 (lr 0.1), `len` points.
    fn range_curve(offset: f64, len: u64) -> Vec<CurvePoint> {
        (0..len)
            .map(|k| {
                let lr = 1e-7 * 1e8f64.powf(k as f64 / 100.0);
                CurvePoint {
                    step: k + 1,
                    lr,
                    smoothed: (lr.log10() + 1.0).powi(2) + offset,
                }
            })
            .collect()
    }

    fn range_run(replicate: u32, status: TrialStatus, curve: Vec<CurvePoint>) -> TrialResult {
        TrialResult {
            lr: 1e-7,
            replicate,
            status,
            diverged: status == TrialStatus::Pruned,
            score: None,
            curve,
            validation: Vec::new(),
        }
    }

    #[test]
    fn range_test_merges_its_shards_and_recommends_from_the_curve() {
        let spec = spec_from("[search]\nstrategy = \"range-test\"\nshards = 3");
        let mut range = build_strategy(&spec);
        assert_eq!(range.first_round().replicates, 3);
        let results = [
            // A failed run says nothing about the rate and would cut the merge short.
            range_run(2, TrialStatus::Failed, range_curve(5.0, 20)),
            range_run(1, TrialStatus::Pruned, range_curve(1.0, 99)),
            range_run(0, TrialStatus::Completed, range_curve(0.0, 100)),
        ];
        assert!(range.next_round(&results).is_none());
        let rec = range.recommendation().unwrap();
        let lr_at = |step: u64| 1e-7 * 1e8f64.powf((step - 1) as f64 / 100.0);
        // Suggestions over steps 1..=99 (both shards), trimmed to indices 10..94.
        assert!(close(rec.max_stable_lr, 0.1));
        assert!(close(rec.suggested_min_lr, 0.025));
        // Steepest at the smallest kept rate; valley halfway through indices 10..=75.
        assert!(close(rec.steep_lr.unwrap(), lr_at(11)));
        assert!(close(rec.valley_lr.unwrap(), lr_at(43)));
        assert_eq!(rec.best_lr, rec.valley_lr.unwrap());
        let want = (lr_at(43).log10() + 1.0).powi(2) + 0.5;
        assert!(close(rec.best_score, want), "{rec:?}");

        let report = range.report();
        assert_eq!(report["shards"].as_array().unwrap().len(), 2);
        let merged = report["merged"].as_array().unwrap();
        assert_eq!(merged.len(), 100);
        assert_eq!(merged[0]["shards"], 2);
        assert_eq!(merged[0]["min"], merged[0]["mean"].as_f64().unwrap() - 0.5);
        assert_eq!(merged[99]["shards"], 1);
        assert_eq!(report["suggestions"]["minimum"]["step"], 76);
        assert!(!range.uses_rungs());
    }

    #[test]
    fn range_test_without_curves_recommends_nothing() {
        let mut range = build_strategy(&spec_from("[search]\nstrategy = \"range-test\""));
        range.first_round();
        let results = [range_run(0, TrialStatus::Failed, range_curve(0.0, 50))];
        assert!(range.next_round(&results).is_none());
        assert!(range.recommendation().is_none());
        assert_eq!(range.report()["suggestions"], serde_json::Value::Null);
    }

    #[test]
    fn refine_searches_inside_the_suggested_range_including_both_ends() {
        let spec = spec_from("[search]\nstrategy = \"range-test\"\nrefine = true");
        let mut range = build_strategy(&spec);
        range.first_round();
        let runs = [
            range_run(0, TrialStatus::Pruned, range_curve(0.0, 100)),
            range_run(1, TrialStatus::Pruned, range_curve(0.3, 100)),
        ];
        let plan = range.next_round(&runs).unwrap();
        let ms = range.recommendation().unwrap().max_stable_lr;
        assert!(close(ms, 0.1));
        assert_eq!(plan.round, 1);
        assert_eq!(plan.lrs.len(), 5);
        assert_eq!((plan.lrs[0], plan.lrs[4]), (ms / 4.0, ms));
        assert_log_even(&plan.lrs);
        // Round 1's budget, the spec's replicates, the trainer's own schedule, rungs again.
        assert_eq!((plan.steps, plan.data_fraction), (300, 1.0));
        assert_eq!((plan.replicates, plan.schedule.clone()), (1, None));
        assert!(range.uses_rungs());

        // The refinement goes on like coarse-to-fine: its last round is the final window.
        let score = |lr: f64| (lr.log10() - 0.05f64.log10()).powi(2);
        let results: Vec<TrialResult> = plan
            .lrs
            .iter()
            .map(|&lr| trial(lr, 0, Some(score(lr)), false))
            .collect();
        let next = range.next_round(&results).unwrap();
        assert_eq!((next.round, next.steps), (2, 1000));
        let (grid, at) = lattice_near(&spec, plan.lrs[2]);
        assert_eq!(next.lrs, grid[at - 3..=at + 1].to_vec());
        let rec = range.recommendation().unwrap();
        assert!(close(rec.best_lr, plan.lrs[2]), "{rec:?}");
        assert_eq!(rec.max_stable_lr, ms);
        assert!(rec.steep_lr.is_some() && rec.valley_lr.is_some());
        assert!(range.report()["merged"].is_array());
        assert!(range.next_round(&[]).is_none());
    }

    #[test]
    fn refine_stops_when_the_loss_was_lowest_at_the_start() {
        let spec = spec_from("[search]\nstrategy = \"range-test\"\nrefine = true");
        let mut range = build_strategy(&spec);
        range.first_round();
        // Diverged within three steps, rising from the first: too short to trim, so the
        // minimum is min_lr itself and [min/4, min] ∩ [min_lr, max_lr] is empty.
        let rising: Vec<CurvePoint> = range_curve(0.0, 3)
            .into_iter()
            .map(|p| CurvePoint {
                smoothed: p.step as f64,
                ..p
            })
            .collect();
        let runs = [range_run(0, TrialStatus::Pruned, rising)];
        assert!(range.next_round(&runs).is_none());
        let rec = range.recommendation().unwrap();
        assert_eq!((rec.steep_lr, rec.valley_lr), (None, None));
        assert!(close(rec.best_lr, rec.max_stable_lr));
    }
}
