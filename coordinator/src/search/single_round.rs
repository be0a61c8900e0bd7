//! Searches of one round at the last round's budget: the exhaustive grid and the random search.

use lrsweep_proto::rng::SplitMix64;
use lrsweep_proto::spec::{GridSpec, RandomSpec, SearchSpec};

use super::lattice::{grid_len, log_span};
use super::outcome::{candidates, CandidateResult, TrialResult};
use super::recommendation::{recommend, Recommendation};
use super::{RoundPlan, Strategy};

/// A search of one round at the last round's budget: the grid and the random search. Best is the
/// lowest score, max stable the largest rate that trained its budget without diverging.
pub struct SingleRound {
    plan: RoundPlan,
    results: Vec<CandidateResult>,
}

impl SingleRound {
    /// Log-spaced from `min_lr` to `max_lr`, both included, neighbours at most `resolution`
    /// apart.
    pub fn grid(search: &SearchSpec, grid: &GridSpec) -> SingleRound {
        let s = search;
        let n = grid_len(s.min_lr, s.max_lr, grid.resolution);
        SingleRound::new(search, log_span(s.min_lr, s.max_lr, n))
    }

    /// `random_trials` log-uniform draws in [`min_lr`, `max_lr`] from `seed`, ascending.
    pub fn random(search: &SearchSpec, random: &RandomSpec) -> SingleRound {
        let s = search;
        let mut rng = SplitMix64::new(random.seed);
        let (a, b) = (s.min_lr.ln(), s.max_lr.ln());
        // The clamp absorbs rounding in exp(ln x).
        let mut lrs: Vec<f64> = (0..random.random_trials)
            .map(|_| (a + (b - a) * rng.unit()).exp().clamp(s.min_lr, s.max_lr))
            .collect();
        lrs.sort_by(f64::total_cmp);
        // Equal draws would be one rate trained twice over.
        lrs.dedup();
        SingleRound::new(search, lrs)
    }

    fn new(search: &SearchSpec, lrs: Vec<f64>) -> SingleRound {
        // The last round's budget: the last entry of each list (shorter lists repeat it).
        let last = search.last_round();
        SingleRound {
            plan: RoundPlan {
                round: 0,
                lrs,
                steps: search.round_steps(last),
                data_fraction: search.round_fraction(last),
                replicates: search.replicates,
                schedule: None,
                optimizer: None,
                incumbent: None,
            },
            results: Vec::new(),
        }
    }
}

impl Strategy for SingleRound {
    fn first_round(&mut self) -> RoundPlan {
        self.results.clear();
        self.plan.clone()
    }

    fn next_round(&mut self, results: &[TrialResult]) -> Option<RoundPlan> {
        self.results = candidates(results);
        None
    }

    fn recommendation(&self) -> Option<Recommendation> {
        recommend(std::slice::from_ref(&self.results))
    }

    fn report(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::build_strategy;
    use crate::search::test_support::*;

    #[test]
    fn grid_spans_the_range_at_the_resolution() {
        // 1e-7..10 at 1.25: ⌈8·ln 10 / ln 1.25⌉ + 1 = ⌈82.55⌉ + 1 = 84 points.
        let plan = SingleRound::grid(&SearchSpec::default(), &GridSpec::default()).first_round();
        assert_eq!(plan.lrs.len(), 84);
        assert_eq!((plan.lrs[0], plan.lrs[83]), (1e-7, 10.0));
        assert_log_even(&plan.lrs);
        assert!(plan.lrs[1] / plan.lrs[0] <= 1.25);
        assert!(plan.lrs[1] / plan.lrs[0] > 1.25f64.powf(82.55 / 83.0) * 0.999);

        // An exact power of the resolution gets no extra point.
        let spec = spec_from(
            "[search]\nstrategy = \"grid\"\nmin_lr = 1.0\nmax_lr = 16.0\nresolution = 2.0",
        );
        let lrs = build_strategy(&spec).first_round().lrs;
        assert_eq!(lrs.len(), 5);
        for (lr, want) in lrs.iter().zip([1.0, 2.0, 4.0, 8.0, 16.0]) {
            assert!(close(*lr, want), "{lrs:?}");
        }
        // A resolution wider than the range: both ends.
        let spec = spec_from(
            "[search]\nstrategy = \"grid\"\nmin_lr = 0.2\nmax_lr = 0.5\nresolution = 10.0",
        );
        assert_eq!(build_strategy(&spec).first_round().lrs, vec![0.2, 0.5]);
    }

    #[test]
    fn single_round_recommends_lowest_score_and_largest_stable_rate() {
        let spec = spec_from(
            "[search]\nstrategy = \"grid\"\nmin_lr = 1e-3\nmax_lr = 1.0\nresolution = 10.0",
        );
        let mut grid = build_strategy(&spec);
        let plan = grid.first_round();
        assert_eq!(plan.lrs.len(), 4);
        let [a, b, c, d] = plan.lrs[..] else {
            unreachable!()
        };
        assert!(grid.recommendation().is_none());
        let results = [
            trial(d, 0, None, true),
            trial(a, 0, Some(2.0), false),
            trial(b, 0, Some(1.0), false),
            trial(b, 1, Some(1.2), false),
            trial(c, 0, Some(1.5), false),
        ];
        assert!(grid.next_round(&results).is_none());
        let rec = grid.recommendation().unwrap();
        assert_eq!((rec.best_lr, rec.best_score), (b, 1.1));
        assert_eq!((rec.max_stable_lr, rec.suggested_min_lr), (c, c / 4.0));
        assert_eq!((rec.steep_lr, rec.valley_lr), (None, None));
        let json = serde_json::to_value(rec).unwrap();
        assert!(json.get("steep_lr").is_none(), "{json}");
        // Starting again forgets the results.
        assert_eq!(grid.first_round(), plan);
        assert!(grid.recommendation().is_none());
    }

    #[test]
    fn random_is_deterministic_bounded_and_log_uniform() {
        let draw = |seed: u64, n: u32| {
            SingleRound::random(
                &SearchSpec::default(),
                &RandomSpec {
                    random_trials: n,
                    seed,
                },
            )
            .first_round()
            .lrs
        };
        assert_eq!(draw(7, 16), draw(7, 16));
        assert_ne!(draw(7, 16), draw(8, 16));
        let lrs = draw(0, 2000);
        assert_eq!(lrs.len(), 2000);
        assert!(lrs.windows(2).all(|w| w[0] < w[1]));
        assert!(lrs.iter().all(|&lr| (1e-7..=10.0).contains(&lr)));
        // Log-uniform over 8 decades: about an eighth of the draws in each decade.
        for decade in -7..1 {
            let (lo, hi) = (10f64.powi(decade), 10f64.powi(decade + 1));
            let share = lrs.iter().filter(|&&lr| lo <= lr && lr < hi).count() as f64 / 2000.0;
            assert!((share - 0.125).abs() < 0.03, "decade {decade}: {share}");
        }
        assert_eq!(draw(3, 1).len(), 1);
    }
}
