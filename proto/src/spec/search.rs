//! The `[search]` table: the range and budgets every strategy shares, and the strategy with its
//! own fields. In the file the table is flat (`strategy = "range-test"` beside `shards = 4`);
//! a field of another strategy than the one chosen is refused, naming the strategy it belongs to.

use serde::{Deserialize, Serialize};

use crate::domain::{OptimizerSpec, Ramp, Trainer};

use super::strategy::{
    CoarseToFineSpec, EdgeDescentSpec, GridSpec, RandomSpec, RangeTestSpec, StrategySpec,
};
use super::{check, invalid, SpecResult, MAX_PER_LIST};

#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpec {
    pub min_lr: f64,
    pub max_lr: f64,
    /// Rounds of coarse-to-fine (round 0 is the decade grid or the range test); one-round
    /// strategies train with the last round's budget.
    pub rounds: u32,
    /// Step budget per round; a list shorter than `rounds` repeats its last entry.
    pub steps: Vec<u64>,
    /// Share of the training split per round; a list shorter than `rounds` repeats its last entry.
    pub data_fraction: Vec<f64>,
    /// Disjoint data subsets each rate is trained on (the range test uses `shards` instead).
    pub replicates: u32,
    /// Validation loss is measured every this many steps.
    pub eval_every: u64,
    pub strategy: StrategySpec,
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec {
            min_lr: 1e-7,
            max_lr: 10.0,
            rounds: 3,
            steps: vec![50, 100, 1000],
            data_fraction: vec![1.0],
            replicates: 1,
            eval_every: 25,
            strategy: StrategySpec::default(),
        }
    }
}

impl SearchSpec {
    /// Step budget of round `round` (0-based). The spec must be valid (non-empty lists).
    pub fn round_steps(&self, round: u32) -> u64 {
        *per_round(&self.steps, round)
    }

    /// Training-split fraction of round `round` (0-based). The spec must be valid.
    pub fn round_fraction(&self, round: u32) -> f64 {
        *per_round(&self.data_fraction, round)
    }

    /// The last round: the budget one-round strategies and the hypergradient stage train with.
    pub fn last_round(&self) -> u32 {
        self.rounds - 1
    }

    /// The coarse-to-fine fields in force: the strategy's own, or the range test's refinement.
    pub fn coarse_to_fine(&self) -> Option<&CoarseToFineSpec> {
        match &self.strategy {
            StrategySpec::CoarseToFine(c) => Some(c),
            StrategySpec::RangeTest(r) => r.refine.as_ref(),
            StrategySpec::EdgeDescent(_) | StrategySpec::Grid(_) | StrategySpec::Random(_) => None,
        }
    }

    pub(crate) fn validate(&self, trainer: &Trainer) -> SpecResult {
        let lr_ok = |v: f64| v.is_finite() && v > 0.0;
        check(
            lr_ok(self.min_lr),
            "search.min_lr",
            "must be finite and > 0",
        )?;
        check(
            lr_ok(self.max_lr),
            "search.max_lr",
            "must be finite and > 0",
        )?;
        check(
            self.min_lr < self.max_lr,
            "search.min_lr",
            "must be below search.max_lr",
        )?;
        check(self.rounds >= 1, "search.rounds", "must be at least 1")?;
        check_round_list(&self.steps, self.rounds, "search.steps", |v| *v > 0, "> 0")?;
        check_round_list(
            &self.data_fraction,
            self.rounds,
            "search.data_fraction",
            |v| *v > 0.0 && *v <= 1.0,
            "in (0, 1]",
        )?;
        check(
            self.replicates >= 1,
            "search.replicates",
            "must be at least 1",
        )?;
        check(
            self.eval_every >= 1,
            "search.eval_every",
            "must be at least 1",
        )?;
        // Every planned trial is held in memory: refuse sizes no sweep needs before they
        // exhaust it.
        for (value, field) in [
            (self.rounds, "search.rounds"),
            (self.replicates, "search.replicates"),
        ] {
            check(value <= MAX_PER_LIST, field, "must be at most 1000")?;
        }
        // These drive the built-in trainer's rate within a trial (a ramp, an adapting
        // optimizer); a command trainer's program gets one constant rate.
        if let Trainer::Command(_) = trainer {
            check(
                !matches!(self.strategy, StrategySpec::RangeTest(_)),
                "search.strategy",
                "range-test ramps the built-in trainer's rate within each trial; a command \
                 trainer's program gets one rate per trial: use coarse-to-fine, grid or random",
            )?;
            check(
                self.coarse_to_fine()
                    .is_none_or(|c| c.hypergradient.is_none()),
                "search.hypergradient",
                "trains the built-in trainer's hypergradient optimizer; a command trainer's \
                 program chooses its own optimizer (report the rate it uses as `lr`)",
            )?;
        }
        match &self.strategy {
            StrategySpec::CoarseToFine(c) => c.validate(trainer),
            StrategySpec::EdgeDescent(e) => e.validate(self.min_lr, self.max_lr),
            StrategySpec::RangeTest(r) => r.validate(self.rounds, trainer),
            StrategySpec::Grid(g) => g.validate(self.min_lr, self.max_lr),
            StrategySpec::Random(r) => r.validate(),
        }
    }
}

