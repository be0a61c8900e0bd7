//! The learning-rate search strategies (method.md §1, §2) as pure decisions: which rates to try
//! next given the results so far, and what to recommend at the end. No I/O and no clock; the
//! random search draws from its own seeded generator, so every decision can be replayed in a test.

use lrsweep_proto::domain::{OptimizerSpec, ScheduleSpec};
use serde::Serialize;

use crate::range_test::{self, Analysis};
use crate::spec::{self, SearchSpec, SweepSpec};

/// A search the sweep drives round by round, whatever the strategy.
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

/// The strategy `spec.search.strategy` names. The spec must be valid.
pub fn build_strategy(spec: &SweepSpec) -> Box<dyn Strategy> {
    match spec.search.strategy {
        spec::Strategy::CoarseToFine => Box::new(CoarseToFine::new(spec)),
        spec::Strategy::RangeTest => Box::new(RangeTest::new(spec)),
        spec::Strategy::Grid => Box::new(SingleRound::grid(spec)),
        spec::Strategy::Random => Box::new(SingleRound::random(spec)),
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

impl TrialStatus {
    const ALL: [TrialStatus; 6] = [
        TrialStatus::Queued,
        TrialStatus::Running,
        TrialStatus::Completed,
        TrialStatus::Pruned,
        TrialStatus::Failed,
        TrialStatus::Cancelled,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            TrialStatus::Queued => "queued",
            TrialStatus::Running => "running",
            TrialStatus::Completed => "completed",
            TrialStatus::Pruned => "pruned",
            TrialStatus::Failed => "failed",
            TrialStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TrialStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One point of a trial's trace as the search sees it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    pub step: u64,
    /// The rate the step actually used.
    pub lr: f64,
    /// Smoothed training loss after this point.
    pub smoothed: f64,
}

/// How one trial of a round ended.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialResult {
    pub lr: f64,
    pub replicate: u32,
    pub status: TrialStatus,
    pub diverged: bool,
    /// Smoothed final validation loss, when the trial completed with one.
    pub score: Option<f64>,
    /// (step, lr actually used, smoothed training loss) for every point received, in step
    /// order — needed by the range test.
    pub curve: Vec<CurvePoint>,
}

impl TrialResult {
    pub fn outcome(&self) -> ReplicateOutcome {
        ReplicateOutcome {
            status: self.status,
            diverged: self.diverged,
            score: self.score,
        }
    }
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

/// One candidate per distinct rate of `results` (trials in any order), ascending.
fn candidates(results: &[TrialResult]) -> Vec<CandidateResult> {
    let mut sorted: Vec<&TrialResult> = results.iter().collect();
    sorted.sort_by(|a, b| a.lr.total_cmp(&b.lr));
    sorted
        .chunk_by(|a, b| a.lr == b.lr)
        .map(|group| {
            let outcomes: Vec<ReplicateOutcome> = group.iter().map(|t| t.outcome()).collect();
            CandidateResult::from_replicates(group[0].lr, &outcomes)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    pub best_lr: f64,
    /// Mean smoothed final validation loss of `best_lr` over its replicates.
    #[serde(rename = "best_loss")]
    pub best_score: f64,
    /// Largest rate that trained to the end of its budget without diverging; for the range test
    /// alone, the rate at the minimum of its merged loss curve.
    pub max_stable_lr: f64,
    /// Cyclical-schedule range [max_stable/4, max_stable] (Smith; method.md §1).
    pub suggested_min_lr: f64,
    pub suggested_max_lr: f64,
    /// Range test only: its steep and valley suggestions (range_test.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steep_lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valley_lr: Option<f64>,
    /// The hypergradient stage (`search.hypergradient`), once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hypergradient: Option<HypergradientOutcome>,
}

/// Where a hypergradient optimizer took the rate when started from the best fixed rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HypergradientOutcome {
    pub start_lr: f64,
    /// Mean over replicates of the rate at each run's last step.
    pub final_lr: f64,
    /// Mean smoothed final validation loss, when every replicate completed.
    pub final_loss: Option<f64>,
    pub diverged: bool,
}

impl HypergradientOutcome {
    fn from_results(start_lr: f64, results: &[TrialResult]) -> HypergradientOutcome {
        let finals: Vec<f64> = results
            .iter()
            .filter_map(|r| r.curve.last().map(|p| p.lr))
            .collect();
        let scores: Vec<f64> = results.iter().filter_map(|r| r.score).collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        HypergradientOutcome {
            start_lr,
            final_lr: if finals.is_empty() {
                start_lr
            } else {
                mean(&finals)
            },
            final_loss: (!scores.is_empty() && scores.len() == results.len())
                .then(|| mean(&scores)),
            diverged: results.iter().any(|r| r.diverged),
        }
    }
}

impl Recommendation {
    fn new(best_lr: f64, best_score: f64, max_stable_lr: f64) -> Recommendation {
        Recommendation {
            best_lr,
            best_score,
            max_stable_lr,
            suggested_min_lr: max_stable_lr / 4.0,
            suggested_max_lr: max_stable_lr,
            steep_lr: None,
            valley_lr: None,
            hypergradient: None,
        }
    }
}

/// Best rate of the latest round that has a usable score (earlier rounds only when later ones
/// have none), and the stable range over every round. None before any candidate scored.
///
/// `max_stable_lr` counts only candidates that trained their full budget on every replicate
/// without diverging (`diverged == false` and a score): a rate that was pruned, cancelled or
/// failed early has not shown it is stable.
fn recommend(rounds: &[Vec<CandidateResult>]) -> Option<Recommendation> {
    let best = rounds
        .iter()
        .rev()
        .find_map(|r| best_index(r).map(|i| r[i]))?;
    let max_stable_lr = rounds
        .iter()
        .flatten()
        .filter(|c| c.usable())
        .map(|c| c.lr)
        .fold(best.lr, f64::max);
    Some(Recommendation::new(best.lr, best.score?, max_stable_lr))
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

/// `n ≥ 2` log-spaced points from `lo` to `hi`, both exactly included.
fn log_span(lo: f64, hi: f64, n: u32) -> Vec<f64> {
    (0..n).map(|j| span_point(lo, hi, n, j)).collect()
}

/// Point `j` of `log_span(lo, hi, n)`.
fn span_point(lo: f64, hi: f64, n: u32, j: u32) -> f64 {
    match j {
        0 => lo,
        j if j == n - 1 => hi,
        j => (lo.ln() + (hi.ln() - lo.ln()) * j as f64 / (n - 1) as f64).exp(),
    }
}

/// Points of the log-spaced grid from `lo` to `hi` (both included) whose neighbours are at most
/// `ratio` apart: ⌈ln(hi/lo)/ln(ratio)⌉ + 1. Expects `0 < lo < hi`, `ratio > 1`.
fn grid_len(lo: f64, hi: f64, ratio: f64) -> u32 {
    // The tolerance keeps an exact power (hi/lo = ratio^k) at k + 1 points despite rounding.
    ((hi / lo).ln() / ratio.ln() - 1e-9).ceil().max(1.0) as u32 + 1
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

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny, well-mixed generator, enough to spread
/// random-search rates and keep them reproducible from the spec's seed.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1): the top 53 bits, every value a double can hold exactly.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Coarse-to-fine (method.md §1): the decade grid, then finer grids around the best rate.
pub struct CoarseToFine {
    spec: SweepSpec,
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
    pub fn new(spec: &SweepSpec) -> CoarseToFine {
        CoarseToFine {
            spec: spec.clone(),
            round: 0,
            ratio: 10.0,
            finished: Vec::new(),
            min_diverged: None,
            hypergradient: HypergradientStage::NotYet,
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
            replicates: self.search().replicates,
            schedule: None,
            optimizer: None,
        }
    }

    /// Starts the search afresh with round `round` on `lrs` (ascending, at least two, evenly
    /// log-spaced): their spacing is the grid ratio the refinement goes on from.
    fn start(&mut self, round: u32, lrs: Vec<f64>) -> RoundPlan {
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
        if next >= self.search().rounds || ratio < self.search().resolution {
            return None;
        }
        // Only this round's scores count: budgets differ between rounds, so do scores.
        let candidates = &self.finished[self.finished.len() - 1];
        if let Some(anchor) = final_anchor(candidates).filter(|_| next == self.search().rounds - 1)
        {
            let lrs = self.final_window(anchor);
            // Empty only when noise put every rate of the window at or above a divergence.
            if lrs.is_empty() {
                return None;
            }
            self.round = next;
            self.ratio = self.search().resolution;
            return Some(self.plan(next, lrs));
        }
        let (lo, hi) = match best_index(candidates) {
            Some(i) => {
                let best = candidates[i].lr;
                // The larger neighbour bounds the bracket whether or not it diverged: if it did,
                // it is the open upper end (the grid stays strictly below it).
                let lo = match i {
                    0 => (best / ratio).max(self.search().min_lr),
                    _ => candidates[i - 1].lr,
                };
                let hi = match candidates.get(i + 1) {
                    Some(c) => c.lr,
                    None => (best * ratio).min(self.search().max_lr),
                };
                (lo, hi)
            }
            // Every rate of the round diverged (as when a range test's suggested range lies past
            // the edge): the stable edge is below, so search the same span below the lowest.
            None if !candidates.is_empty() && candidates.iter().all(|c| c.diverged) => {
                let lowest = candidates[0].lr;
                let span = (candidates[candidates.len() - 1].lr / lowest).max(ratio);
                let lo = (lowest / span).max(self.search().min_lr);
                if lo >= lowest {
                    return None;
                }
                (lo, lowest)
            }
            None => return None,
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

    /// The last round: the grid strategy's rates from `final_below` below to `final_above` above
    /// the one nearest `anchor`, inside the search range and below every divergence. Being the
    /// grid's own points, they are rates an exhaustive grid at `resolution` would train.
    fn final_window(&self, anchor: f64) -> Vec<f64> {
        let s = self.search();
        let n = grid_len(s.min_lr, s.max_lr, s.resolution);
        let step = (s.max_lr / s.min_lr).ln() / (n - 1) as f64;
        let at = ((anchor / s.min_lr).ln() / step).round() as i64;
        // Both are validated to at most 1000.
        let (below, above) = (i64::from(s.final_below), i64::from(s.final_above));
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
        let optimizer = self.search().hypergradient.clone()?;
        if !matches!(self.hypergradient, HypergradientStage::NotYet) {
            return None;
        }
        let start_lr = recommend(&self.finished)?.best_lr;
        let last = self.search().rounds - 1;
        self.round += 1;
        self.hypergradient = HypergradientStage::Running { start_lr };
        Some(RoundPlan {
            round: self.round,
            lrs: vec![start_lr],
            steps: self.spec.round_steps(last),
            data_fraction: self.spec.round_fraction(last),
            replicates: self.search().replicates,
            schedule: None,
            optimizer: Some(optimizer),
        })
    }
}

impl Strategy for CoarseToFine {
    /// Round 0: one rate per decade.
    fn first_round(&mut self) -> RoundPlan {
        let lrs = decade_grid(self.search().min_lr, self.search().max_lr);
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

/// A search of one round at the last round's budget: the grid and the random search. Best is the
/// lowest score, max stable the largest rate that trained its budget without diverging.
pub struct SingleRound {
    plan: RoundPlan,
    results: Vec<CandidateResult>,
}

impl SingleRound {
    /// Log-spaced from `min_lr` to `max_lr`, both included, neighbours at most `resolution`
    /// apart.
    pub fn grid(spec: &SweepSpec) -> SingleRound {
        let s = &spec.search;
        let n = grid_len(s.min_lr, s.max_lr, s.resolution);
        SingleRound::new(spec, log_span(s.min_lr, s.max_lr, n))
    }

    /// `random_trials` log-uniform draws in [`min_lr`, `max_lr`] from `seed`, ascending.
    pub fn random(spec: &SweepSpec) -> SingleRound {
        let s = &spec.search;
        let mut rng = SplitMix64::new(s.seed);
        let (a, b) = (s.min_lr.ln(), s.max_lr.ln());
        // The clamp absorbs rounding in exp(ln x).
        let mut lrs: Vec<f64> = (0..s.random_trials)
            .map(|_| (a + (b - a) * rng.unit()).exp().clamp(s.min_lr, s.max_lr))
            .collect();
        lrs.sort_by(f64::total_cmp);
        // Equal draws would be one rate trained twice over.
        lrs.dedup();
        SingleRound::new(spec, lrs)
    }

    fn new(spec: &SweepSpec, lrs: Vec<f64>) -> SingleRound {
        // The last round's budget: the last entry of each list (shorter lists repeat it).
        let last = spec.search.rounds - 1;
        SingleRound {
            plan: RoundPlan {
                round: 0,
                lrs,
                steps: spec.round_steps(last),
                data_fraction: spec.round_fraction(last),
                replicates: spec.search.replicates,
                schedule: None,
                optimizer: None,
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

/// The LR range test (method.md §2): `shards` ramped runs from `min_lr` to `max_lr`, each on
/// its own shard, merged into one curve (range_test.rs). With `refine`, coarse-to-fine then
/// searches [max_stable/4, max_stable] from round 1 on.
pub struct RangeTest {
    spec: SweepSpec,
    analysis: Option<Analysis>,
    /// The coarse-to-fine search of the suggested range, once it started.
    refinement: Option<CoarseToFine>,
}

impl RangeTest {
    pub fn new(spec: &SweepSpec) -> RangeTest {
        RangeTest {
            spec: spec.clone(),
            analysis: None,
            refinement: None,
        }
    }

    /// Starts the refinement on `candidates_per_round` rates spanning the suggested range, both
    /// ends included, kept inside [min_lr, max_lr]. None when that range is empty (the loss was
    /// lowest at `min_lr` itself).
    fn start_refinement(&mut self, max_stable_lr: f64) -> Option<RoundPlan> {
        let s = &self.spec.search;
        let hi = max_stable_lr.min(s.max_lr);
        let lo = (hi / 4.0).max(s.min_lr);
        if lo >= hi {
            return None;
        }
        let lrs = log_span(lo, hi, s.candidates_per_round);
        let mut refinement = CoarseToFine::new(&self.spec);
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
        let s = &self.spec.search;
        RoundPlan {
            round: 0,
            lrs: vec![s.min_lr],
            steps: s.range_steps,
            data_fraction: 1.0,
            replicates: s.shards,
            schedule: Some(ScheduleSpec::RangeTest {
                end_lr: s.max_lr,
                ramp: s.ramp,
            }),
            optimizer: None,
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
        let analysis = range_test::analyse(curves, self.spec.search.range_steps, blew_up);
        let max_stable_lr = analysis.suggestions.map(|s| s.max_stable_lr);
        self.analysis = Some(analysis);
        if !self.spec.search.refine {
            return None;
        }
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
    use lrsweep_proto::domain::Ramp;

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

    /// The default spec with a fourth round, so round 2 still brackets (the last round is the
    /// final window).
    fn four_rounds() -> SweepSpec {
        spec_with(|s| s.search.rounds = 4)
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
        let next = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert_eq!((next.round, next.steps, next.data_fraction), (1, 70, 0.3));
        let last = search.advance(&synthetic(&next.lrs, 1e-3, 1.0)).unwrap();
        // Lists shorter than `rounds` repeat their last entry.
        assert_eq!((last.round, last.steps, last.data_fraction), (2, 70, 0.3));
    }

    #[test]
    fn interior_best_is_bracketed_by_its_neighbours() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert_grid(&next.lrs, 1e-4, 1e-2, 5);
        // Five points in a two-decade bracket land the middle one on the best rate itself.
        assert!(close(next.lrs[2], 1e-3));
    }

    #[test]
    fn best_at_the_lower_edge_extends_by_the_grid_ratio() {
        let mut search = CoarseToFine::new(&four_rounds());
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
        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 1e-9, 1.0)).unwrap();
        assert_grid(&next.lrs, 1e-7, 1e-6, 5);

        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 50.0, 100.0)).unwrap();
        assert_grid(&next.lrs, 1.0, 10.0, 5);
    }

    #[test]
    fn upper_edge_next_to_a_diverged_rate_stays_below_it() {
        let mut search = CoarseToFine::new(&SweepSpec::default());
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
        let mut search = CoarseToFine::new(&four_rounds());
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
        let mut search = CoarseToFine::new(&four_rounds());
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
        let mut search = CoarseToFine::new(&spec);
        let plan = Strategy::first_round(&mut search);
        // Decades 1e-4 .. 1e2 where everything at or above 1e-4 diverges except nothing: the
        // lowest rate is the floor, so there is nowhere below to go.
        let all: Vec<CandidateResult> = plan.lrs.iter().map(|&lr| diverged(lr)).collect();
        assert!(search.advance(&all).is_none());

        let mut search = CoarseToFine::new(&spec);
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
            s.search.hypergradient = Some(hd.clone());
        });
        let mut search = CoarseToFine::new(&spec);
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
        };
        assert!(Strategy::next_round(&mut search, &[run(0, 0.1), run(1, 0.3)]).is_none());
        let outcome = search.recommendation().unwrap().hypergradient.unwrap();
        assert_eq!(outcome.start_lr, best);
        assert!((outcome.final_lr - 0.2).abs() < 1e-12);
        assert_eq!(outcome.final_loss, Some(0.5));
        // The stage does not change the fixed-rate recommendation.
        assert_eq!(search.recommendation().unwrap().best_lr, best);
    }

    /// The grid strategy's rates for `spec`, and the index of the one nearest `lr` (in log).
    fn lattice_near(spec: &SweepSpec, lr: f64) -> (Vec<f64>, usize) {
        let grid = SingleRound::grid(spec).first_round().lrs;
        let near = (0..grid.len())
            .min_by(|&a, &b| {
                let d = |i: usize| (grid[i] / lr).ln().abs();
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        (grid, near)
    }

    #[test]
    fn the_last_round_is_the_grid_lattice_around_the_best_rate() {
        let spec = SweepSpec::default();
        let mut search = CoarseToFine::new(&spec);
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
            s.search.final_below = 2;
            s.search.final_above = 2;
        });
        let mut search = CoarseToFine::new(&spec);
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
        let mut search = CoarseToFine::new(&spec);
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
        let mut search = CoarseToFine::new(&SweepSpec::default());
        search.first_round();
        // Noise: 1e-3 diverged but 1e-2 scored best. Its whole bracket lies at or above 1e-3.
        let results = [diverged(1e-3), scored(1e-2, 0.5), scored(0.1, 1.0)];
        assert!(search.advance(&results).is_none());
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
        let mut search = CoarseToFine::new(&spec);
        let plan = search.first_round();
        let next = search.advance(&synthetic(&plan.lrs, 1e-3, 1.0)).unwrap();
        assert!(search.advance(&synthetic(&next.lrs, 1e-3, 1.0)).is_none());

        let mut search = CoarseToFine::new(&SweepSpec::default());
        let plan = search.first_round();
        let all_diverged: Vec<_> = plan.lrs.iter().map(|&lr| diverged(lr)).collect();
        assert!(search.advance(&all_diverged).is_none());
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
        let mut search = CoarseToFine::new(&SweepSpec::default());
        search.first_round();
        search
            .advance(&[scored(1e-3, 2.0), scored(1e-2, 1.0), scored(0.1, 1.5)])
            .unwrap();
        // No score in the latest round (one rate diverged, the other was pruned unscored).
        let unscored = CandidateResult {
            lr: 2e-2,
            diverged: false,
            score: None,
        };
        assert!(search.advance(&[diverged(5e-3), unscored]).is_none());
        assert_eq!(search.recommendation().unwrap().best_lr, 1e-2);
    }

    #[test]
    fn simulated_sweep_converges_to_the_optimum() {
        let spec = spec_with(|s| s.search.rounds = 10);
        let mut search = CoarseToFine::new(&spec);
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
        assert!(ratio < spec.search.resolution, "{rec:?}");
        assert!(rec.max_stable_lr <= 0.3, "{rec:?}");
        assert!(rec.best_lr <= rec.max_stable_lr);
    }

    fn trial(lr: f64, replicate: u32, score: Option<f64>, diverged: bool) -> TrialResult {
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
        }
    }

    fn strategy_spec(kind: spec::Strategy, f: impl FnOnce(&mut SweepSpec)) -> SweepSpec {
        spec_with(|s| {
            s.search.strategy = kind;
            f(s);
        })
    }

    fn assert_log_even(lrs: &[f64]) {
        let ratio = lrs[1] / lrs[0];
        assert!(lrs.windows(2).all(|w| close(w[1] / w[0], ratio)), "{lrs:?}");
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
        let mut by_trials = CoarseToFine::new(&SweepSpec::default());
        let mut by_candidates = CoarseToFine::new(&SweepSpec::default());
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

    #[test]
    fn build_strategy_plans_each_strategy() {
        let mut c2f = build_strategy(&SweepSpec::default());
        let plan = c2f.first_round();
        assert_eq!(plan.lrs, decade_grid(1e-7, 10.0));
        assert_eq!((plan.replicates, plan.schedule.clone()), (1, None));
        assert!(c2f.uses_rungs());
        assert_eq!(c2f.report(), serde_json::Value::Null);

        let mut range = build_strategy(&strategy_spec(spec::Strategy::RangeTest, |_| {}));
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
            }
        );
        assert!(!range.uses_rungs());
        assert_eq!(range.report(), serde_json::Value::Null);

        let grid = build_strategy(&strategy_spec(spec::Strategy::Grid, |_| {})).first_round();
        assert_eq!(grid.lrs.len(), 84);
        let random = build_strategy(&strategy_spec(spec::Strategy::Random, |_| {})).first_round();
        assert_eq!(random.lrs.len(), 16);
        for plan in [grid, random] {
            assert_eq!((plan.round, plan.steps, plan.data_fraction), (0, 1000, 1.0));
            assert_eq!((plan.replicates, plan.schedule), (1, None));
        }
    }

    #[test]
    fn grid_spans_the_range_at_the_resolution() {
        // 1e-7..10 at 1.25: ⌈8·ln 10 / ln 1.25⌉ + 1 = ⌈82.55⌉ + 1 = 84 points.
        let plan = SingleRound::grid(&SweepSpec::default()).first_round();
        assert_eq!(plan.lrs.len(), 84);
        assert_eq!((plan.lrs[0], plan.lrs[83]), (1e-7, 10.0));
        assert_log_even(&plan.lrs);
        assert!(plan.lrs[1] / plan.lrs[0] <= 1.25);
        assert!(plan.lrs[1] / plan.lrs[0] > 1.25f64.powf(82.55 / 83.0) * 0.999);

        // An exact power of the resolution gets no extra point.
        let spec = strategy_spec(spec::Strategy::Grid, |s| {
            s.search.min_lr = 1.0;
            s.search.max_lr = 16.0;
            s.search.resolution = 2.0;
        });
        let lrs = SingleRound::grid(&spec).first_round().lrs;
        assert_eq!(lrs.len(), 5);
        for (lr, want) in lrs.iter().zip([1.0, 2.0, 4.0, 8.0, 16.0]) {
            assert!(close(*lr, want), "{lrs:?}");
        }
        // A resolution wider than the range: both ends.
        let spec = strategy_spec(spec::Strategy::Grid, |s| {
            s.search.min_lr = 0.2;
            s.search.max_lr = 0.5;
            s.search.resolution = 10.0;
        });
        assert_eq!(SingleRound::grid(&spec).first_round().lrs, vec![0.2, 0.5]);
    }

    #[test]
    fn single_round_recommends_lowest_score_and_largest_stable_rate() {
        let spec = strategy_spec(spec::Strategy::Grid, |s| {
            s.search.min_lr = 1e-3;
            s.search.max_lr = 1.0;
            s.search.resolution = 10.0;
        });
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
            let spec = strategy_spec(spec::Strategy::Random, |s| {
                s.search.seed = seed;
                s.search.random_trials = n;
            });
            SingleRound::random(&spec).first_round().lrs
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
        }
    }

    #[test]
    fn range_test_merges_its_shards_and_recommends_from_the_curve() {
        let spec = strategy_spec(spec::Strategy::RangeTest, |s| s.search.shards = 3);
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
        let mut range = build_strategy(&strategy_spec(spec::Strategy::RangeTest, |_| {}));
        range.first_round();
        let results = [range_run(0, TrialStatus::Failed, range_curve(0.0, 50))];
        assert!(range.next_round(&results).is_none());
        assert!(range.recommendation().is_none());
        assert_eq!(range.report()["suggestions"], serde_json::Value::Null);
    }

    #[test]
    fn refine_searches_inside_the_suggested_range_including_both_ends() {
        let spec = strategy_spec(spec::Strategy::RangeTest, |s| s.search.refine = true);
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
        let spec = strategy_spec(spec::Strategy::RangeTest, |s| s.search.refine = true);
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
