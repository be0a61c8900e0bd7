//! Edge descent (method.md §7): find the stability edge first, by bisection at a short budget,
//! scout down from it at a middle budget, then walk down at the full budget from the scout's
//! best and refine around the best rate.
//!
//! Every rate is a point of the grid strategy's lattice (`min_lr`..`max_lr` at `resolution`),
//! so the answer is one an exhaustive grid would have trained. Stability is monotone in the
//! rate and divergence shows within a few steps, so the edge costs little; the best rate for
//! the full budget lies at or below it, often far below on problems that overfit. Short runs
//! favour large rates, so the scout's best is an upper bound for the full budget's: the
//! full-budget ladder starts there instead of at the edge, and every candidate from then on
//! trains the full budget.
//!
//! No rung pruning: a trial ends early only when its own trace diverges. What a round returns
//! then depends on the rates and the trainer alone, not on which trial reached a milestone
//! first, so the recommendation is the same with any number of workers at any speeds.

use std::collections::{BTreeMap, BTreeSet};

use lrsweep_proto::spec::{EdgeDescentSpec, SearchSpec};

use super::lattice::{grid_len, span_point};
use super::outcome::{candidates, CandidateResult, Learning, TrialResult};
use super::parabola;
use super::recommendation::{Confidence, Recommendation, FLAT};
use super::{RoundPlan, Strategy};
use crate::prune::Incumbent;

/// Where the search is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// Bisecting the stability edge at the first round's budget.
    Edge,
    /// The ladder's descent at the middle round's budget, from the edge rate down: where the
    /// full-budget ladder starts (only with three or more rounds).
    Scout,
    /// Full-budget rates `ladder_stride` apart, from the scout's best (else the edge) down,
    /// until the loss has risen `ladder_patience` times in a row.
    Ladder,
    /// Full-budget rates `stride` either side of the best, `stride` halving to 1.
    Refine {
        stride: u32,
    },
    Done,
}

impl Stage {
    /// What the stage's rounds train.
    fn budget(&self) -> Budget {
        match self {
            Stage::Edge | Stage::Done => Budget::Probe,
            Stage::Scout => Budget::Scout,
            Stage::Ladder => Budget::FullHeld,
            Stage::Refine { .. } => Budget::Full,
        }
    }
}

/// The lowest-scoring (index, score), ties to the smaller rate.
fn lowest(scored: &[(u32, f64)]) -> Option<(u32, f64)> {
    scored
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
}

/// A parabola over log lr around the best full-budget rate.
struct Fit {
    /// The best index and its score.
    best: (u32, f64),
    /// The scored rates within one ladder stride of it.
    near: Vec<(u32, f64)>,
    /// The lattice position of the vertex of the parabola fitted to their losses
    /// (parabola.rs), when there is one.
    vertex: Option<f64>,
}

/// What a round trains.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Budget {
    /// The first round's budget: the edge probes.
    Probe,
    /// The middle round's budget: the scout.
    Scout,
    /// The full budget, each rate stopped once it is clearly behind the best so far: the
    /// ladder, whose rates far from the optimum need not finish to be ruled out.
    FullHeld,
    /// The full budget to the end: the refinement, whose rates lie close to the best, where
    /// one seed's noise can put the better rate behind for a while, and whose losses the
    /// final fit needs.
    Full,
}

impl Budget {
    fn full(&self) -> bool {
        matches!(self, Budget::FullHeld | Budget::Full)
    }
}

pub struct EdgeDescent {
    search: SearchSpec,
    spec: EdgeDescentSpec,
    /// Lattice points.
    n: u32,
    round: u32,
    stage: Stage,
    /// Lattice indices shown stable (trained a budget to its end without diverging).
    stable: BTreeSet<u32>,
    /// Smallest lattice index that diverged at any budget (or could not be trained), or that
    /// stalled above a rate that learned.
    unstable: Option<u32>,
    /// What the rates that trained a budget to its end did to their training loss, by the
    /// budget's round of the spec and lattice index.
    learning: BTreeMap<u32, BTreeMap<u32, Learning>>,
    /// Scout results by lattice index: the score, None when not usable.
    scouted: BTreeMap<u32, Option<f64>>,
    /// Full-budget results by lattice index: the score, None when not usable.
    finals: BTreeMap<u32, Option<f64>>,
    /// Validation losses of the usable full-budget rates, per replicate: the incumbent's.
    validation: BTreeMap<u32, Vec<Vec<(u64, f64)>>>,
    /// The largest stable rate when the edge stage ended.
    top: Option<u32>,
    /// Where the full-budget ladder starts: the scout's best, or `top` without a scout.
    ladder_top: Option<u32>,
}

impl EdgeDescent {
    pub fn new(search: &SearchSpec, spec: &EdgeDescentSpec) -> EdgeDescent {
        EdgeDescent {
            n: grid_len(search.min_lr, search.max_lr, spec.resolution),
            search: search.clone(),
            spec: spec.clone(),
            round: 0,
            stage: Stage::Edge,
            stable: BTreeSet::new(),
            unstable: None,
            learning: BTreeMap::new(),
            scouted: BTreeMap::new(),
            finals: BTreeMap::new(),
            validation: BTreeMap::new(),
            top: None,
            ladder_top: None,
        }
    }

