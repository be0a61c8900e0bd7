//! Builders and checks the strategies' tests share.

use lrsweep_proto::spec::{CoarseToFineSpec, GridSpec, StrategySpec, SweepSpec};

use super::outcome::{CandidateResult, Learning, TrialResult, TrialStatus};
use super::{CoarseToFine, SingleRound, Strategy};

pub(crate) fn scored(lr: f64, score: f64) -> CandidateResult {
    CandidateResult {
        lr,
        diverged: false,
        score: Some(score),
        learning: Learning::Little,
    }
}

pub(crate) fn diverged(lr: f64) -> CandidateResult {
    CandidateResult {
        lr,
        diverged: true,
        score: None,
        learning: Learning::Little,
    }
}

/// Scores by distance (in decades) from `best`; every rate above `limit` diverges.
pub(crate) fn synthetic(lrs: &[f64], best: f64, limit: f64) -> Vec<CandidateResult> {
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

pub(crate) fn close(a: f64, b: f64) -> bool {
    (a / b - 1.0).abs() < 1e-9
}

pub(crate) fn assert_grid(lrs: &[f64], lo: f64, hi: f64, n: usize) {
    assert_eq!(lrs.len(), n, "{lrs:?}");
    let ratio = (hi / lo).powf(1.0 / (n + 1) as f64);
    for (j, &lr) in lrs.iter().enumerate() {
        assert!(lo < lr && lr < hi, "{lr} outside ({lo}, {hi})");
        assert!(close(lr, lo * ratio.powi(j as i32 + 1)), "{lrs:?}");
    }
}

/// The default spec with a fourth round, so round 2 still brackets (the last round is the
/// final window).
pub(crate) fn four_rounds() -> SweepSpec {
    spec_with(|s| s.search.rounds = 4)
}

pub(crate) fn spec_with(f: impl FnOnce(&mut SweepSpec)) -> SweepSpec {
    let mut spec = c2f_spec();
    f(&mut spec);
    spec.validate().unwrap();
    spec
}

pub(crate) fn trial(lr: f64, replicate: u32, score: Option<f64>, diverged: bool) -> TrialResult {
    TrialResult {
        lr,
        replicate,
        status: match (score, diverged) {
            (Some(_), false) => TrialStatus::Completed,
            _ => TrialStatus::Pruned,
        },
        diverged,
        score,
        curve: Vec::new(),
        validation: Vec::new(),
    }
}

pub(crate) fn assert_log_even(lrs: &[f64]) {
    let ratio = lrs[1] / lrs[0];
    assert!(lrs.windows(2).all(|w| close(w[1] / w[0], ratio)), "{lrs:?}");
}

/// A valid spec from TOML text.
pub(crate) fn spec_from(toml: &str) -> SweepSpec {
    SweepSpec::from_toml_str(toml).unwrap_or_else(|e| panic!("{e}: {toml}"))
}

/// Every default, with coarse-to-fine as the search (the default strategy is edge descent).
pub(crate) fn c2f_spec() -> SweepSpec {
    spec_from("[search]\nstrategy = \"coarse-to-fine\"\n")
}

/// The coarse-to-fine fields of a coarse-to-fine spec.
pub(crate) fn coarse(spec: &mut SweepSpec) -> &mut CoarseToFineSpec {
    match &mut spec.search.strategy {
        StrategySpec::CoarseToFine(c) => c,
        other => panic!("not coarse-to-fine: {other:?}"),
    }
}

/// The coarse-to-fine search of a coarse-to-fine spec.
pub(crate) fn c2f(spec: &SweepSpec) -> CoarseToFine {
    match &spec.search.strategy {
        StrategySpec::CoarseToFine(c) => CoarseToFine::new(&spec.search, c),
        other => panic!("not coarse-to-fine: {other:?}"),
    }
}

/// The grid strategy's rates for `spec`, and the index of the one nearest `lr` (in log).
pub(crate) fn lattice_near(spec: &SweepSpec, lr: f64) -> (Vec<f64>, usize) {
    let resolution = spec.search.coarse_to_fine().unwrap().resolution;
    let grid = SingleRound::grid(&spec.search, &GridSpec { resolution })
        .first_round()
        .lrs;
    let near = (0..grid.len())
        .min_by(|&a, &b| {
            let d = |i: usize| (grid[i] / lr).ln().abs();
            d(a).total_cmp(&d(b))
        })
        .unwrap();
    (grid, near)
}