fn per_round<T>(list: &[T], round: u32) -> &T {
    list.get(round as usize)
        .or(list.last())
        .expect("a validated spec has at least one entry per list")
}

/// A per-round list: 1..=rounds entries, each acceptable, never decreasing (later rounds get at
/// least as much resource as earlier ones).
fn check_round_list<T: PartialOrd>(
    list: &[T],
    rounds: u32,
    field: &str,
    entry_ok: impl Fn(&T) -> bool,
    entry_rule: &str,
) -> SpecResult {
    check(!list.is_empty(), field, "needs at least one entry")?;
    if list.len() > rounds as usize {
        return Err(invalid(
            field,
            format!("has {} entries for {rounds} rounds", list.len()),
        ));
    }
    for (i, v) in list.iter().enumerate() {
        if !entry_ok(v) {
            return Err(invalid(
                format!("{field}[{i}]"),
                format!("must be {entry_rule}"),
            ));
        }
    }
    for (i, pair) in list.windows(2).enumerate() {
        if pair[1] < pair[0] {
            return Err(invalid(
                format!("{field}[{}]", i + 1),
                "must not be smaller than the previous round's",
            ));
        }
    }
    Ok(())
}

/// Coarse-to-fine's own defaults for `rounds` and `steps`: round 0 (decades) plus two
/// refinements, short rounds placing the search and the last one running the full budget.
const C2F_ROUNDS: u32 = 3;
const C2F_STEPS: [u64; 3] = [50, 300, 1000];

/// `search.strategy` as written in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum StrategyName {
    CoarseToFine,
    #[default]
    EdgeDescent,
    RangeTest,
    Grid,
    Random,
}

impl StrategyName {
    /// The name as `search.strategy` is written.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StrategyName::CoarseToFine => "coarse-to-fine",
            StrategyName::EdgeDescent => "edge-descent",
            StrategyName::RangeTest => "range-test",
            StrategyName::Grid => "grid",
            StrategyName::Random => "random",
        }
    }

    pub(crate) fn of(strategy: &StrategySpec) -> StrategyName {
        match strategy {
            StrategySpec::CoarseToFine(_) => StrategyName::CoarseToFine,
            StrategySpec::EdgeDescent(_) => StrategyName::EdgeDescent,
            StrategySpec::RangeTest(_) => StrategyName::RangeTest,
            StrategySpec::Grid(_) => StrategyName::Grid,
            StrategySpec::Random(_) => StrategyName::Random,
        }
    }
}