    fn lr(&self, i: u32) -> f64 {
        span_point(self.search.min_lr, self.search.max_lr, self.n, i)
    }

    /// The lattice index of a rate this strategy planned.
    fn index(&self, lr: f64) -> u32 {
        let step = (self.search.max_lr / self.search.min_lr).ln() / f64::from(self.n - 1);
        let at = ((lr / self.search.min_lr).ln() / step).round();
        (at.max(0.0) as u32).min(self.n - 1)
    }

    /// The spec round whose steps and data fraction `budget` trains.
    fn round_of(&self, budget: Budget) -> u32 {
        match budget {
            Budget::Probe => 0,
            Budget::Scout => 1,
            Budget::FullHeld | Budget::Full => self.search.last_round(),
        }
    }

    /// A round on `indices` at the current stage's budget (`Stage::budget`).
    fn plan(&mut self, indices: BTreeSet<u32>) -> RoundPlan {
        let budget = self.stage.budget();
        let round = self.round_of(budget);
        let held = budget == Budget::FullHeld;
        let incumbent = self.best().filter(|_| held).map(|(i, score)| Incumbent {
            lr: self.lr(i),
            score,
            validation: self.validation.get(&i).cloned().unwrap_or_default(),
        });
        let plan = RoundPlan {
            round: self.round,
            lrs: indices.iter().map(|&i| self.lr(i)).collect(),
            steps: self.search.round_steps(round),
            data_fraction: self.search.round_fraction(round),
            replicates: self.search.replicates,
            schedule: None,
            optimizer: None,
            incumbent,
        };
        self.round += 1;
        plan
    }

    /// Largest index shown stable below every divergence.
    fn top_stable(&self) -> Option<u32> {
        let below = self.unstable.unwrap_or(self.n);
        self.stable.range(..below).next_back().copied()
    }

    /// The next bisection round, or None once the edge is pinned to neighbouring lattice
    /// points (or lies outside the range).
    fn edge_round(&mut self) -> Option<RoundPlan> {
        let lo = self.top_stable().map_or(-1, i64::from);
        let hi = i64::from(self.unstable.unwrap_or(self.n));
        if hi - lo <= 1 {
            return None;
        }
        let k = i64::from(self.spec.edge_probes).min(hi - lo - 1);
        let probes: BTreeSet<u32> = (1..=k)
            .map(|j| (lo + ((hi - lo) * j + (k + 1) / 2) / (k + 1)).clamp(lo + 1, hi - 1) as u32)
            .collect();
        Some(self.plan(probes))
    }

    /// Records a round's candidates: stability always, scores after the edge stage.
    ///
    /// A rate that stalled (its training loss ended no lower than it began) above one that
    /// learned is past the edge too: a model whose loss cannot blow up (cross-entropy over dead
    /// units) shows instability that way. Below every rate that learned, stalling only means
    /// too slow for the budget.
    fn record(&mut self, results: &[CandidateResult]) {
        let full = self.stage.budget().full();
        let budget = self.round_of(self.stage.budget());
        for c in results {
            let i = self.index(c.lr);
            if c.usable() {
                self.stable.insert(i);
                self.learning
                    .entry(budget)
                    .or_default()
                    .insert(i, c.learning);
            } else if c.diverged || !full {
                // A probe or scout that did not finish its budget cannot vouch for its rate.
                self.mark_unstable(i);
            }
            let score = c.usable().then_some(c.score).flatten();
            match self.stage {
                Stage::Scout => {
                    self.scouted.insert(i, score);
                }
                Stage::Ladder | Stage::Refine { .. } => {
                    self.finals.insert(i, score);
                }
                Stage::Edge | Stage::Done => {}
            }
        }
        if let Some(i) = self.stalled_past_edge() {
            self.mark_unstable(i);
        }
    }

    /// The smallest rate that stalled above one that learned on the same budget (on another,
    /// a lucky first minibatch shared by every rate of the seed can make a slow rate look
    /// stalled on a short budget and a smaller one learn on a long one).
    fn stalled_past_edge(&self) -> Option<u32> {
        self.learning
            .values()
            .filter_map(|rates| {
                let (&lowest, _) = rates.iter().find(|(_, &l)| l == Learning::Learned)?;
                rates
                    .range(lowest + 1..)
                    .find(|(_, &l)| l == Learning::Stalled)
                    .map(|(&i, _)| i)
            })
            .min()
    }

    fn mark_unstable(&mut self, i: u32) {
        self.unstable = Some(self.unstable.map_or(i, |u| u.min(i)));
    }

    /// The full-budget scores below every divergence that may be picked: not the largest stable
    /// rate's (what was stable on this seed at the edge may diverge on another) unless it is
    /// the only one.
    fn scored(&self) -> Vec<(u32, f64)> {
        let edge = self.top_stable().filter(|_| self.unstable.is_some());
        let mut scored = self.usable_below_divergence(&self.finals);
        if scored.iter().any(|&(i, _)| Some(i) != edge) {
            scored.retain(|&(i, _)| Some(i) != edge);
        }
        scored
    }

