//! The search spec: a TOML file with `[search]`, `[pruning]` and `[trainer]` tables, every field
//! optional. Parsing rejects unknown fields; validation names the offending field by its dotted
//! path so the user can find it in the file.

use std::path::Path;

use lrsweep_proto::domain::{OptimizerSpec, Ramp, Trainer, TrainerConfig};
use serde::{Deserialize, Serialize};

use crate::CoordinatorError;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SweepSpec {
    pub search: SearchSpec,
    pub pruning: PruningSpec,
    /// The built-in trainer, or with `command` the user's own program.
    pub trainer: Trainer,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Decade grid first, then finer log-spaced grids around the best rate (method.md §1).
    #[default]
    CoarseToFine,
    /// LR range test (method.md §2): each of `shards` runs ramps its rate from `min_lr` to
    /// `max_lr` over `range_steps` steps on its own data shard; the merged curve gives the
    /// suggestions. With `refine`, coarse-to-fine then searches the suggested range.
    RangeTest,
    /// One round: log-spaced rates from `min_lr` to `max_lr`, neighbours at most `resolution`
    /// apart, each with the last round's budget.
    Grid,
    /// One round: `random_trials` log-uniform rates in [`min_lr`, `max_lr`] drawn from `seed`,
    /// each with the last round's budget.
    Random,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSpec {
    pub strategy: Strategy,
    pub min_lr: f64,
    pub max_lr: f64,
    /// Round 0 is the decade grid; every further round refines, the last one on the
    /// `resolution` lattice (`final_below`, `final_above`).
    pub rounds: u32,
    /// Grid size of the refinement rounds before the last (round 0 has one rate per decade).
    pub candidates_per_round: u32,
    /// Refining stops once neighbouring candidates differ by a ratio below this; the last round
    /// and the grid strategy space their rates this ratio apart.
    pub resolution: f64,
    /// The last round trains the grid strategy's rates (`min_lr` to `max_lr` at `resolution`)
    /// from `final_below` below to `final_above` above the one nearest the previous round's best
    /// (the smallest rate within 2% of it): mostly below, as the best rate for the full budget
    /// is at or below the best for a shorter one.
    pub final_below: u32,
    pub final_above: u32,
    /// Step budget per round; a list shorter than `rounds` repeats its last entry. Grid and
    /// random search train every rate with the last entry.
    pub steps: Vec<u64>,
    /// Share of the training split per round; a list shorter than `rounds` repeats its last entry.
    pub data_fraction: Vec<f64>,
    /// Disjoint data subsets each rate is trained on (the range test uses `shards` instead).
    pub replicates: u32,
    /// Validation loss is measured every this many steps.
    pub eval_every: u64,
    /// Range test: steps of each run's ramp from `min_lr` to `max_lr`.
    pub range_steps: u64,
    /// Range test: how the rate grows along the ramp.
    pub ramp: Ramp,
    /// Range test: runs, each on its own disjoint shard of the training split.
    pub shards: u32,
    /// Range test: afterwards, search [max_stable/4, max_stable] coarse-to-fine (the range test
    /// stands in for round 0; refinement rounds take the budgets of rounds 1, 2, …).
    pub refine: bool,
    /// Random search: rates drawn.
    pub random_trials: u32,
    /// Random search: seed of the draws, so a spec always plans the same rates.
    pub seed: u64,
    /// A final stage after coarse-to-fine: train the best rate once more at the full budget
    /// with this hypergradient optimizer (sgd-hd, sgdn-hd, adam-hd), starting from that rate,
    /// and report where the rate adapted to.
    pub hypergradient: Option<OptimizerSpec>,
}

impl Default for SearchSpec {
    fn default() -> Self {
        SearchSpec {
            strategy: Strategy::CoarseToFine,
            min_lr: 1e-7,
            max_lr: 10.0,
            rounds: 3,
            candidates_per_round: 5,
            resolution: 1.25,
            final_below: 3,
            final_above: 1,
            steps: vec![50, 300, 1000],
            data_fraction: vec![1.0],
            replicates: 1,
            eval_every: 25,
            range_steps: 100,
            ramp: Ramp::Exponential,
            shards: 2,
            refine: false,
            random_trials: 16,
            seed: 0,
            hypergradient: None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RungRule {
    /// Stop a trial once a smaller rate of its round has a lower value at the same milestone.
    /// The best rate for a longer run is at or below the best for a shorter one (short runs
    /// favour large rates), so a rate beaten by a smaller one early stays beaten.
    #[default]
    Dominated,
    /// Asynchronous successive halving: keep the best 1/η at each milestone.
    Asha,
    /// Median stopping rule: stop a trial whose best value is worse than its peers' median.
    Median,
    /// Only divergence and NaN stop trials.
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PruningSpec {
    /// A trial diverged once its smoothed loss exceeds this multiple of its best or initial loss.
    pub divergence_factor: f64,
    /// β of the debiased exponential moving average applied to the training loss.
    pub smoothing: f64,
    pub rule: RungRule,
    /// η: rungs sit at grace·η^k of the budget; ASHA keeps about 1/η of the trials at each.
    pub reduction_factor: f64,
    /// The first rung sits at this fraction of the round's step budget.
    pub grace_fraction: f64,
    /// An ASHA or median judgement needs at least this many other trials' values (the
    /// dominated rule needs one smaller rate's).
    pub min_peers: u32,
}

impl Default for PruningSpec {
    fn default() -> Self {
        PruningSpec {
            divergence_factor: 4.0,
            smoothing: 0.98,
            rule: RungRule::Dominated,
            reduction_factor: 2.0,
            grace_fraction: 0.1,
            min_peers: 2,
        }
    }
}

impl SweepSpec {
    /// Parses and validates a spec.
    pub fn from_toml_str(text: &str) -> Result<SweepSpec, CoordinatorError> {
        let spec: SweepSpec = toml::from_str(text).map_err(toml_error)?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn load(path: &Path) -> Result<SweepSpec, CoordinatorError> {
        let text = std::fs::read_to_string(path).map_err(|e| CoordinatorError::SpecFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        SweepSpec::from_toml_str(&text)
    }

    /// Step budget of round `round` (0-based). The spec must be valid (non-empty lists).
    pub fn round_steps(&self, round: u32) -> u64 {
        *per_round(&self.search.steps, round)
    }

    /// Training-split fraction of round `round` (0-based). The spec must be valid.
    pub fn round_fraction(&self, round: u32) -> f64 {
        *per_round(&self.search.data_fraction, round)
    }

    /// Checks what serde cannot; the error names the first offending field.
    pub fn validate(&self) -> Result<(), CoordinatorError> {
        let s = &self.search;
        let lr_ok = |v: f64| v.is_finite() && v > 0.0;
        check(lr_ok(s.min_lr), "search.min_lr", "must be finite and > 0")?;
        check(lr_ok(s.max_lr), "search.max_lr", "must be finite and > 0")?;
        check(
            s.min_lr < s.max_lr,
            "search.min_lr",
            "must be below search.max_lr",
        )?;
        check(s.rounds >= 1, "search.rounds", "must be at least 1")?;
        check(
            s.candidates_per_round >= 2,
            "search.candidates_per_round",
            "must be at least 2",
        )?;
        check(
            s.resolution.is_finite() && s.resolution > 1.0,
            "search.resolution",
            "must be finite and > 1",
        )?;
        check(
            s.final_below + s.final_above >= 1,
            "search.final_below",
            "with search.final_above must give the last round at least two rates",
        )?;
        check_round_list(&s.steps, s.rounds, "search.steps", |v| *v > 0, "> 0")?;
        check_round_list(
            &s.data_fraction,
            s.rounds,
            "search.data_fraction",
            |v| *v > 0.0 && *v <= 1.0,
            "in (0, 1]",
        )?;
        check(s.replicates >= 1, "search.replicates", "must be at least 1")?;
        check(s.eval_every >= 1, "search.eval_every", "must be at least 1")?;
        // A ramp needs a start and an end (the linear ramp divides by steps − 1).
        check(
            s.range_steps >= 2,
            "search.range_steps",
            "must be at least 2",
        )?;
        check(s.shards >= 1, "search.shards", "must be at least 1")?;
        // The range test takes round 0, so refining needs at least one more round.
        check(
            !(s.strategy == Strategy::RangeTest && s.refine && s.rounds < 2),
            "search.refine",
            "needs search.rounds >= 2 (the range test is round 0)",
        )?;
        check(
            s.random_trials >= 1,
            "search.random_trials",
            "must be at least 1",
        )?;
        // Every planned trial is held in memory: refuse sizes no sweep needs before they
        // exhaust it.
        for (value, field) in [
            (s.rounds, "search.rounds"),
            (s.candidates_per_round, "search.candidates_per_round"),
            (s.final_below, "search.final_below"),
            (s.final_above, "search.final_above"),
            (s.replicates, "search.replicates"),
            (s.shards, "search.shards"),
        ] {
            check(value <= 1_000, field, "must be at most 1000")?;
        }
        check(
            s.random_trials <= MAX_RATES,
            "search.random_trials",
            "must be at most 100000",
        )?;
        let grid_rates = (s.max_lr / s.min_lr).ln() / s.resolution.ln();
        check(
            s.strategy != Strategy::Grid || grid_rates <= f64::from(MAX_RATES),
            "search.resolution",
            "is so fine that the grid would plan more than 100000 rates",
        )?;

        // These drive the built-in trainer's rate within a trial (a ramp, an adapting
        // optimizer); a command trainer's program gets one constant rate.
        if let Trainer::Command(_) = &self.trainer {
            check(
                s.strategy != Strategy::RangeTest,
                "search.strategy",
                "range-test ramps the built-in trainer's rate within each trial; a command \
                 trainer's program gets one rate per trial: use coarse-to-fine, grid or random",
            )?;
            check(
                s.hypergradient.is_none(),
                "search.hypergradient",
                "trains the built-in trainer's hypergradient optimizer; a command trainer's \
                 program chooses its own optimizer (report the rate it uses as `lr`)",
            )?;
        }
        if let (Some(hd), Trainer::BuiltIn(trainer)) = (&s.hypergradient, &self.trainer) {
            check(
                hd.hypergrad_lr().is_some(),
                "search.hypergradient",
                "must be a hypergradient optimizer: sgd-hd, sgdn-hd or adam-hd",
            )?;
            check(
                s.strategy == Strategy::CoarseToFine || (s.strategy == Strategy::RangeTest && s.refine),
                "search.hypergradient",
                "follows a coarse-to-fine search (strategy coarse-to-fine, or range-test with refine)",
            )?;
            let staged = TrainerConfig {
                optimizer: hd.clone(),
                schedule: Default::default(),
                ..trainer.clone()
            };
            staged.validate().map_err(|e| {
                let field = e.field.trim_start_matches("optimizer.");
                CoordinatorError::spec(format!("search.hypergradient.{field}"), e.reason)
            })?;
        }

        let p = &self.pruning;
        check(
            p.divergence_factor.is_finite() && p.divergence_factor > 1.0,
            "pruning.divergence_factor",
            "must be finite and > 1",
        )?;
        check(
            (0.0..1.0).contains(&p.smoothing),
            "pruning.smoothing",
            "must lie in [0, 1)",
        )?;
        check(
            p.reduction_factor.is_finite() && p.reduction_factor > 1.0,
            "pruning.reduction_factor",
            "must be finite and > 1",
        )?;
        check(
            p.grace_fraction > 0.0 && p.grace_fraction < 1.0,
            "pruning.grace_fraction",
            "must lie in (0, 1)",
        )?;
        // With no peers there is nothing to compare against (the median of nothing).
        check(p.min_peers >= 1, "pruning.min_peers", "must be at least 1")?;

        self.trainer
            .validate()
            .map_err(|e| CoordinatorError::spec(format!("trainer.{}", e.field), e.reason))
    }
}

fn per_round<T>(list: &[T], round: u32) -> &T {
    list.get(round as usize)
        .or(list.last())
        .expect("a validated spec has at least one entry per list")
}

/// The most rates one round may plan.
const MAX_RATES: u32 = 100_000;

fn check(ok: bool, field: &str, reason: &str) -> Result<(), CoordinatorError> {
    if ok {
        Ok(())
    } else {
        Err(CoordinatorError::spec(field, reason))
    }
}

/// A per-round list: 1..=rounds entries, each acceptable, never decreasing (later rounds get at
/// least as much resource as earlier ones).
fn check_round_list<T: PartialOrd>(
    list: &[T],
    rounds: u32,
    field: &str,
    entry_ok: impl Fn(&T) -> bool,
    entry_rule: &str,
) -> Result<(), CoordinatorError> {
    check(!list.is_empty(), field, "needs at least one entry")?;
    check(
        list.len() <= rounds as usize,
        field,
        &format!("has {} entries for {rounds} rounds", list.len()),
    )?;
    for (i, v) in list.iter().enumerate() {
        check(
            entry_ok(v),
            &format!("{field}[{i}]"),
            &format!("must be {entry_rule}"),
        )?;
    }
    for (i, pair) in list.windows(2).enumerate() {
        check(
            pair[1] >= pair[0],
            &format!("{field}[{}]", i + 1),
            "must not be smaller than the previous round's",
        )?;
    }
    Ok(())
}

/// Maps a TOML/serde error to `Spec`, naming the dotted field where toml knows it.
///
/// toml only exposes the key path through its context-free rendering (the `in `a.b`` line it
/// prints when it has no input to quote), so the error is rendered without input and that line is
/// read back. For an unknown field the path is the enclosing table, so the field itself is
/// appended from the message.
fn toml_error(mut err: toml::de::Error) -> CoordinatorError {
    let reason = err.message().trim().to_string();
    err.set_input(None);
    let rendered = err.to_string();
    let table = rendered
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .map(str::to_string);
    let unknown = reason
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (table, unknown) {
        (Some(t), Some(u)) => format!("{t}.{u}"),
        (Some(t), None) => t,
        (None, Some(u)) => u.to_string(),
        (None, None) => "spec".to_string(),
    };
    CoordinatorError::spec(field, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        match SweepSpec::from_toml_str(text) {
            Err(CoordinatorError::Spec { field, .. }) => field,
            other => panic!("expected a spec error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_text_gives_all_defaults() {
        let spec = SweepSpec::from_toml_str("").unwrap();
        assert_eq!(spec, SweepSpec::default());
        assert_eq!(spec.search.min_lr, 1e-7);
        assert_eq!(spec.search.max_lr, 10.0);
        assert_eq!(spec.search.rounds, 3);
        assert_eq!(spec.search.steps, vec![50, 300, 1000]);
        assert_eq!(spec.search.data_fraction, vec![1.0]);
        assert_eq!(spec.search.replicates, 1);
        assert_eq!((spec.search.final_below, spec.search.final_above), (3, 1));
        assert_eq!(spec.search.strategy, Strategy::CoarseToFine);
        assert_eq!(
            (spec.search.range_steps, spec.search.ramp),
            (100, Ramp::Exponential)
        );
        assert_eq!((spec.search.shards, spec.search.refine), (2, false));
        assert_eq!((spec.search.random_trials, spec.search.seed), (16, 0));
        assert_eq!(spec.pruning.rule, RungRule::Dominated);
        assert_eq!(
            (spec.pruning.reduction_factor, spec.pruning.grace_fraction),
            (2.0, 0.1)
        );
        assert_eq!(spec.trainer, Trainer::BuiltIn(TrainerConfig::default()));
        spec.validate().unwrap();
    }

    #[test]
    fn example_spec_parses_and_spells_out_the_defaults() {
        let spec = SweepSpec::from_toml_str(include_str!("../../examples/digits.toml")).unwrap();
        assert_eq!(spec, SweepSpec::default());
    }

    #[test]
    fn sections_and_enums_parse() {
        let spec = SweepSpec::from_toml_str(
            r#"
            [search]
            strategy = "coarse-to-fine"
            min_lr = 1e-5
            steps = [100]
            data_fraction = [0.5, 0.5]
            [pruning]
            rule = "median"
            [trainer]
            model = { kind = "softmax" }
            batch_size = 64
            "#,
        )
        .unwrap();
        assert_eq!(spec.search.min_lr, 1e-5);
        assert_eq!(spec.pruning.rule, RungRule::Median);
        let trainer = spec.trainer.built_in().unwrap();
        assert_eq!(trainer.batch_size, 64);
        assert_eq!(
            trainer.model,
            lrsweep_proto::domain::ModelSpec::Softmax { intercept: true }
        );
        let none = SweepSpec::from_toml_str("[pruning]\nrule = \"none\"").unwrap();
        assert_eq!(none.pruning.rule, RungRule::None);
    }

    #[test]
    fn strategy_fields_parse() {
        let spec = SweepSpec::from_toml_str(
            r#"
            [search]
            strategy = "range-test"
            range_steps = 300
            ramp = "linear"
            shards = 4
            refine = true
            "#,
        )
        .unwrap();
        let s = &spec.search;
        assert_eq!(s.strategy, Strategy::RangeTest);
        assert_eq!(
            (s.range_steps, s.ramp, s.shards, s.refine),
            (300, Ramp::Linear, 4, true)
        );
        let spec = SweepSpec::from_toml_str(
            "[search]\nstrategy = \"random\"\nrandom_trials = 5\nseed = 7",
        )
        .unwrap();
        assert_eq!(spec.search.strategy, Strategy::Random);
        assert_eq!((spec.search.random_trials, spec.search.seed), (5, 7));
        let grid = SweepSpec::from_toml_str("[search]\nstrategy = \"grid\"").unwrap();
        assert_eq!(grid.search.strategy, Strategy::Grid);
        // Refining is only constrained for the range test.
        SweepSpec::from_toml_str(
            "[search]\nrefine = true\nrounds = 1\nsteps = [100]\ndata_fraction = [1.0]",
        )
        .unwrap();
    }

    #[test]
    fn short_lists_repeat_their_last_entry() {
        let spec = SweepSpec::from_toml_str(
            "[search]\nrounds = 4\nsteps = [100, 300]\ndata_fraction = [0.1]",
        )
        .unwrap();
        let steps: Vec<u64> = (0..4).map(|r| spec.round_steps(r)).collect();
        assert_eq!(steps, vec![100, 300, 300, 300]);
        let fractions: Vec<f64> = (0..4).map(|r| spec.round_fraction(r)).collect();
        assert_eq!(fractions, vec![0.1; 4]);
    }

    #[test]
    fn impossible_search_values_name_their_field() {
        let cases = [
            ("min_lr = 1.0\nmax_lr = 0.1", "search.min_lr"),
            ("min_lr = 0.1\nmax_lr = 0.1", "search.min_lr"),
            ("min_lr = 0.0", "search.min_lr"),
            ("min_lr = -1e-3", "search.min_lr"),
            ("min_lr = nan", "search.min_lr"),
            ("max_lr = inf", "search.max_lr"),
            ("max_lr = -1.0", "search.max_lr"),
            ("rounds = 0", "search.rounds"),
            ("candidates_per_round = 1", "search.candidates_per_round"),
            ("resolution = 1.0", "search.resolution"),
            ("resolution = nan", "search.resolution"),
            ("steps = []", "search.steps"),
            ("steps = [100, 0]", "search.steps[1]"),
            ("steps = [100, 200, 300, 400]", "search.steps"),
            ("steps = [500, 200]", "search.steps[1]"),
            ("data_fraction = []", "search.data_fraction"),
            ("data_fraction = [0.0]", "search.data_fraction[0]"),
            ("data_fraction = [0.5, 1.5]", "search.data_fraction[1]"),
            ("data_fraction = [0.5, 0.25]", "search.data_fraction[1]"),
            (
                "data_fraction = [0.1, 0.2, 0.3, 0.4]",
                "search.data_fraction",
            ),
            ("final_below = 0\nfinal_above = 0", "search.final_below"),
            ("final_above = 2000", "search.final_above"),
            ("replicates = 0", "search.replicates"),
            ("replicates = 5000", "search.replicates"),
            ("random_trials = 1000000", "search.random_trials"),
            (
                "strategy = \"grid\"\nresolution = 1.0000001",
                "search.resolution",
            ),
            ("eval_every = 0", "search.eval_every"),
            ("range_steps = 0", "search.range_steps"),
            ("range_steps = 1", "search.range_steps"),
            ("shards = 0", "search.shards"),
            ("random_trials = 0", "search.random_trials"),
            (
                "strategy = \"range-test\"\nrefine = true\nrounds = 1\nsteps = [100]\ndata_fraction = [1.0]",
                "search.refine",
            ),
            ("strategy = \"bayesian\"", "search.strategy"),
            (
                "hypergradient = { kind = \"sgd\" }",
                "search.hypergradient",
            ),
            (
                "strategy = \"grid\"\nhypergradient = { kind = \"sgd-hd\" }",
                "search.hypergradient",
            ),
            (
                "hypergradient = { kind = \"sgd-hd\", hypergrad_lr = -1.0 }",
                "search.hypergradient.hypergrad_lr",
            ),
            ("ramp = \"cubic\"", "search.ramp"),
            ("refine = \"yes\"", "search.refine"),
            ("seed = -1", "search.seed"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(&format!("[search]\n{body}")), field, "{body}");
        }
    }

    #[test]
    fn impossible_pruning_values_name_their_field() {
        let cases = [
            ("divergence_factor = 1.0", "pruning.divergence_factor"),
            ("divergence_factor = inf", "pruning.divergence_factor"),
            ("smoothing = 1.0", "pruning.smoothing"),
            ("smoothing = -0.1", "pruning.smoothing"),
            ("reduction_factor = 1.0", "pruning.reduction_factor"),
            ("grace_fraction = 0.0", "pruning.grace_fraction"),
            ("grace_fraction = 1.0", "pruning.grace_fraction"),
            ("min_peers = 0", "pruning.min_peers"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(&format!("[pruning]\n{body}")), field, "{body}");
        }
    }

    #[test]
    fn trainer_validation_is_prefixed_with_trainer() {
        assert_eq!(field_of("[trainer]\nbatch_size = 0"), "trainer.batch_size");
        assert_eq!(
            field_of("[trainer]\nmodel = { kind = \"mlp\", hidden = [] }"),
            "trainer.model.hidden"
        );
        assert_eq!(
            field_of("[trainer]\noptimizer = { kind = \"sgd\", momentum = 1.0 }"),
            "trainer.optimizer.momentum"
        );
    }

    #[test]
    fn command_trainers_parse_and_refuse_what_they_cannot_do() {
        let spec = SweepSpec::from_toml_str(
            r#"
            [trainer]
            command = ["python3", "train.py", "--lr", "{lr}", "--steps", "{steps}"]
            workdir = "."
            env = { DATA_DIR = "/data/{replicate}" }
            stop_grace_ms = 500
            seed = 3
            "#,
        )
        .unwrap();
        let command = spec.trainer.command().expect("a command trainer");
        assert_eq!(command.command[3], "{lr}");
        assert_eq!((command.stop_grace_ms, command.seed), (500, 3));
        assert_eq!(command.env["DATA_DIR"], "/data/{replicate}");

        let error = |text: &str| match SweepSpec::from_toml_str(text) {
            Err(CoordinatorError::Spec { field, reason }) => format!("{field}: {reason}"),
            other => panic!("expected a spec error for {text:?}, got {other:?}"),
        };
        let mixed = error("[trainer]\ncommand = [\"x\"]\nmodel = { kind = \"softmax\" }");
        assert!(
            mixed.contains("`trainer.model` cannot be used with `trainer.command`"),
            "{mixed}"
        );
        let stray = error("[trainer]\nenv = { A = \"1\" }");
        assert!(
            stray.contains("`trainer.env` belongs to a command trainer"),
            "{stray}"
        );
        assert_eq!(field_of("[trainer]\ncommand = []"), "trainer.command");
        assert_eq!(
            field_of("[trainer]\ncommand = [\"x\", \"--lr={rate}\"]"),
            "trainer.command[1]"
        );
        assert_eq!(
            field_of("[trainer]\ncommand = [\"x\"]\nenv = { A = \"{foo}\" }"),
            "trainer.env.A"
        );
        assert_eq!(
            field_of("[trainer]\ncommand = [\"x\"]\nstop_grace_ms = 100000000"),
            "trainer.stop_grace_ms"
        );
        assert_eq!(
            field_of("[search]\nstrategy = \"range-test\"\n[trainer]\ncommand = [\"x\"]"),
            "search.strategy"
        );
        assert_eq!(
            field_of(
                "[search]\nhypergradient = { kind = \"sgd-hd\" }\n[trainer]\ncommand = [\"x\"]"
            ),
            "search.hypergradient"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        match SweepSpec::from_toml_str("[search]\nmin_rl = 1e-6") {
            Err(CoordinatorError::Spec { field, reason }) => {
                assert_eq!(field, "search.min_rl");
                assert!(reason.contains("min_rl"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(field_of("[serch]\nmin_lr = 1e-6"), "serch");
        assert_eq!(field_of("[pruning]\neta = 3"), "pruning.eta");
        assert_eq!(
            field_of("[trainer]\nmodel = { kind = \"mlp\", hiden = [32] }"),
            "trainer.model.hiden"
        );
    }

    #[test]
    fn type_errors_name_their_field() {
        assert_eq!(field_of("[search]\nrounds = \"three\""), "search.rounds");
        assert_eq!(field_of("[pruning]\nrule = \"hyperband\""), "pruning.rule");
        // Not a TOML document at all: no field to point at.
        assert_eq!(field_of("[search"), "spec");
    }

    #[test]
    fn load_reports_unreadable_files() {
        let missing = Path::new("/nonexistent/lrsweep/spec.toml");
        match SweepSpec::load(missing) {
            Err(CoordinatorError::SpecFile { path, .. }) => assert!(path.contains("spec.toml")),
            other => panic!("{other:?}"),
        }
    }
}
