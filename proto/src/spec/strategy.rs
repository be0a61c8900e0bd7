//! Each search strategy's own fields: the part of `[search]` that only one strategy reads.
//! Every struct validates its own values; fields are named by their dotted path in the spec.

use crate::domain::{OptimizerSpec, Ramp, Trainer, TrainerConfig};

use super::{check, SpecResult, MAX_PER_LIST, MAX_RATES};

/// `search.strategy`: which search runs, with the fields only it reads.
#[derive(Clone, Debug, PartialEq)]
pub enum StrategySpec {
    /// Decade grid first, then finer log-spaced grids around the best rate (method.md §1).
    CoarseToFine(CoarseToFineSpec),
    /// The stability edge by bisection at the first round's budget, then a ladder of rates at
    /// the last round's budget from the edge down, refined around its best (method.md §7).
    EdgeDescent(EdgeDescentSpec),
    /// LR range test (method.md §2), optionally refined coarse-to-fine.
    RangeTest(RangeTestSpec),
    /// One round: log-spaced rates from `min_lr` to `max_lr`, neighbours at most `resolution`
    /// apart, each with the last round's budget.
    Grid(GridSpec),
    /// One round: `random_trials` log-uniform rates drawn from `seed`, each with the last
    /// round's budget.
    Random(RandomSpec),
}

impl Default for StrategySpec {
    fn default() -> Self {
        StrategySpec::EdgeDescent(EdgeDescentSpec::default())
    }
}