    /// The rates of `results` (scout or full budget) with a score, below every divergence.
    fn usable_below_divergence(&self, results: &BTreeMap<u32, Option<f64>>) -> Vec<(u32, f64)> {
        let below = self.unstable.unwrap_or(self.n);
        results
            .range(..below)
            .filter_map(|(&i, s)| s.map(|s| (i, s)))
            .collect()
    }

    /// The best full-budget index (ties to the smaller rate).
    fn best(&self) -> Option<(u32, f64)> {
        lowest(&self.scored())
    }

    /// The fit around the best full-budget rate, once one scored.
    fn fit(&self) -> Option<Fit> {
        let scored = self.scored();
        let best = lowest(&scored)?;
        let stride = self.spec.ladder_stride;
        let near: Vec<(u32, f64)> = scored
            .into_iter()
            .filter(|&(i, _)| i.abs_diff(best.0) <= stride)
            .collect();
        let points: Vec<(f64, f64)> = near.iter().map(|&(i, s)| (f64::from(i), s)).collect();
        let vertex = parabola::vertex(&points);
        Some(Fit { best, near, vertex })
    }

    /// The recommended index: the scored full-budget rate nearest the fitted vertex, or the
    /// best itself when there is no fit.
    fn pick(&self) -> Option<(u32, f64)> {
        let Fit { best, near, vertex } = self.fit()?;
        let Some(v) = vertex else {
            return Some(best);
        };
        near.into_iter().min_by(|a, b| {
            (f64::from(a.0) - v)
                .abs()
                .total_cmp(&(f64::from(b.0) - v).abs())
        })
    }

    /// The next ladder rates below the lowest tried, or None when the ladder is over: the loss
    /// rose `ladder_patience` times in a row as the rate fell, or the range's bottom is reached.
    ///
    /// Not "the best is far above": a loss that is worse at a smaller rate may be a hump between
    /// a model that does not learn (near the edge) and the real optimum further down.
    fn ladder_round(&mut self) -> Option<RoundPlan> {
        let rates = self.descent(&self.finals, self.ladder_top?, self.best().is_some())?;
        Some(self.plan(rates))
    }

    /// The scout's next rates: the ladder's descent at the middle budget, from the edge rate.
    fn scout_round(&mut self) -> Option<RoundPlan> {
        if self.search.last_round() < 2 {
            return None;
        }
        let scored = self.scouted.values().any(Option::is_some);
        let rates = self.descent(&self.scouted, self.top?, scored)?;
        Some(self.plan(rates))
    }

    /// The next `ladder_width` rates `ladder_stride` apart below the lowest of `tried` (from
    /// `start` down when nothing is), or None when the descent is over: `scored` and the loss
    /// rose `ladder_patience` times in a row as the rate fell, or the range's bottom is reached.
    fn descent(
        &self,
        tried: &BTreeMap<u32, Option<f64>>,
        start: u32,
        scored: bool,
    ) -> Option<BTreeSet<u32>> {
        let stride = i64::from(self.spec.ladder_stride);
        // From the lowest rate up: a rate stopped behind the best counts as worse than the one
        // above it; rates at or above a divergence are not part of the descent.
        let below = self.unstable.unwrap_or(self.n);
        let losses: Vec<Option<f64>> = tried.range(..below).map(|(_, s)| *s).collect();
        let patience = self.spec.ladder_patience as usize;
        let rising = scored
            && losses.len() > patience
            && losses
                .windows(2)
                .take(patience)
                .all(|w| match (w[0], w[1]) {
                    (None, _) => true,
                    (Some(lower), Some(upper)) => lower > upper,
                    (Some(_), None) => false,
                });
        if rising {
            return None;
        }
        // The descent starts at `start` itself.
        let from = tried
            .keys()
            .next()
            .map_or(i64::from(start) + stride, |&i| i64::from(i));
        let rates: BTreeSet<u32> = (1..=i64::from(self.spec.ladder_width))
            .map(|j| from - j * stride)
            .filter(|&i| i >= 0 && i < i64::from(below))
            .map(|i| i as u32)
            .collect();
        (!rates.is_empty()).then_some(rates)
    }

    /// Where the full-budget ladder starts: at the scout's best rate (short runs favour large
    /// rates, so the full budget's best lies at or below it). Without a scout, at the edge rate:
    /// never the pick (it may diverge on another seed), but its full-budget run checks
    /// `max_stable_lr` at that budget, as the scout's run of it does at the middle one.
    fn ladder_start(&self) -> Option<u32> {
        let top = self.top?;
        let scouted = self.usable_below_divergence(&self.scouted);
        Some(lowest(&scouted).map_or(top, |(best, _)| best))
    }

    /// Whether the ladder has rates left below its lowest.
    fn ladder_has_room(&self) -> bool {
        self.finals
            .keys()
            .next()
            .is_some_and(|&lowest| lowest >= self.spec.ladder_stride)
    }