/// `[search]` as it is written: flat, every strategy's fields optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SearchTable {
    strategy: StrategyName,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rounds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_fraction: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replicates: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_every: Option<u64>,
    // coarse-to-fine (and the range test's refinement), grid
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates_per_round: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_below: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    final_above: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hypergradient: Option<OptimizerSpec>,
    // edge-descent
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_probes: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ladder_stride: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ladder_width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ladder_patience: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finest_stride: Option<u32>,
    // range test
    #[serde(skip_serializing_if = "Option::is_none")]
    range_steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ramp: Option<Ramp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refine: Option<bool>,
    // random
    #[serde(skip_serializing_if = "Option::is_none")]
    random_trials: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
}

/// Takes `field` for a strategy that reads it; refuses it, naming where it belongs, otherwise.
fn take<T>(
    value: Option<T>,
    field: &str,
    read: bool,
    belongs: &str,
    strategy: &str,
) -> SpecResult<Option<T>> {
    match value {
        Some(_) if !read => Err(invalid(
            format!("search.{field}"),
            format!("belongs to {belongs}; this search is {strategy}"),
        )),
        v => Ok(v),
    }
}

impl SearchTable {
    pub(crate) fn into_spec(self) -> SpecResult<SearchSpec> {
        let d = SearchSpec::default();
        let name = self.strategy;
        let refine = self.refine.unwrap_or(false);
        let c2f = name == StrategyName::CoarseToFine || (name == StrategyName::RangeTest && refine);
        let grid = name == StrategyName::Grid;
        let range = name == StrategyName::RangeTest;
        let random = name == StrategyName::Random;
        let edge = name == StrategyName::EdgeDescent;
        let s = name.as_str();
        let c2f_fields = "strategy coarse-to-fine (or range-test with refine = true)";
        let candidates = take(
            self.candidates_per_round,
            "candidates_per_round",
            c2f,
            c2f_fields,
            s,
        )?;
        let resolution = take(
            self.resolution,
            "resolution",
            c2f || grid || edge,
            "strategies coarse-to-fine, edge-descent and grid (or range-test with refine = true)",
            s,
        )?;
        let final_below = take(self.final_below, "final_below", c2f, c2f_fields, s)?;
        let final_above = take(self.final_above, "final_above", c2f, c2f_fields, s)?;
        let hypergradient = take(self.hypergradient, "hypergradient", c2f, c2f_fields, s)?;
        let range_steps = take(
            self.range_steps,
            "range_steps",
            range,
            "strategy range-test",
            s,
        )?;
        let ramp = take(self.ramp, "ramp", range, "strategy range-test", s)?;
        let shards = take(self.shards, "shards", range, "strategy range-test", s)?;
        take(self.refine, "refine", range, "strategy range-test", s)?;
        let random_trials = take(
            self.random_trials,
            "random_trials",
            random,
            "strategy random",
            s,
        )?;
        let seed = take(self.seed, "seed", random, "strategy random", s)?;
        let edge_fields = "strategy edge-descent";
        let edge_probes = take(self.edge_probes, "edge_probes", edge, edge_fields, s)?;
        let ladder_stride = take(self.ladder_stride, "ladder_stride", edge, edge_fields, s)?;
        let ladder_width = take(self.ladder_width, "ladder_width", edge, edge_fields, s)?;
        let ladder_patience = take(
            self.ladder_patience,
            "ladder_patience",
            edge,
            edge_fields,
            s,
        )?;
        let finest_stride = take(self.finest_stride, "finest_stride", edge, edge_fields, s)?;

        let coarse_to_fine = || {
            let c = CoarseToFineSpec::default();
            CoarseToFineSpec {
                candidates_per_round: candidates.unwrap_or(c.candidates_per_round),
                resolution: resolution.unwrap_or(c.resolution),
                final_below: final_below.unwrap_or(c.final_below),
                final_above: final_above.unwrap_or(c.final_above),
                hypergradient: hypergradient.clone(),
            }
        };
        let strategy = match name {
            StrategyName::CoarseToFine => StrategySpec::CoarseToFine(coarse_to_fine()),
            StrategyName::EdgeDescent => {
                let e = EdgeDescentSpec::default();
                StrategySpec::EdgeDescent(EdgeDescentSpec {
                    resolution: resolution.unwrap_or(e.resolution),
                    edge_probes: edge_probes.unwrap_or(e.edge_probes),
                    ladder_stride: ladder_stride.unwrap_or(e.ladder_stride),
                    ladder_width: ladder_width.unwrap_or(e.ladder_width),
                    ladder_patience: ladder_patience.unwrap_or(e.ladder_patience),
                    finest_stride: finest_stride.unwrap_or(e.finest_stride),
                })
            }
            StrategyName::RangeTest => {
                let r = RangeTestSpec::default();
                StrategySpec::RangeTest(RangeTestSpec {
                    range_steps: range_steps.unwrap_or(r.range_steps),
                    ramp: ramp.unwrap_or(r.ramp),
                    shards: shards.unwrap_or(r.shards),
                    refine: refine.then(coarse_to_fine),
                })
            }
            StrategyName::Grid => StrategySpec::Grid(GridSpec {
                resolution: resolution.unwrap_or(GridSpec::default().resolution),
            }),
            StrategyName::Random => {
                let r = RandomSpec::default();
                StrategySpec::Random(RandomSpec {
                    random_trials: random_trials.unwrap_or(r.random_trials),
                    seed: seed.unwrap_or(r.seed),
                })
            }
        };
        Ok(SearchSpec {
            min_lr: self.min_lr.unwrap_or(d.min_lr),
            max_lr: self.max_lr.unwrap_or(d.max_lr),
            rounds: self
                .rounds
                .unwrap_or(if c2f { C2F_ROUNDS } else { d.rounds }),
            steps: self
                .steps
                .unwrap_or_else(|| if c2f { C2F_STEPS.to_vec() } else { d.steps }),
            data_fraction: self.data_fraction.unwrap_or(d.data_fraction),
            replicates: self.replicates.unwrap_or(d.replicates),
            eval_every: self.eval_every.unwrap_or(d.eval_every),
            strategy,
        })
    }
}