impl StrategySpec {
    /// The name `search.strategy` gives it.
    pub fn name(&self) -> &'static str {
        super::search::StrategyName::of(self).as_str()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CoarseToFineSpec {
    /// Grid size of the refinement rounds before the last (round 0 has one rate per decade).
    pub candidates_per_round: u32,
    /// Refining stops once neighbouring candidates differ by a ratio below this; the last round
    /// spaces its rates this ratio apart, on the grid strategy's lattice.
    pub resolution: f64,
    /// The last round trains the lattice's rates from `final_below` below to `final_above`
    /// above the one nearest the previous round's best (the smallest rate within 2% of it):
    /// mostly below, as the best rate for the full budget is at or below the best for a shorter
    /// one.
    pub final_below: u32,
    pub final_above: u32,
    /// A final stage: train the best rate once more at the full budget with this hypergradient
    /// optimizer (sgd-hd, sgdn-hd, adam-hd), starting from that rate, and report where the rate
    /// adapted to.
    pub hypergradient: Option<OptimizerSpec>,
}

impl Default for CoarseToFineSpec {
    fn default() -> Self {
        CoarseToFineSpec {
            candidates_per_round: 5,
            resolution: 1.25,
            final_below: 3,
            final_above: 1,
            hypergradient: None,
        }
    }
}

impl CoarseToFineSpec {
    pub(crate) fn validate(&self, trainer: &Trainer) -> SpecResult {
        check(
            self.candidates_per_round >= 2,
            "search.candidates_per_round",
            "must be at least 2",
        )?;
        check_resolution(self.resolution)?;
        check(
            self.final_below + self.final_above >= 1,
            "search.final_below",
            "with search.final_above must give the last round at least two rates",
        )?;
        for (value, field) in [
            (self.candidates_per_round, "search.candidates_per_round"),
            (self.final_below, "search.final_below"),
            (self.final_above, "search.final_above"),
        ] {
            check(value <= MAX_PER_LIST, field, "must be at most 1000")?;
        }
        let (Some(hd), Trainer::BuiltIn(trainer)) = (&self.hypergradient, trainer) else {
            return Ok(());
        };
        check(
            hd.hypergrad_lr().is_some(),
            "search.hypergradient",
            "must be a hypergradient optimizer: sgd-hd, sgdn-hd or adam-hd",
        )?;
        let staged = TrainerConfig {
            optimizer: hd.clone(),
            schedule: Default::default(),
            ..trainer.clone()
        };
        staged.validate().map_err(|e| {
            let field = e.field.trim_start_matches("optimizer.");
            super::invalid(format!("search.hypergradient.{field}"), e.reason)
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EdgeDescentSpec {
    /// The rates tried are the grid strategy's lattice at this ratio.
    pub resolution: f64,
    /// Rates per round of the edge bisection: each round cuts the bracket into this many + 1.
    pub edge_probes: u32,
    /// Lattice steps between the scout's and the ladder's rates; refining halves it down to
    /// `finest_stride`.
    pub ladder_stride: u32,
    /// Scout and ladder rates per round.
    pub ladder_width: u32,
    /// The ladder ends once the loss has risen this many times in a row as the rate fell: one
    /// rise may be noise, or a hump between a model that does not learn and the optimum.
    pub ladder_patience: u32,
    /// Refinement stops after the rates this many lattice steps either side of the best.
    pub finest_stride: u32,
}

impl Default for EdgeDescentSpec {
    fn default() -> Self {
        EdgeDescentSpec {
            resolution: 1.25,
            edge_probes: 3,
            ladder_stride: 10,
            ladder_width: 2,
            ladder_patience: 2,
            finest_stride: 2,
        }
    }
}

impl EdgeDescentSpec {
    pub(crate) fn validate(&self, min_lr: f64, max_lr: f64) -> SpecResult {
        GridSpec {
            resolution: self.resolution,
        }
        .validate(min_lr, max_lr)?;
        for (value, field) in [
            (self.edge_probes, "search.edge_probes"),
            (self.ladder_stride, "search.ladder_stride"),
            (self.ladder_width, "search.ladder_width"),
            (self.ladder_patience, "search.ladder_patience"),
            (self.finest_stride, "search.finest_stride"),
        ] {
            check(value >= 1, field, "must be at least 1")?;
            check(value <= MAX_PER_LIST, field, "must be at most 1000")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RangeTestSpec {
    /// Steps of each run's ramp from `min_lr` to `max_lr`.
    pub range_steps: u64,
    /// How the rate grows along the ramp.
    pub ramp: Ramp,
    /// Runs, each on its own disjoint shard of the training split.
    pub shards: u32,
    /// `refine = true`: afterwards, search [max_stable/4, max_stable] coarse-to-fine with these
    /// fields (the range test stands in for round 0; refinement rounds take the budgets of
    /// rounds 1, 2, …).
    pub refine: Option<CoarseToFineSpec>,
}

impl Default for RangeTestSpec {
    fn default() -> Self {
        RangeTestSpec {
            range_steps: 100,
            ramp: Ramp::Exponential,
            shards: 2,
            refine: None,
        }
    }
}

impl RangeTestSpec {
    pub(crate) fn validate(&self, rounds: u32, trainer: &Trainer) -> SpecResult {
        // A ramp needs a start and an end (the linear ramp divides by steps − 1).
        check(
            self.range_steps >= 2,
            "search.range_steps",
            "must be at least 2",
        )?;
        check(self.shards >= 1, "search.shards", "must be at least 1")?;
        check(
            self.shards <= MAX_PER_LIST,
            "search.shards",
            "must be at most 1000",
        )?;
        let Some(refine) = &self.refine else {
            return Ok(());
        };
        // The range test takes round 0, so refining needs at least one more round.
        check(
            rounds >= 2,
            "search.refine",
            "needs search.rounds >= 2 (the range test is round 0)",
        )?;
        refine.validate(trainer)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GridSpec {
    /// Neighbouring rates are at most this ratio apart.
    pub resolution: f64,
}

impl Default for GridSpec {
    fn default() -> Self {
        GridSpec {
            resolution: CoarseToFineSpec::default().resolution,
        }
    }
}

impl GridSpec {
    pub(crate) fn validate(&self, min_lr: f64, max_lr: f64) -> SpecResult {
        check_resolution(self.resolution)?;
        let rates = (max_lr / min_lr).ln() / self.resolution.ln();
        check(
            rates <= f64::from(MAX_RATES),
            "search.resolution",
            "is so fine that the grid would plan more than 100000 rates",
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RandomSpec {
    /// Rates drawn.
    pub random_trials: u32,
    /// Seed of the draws, so a spec always plans the same rates.
    pub seed: u64,
}

impl Default for RandomSpec {
    fn default() -> Self {
        RandomSpec {
            random_trials: 16,
            seed: 0,
        }
    }
}

impl RandomSpec {
    pub(crate) fn validate(&self) -> SpecResult {
        check(
            self.random_trials >= 1,
            "search.random_trials",
            "must be at least 1",
        )?;
        check(
            self.random_trials <= MAX_RATES,
            "search.random_trials",
            "must be at most 100000",
        )
    }
}

fn check_resolution(resolution: f64) -> SpecResult {
    check(
        resolution.is_finite() && resolution > 1.0,
        "search.resolution",
        "must be finite and > 1",
    )
}