    /// Rates `stride` either side of the best not tried yet, halving `stride` until there are
    /// some or it reaches `finest_stride`. The first refinement trains both sides; a later one
    /// only the side where the fitted parabola's minimum lies, and none when it lies at the
    /// best (within half a lattice step): the fit already says where to look.
    fn refine_round(&mut self, mut stride: u32) -> Option<RoundPlan> {
        let Fit {
            best: (best, _),
            vertex,
            ..
        } = self.fit()?;
        let below = self.unstable.unwrap_or(self.n);
        while stride >= self.spec.finest_stride.max(1) {
            let later = stride < self.spec.ladder_stride / 2;
            let toward = |side: f64| match vertex {
                Some(v) if later => (v - f64::from(best)) * side > 0.5,
                _ => true,
            };
            let rates: BTreeSet<u32> = [
                (toward(-1.0), i64::from(best) - i64::from(stride)),
                (toward(1.0), i64::from(best) + i64::from(stride)),
            ]
            .into_iter()
            .filter(|&(wanted, _)| wanted)
            .map(|(_, i)| i)
            .filter(|&i| i >= 0 && i < i64::from(below) && !self.finals.contains_key(&(i as u32)))
            .map(|i| i as u32)
            .collect();
            if !rates.is_empty() {
                self.stage = Stage::Refine { stride };
                return Some(self.plan(rates));
            }
            stride /= 2;
        }
        None
    }

    /// The round after the current stage's, moving on through the stages as each ends.
    fn next(&mut self) -> Option<RoundPlan> {
        loop {
            let plan = match self.stage {
                Stage::Edge => self.edge_round(),
                Stage::Scout => self.scout_round(),
                Stage::Ladder => self.ladder_round(),
                Stage::Refine { stride } => self.refine_round(stride / 2),
                Stage::Done => return None,
            };
            if plan.is_some() {
                return plan;
            }
            self.stage = match self.stage {
                Stage::Edge => {
                    self.top = self.top_stable();
                    if self.top.is_none() {
                        Stage::Done
                    } else {
                        Stage::Scout
                    }
                }
                Stage::Scout => {
                    self.ladder_top = self.ladder_start();
                    Stage::Ladder
                }
                // Halving from the ladder's stride: the first refinement is stride / 2.
                Stage::Ladder => Stage::Refine {
                    stride: self.spec.ladder_stride,
                },
                // A full-budget divergence below every rate scored so far (stability is not
                // always monotone far above the optimum) leaves nothing to recommend: the
                // ladder goes on down from its lowest rate.
                Stage::Refine { .. } if self.best().is_none() && self.ladder_has_room() => {
                    Stage::Ladder
                }
                Stage::Refine { .. } | Stage::Done => Stage::Done,
            };
        }
    }
}

impl EdgeDescent {
    /// How flat the full-budget loss is around `best` (scoring `score`), from the rates trained
    /// at that budget below every divergence.
    fn confidence(&self, best: u32, score: f64) -> Confidence {
        let scored = self.scored();
        let close: Vec<u32> = scored
            .iter()
            .filter(|(_, s)| *s <= score + score.abs() * FLAT)
            .map(|&(i, _)| i)
            .collect();
        let ratio = |s: Option<&(u32, f64)>| s.map(|&(_, s)| s / score);
        Confidence {
            flat_from: self.lr(close.iter().copied().min().unwrap_or(best)),
            flat_to: self.lr(close.iter().copied().max().unwrap_or(best)),
            below_ratio: ratio(scored.iter().rev().find(|(i, _)| *i < best)),
            above_ratio: ratio(scored.iter().find(|(i, _)| *i > best)),
            at_range_end: match best {
                0 => Some("min_lr"),
                b if b == self.n - 1 => Some("max_lr"),
                _ => None,
            },
        }
    }
}

impl Strategy for EdgeDescent {
    fn first_round(&mut self) -> RoundPlan {
        *self = EdgeDescent::new(&self.search, &self.spec);
        self.next()
            .expect("a lattice has at least two points, so the edge needs a probe")
    }

    fn next_round(&mut self, results: &[TrialResult]) -> Option<RoundPlan> {
        self.record(&candidates(results));
        if self.stage.budget().full() {
            for r in results {
                let i = self.index(r.lr);
                if self.finals.get(&i).is_some_and(Option::is_some) {
                    let curves = self.validation.entry(i).or_default();
                    let at = r.replicate as usize;
                    if curves.len() <= at {
                        curves.resize(at + 1, Vec::new());
                    }
                    curves[at] = r.validation.clone();
                }
            }
        }
        self.next()
    }

    /// Rung pruning would make a round's outcome depend on which trial reached a milestone
    /// first; divergence (a trial's own trace) still stops a trial.
    fn uses_rungs(&self) -> bool {
        false
    }

    fn recommendation(&self) -> Option<Recommendation> {
        let (best, score) = self.pick()?;
        let max_stable = self.top_stable().unwrap_or(best).max(best);
        Some(Recommendation {
            confidence: Some(self.confidence(best, score)),
            ..Recommendation::new(self.lr(best), score, self.lr(max_stable))
        })
    }