impl From<&SearchSpec> for SearchTable {
    /// Every field the search reads, spelled out.
    fn from(s: &SearchSpec) -> Self {
        let mut table = SearchTable {
            min_lr: Some(s.min_lr),
            max_lr: Some(s.max_lr),
            rounds: Some(s.rounds),
            steps: Some(s.steps.clone()),
            data_fraction: Some(s.data_fraction.clone()),
            replicates: Some(s.replicates),
            eval_every: Some(s.eval_every),
            strategy: StrategyName::of(&s.strategy),
            ..SearchTable::default()
        };
        let coarse_to_fine = |table: &mut SearchTable, c: &CoarseToFineSpec| {
            table.candidates_per_round = Some(c.candidates_per_round);
            table.resolution = Some(c.resolution);
            table.final_below = Some(c.final_below);
            table.final_above = Some(c.final_above);
            table.hypergradient = c.hypergradient.clone();
        };
        match &s.strategy {
            StrategySpec::CoarseToFine(c) => {
                coarse_to_fine(&mut table, c);
            }
            StrategySpec::RangeTest(r) => {
                table.range_steps = Some(r.range_steps);
                table.ramp = Some(r.ramp);
                table.shards = Some(r.shards);
                table.refine = Some(r.refine.is_some());
                if let Some(c) = &r.refine {
                    coarse_to_fine(&mut table, c);
                }
            }
            StrategySpec::EdgeDescent(e) => {
                table.resolution = Some(e.resolution);
                table.edge_probes = Some(e.edge_probes);
                table.ladder_stride = Some(e.ladder_stride);
                table.ladder_width = Some(e.ladder_width);
                table.ladder_patience = Some(e.ladder_patience);
                table.finest_stride = Some(e.finest_stride);
            }
            StrategySpec::Grid(g) => {
                table.resolution = Some(g.resolution);
            }
            StrategySpec::Random(r) => {
                table.random_trials = Some(r.random_trials);
                table.seed = Some(r.seed);
            }
        }
        table
    }
}