    fn report(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::outcome::{CurvePoint, TrialStatus};
    use crate::search::test_support::{spec_from, trial};

    /// Runs the strategy to the end on a synthetic problem: rates above `edge` diverge, the
    /// rest score by their squared distance (in decades) from `best`. Returns the plans.
    fn drive(search: &mut EdgeDescent, best: f64, edge: f64) -> Vec<RoundPlan> {
        drive_with(search, |lr| {
            if lr > edge {
                trial(lr, 0, None, true)
            } else {
                trial(lr, 0, Some((lr.log10() - best.log10()).powi(2)), false)
            }
        })
    }

    /// Runs the strategy to the end with each rate's trial from `outcome`. Returns the plans.
    fn drive_with(
        search: &mut EdgeDescent,
        outcome: impl Fn(f64) -> TrialResult,
    ) -> Vec<RoundPlan> {
        drive_budgets(search, |lr, _| outcome(lr))
    }

    /// `drive_with`, the outcome knowing the round's budget (the probes train 50 steps).
    fn drive_budgets(
        search: &mut EdgeDescent,
        outcome: impl Fn(f64, u64) -> TrialResult,
    ) -> Vec<RoundPlan> {
        let mut plans = vec![search.first_round()];
        loop {
            let plan = plans.last().unwrap();
            let results: Vec<TrialResult> =
                plan.lrs.iter().map(|&lr| outcome(lr, plan.steps)).collect();
            match search.next_round(&results) {
                Some(next) => plans.push(next),
                None => return plans,
            }
        }
    }

    /// Edge descent without a scout (two rounds: probes, full budget), `text` added to
    /// `[search]`.
    fn edge_descent(text: &str) -> EdgeDescent {
        edge_descent_with("rounds = 2\nsteps = [50, 1000]", text)
    }

    /// The default three rounds: probes, scout, full budget.
    fn scouting(text: &str) -> EdgeDescent {
        edge_descent_with("rounds = 3\nsteps = [50, 100, 1000]", text)
    }

    fn edge_descent_with(rounds: &str, text: &str) -> EdgeDescent {
        let spec = spec_from(&format!(
            "[search]\nstrategy = \"edge-descent\"\n{rounds}\n{text}"
        ));
        match &spec.search.strategy {
            lrsweep_proto::spec::StrategySpec::EdgeDescent(e) => EdgeDescent::new(&spec.search, e),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pins_the_edge_to_neighbouring_lattice_points_then_descends_at_the_full_budget() {
        // Refining down to neighbouring lattice points finds the nearest one exactly.
        let mut search = edge_descent("finest_stride = 1");
        let plans = drive(&mut search, 2e-3, 0.37);
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let rec = search.recommendation().unwrap();
        // The largest stable rate is the lattice point just below the edge.
        let below = grid
            .iter()
            .copied()
            .filter(|&lr| lr <= 0.37)
            .fold(0.0, f64::max);
        assert_eq!(rec.max_stable_lr, below);
        // The best is the lattice point nearest 2e-3 (the score is symmetric in log lr).
        let nearest = grid
            .iter()
            .copied()
            .min_by(|a, b| (a / 2e-3).ln().abs().total_cmp(&(b / 2e-3).ln().abs()))
            .unwrap();
        assert_eq!(rec.best_lr, nearest);
        // Probes train the short budget, everything after the edge the full one; every rate
        // is a lattice point, none at or above a divergence after it was seen.
        let edge_rounds = plans.iter().take_while(|p| p.steps == 50).count();
        assert!((3..=5).contains(&edge_rounds), "{plans:#?}");
        assert!(plans[edge_rounds..].iter().all(|p| p.steps == 1000));
        // The ladder starts at the edge rate: its full-budget run checks it at that budget.
        assert!(plans[edge_rounds].lrs.contains(&below), "{plans:#?}");
        for plan in &plans {
            assert!(plan.lrs.iter().all(|lr| grid.contains(lr)), "{plan:?}");
        }
        let full: usize = plans[edge_rounds..].iter().map(|p| p.lrs.len()).sum();
        assert!(full <= 12, "{full} full-budget rates: {plans:#?}");
        assert!(plans.iter().enumerate().all(|(i, p)| p.round == i as u32));
    }

    #[test]
    fn an_edge_above_the_range_starts_the_ladder_at_max_lr() {
        let mut search = edge_descent("finest_stride = 1");
        drive(&mut search, 1.0, 1e9);
        let rec = search.recommendation().unwrap();
        assert_eq!(rec.max_stable_lr, 10.0);
        assert!((rec.best_lr / 1.0).ln().abs() < 1.25f64.ln(), "{rec:?}");
        let confidence = rec.confidence.unwrap();
        assert_eq!(confidence.at_range_end, None);
        assert!(confidence.flat_from <= rec.best_lr && rec.best_lr <= confidence.flat_to);
        assert!(confidence.below_ratio.unwrap() > 1.0 && confidence.above_ratio.unwrap() > 1.0);

        // The best at the top of the range: the report says to extend max_lr.
        let mut search = edge_descent("finest_stride = 1");
        drive(&mut search, 1e3, 1e9);
        let confidence = search.recommendation().unwrap().confidence.unwrap();
        assert_eq!(confidence.at_range_end, Some("max_lr"));
        assert_eq!(confidence.above_ratio, None);
        assert!(confidence.sentence().contains("extend max_lr"));
    }

    #[test]
    fn nothing_stable_recommends_nothing() {
        let mut search = edge_descent("");
        let plans = drive(&mut search, 1e-3, 1e-9);
        assert!(plans.iter().all(|p| p.steps == 50));
        assert!(search.recommendation().is_none());
    }

    #[test]
    fn a_full_budget_divergence_lowers_the_edge() {
        let mut search = edge_descent("");
        let mut plan = search.first_round();
        // Probes: everything up to 0.1 is stable at the short budget.
        while plan.steps == 50 {
            let results: Vec<TrialResult> = plan
                .lrs
                .iter()
                .map(|&lr| trial(lr, 0, (lr <= 0.1).then_some(1.0), lr > 0.1))
                .collect();
            plan = search.next_round(&results).unwrap();
        }
        // At the full budget the top rate diverges and the next is the best so far.
        let top = plan.lrs[plan.lrs.len() - 1];
        let results: Vec<TrialResult> = plan
            .lrs
            .iter()
            .map(|&lr| trial(lr, 0, (lr < top).then_some(0.5), lr >= top))
            .collect();
        let next = search.next_round(&results).unwrap();
        assert!(next.lrs.iter().all(|&lr| lr < top), "{next:?}");
        let rec = search.recommendation().unwrap();
        assert!(rec.max_stable_lr < top);
        assert_eq!(rec.best_lr, plan.lrs[0]);
        assert_eq!(results[0].status, TrialStatus::Completed);
    }

    #[test]
    fn the_same_results_in_any_order_give_the_same_plans() {
        let mut a = edge_descent("");
        let mut b = edge_descent("");
        let (mut pa, mut pb) = (a.first_round(), b.first_round());
        loop {
            assert_eq!(pa, pb);
            let results: Vec<TrialResult> = pa
                .lrs
                .iter()
                .map(|&lr| {
                    trial(
                        lr,
                        0,
                        (lr < 0.2).then_some((lr.ln() + 6.0).abs()),
                        lr >= 0.2,
                    )
                })
                .collect();
            let mut reversed = results.clone();
            reversed.reverse();
            match (a.next_round(&results), b.next_round(&reversed)) {
                (Some(x), Some(y)) => (pa, pb) = (x, y),
                (None, None) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(a.recommendation(), b.recommendation());
    }

    #[test]
    fn the_ladder_walks_through_a_hump_to_the_optimum_below_it() {
        // Near the edge (0.37, down to 10^-1.3) the model does not learn (1.0); below it, down
        // to 10^-3.6, rates learn and overfit, worse than that (a hump peaking at 1.6, four
        // ladder rungs wide); the optimum is at 1e-5.
        let mut search = edge_descent("");
        let loss = |lr: f64| match lr.log10() {
            x if x > -1.3 => 1.0,
            x if x > -3.6 => 1.6 - 0.4 * (x + 2.45).abs() / 1.15,
            x => 0.3 + 0.1 * (x + 5.0).powi(2),
        };
        drive_with(&mut search, |lr| {
            if lr > 0.37 {
                trial(lr, 0, None, true)
            } else {
                trial(lr, 0, Some(loss(lr)), false)
            }
        });
        let rec = search.recommendation().unwrap();
        assert!((rec.best_lr.log10() + 5.0).abs() < 0.25, "{rec:?}");
    }

    #[test]
    fn the_largest_stable_rate_is_not_the_pick_when_a_smaller_one_scored() {
        // The loss falls all the way to the edge: the best would be the last stable rate.
        let mut search = edge_descent("");
        drive_with(&mut search, |lr| {
            if lr > 0.2 {
                trial(lr, 0, None, true)
            } else {
                trial(
                    lr,
                    0,
                    Some(1.0 - 0.1 * lr.log10().max(-7.0) / -7.0 - lr),
                    false,
                )
            }
        });
        let rec = search.recommendation().unwrap();
        assert!(rec.best_lr < rec.max_stable_lr, "{rec:?}");
    }

    #[test]
    fn the_pick_follows_the_fitted_minimum_not_one_lucky_rate() {
        // True loss: a parabola in lattice steps, its minimum midway between two ladder rungs
        // (the ladder runs down from the largest stable rate 6 steps at a time). The rung
        // below the minimum is lucky and scores lowest; refinement then trains the minimum
        // itself, and the fit over the five rates around picks it.
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let top = grid.iter().rposition(|&g| g <= 0.37).unwrap() as i64;
        let at = |lr: f64| grid.iter().position(|&g| g == lr).unwrap() as i64;
        let centre = top - 6 * 7 + 3;
        let mut search = edge_descent("ladder_stride = 6\nladder_patience = 3");
        drive_with(&mut search, |lr| {
            if lr > 0.37 {
                return trial(lr, 0, None, true);
            }
            let k = at(lr);
            let lucky = if k == centre - 3 { -0.03 } else { 0.0 };
            trial(
                lr,
                0,
                Some(1.0 + 0.002 * ((k - centre) as f64).powi(2) + lucky),
                false,
            )
        });
        let rec = search.recommendation().unwrap();
        assert_eq!(at(rec.best_lr), centre, "{rec:?}");
    }

    #[test]
    fn a_divergence_below_every_scored_rate_sends_the_ladder_further_down() {
        // Lattice steps below the largest stable rate (0.37 diverges), at the full budget: the
        // edge rate scores 0.9 (never the pick), the rung 6 below 1.0, the rungs 12 and 18
        // below are stopped behind it; refinement around it then finds a divergence 9 below,
        // under every rate scored. Further down the loss has its minimum at 1e-5.
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let top = grid.iter().rposition(|&g| g <= 0.37).unwrap() as i64;
        let below_top = |lr: f64| top - grid.iter().position(|&g| g == lr).unwrap() as i64;
        let mut search = edge_descent("ladder_stride = 6\nladder_patience = 3");
        drive_budgets(&mut search, |lr, steps| match below_top(lr) {
            d if d < 0 => trial(lr, 0, None, true),
            _ if steps == 50 => trial(lr, 0, Some(1.0), false),
            9 => trial(lr, 0, None, true),
            0 => trial(lr, 0, Some(0.9), false),
            6 => trial(lr, 0, Some(1.0), false),
            d if d < 6 => trial(lr, 0, Some(1.2), false),
            d if d <= 24 => trial(lr, 0, None, false),
            _ => trial(lr, 0, Some(0.3 + 0.1 * (lr.log10() + 5.0).powi(2)), false),
        });
        let rec = search.recommendation().expect("a recommendation");
        assert!((rec.best_lr.log10() + 5.0).abs() < 0.25, "{rec:?}");
        assert!(rec.max_stable_lr < grid[(top - 9) as usize], "{rec:?}");
    }

    /// Scores that favour larger rates at shorter budgets (short-horizon bias): the best lies
    /// at 10^-1.5 for 100 steps and at 1e-4 for 1,000; 0.37 and above diverge.
    fn biased(lr: f64, steps: u64) -> TrialResult {
        if lr > 0.37 {
            return trial(lr, 0, None, true);
        }
        let best = if steps >= 1000 { -4.0 } else { -1.5 };
        trial(lr, 0, Some(0.2 + 0.1 * (lr.log10() - best).powi(2)), false)
    }

    #[test]
    fn the_scout_starts_the_full_budget_ladder_at_its_best() {
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let at = |lr: f64| grid.iter().position(|&g| g == lr).unwrap() as i64;
        let top = grid.iter().rposition(|&g| g <= 0.37).unwrap() as i64;
        let mut search = scouting("");
        let plans = drive_budgets(&mut search, biased);
        // The scout trains the middle budget from the edge rate down, `ladder_stride` apart.
        let scout: Vec<&RoundPlan> = plans.iter().filter(|p| p.steps == 100).collect();
        let scouted: Vec<i64> = scout
            .iter()
            .flat_map(|p| p.lrs.iter().map(|&lr| at(lr)))
            .collect();
        assert_eq!(scouted.iter().max(), Some(&top), "{plans:#?}");
        assert!(scouted.iter().all(|i| (top - i) % 10 == 0), "{scouted:?}");
        // Its best is where the full budget starts: nothing above it trains 1,000 steps.
        let scout_best = scout
            .iter()
            .flat_map(|p| p.lrs.iter())
            .copied()
            .min_by(|a, b| (a.log10() + 1.5).abs().total_cmp(&(b.log10() + 1.5).abs()))
            .unwrap();
        let full: Vec<f64> = plans
            .iter()
            .filter(|p| p.steps == 1000)
            .flat_map(|p| p.lrs.iter().copied())
            .collect();
        assert_eq!(
            full.iter().copied().fold(0.0, f64::max),
            scout_best,
            "{plans:#?}"
        );
        let rec = search.recommendation().unwrap();
        assert!((rec.best_lr.log10() + 4.0).abs() < 0.25, "{rec:?}");
        assert_eq!(at(rec.max_stable_lr), top);
        // Without the scout the ladder starts at the edge: more rates train the full budget.
        let mut plain = edge_descent("");
        let plain_full: usize = drive_budgets(&mut plain, biased)
            .iter()
            .filter(|p| p.steps == 1000)
            .map(|p| p.lrs.len())
            .sum();
        assert!(full.len() < plain_full, "{} vs {plain_full}", full.len());
        assert_eq!(plain.recommendation().unwrap().best_lr, rec.best_lr);
    }

    #[test]
    fn a_divergence_in_the_scout_lowers_the_edge() {
        // Stable at 50 steps up to 0.37; at 100 steps and more, everything above 0.05 diverges.
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let top = grid
            .iter()
            .copied()
            .filter(|&g| g <= 0.37)
            .fold(0.0, f64::max);
        let mut search = scouting("");
        let plans = drive_budgets(&mut search, |lr, steps| {
            if steps > 50 && lr > 0.05 {
                trial(lr, 0, None, true)
            } else {
                biased(lr, steps)
            }
        });
        // The scout trained the edge rate at 100 steps, saw it diverge, and the largest stable
        // rate is now below it; no rate above the scout's best trained the full budget.
        assert!(plans.iter().any(|p| p.steps == 100 && p.lrs.contains(&top)));
        let rec = search.recommendation().unwrap();
        assert!(rec.max_stable_lr < top, "{rec:?}");
        assert!(
            plans
                .iter()
                .filter(|p| p.steps == 1000)
                .all(|p| p.lrs.iter().all(|&lr| lr <= 0.05)),
            "{plans:#?}"
        );
        assert!((rec.best_lr.log10() + 4.0).abs() < 0.25, "{rec:?}");
    }

    #[test]
    fn a_later_refinement_trains_only_the_side_of_the_fitted_minimum() {
        // Loss: a parabola in lattice steps with its minimum `offset` steps above the ladder
        // rung 30 below the edge rate. The ladder (10 apart) finds that rung best, the first
        // refinement trains 5 either side, and the fit over the five rates within 10 of it
        // puts the vertex at the minimum.
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let top = grid.iter().rposition(|&g| g <= 0.37).unwrap() as i64;
        let run = |offset: f64| {
            let centre = (top - 30) as f64 + offset;
            let mut search = edge_descent("");
            let plans = drive_with(&mut search, |lr| {
                if lr > 0.37 {
                    return trial(lr, 0, None, true);
                }
                let k = grid.iter().position(|&g| g == lr).unwrap() as f64;
                trial(lr, 0, Some(1.0 + 0.002 * (k - centre).powi(2)), false)
            });
            let at = |lr: f64| grid.iter().position(|&g| g == lr).unwrap() as i64;
            let full: Vec<i64> = plans
                .iter()
                .filter(|p| p.steps == 1000)
                .flat_map(|p| p.lrs.iter().map(|&lr| at(lr)))
                .collect();
            (full, at(search.recommendation().unwrap().best_lr))
        };
        // The minimum 1.2 steps above the rung: of the rates 2 either side, only the one above.
        let (full, pick) = run(1.2);
        assert!(
            full.contains(&(top - 35)) && full.contains(&(top - 25)),
            "{full:?}"
        );
        assert!(
            full.contains(&(top - 28)) && !full.contains(&(top - 32)),
            "{full:?}"
        );
        assert_eq!(pick, top - 28);
        // The minimum on the rung itself: no rate 2 either side trains at all.
        let (full, pick) = run(0.2);
        assert!(
            !full.contains(&(top - 28)) && !full.contains(&(top - 32)),
            "{full:?}"
        );
        assert_eq!(pick, top - 30);
    }

    /// A trial whose smoothed training loss went from `first` to `last`, scoring `score`.
    fn moved(lr: f64, score: f64, first: f64, last: f64) -> TrialResult {
        let point = |step, smoothed| CurvePoint { step, lr, smoothed };
        TrialResult {
            curve: vec![point(1, first), point(2, last)],
            ..trial(lr, 0, Some(score), false)
        }
    }

    /// Nothing diverges: rates above 0.3 leave the loss above where it began (a model whose
    /// loss cannot blow up), the best is 1e-3, and at 50 steps every rate below 1e-4 ends no
    /// lower than it began either (too slow for the budget) while at 1,000 they learn.
    fn stalling(lr: f64, steps: u64) -> TrialResult {
        let score = 0.2 + 0.1 * (lr.log10() + 3.0).powi(2);
        if lr > 0.3 {
            moved(lr, 2.0, 1.0, 1.5)
        } else if steps < 1000 && lr < 1e-4 {
            moved(lr, score, 1.0, 1.0)
        } else {
            moved(lr, score, 1.0, 0.5)
        }
    }

    #[test]
    fn a_rate_that_stalls_above_one_that_learned_is_past_the_edge() {
        let grid = crate::search::lattice::log_span(1e-7, 10.0, 84);
        let top = grid.iter().rposition(|&g| g <= 0.3).unwrap();
        let mut search = scouting("");
        let plans = drive_budgets(&mut search, stalling);
        let rec = search.recommendation().unwrap();
        // The edge is the largest rate that did not stall, not the range's top.
        assert_eq!(rec.max_stable_lr, grid[top], "{plans:#?}");
        assert!((rec.best_lr.log10() + 3.0).abs() < 0.25, "{rec:?}");
        // Nothing that stalls trains past the probes: the scout starts at the edge.
        let trained_above = plans
            .iter()
            .filter(|p| p.steps > 50)
            .flat_map(|p| p.lrs.iter())
            .any(|&lr| lr > 0.3);
        assert!(!trained_above, "{plans:#?}");
        // The slow rates that stalled at 50 steps lie below every rate that learned there:
        // they do not lower the edge, though smaller rates learned at 1,000 steps.
        let full_below: Vec<f64> = plans
            .iter()
            .filter(|p| p.steps == 1000)
            .flat_map(|p| p.lrs.iter().copied())
            .filter(|&lr| lr < 1e-4)
            .collect();
        assert!(!full_below.is_empty(), "{plans:#?}");

        // Without the stalls, only the range's top bounds the edge.
        let mut blind = scouting("");
        drive_budgets(&mut blind, |lr, steps| {
            trial(lr, 0, stalling(lr, steps).score, false)
        });
        assert_eq!(blind.recommendation().unwrap().max_stable_lr, 10.0);
    }
}
