//! Property tests of the coordinator's pure parts on arbitrary input: the spec parser, the
//! per-trial trace monitor, the per-round rung board and the sweep state machine never panic,
//! and keep their invariants.

use std::collections::{HashMap, HashSet};

use lrsweep_coordinator::prune::{PruneReason, RungBoard, TraceMonitor};
use lrsweep_coordinator::search::TrialStatus;
use lrsweep_coordinator::sweep::{Change, Command, Sweep, DEFAULT_MAX_ATTEMPTS};
use lrsweep_coordinator::CoordinatorError;
use lrsweep_proto::domain::{StopKind, TracePoint};
use lrsweep_proto::spec::{PruningSpec, RungRule, SpecError, StrategySpec, SweepSpec};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// No regression files next to the sources: a failure prints its minimal case instead.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Spec parser.

/// What `validate` promises about an accepted spec, checked field by field.
fn check_accepted(spec: &SweepSpec) -> Result<(), TestCaseError> {
    let s = &spec.search;
    prop_assert!(
        s.min_lr.is_finite() && s.min_lr > 0.0,
        "min_lr {}",
        s.min_lr
    );
    prop_assert!(
        s.max_lr.is_finite() && s.max_lr > 0.0,
        "max_lr {}",
        s.max_lr
    );
    prop_assert!(s.min_lr < s.max_lr);
    prop_assert!(s.rounds >= 1);
    if let Some(c) = s.coarse_to_fine() {
        prop_assert!(c.candidates_per_round >= 2);
        prop_assert!(c.resolution.is_finite() && c.resolution > 1.0);
    }
    prop_assert!(!s.steps.is_empty() && s.steps.len() <= s.rounds as usize);
    prop_assert!(s.steps.iter().all(|&v| v > 0));
    prop_assert!(s.steps.windows(2).all(|w| w[1] >= w[0]));
    prop_assert!(!s.data_fraction.is_empty() && s.data_fraction.len() <= s.rounds as usize);
    prop_assert!(s.data_fraction.iter().all(|&f| f > 0.0 && f <= 1.0));
    prop_assert!(s.data_fraction.windows(2).all(|w| w[1] >= w[0]));
    prop_assert!(s.replicates >= 1 && s.eval_every >= 1);
    match &s.strategy {
        StrategySpec::RangeTest(r) => {
            prop_assert!(r.range_steps >= 2 && r.shards >= 1);
            prop_assert!(!(r.refine.is_some() && s.rounds < 2));
        }
        StrategySpec::Random(r) => prop_assert!(r.random_trials >= 1),
        StrategySpec::Grid(g) => prop_assert!(g.resolution.is_finite() && g.resolution > 1.0),
        StrategySpec::EdgeDescent(e) => prop_assert!(
            e.resolution.is_finite()
                && e.resolution > 1.0
                && e.edge_probes >= 1
                && e.ladder_stride >= 1
                && e.ladder_width >= 1
        ),
        StrategySpec::CoarseToFine(_) => {}
    }
    let p = &spec.pruning;
    prop_assert!(p.divergence_factor.is_finite() && p.divergence_factor > 1.0);
    prop_assert!((0.0..1.0).contains(&p.smoothing));
    prop_assert!(p.reduction_factor.is_finite() && p.reduction_factor > 1.0);
    prop_assert!(p.grace_fraction > 0.0 && p.grace_fraction < 1.0);
    prop_assert!(p.min_peers >= 1);
    prop_assert!(spec.trainer.validate().is_ok());
    prop_assert!(spec.validate().is_ok());
    // Per-round lookups work for every round and past the last (lists repeat their last entry).
    for round in 0..s.rounds.saturating_add(2).min(64) {
        prop_assert!(spec.round_steps(round) > 0);
        let f = spec.round_fraction(round);
        prop_assert!(f > 0.0 && f <= 1.0);
        // What a sweep builds from the spec for each round.
        let board = RungBoard::new(p, spec.round_steps(round));
        prop_assert!(board
            .milestones()
            .iter()
            .all(|&m| m >= 1 && m < spec.round_steps(round)));
    }
    TraceMonitor::new(p);
    // The stored spec text reads back as the same spec (resume compares them).
    let text = spec.to_toml();
    let again = SweepSpec::from_toml_str(&text)
        .map_err(|e| TestCaseError::fail(format!("{e} reading back:\n{text}")))?;
    prop_assert_eq!(&again, spec, "round trip through\n{}", text);
    Ok(())
}

fn check_parse(text: &str) -> Result<(), TestCaseError> {
    match SweepSpec::from_toml_str(text) {
        Ok(spec) => check_accepted(&spec),
        Err(SpecError::Invalid { field, reason, .. }) => {
            prop_assert!(!field.is_empty() && !reason.is_empty());
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "parse error of another kind: {other:?}"
        ))),
    }
}

/// A float as TOML writes it, the special values included.
fn toml_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{x:e}")
    }
}

fn float_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(toml_float),
        prop::sample::select(vec![
            0.0, -0.0, 1e-7, 1e-6, 1e-3, 0.1, 0.2, 0.5, 0.98, 0.999, 1.0, 1.0000001, 1.03, 1.25,
            2.0, 3.0, 4.0, 10.0, 100.0, -1.0, 1e300, 5e-324,
        ])
        .prop_map(toml_float),
        (0.0..1.0f64).prop_map(toml_float),
        (1.0..20.0f64).prop_map(toml_float),
    ]
}

fn int_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0i64..6).prop_map(|v| v.to_string()),
        2 => (0i64..2000).prop_map(|v| v.to_string()),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => prop::sample::select(vec![-1i64, i64::MAX, i64::MIN, u32::MAX as i64, u32::MAX as i64 + 1])
            .prop_map(|v| v.to_string()),
    ]
}

fn string_literal(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(known).prop_map(|s| format!("\"{s}\"")),
        1 => "[a-z_-]{0,10}".prop_map(|s| format!("\"{s}\"")),
    ]
}

fn array_of(item: BoxedStrategy<String>) -> impl Strategy<Value = String> {
    prop::collection::vec(item, 0..5).prop_map(|v| format!("[{}]", v.join(", ")))
}

/// Any value at all, of any type, for keys given the wrong type.
fn any_literal() -> BoxedStrategy<String> {
    prop_oneof![
        float_literal(),
        int_literal(),
        any::<bool>().prop_map(|b| b.to_string()),
        string_literal(&["", "x", "grid", "asha"]),
        array_of(int_literal().boxed()),
        Just("{}".to_string()),
    ]
    .boxed()
}

fn floats_in(range: std::ops::Range<f64>) -> BoxedStrategy<String> {
    range.prop_map(toml_float).boxed()
}

fn ints_in(range: std::ops::Range<i64>) -> BoxedStrategy<String> {
    range.prop_map(|v| v.to_string()).boxed()
}

/// A plausible value for `key` (valid or near the edge of valid) most of the time, a wild one
/// of the right type sometimes, and anything at all now and then.
fn value_for(key: &'static str) -> BoxedStrategy<String> {
    let (sensible, wild): (BoxedStrategy<String>, BoxedStrategy<String>) = match key {
        "strategy" => (
            string_literal(&["coarse-to-fine", "range-test", "grid", "random"]).boxed(),
            string_literal(&["bayesian", "Grid", ""]).boxed(),
        ),
        "ramp" => (
            string_literal(&["exponential", "linear"]).boxed(),
            string_literal(&["cubic"]).boxed(),
        ),
        "rule" => (
            string_literal(&["asha", "median", "none"]).boxed(),
            string_literal(&["hyperband"]).boxed(),
        ),
        "refine" | "full_batch" | "standardize" => (
            any::<bool>().prop_map(|b| b.to_string()).boxed(),
            string_literal(&["yes", "true"]).boxed(),
        ),
        "steps" => (
            prop::collection::vec(1u64..500, 1..4)
                .prop_map(|mut v| {
                    v.sort_unstable();
                    format!("{v:?}")
                })
                .boxed(),
            array_of(int_literal().boxed()).boxed(),
        ),
        "data_fraction" => (
            prop::collection::vec(0.01..=1.0f64, 1..4)
                .prop_map(|mut v| {
                    v.sort_by(f64::total_cmp);
                    let items: Vec<String> = v.into_iter().map(toml_float).collect();
                    format!("[{}]", items.join(", "))
                })
                .boxed(),
            array_of(float_literal().boxed()).boxed(),
        ),
        "min_lr" => (floats_in(1e-9..1e-2), float_literal().boxed()),
        "max_lr" => (floats_in(0.1..100.0), float_literal().boxed()),
        "resolution" => (floats_in(1.001..4.0), float_literal().boxed()),
        "divergence_factor" | "reduction_factor" => (floats_in(1.0..20.0), float_literal().boxed()),
        "smoothing" | "grace_fraction" | "validation_fraction" => {
            (floats_in(0.0..1.0), float_literal().boxed())
        }
        "rounds" => (ints_in(1..6), int_literal().boxed()),
        "candidates_per_round" | "range_steps" => (ints_in(1..12), int_literal().boxed()),
        "replicates" | "shards" | "min_peers" | "random_trials" => {
            (ints_in(0..5), int_literal().boxed())
        }
        "eval_every" | "batch_size" => (ints_in(0..64), int_literal().boxed()),
        "seed" => (ints_in(0..1000), int_literal().boxed()),
        "model" => (
            prop_oneof![
                Just(r#"{ kind = "mlp", hidden = [32] }"#.to_string()),
                Just(r#"{ kind = "softmax" }"#.to_string()),
                Just(r#"{ kind = "linear", intercept = false }"#.to_string()),
            ]
            .boxed(),
            prop_oneof![
                array_of(int_literal().boxed())
                    .prop_map(|h| format!(r#"{{ kind = "mlp", hidden = {h} }}"#)),
                Just(r#"{ kind = "transformer" }"#.to_string()),
                Just(r#"{ kind = "mlp", hiden = [32] }"#.to_string()),
            ]
            .boxed(),
        ),
        "optimizer" => (
            prop_oneof![
                floats_in(0.0..1.0).prop_map(|m| format!(r#"{{ kind = "sgd", momentum = {m} }}"#)),
                Just(r#"{ kind = "adam" }"#.to_string()),
            ]
            .boxed(),
            prop_oneof![
                float_literal().prop_map(|m| format!(r#"{{ kind = "sgd", momentum = {m} }}"#)),
                (float_literal(), float_literal()).prop_map(|(b, e)| format!(
                    r#"{{ kind = "adam", beta1 = {b}, eps = {e} }}"#
                )),
                float_literal()
                    .prop_map(|h| format!(r#"{{ kind = "sgd-hd", hypergrad_lr = {h} }}"#)),
                Just(r#"{ kind = "sgd", nesterov = true }"#.to_string()),
            ]
            .boxed(),
        ),
        "schedule" => (
            Just(r#"{ kind = "constant" }"#.to_string()).boxed(),
            prop_oneof![
                float_literal()
                    .prop_map(|e| format!(r#"{{ kind = "range-test", end_lr = {e} }}"#)),
                (int_literal(), float_literal()).prop_map(|(s, b)| format!(
                    r#"{{ kind = "cyclical", step_size = {s}, base_fraction = {b} }}"#
                )),
                (float_literal(), float_literal()).prop_map(|(p, d)| format!(
                    r#"{{ kind = "one-cycle", pct_start = {p}, div_factor = {d} }}"#
                )),
            ]
            .boxed(),
        ),
        "dataset" => (
            Just(r#"{ kind = "digits" }"#.to_string()).boxed(),
            (int_literal(), int_literal(), float_literal())
                .prop_map(|(n, d, c)| format!(
                    r#"{{ kind = "synthetic-least-squares", n = {n}, d = {d}, condition_number = {c} }}"#
                ))
                .boxed(),
        ),
        _ => (int_literal().boxed(), any_literal()),
    };
    prop_oneof![12 => sensible, 3 => wild, 1 => any_literal()].boxed()
}

const SEARCH_KEYS: &[&str] = &[
    "strategy",
    "min_lr",
    "max_lr",
    "rounds",
    "candidates_per_round",
    "resolution",
    "steps",
    "data_fraction",
    "replicates",
    "eval_every",
    "range_steps",
    "ramp",
    "shards",
    "refine",
    "random_trials",
    "seed",
];
const PRUNING_KEYS: &[&str] = &[
    "divergence_factor",
    "smoothing",
    "rule",
    "reduction_factor",
    "grace_fraction",
    "min_peers",
];
const TRAINER_KEYS: &[&str] = &[
    "dataset",
    "model",
    "optimizer",
    "schedule",
    "batch_size",
    "full_batch",
    "standardize",
    "seed",
    "validation_fraction",
];

/// A table with distinct keys of `keys` (TOML refuses a key defined twice).
fn section(name: &'static str, keys: &'static [&'static str]) -> BoxedStrategy<String> {
    prop::sample::subsequence(keys, 0..=keys.len().min(8))
        .prop_flat_map(|chosen| {
            chosen
                .into_iter()
                .map(|k| value_for(k).prop_map(move |v| format!("{k} = {v}\n")))
                .collect::<Vec<_>>()
        })
        .prop_map(move |lines| format!("[{name}]\n{}", lines.concat()))
        .boxed()
}

/// Documents built from the spec's own keys with random values: each table at most once, in
/// any order, and now and then a misspelt key or table, a repeated table or a broken line.
fn spec_document() -> impl Strategy<Value = String> {
    let tables = (
        prop::option::weighted(0.8, section("search", SEARCH_KEYS)),
        prop::option::weighted(0.6, section("pruning", PRUNING_KEYS)),
        prop::option::weighted(0.4, section("trainer", TRAINER_KEYS)),
    )
        .prop_map(|(a, b, c)| [a, b, c].into_iter().flatten().collect::<Vec<_>>())
        .prop_shuffle();
    let flaw = prop_oneof![
        28 => Just(String::new()),
        1 => Just("[search]\nmin_rl = 1e-6\n".to_string()),
        1 => Just("[serch]\n".to_string()),
        1 => Just("[pruning]\n".to_string()),
        1 => "[ -~\n]{0,20}",
    ];
    (tables, flaw, any::<prop::sample::Index>()).prop_map(|(mut parts, flaw, at)| {
        let at = at.index(parts.len() + 1);
        parts.insert(at, flaw);
        parts.concat()
    })
}

/// A sorted list of 1 to `rounds` entries drawn from `entry`, as TOML.
fn round_list<T: std::fmt::Debug + PartialOrd + 'static>(
    rounds: u32,
    entry: impl Strategy<Value = T> + 'static,
    show: fn(&T) -> String,
) -> BoxedStrategy<String> {
    prop::collection::vec(entry, 1..=rounds as usize)
        .prop_map(move |mut v| {
            v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN drawn"));
            let items: Vec<String> = v.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        })
        .boxed()
}

/// Documents that satisfy every documented rule (README, the spec's own docs): each must parse.
/// A parser that rejects too much fails here, where the arbitrary documents above would not.
fn valid_spec_document() -> impl Strategy<Value = String> {
    let strategy = prop_oneof![
        (2u32..12, 1.01..4.0f64).prop_map(|(c, r)| format!(
            "strategy = \"coarse-to-fine\"\ncandidates_per_round = {c}\nresolution = {}\n",
            toml_float(r)
        )),
        (2u32..12, 1u32..5, prop::bool::ANY, prop::sample::select(vec!["exponential", "linear"]))
            .prop_map(|(steps, shards, refine, ramp)| format!(
                "strategy = \"range-test\"\nrange_steps = {steps}\nshards = {shards}\nramp = \"{ramp}\"\n{}",
                if refine { "refine = true\nrounds = 2\n" } else { "" }
            )),
        (1.1..4.0f64).prop_map(|r| format!("strategy = \"grid\"\nresolution = {}\n", toml_float(r))),
        (1u32..30).prop_map(|n| format!("strategy = \"random\"\nrandom_trials = {n}\n")),
    ];
    let search = (strategy, 1u32..6, 1e-9..1e-2f64, 0.1..100.0f64, 1u32..5, 1u64..64)
        .prop_flat_map(|(strategy, rounds, min_lr, max_lr, replicates, eval_every)| {
            // A refining range test fixes its rounds at 2.
            let rounds = if strategy.contains("rounds = 2") { 2 } else { rounds };
            let head = format!(
                "[search]\n{}min_lr = {}\nmax_lr = {}\nreplicates = {replicates}\neval_every = {eval_every}\n{}",
                strategy,
                toml_float(min_lr),
                toml_float(max_lr),
                if strategy.contains("rounds = 2") { String::new() } else { format!("rounds = {rounds}\n") },
            );
            (
                Just(head),
                round_list(rounds, 1u64..500, |v| v.to_string()),
                round_list(rounds, 0.01..=1.0f64, |v| toml_float(*v)),
            )
        })
        .prop_map(|(head, steps, fractions)| {
            format!("{head}steps = {steps}\ndata_fraction = {fractions}\n")
        });
    let pruning = (
        1.01..20.0f64,
        0.0..0.99f64,
        prop::sample::select(vec!["asha", "median", "none"]),
        1.01..20.0f64,
        0.01..0.99f64,
        1u32..5,
    )
        .prop_map(|(div, smoothing, rule, eta, grace, peers)| {
            format!(
                "[pruning]\ndivergence_factor = {}\nsmoothing = {}\nrule = \"{rule}\"\nreduction_factor = {}\ngrace_fraction = {}\nmin_peers = {peers}\n",
                toml_float(div), toml_float(smoothing), toml_float(eta), toml_float(grace)
            )
        });
    let trainer = (
        prop::sample::select(vec![
            r#"{ kind = "mlp", hidden = [32] }"#,
            r#"{ kind = "softmax" }"#,
        ]),
        prop_oneof![
            (0.0..0.99f64).prop_map(|m| format!(r#"{{ kind = "sgd", momentum = {} }}"#, toml_float(m))),
            Just(r#"{ kind = "adam" }"#.to_string()),
        ],
        1u32..64,
        prop::bool::ANY,
        0.05..0.5f64,
    )
        .prop_map(|(model, optimizer, batch, standardize, validation)| {
            format!(
                "[trainer]\nmodel = {model}\noptimizer = {optimizer}\nbatch_size = {batch}\nstandardize = {standardize}\nvalidation_fraction = {}\n",
                toml_float(validation)
            )
        });
    (search, prop::option::of(pruning), prop::option::of(trainer))
        .prop_map(|(s, p, t)| format!("{s}{}{}", p.unwrap_or_default(), t.unwrap_or_default()))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_spec_parser_never_panics_on_arbitrary_text(text in any::<String>()) {
        check_parse(&text)?;
    }

    #[test]
    fn the_spec_parser_never_panics_on_toml_ish_text(text in "[\\[\\]a-z_=. \n\"0-9,{}#+-]{0,120}") {
        check_parse(&text)?;
    }

    #[test]
    fn specs_built_from_known_keys_parse_only_when_valid(text in spec_document()) {
        check_parse(&text)?;
    }

    #[test]
    fn every_valid_document_parses(text in valid_spec_document()) {
        let spec = SweepSpec::from_toml_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{e} for a valid document:\n{text}")))?;
        check_accepted(&spec)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Trace monitor.

/// Valid pruning settings (what `SweepSpec::validate` lets through).
fn pruning_spec() -> impl Strategy<Value = PruningSpec> {
    (
        prop_oneof![Just(1.0000001), 1.0001..100.0f64],
        prop_oneof![Just(0.0), 0.0..0.9999f64, Just(0.98)],
        prop::sample::select(vec![
            RungRule::Dominated,
            RungRule::Asha,
            RungRule::Median,
            RungRule::None,
        ]),
        prop_oneof![Just(1.0001), 1.0001..10.0f64, Just(3.0)],
        prop_oneof![Just(1e-9), 0.0001..0.9999f64],
        1u32..5,
    )
        .prop_map(
            |(divergence_factor, smoothing, rule, reduction_factor, grace_fraction, min_peers)| {
                PruningSpec {
                    divergence_factor,
                    smoothing,
                    rule,
                    reduction_factor,
                    grace_fraction,
                    min_peers,
                }
            },
        )
}

fn point(step: u64, train_loss: f64, val_loss: Option<f64>) -> TracePoint {
    TracePoint {
        step,
        train_loss,
        lr: 0.1,
        val_loss,
    }
}

/// Losses of every kind: NaN, ±inf, huge, tiny, negative, ordinary.
fn wild_loss() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        3 => 0.01..10.0f64,
        1 => prop::sample::select(vec![
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, f64::MIN, f64::MIN_POSITIVE,
            5e-324, 0.0, -0.0, -1.0, 1e300, -1e300,
        ]),
    ]
}

/// Positive finite losses over the whole range, subnormals included.
fn positive_loss() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => 1e-3..1e3f64,
        1 => proptest::num::f64::POSITIVE | proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL,
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_monitor_calls_every_non_finite_loss_nan_and_never_panics(
        spec in pruning_spec(),
        trace in prop::collection::vec((wild_loss(), prop::option::of(wild_loss())), 0..200),
    ) {
        let mut m = TraceMonitor::new(&spec);
        for (k, &(train, val)) in trace.iter().enumerate() {
            let verdict = m.observe(&point(k as u64 + 1, train, val));
            let non_finite = !train.is_finite() || val.is_some_and(|v| !v.is_finite());
            if non_finite {
                prop_assert_eq!(verdict, Some(PruneReason::Nan), "step {} ({}, {:?})", k + 1, train, val);
            } else {
                prop_assert!(matches!(verdict, None | Some(PruneReason::Diverged)), "{verdict:?}");
            }
            prop_assert_eq!(m.last_step(), k as u64 + 1);
            // A NaN never gets into the smoothed loss.
            prop_assert!(!m.smoothed().is_some_and(f64::is_nan), "smoothed {:?}", m.smoothed());
            // The mean of finite values near f64::MAX overflows to ±inf, never to NaN.
            prop_assert!(!m.final_score().is_some_and(f64::is_nan));
        }
    }

    #[test]
    fn a_non_increasing_positive_trace_is_never_pruned(
        mut spec in pruning_spec(),
        factor in 1.01..100.0f64,
        mut losses in prop::collection::vec(positive_loss(), 1..300),
    ) {
        spec.divergence_factor = factor;
        losses.sort_by(|a, b| b.total_cmp(a));
        let mut m = TraceMonitor::new(&spec);
        for (k, &loss) in losses.iter().enumerate() {
            let verdict = m.observe(&point(k as u64 + 1, loss, Some(loss)));
            prop_assert_eq!(
                verdict, None,
                "step {} of {:?}: loss {:e}, smoothed {:?}", k + 1, &losses[..=k], loss, m.smoothed()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rung board: compared against a plain model of the same rules.

/// The k-th smallest of `values` (0-based), found by counting rather than sorting: the value
/// with at most k values below it and more than k at or below it.
fn order_statistic(values: &[f64], k: usize) -> f64 {
    let below = |v: f64| values.iter().filter(|&&u| u < v).count();
    let at_or_below = |v: f64| values.iter().filter(|&&u| u <= v).count();
    *values
        .iter()
        .find(|&&v| below(v) <= k && k < at_or_below(v))
        .expect("every rank has a value")
}

/// The median by its definition: the middle value, or the mean of the two middle values.
fn median(values: &[f64]) -> f64 {
    let n = values.len();
    if n % 2 == 1 {
        order_statistic(values, n / 2)
    } else {
        (order_statistic(values, n / 2 - 1) + order_statistic(values, n / 2)) / 2.0
    }
}

/// The board's rules from their definitions (method.md, the papers), not from its code:
/// - each milestone a trial reaches is recorded once per trial, the first time a point reaches
///   it, in the replicate it trains on; a trial condemned at one milestone records no later one
///   from that point;
/// - ASHA (Li et al.) keeps a trial that is in the top 1/η of the values recorded at the rung,
///   its own included: with n values, it is pruned when more than (n − 1)/η of them are
///   strictly better (lower) than its own, which is where numpy's interpolated 1/η quantile
///   falls strictly below it;
/// - the median rule (Golovin et al.) stops a trial whose best value so far is worse than the
///   median of the values its peers recorded at the milestone;
/// - both judge only with `min_peers` peers present; a trial is named at most once.
struct BoardModel {
    spec: PruningSpec,
    milestones: Vec<u64>,
    recorded: HashMap<(usize, u32), Vec<Entry>>,
    reached: HashSet<(u64, usize)>,
    best: HashMap<u64, f64>,
    condemned: HashSet<u64>,
}

/// (trial, rate, value) recorded at a milestone.
type Entry = (u64, f64, f64);

/// Each trial has one rate; two trials may share it.
fn rate_of(trial: u64) -> f64 {
    0.01 * (trial / 2 + 1) as f64
}

impl BoardModel {
    /// The verdict on `trial` at one milestone against `peers` (before it is recorded there).
    fn verdict(&self, peers: &[Entry], lr: f64, value: f64, best: f64) -> Option<PruneReason> {
        let values: Vec<f64> = peers.iter().map(|p| p.2).collect();
        match self.spec.rule {
            RungRule::Dominated => peers
                .iter()
                .any(|p| p.1 < lr && p.2 < value)
                .then_some(PruneReason::Dominated),
            _ if peers.len() < self.spec.min_peers as usize => None,
            RungRule::Asha => {
                // The quantile's level q = 1/η places it at (n − 1)·q in the sorted values.
                let (n, q) = (peers.len() + 1, 1.0 / self.spec.reduction_factor);
                let better = values.iter().filter(|&&v| v < value).count() as f64;
                (better > (n - 1) as f64 * q).then_some(PruneReason::Rung)
            }
            RungRule::Median => (best > median(&values)).then_some(PruneReason::Median),
            RungRule::None => None,
        }
    }

    /// The expected verdicts, and whether any milestone judged here had `min_peers` peers.
    fn observe(
        &mut self,
        trial: u64,
        replicate: u32,
        step: u64,
        value: f64,
    ) -> (Vec<(u64, PruneReason)>, bool) {
        let lr = rate_of(trial);
        let best = self.best.get(&trial).map_or(value, |&b| b.min(value));
        self.best.insert(trial, best);
        let mut named = Vec::new();
        let mut judged = false;
        // Milestones this point reaches that the trial has not recorded yet, in order; one
        // skipped because the trial was condemned earlier on this point is not "reached".
        let reached: Vec<usize> = (0..self.milestones.len())
            .filter(|&m| step >= self.milestones[m] && !self.reached.contains(&(trial, m)))
            .collect();
        for m in reached {
            // Milestones are recorded in order: one left unreached before stays unreached.
            if m > 0 && !self.reached.contains(&(trial, m - 1)) {
                break;
            }
            self.reached.insert((trial, m));
            let peers = self.recorded.entry((m, replicate)).or_default().clone();
            judged |= self.spec.rule != RungRule::Dominated
                && peers.len() >= self.spec.min_peers as usize;
            let own = self.verdict(&peers, lr, value, best);
            if self.spec.rule == RungRule::Dominated {
                named.extend(
                    peers
                        .iter()
                        .filter(|p| p.1 > lr && p.2 > value)
                        .map(|p| (p.0, PruneReason::Dominated)),
                );
            }
            self.recorded
                .entry((m, replicate))
                .or_default()
                .push((trial, lr, value));
            if let Some(reason) = own {
                named.insert(0, (trial, reason));
                break;
            }
        }
        named.retain(|(id, _)| self.condemned.insert(*id));
        (named, judged)
    }
}

/// Values on a grid of eighths: the model's rank arithmetic and the board's interpolated
/// quantile agree exactly only away from rounding (two values 1 ulp apart interpolate to
/// either), so the comparison with the model uses these; non-finite values have a property
/// of their own below.
fn grid_value() -> impl Strategy<Value = f64> {
    (-16i32..40).prop_map(|k| f64::from(k) / 8.0)
}

fn smoothed_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => 0.0..5.0f64,
        1 => -5.0..0.0f64,
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -0.0]),
        1 => any::<f64>(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_rung_board_follows_its_rules_and_never_judges_without_peers(
        spec in pruning_spec(),
        budget in 1u64..300,
        ops in prop::collection::vec((0u64..8, 0u32..3, 0u64..320, grid_value()), 0..200),
    ) {
        let mut board = RungBoard::new(&spec, budget);
        let milestones = board.milestones().to_vec();
        prop_assert!(milestones.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(milestones.iter().all(|&m| m >= 1 && m < budget));
        let mut model = BoardModel {
            spec: spec.clone(),
            milestones,
            recorded: HashMap::new(),
            reached: HashSet::new(),
            best: HashMap::new(),
            condemned: HashSet::new(),
        };
        let mut named = HashSet::new();
        for (k, &(trial, replicate, step, smoothed)) in ops.iter().enumerate() {
            let verdicts = board.observe(trial, rate_of(trial), replicate, step, smoothed);
            let (expected, judged) = model.observe(trial, replicate, step, smoothed);
            prop_assert_eq!(&verdicts, &expected, "op {}: trial {} rep {} step {} value {}", k, trial, replicate, step, smoothed);
            for &(id, reason) in &verdicts {
                prop_assert!(named.insert(id), "trial {} named twice", id);
                match reason {
                    PruneReason::Dominated => prop_assert_eq!(spec.rule, RungRule::Dominated),
                    _ => {
                        prop_assert_eq!(id, trial, "only the dominated rule names other trials");
                        prop_assert!(judged, "a verdict without min_peers peers");
                        prop_assert!(spec.rule != RungRule::None);
                    }
                }
            }
        }
    }

    #[test]
    fn the_rung_board_takes_any_value_and_names_each_trial_once(
        spec in pruning_spec(),
        budget in 1u64..300,
        ops in prop::collection::vec((0u64..8, 0u32..3, 0u64..320, smoothed_value()), 0..200),
    ) {
        let mut board = RungBoard::new(&spec, budget);
        let mut named = HashSet::new();
        for &(trial, replicate, step, smoothed) in &ops {
            for (id, reason) in board.observe(trial, rate_of(trial), replicate, step, smoothed) {
                prop_assert!(named.insert(id), "trial {} named twice", id);
                prop_assert!(spec.rule != RungRule::None, "{:?} under rule none", reason);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sweep state machine under random events.

#[derive(Clone, Copy, Debug)]
enum Bogus {
    None,
    UnknownTrial,
    AttemptZero,
    AttemptAhead,
    AttemptBehind,
    Backwards,
    BeyondBudget,
    OtherWorker,
}

#[derive(Clone, Debug)]
enum Event {
    AddWorker {
        slots: u32,
    },
    RemoveWorker {
        pick: usize,
    },
    SetAvailable {
        pick: usize,
        available: bool,
    },
    Reattach {
        pick: usize,
        keep: u8,
    },
    Dispatch,
    Trace {
        pick: usize,
        bogus: Bogus,
        back: u64,
        len: usize,
        losses: Vec<f64>,
    },
    RunToBudget {
        pick: usize,
        losses: Vec<f64>,
        complete: bool,
    },
    Completed {
        pick: usize,
        bogus: Bogus,
        steps_off: i64,
    },
    Failed {
        pick: usize,
        bogus: Bogus,
    },
    FinishEarly,
}

fn bogus() -> impl Strategy<Value = Bogus> {
    prop_oneof![
        12 => Just(Bogus::None),
        1 => Just(Bogus::UnknownTrial),
        1 => Just(Bogus::AttemptZero),
        1 => Just(Bogus::AttemptAhead),
        1 => Just(Bogus::AttemptBehind),
        1 => Just(Bogus::Backwards),
        1 => Just(Bogus::BeyondBudget),
        1 => Just(Bogus::OtherWorker),
    ]
}

fn sweep_loss() -> impl Strategy<Value = f64> {
    prop_oneof![
        10 => 0.05..3.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => 10.0..1e6f64,
        1 => any::<f64>(),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    let losses = || prop::collection::vec(sweep_loss(), 1..8);
    prop_oneof![
        3 => (1u32..4).prop_map(|slots| Event::AddWorker { slots }),
        1 => any::<usize>().prop_map(|pick| Event::RemoveWorker { pick }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, available)| Event::SetAvailable { pick, available }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(pick, keep)| Event::Reattach { pick, keep }),
        1 => Just(Event::Dispatch),
        8 => (any::<usize>(), bogus(), prop_oneof![4 => Just(0u64), 1 => 0u64..5], 1usize..12, losses())
            .prop_map(|(pick, bogus, back, len, losses)| Event::Trace { pick, bogus, back, len, losses }),
        6 => (any::<usize>(), losses(), prop::bool::weighted(0.9))
            .prop_map(|(pick, losses, complete)| Event::RunToBudget { pick, losses, complete }),
        2 => (any::<usize>(), bogus(), prop_oneof![4 => Just(0i64), 1 => -3i64..3])
            .prop_map(|(pick, bogus, steps_off)| Event::Completed { pick, bogus, steps_off }),
        1 => (any::<usize>(), bogus()).prop_map(|(pick, bogus)| Event::Failed { pick, bogus }),
    ]
}

fn sweep_spec() -> impl Strategy<Value = SweepSpec> {
    (
        prop::sample::select(vec!["coarse-to-fine", "grid", "random", "range-test"]),
        prop::sample::select(vec![
            RungRule::Dominated,
            RungRule::Asha,
            RungRule::Median,
            RungRule::None,
        ]),
        1u32..3,
        1u32..3,
        any::<bool>(),
    )
        .prop_map(|(strategy, rule, replicates, min_peers, refine)| {
            let own = match strategy {
                "coarse-to-fine" => "candidates_per_round = 3\nresolution = 2.0".to_string(),
                "grid" => "resolution = 2.0".to_string(),
                "random" => "random_trials = 4".to_string(),
                _ if refine => "range_steps = 8\nshards = 2\nrefine = true\ncandidates_per_round = 3\nresolution = 2.0".to_string(),
                _ => "range_steps = 8\nshards = 2".to_string(),
            };
            let mut spec = SweepSpec::from_toml_str(&format!(
                "[search]\nstrategy = \"{strategy}\"\nmin_lr = 1e-3\nmax_lr = 1.0\nrounds = 2\n\
                 steps = [8, 16]\ndata_fraction = [0.5, 1.0]\nreplicates = {replicates}\n\
                 eval_every = 4\n{own}"
            ))
            .expect("a valid spec");
            spec.pruning.rule = rule;
            spec.pruning.min_peers = min_peers;
            spec.validate().expect("a valid spec");
            spec
        })
}

/// What the test knows besides the sweep: its workers and the steps it accepted.
struct World {
    sweep: Sweep,
    /// Every id ever added (removed ones stay, to send stale reports from).
    ever: Vec<String>,
    live: HashMap<String, (u32, bool)>,
    expected_total_steps: u64,
}

impl World {
    fn worker(&self, pick: usize) -> String {
        // One pick in (n + 1) is a worker the sweep never heard of.
        match self.ever.get(pick % (self.ever.len() + 1)) {
            Some(id) => id.clone(),
            None => "nobody".into(),
        }
    }

    /// A running trial (most of the time there is one), else any trial: (id, its worker, attempt).
    fn target(&self, pick: usize) -> Option<(u64, String, u32)> {
        let trials = self.sweep.trials();
        let running: Vec<_> = trials
            .iter()
            .filter(|t| t.status == TrialStatus::Running)
            .collect();
        let t = if running.is_empty() {
            trials.get(pick % trials.len().max(1))?
        } else {
            running[pick % running.len()]
        };
        Some((
            t.id,
            t.worker.clone().unwrap_or_else(|| self.worker(pick)),
            t.attempt,
        ))
    }

    /// Applies `bogus` to a report's (worker, trial, attempt).
    fn aim(&self, pick: usize, bogus: Bogus) -> Option<(String, u64, u32)> {
        let (trial, worker, attempt) = self.target(pick)?;
        Some(match bogus {
            Bogus::UnknownTrial => (
                worker,
                self.sweep.trials().len() as u64 + pick as u64 % 5,
                attempt,
            ),
            Bogus::AttemptZero => (worker, trial, 0),
            Bogus::AttemptAhead => (worker, trial, attempt + 1),
            Bogus::AttemptBehind => (worker, trial, attempt.saturating_sub(1)),
            Bogus::OtherWorker => (self.worker(pick.wrapping_add(1)), trial, attempt),
            _ => (worker, trial, attempt),
        })
    }

    fn expect_allowed_error(e: &CoordinatorError) -> Result<(), TestCaseError> {
        prop_assert!(
            matches!(
                e,
                CoordinatorError::InvalidRequest(_) | CoordinatorError::UnknownWorker(_)
            ),
            "unexpected error kind {e:?}"
        );
        Ok(())
    }

    /// Whether a report from `worker` about (trial, attempt) is well-formed: the trial is running
    /// there, on that attempt. The sweep must accept such a report.
    fn running_on(&self, worker: &str, trial: u64, attempt: u32) -> bool {
        self.sweep.trials().get(trial as usize).is_some_and(|t| {
            t.status == TrialStatus::Running
                && t.worker.as_deref() == Some(worker)
                && t.attempt == attempt
        })
    }

    /// Sends a batch; `well_formed` (from a worker running the trial, steps in order within the
    /// budget) must be accepted, and its points past the trial's steps must count.
    fn trace(
        &mut self,
        worker: &str,
        trial: u64,
        attempt: u32,
        points: &[TracePoint],
        well_formed: bool,
    ) -> Result<Vec<Command>, TestCaseError> {
        let well_formed = well_formed && self.running_on(worker, trial, attempt);
        let before = self.sweep.trials().get(trial as usize).map(|t| t.steps);
        let result = self.sweep.on_trace(worker, trial, attempt, points);
        if well_formed {
            prop_assert!(
                result.is_ok(),
                "a well-formed batch for trial {} attempt {} on {} was refused: {:?}",
                trial,
                attempt,
                worker,
                result
            );
        }
        match result {
            Ok(commands) => {
                let accepted: Vec<TracePoint> = self
                    .sweep
                    .take_changes()
                    .into_iter()
                    .filter_map(|c| match c {
                        Change::PointsAccepted {
                            trial: t,
                            attempt: a,
                            points,
                        } if t == trial && a == attempt => Some(points),
                        _ => None,
                    })
                    .flatten()
                    .collect();
                // What is accepted is the tail of the batch past the steps already had.
                // (Compared by step: a NaN loss is not equal to itself.)
                prop_assert!(accepted.len() <= points.len());
                let tail = &points[points.len() - accepted.len()..];
                prop_assert!(tail.iter().zip(&accepted).all(|(a, b)| a.step == b.step));
                let past = points.last().map(|p| p.step) > before;
                prop_assert!(
                    !(well_formed && past) || accepted.last().map(|p| p.step) == points.last().map(|p| p.step),
                    "a well-formed batch up to step {:?} of trial {} (at step {:?}) made no progress",
                    points.last().map(|p| p.step),
                    trial,
                    before
                );
                if let Some(last) = accepted.last() {
                    let before = before.expect("points accepted for a trial that exists");
                    prop_assert!(accepted.iter().all(|p| p.step > before));
                    self.expected_total_steps += last.step - before;
                }
                Ok(commands)
            }
            Err(e) => {
                Self::expect_allowed_error(&e)?;
                Ok(Vec::new())
            }
        }
    }

    fn apply(&mut self, event: &Event) -> Result<Vec<Command>, TestCaseError> {
        let sweep_result = |r: Result<Vec<Command>, CoordinatorError>| match r {
            Ok(c) => Ok(c),
            Err(e) => World::expect_allowed_error(&e).map(|()| Vec::new()),
        };
        Ok(match event {
            Event::AddWorker { slots } => {
                let id = format!("w{}", self.ever.len() + 1);
                self.ever.push(id.clone());
                self.live.insert(id.clone(), (*slots, true));
                self.sweep
                    .add_worker(id.clone(), format!("name-{id}"), *slots);
                self.sweep.dispatch()
            }
            Event::RemoveWorker { pick } => {
                let id = self.worker(*pick);
                self.live.remove(&id);
                self.sweep.remove_worker(&id, "gone")
            }
            Event::SetAvailable { pick, available } => {
                let id = self.worker(*pick);
                if let Some(w) = self.live.get_mut(&id) {
                    w.1 = *available;
                }
                self.sweep.set_available(&id, *available);
                if *available {
                    self.sweep.dispatch()
                } else {
                    Vec::new()
                }
            }
            Event::Reattach { pick, keep } => {
                // As the hub does it: the worker registers again with some of its trials.
                let id = self.worker(*pick);
                let reported: Vec<(u64, u32)> = self
                    .sweep
                    .running_on(&id)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| keep & (1 << (i % 8)) != 0)
                    .map(|(_, (t, a, _))| (t, a))
                    .collect();
                let kept = self.sweep.reattach_worker(&id, &reported);
                prop_assert!(kept.iter().all(|(t, a, _)| reported.contains(&(*t, *a))));
                self.sweep.dispatch()
            }
            Event::Dispatch => self.sweep.dispatch(),
            Event::FinishEarly => {
                self.sweep.finish_early();
                Vec::new()
            }
            Event::Trace {
                pick,
                bogus,
                back,
                len,
                losses,
            } => {
                let Some((worker, trial, attempt)) = self.aim(*pick, *bogus) else {
                    return Ok(Vec::new());
                };
                let (from, budget) = match self.sweep.trials().get(trial as usize) {
                    Some(t) => ((t.steps + 1).saturating_sub(*back), t.budget),
                    None => (1, 8),
                };
                let mut points: Vec<TracePoint> = (0..*len as u64)
                    .map(|i| point(from + i, losses[i as usize % losses.len()], None))
                    .collect();
                match bogus {
                    Bogus::Backwards if points.len() >= 2 => points.reverse(),
                    Bogus::BeyondBudget => points.last_mut().expect("len >= 1").step = budget + 1,
                    _ => {}
                }
                // Only the steps up to the budget, unless going past it is the point.
                if !matches!(bogus, Bogus::BeyondBudget) {
                    points.retain(|p| p.step <= budget);
                }
                let well_formed = matches!(bogus, Bogus::None) && !points.is_empty();
                self.trace(&worker, trial, attempt, &points, well_formed)?
            }
            Event::RunToBudget {
                pick,
                losses,
                complete,
            } => {
                let Some((trial, worker, attempt)) = self.target(*pick) else {
                    return Ok(Vec::new());
                };
                let (mut next, budget) = {
                    let t = &self.sweep.trials()[trial as usize];
                    (t.steps + 1, t.budget)
                };
                let mut commands = Vec::new();
                let mut k = 0;
                while next <= budget {
                    let last = (next + 2).min(budget);
                    let points: Vec<TracePoint> = (next..=last)
                        .map(|step| {
                            k += 1;
                            let val =
                                (step % 4 == 0 || step == budget).then_some(1.0 / step as f64);
                            point(step, losses[k % losses.len()], val)
                        })
                        .collect();
                    commands.extend(self.trace(&worker, trial, attempt, &points, true)?);
                    next = last + 1;
                }
                if *complete {
                    let steps = self.sweep.trials()[trial as usize].steps;
                    let well_formed = self.running_on(&worker, trial, attempt);
                    let result = self.sweep.on_completed(&worker, trial, attempt, steps);
                    prop_assert!(
                        !well_formed || result.is_ok(),
                        "trial {} run to its budget on {} could not complete: {:?}",
                        trial,
                        worker,
                        result
                    );
                    commands.extend(sweep_result(result)?);
                }
                commands
            }
            Event::Completed {
                pick,
                bogus,
                steps_off,
            } => {
                let Some((worker, trial, attempt)) = self.aim(*pick, *bogus) else {
                    return Ok(Vec::new());
                };
                let steps = self
                    .sweep
                    .trials()
                    .get(trial as usize)
                    .map_or(1, |t| t.steps.saturating_add_signed(*steps_off));
                sweep_result(self.sweep.on_completed(&worker, trial, attempt, steps))?
            }
            Event::Failed { pick, bogus } => {
                let Some((worker, trial, attempt)) = self.aim(*pick, *bogus) else {
                    return Ok(Vec::new());
                };
                sweep_result(self.sweep.on_failed(
                    &worker,
                    trial,
                    attempt,
                    "synthetic failure",
                    false,
                ))?
            }
        })
    }

    /// A round whose trials have all ended has been followed by the next, or ended the sweep:
    /// otherwise nothing is left to hand out and the sweep waits forever.
    fn check_liveness(&self) -> Result<(), TestCaseError> {
        let round = self.sweep.current_round();
        let over = self
            .sweep
            .trials()
            .iter()
            .filter(|t| t.round == round)
            .all(|t| t.is_terminal());
        prop_assert!(
            !over || self.sweep.is_finished(),
            "round {round} is over but the sweep neither moved on nor finished"
        );
        Ok(())
    }

    fn check(&self, commands: &[Command]) -> Result<(), TestCaseError> {
        let sweep = &self.sweep;
        let trials = sweep.trials();
        for t in trials {
            prop_assert!([
                "queued",
                "running",
                "completed",
                "pruned",
                "failed",
                "cancelled"
            ]
            .contains(&t.status.as_str()));
            prop_assert!(
                t.steps <= t.budget,
                "trial {} at step {} of {}",
                t.id,
                t.steps,
                t.budget
            );
            prop_assert!(t.steps_run >= t.steps);
            prop_assert!(
                t.attempt <= DEFAULT_MAX_ATTEMPTS,
                "trial {} attempt {}",
                t.id,
                t.attempt
            );
            if t.status == TrialStatus::Running {
                let worker = t.worker.as_deref();
                prop_assert!(worker.is_some(), "trial {} runs on no worker", t.id);
                let worker = worker.unwrap_or_default();
                prop_assert!(
                    self.live.contains_key(worker),
                    "trial {} runs on gone worker {}",
                    t.id,
                    worker
                );
                prop_assert!(
                    sweep
                        .running_on(worker)
                        .iter()
                        .any(|&(id, a, s)| (id, a, s) == (t.id, t.attempt, t.steps)),
                    "trial {} is not in {}'s running set",
                    t.id,
                    worker
                );
            }
        }
        for (id, &(slots, _)) in &self.live {
            let running = sweep.running_on(id);
            prop_assert!(
                running.len() <= slots.max(1) as usize,
                "{id} over its slots"
            );
            for (trial, attempt, _) in running {
                let t = &trials[trial as usize];
                prop_assert_eq!(t.status, TrialStatus::Running);
                prop_assert_eq!(t.worker.as_deref(), Some(id.as_str()));
                prop_assert_eq!(t.attempt, attempt);
            }
        }
        prop_assert_eq!(
            sweep.total_steps(),
            trials.iter().map(|t| t.steps_run).sum::<u64>()
        );
        prop_assert_eq!(sweep.total_steps(), self.expected_total_steps);
        for c in commands {
            match c {
                Command::Assign { worker, assignment } => {
                    prop_assert!(
                        self.live.get(worker).is_some_and(|w| w.1),
                        "assigned to {worker}, not available"
                    );
                    let t = &trials[assignment.trial_id as usize];
                    prop_assert!(assignment.attempt >= 1 && assignment.attempt <= t.attempt);
                    prop_assert_eq!(assignment.lr, t.lr);
                    prop_assert_eq!(assignment.steps, t.budget);
                }
                Command::Stop {
                    worker,
                    trial,
                    attempt,
                    kind,
                    reason,
                } => {
                    let t = &trials[*trial as usize];
                    prop_assert!(*attempt <= t.attempt);
                    let expected = match kind {
                        StopKind::Prune => TrialStatus::Pruned,
                        StopKind::Cancel => TrialStatus::Cancelled,
                    };
                    // A later command of the same batch may have handed it out again.
                    if *attempt == t.attempt {
                        prop_assert_eq!(
                            t.status,
                            expected,
                            "stop {:?} for trial {}",
                            reason,
                            trial
                        );
                        prop_assert_eq!(t.worker.as_deref(), Some(worker.as_str()));
                    }
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_sweep_survives_random_events_and_keeps_its_invariants(
        spec in sweep_spec(),
        mut events in prop::collection::vec(event(), 1..100),
        finish_early in prop::option::weighted(0.1, any::<prop::sample::Index>()),
    ) {
        // Now and then the coordinator is shut down midway.
        if let Some(at) = finish_early {
            let at = at.index(events.len() + 1);
            events.insert(at, Event::FinishEarly);
        }
        let mut world = World {
            sweep: Sweep::new(spec),
            ever: Vec::new(),
            live: HashMap::new(),
            expected_total_steps: 0,
        };
        world.check(&[])?;
        for (k, event) in events.iter().enumerate() {
            let was_finished = world.sweep.is_finished();
            let commands = world.apply(event)?;
            world
                .check(&commands)
                .map_err(|e| TestCaseError::fail(format!("after event {k} {event:?}: {e}")))?;
            if was_finished {
                prop_assert!(
                    !commands.iter().any(|c| matches!(c, Command::Assign { .. })),
                    "an assignment after the sweep finished"
                );
            }
            world.check_liveness().map_err(|e| TestCaseError::fail(format!("after event {k} {event:?}: {e}")))?;
        }
    }
}

/// Regression (found by the liveness check above, fixed in c0dde07): a worker that reconnects
/// without the last unfinished trial of a round, on that trial's last allowed attempt, fails the
/// trial in `Sweep::reattach_worker`; the sweep must then move on by itself, since with healthy
/// workers nothing else would call `advance` again.
#[test]
fn a_trial_failed_on_reconnect_still_ends_its_round() {
    let spec = SweepSpec::from_toml_str(
        "[search]\nstrategy = \"grid\"\nmin_lr = 0.1\nmax_lr = 0.2\nresolution = 4.0\n\
         rounds = 1\nsteps = [10]\ndata_fraction = [1.0]\nreplicates = 1",
    )
    .unwrap();
    let mut sweep = Sweep::new(spec);
    assert_eq!(sweep.trials().len(), 2);
    sweep.set_max_attempts(1);
    sweep.add_worker("w1".into(), "a".into(), 2);
    let given = sweep.dispatch();
    assert_eq!(given.len(), 2);
    // Trial 0 completes; trial 1 is lost on a reconnect, on its only allowed attempt.
    let trace: Vec<TracePoint> = (1..=10).map(|s| point(s, 1.0, Some(1.0))).collect();
    sweep.on_trace("w1", 0, 1, &trace).unwrap();
    assert!(sweep.on_completed("w1", 0, 1, 10).unwrap().is_empty());
    assert!(sweep.reattach_worker("w1", &[]).is_empty());
    sweep.dispatch();
    assert_eq!(sweep.trials()[1].status, TrialStatus::Failed);
    assert!(sweep.trials().iter().all(|t| t.is_terminal()));
    assert!(
        sweep.is_finished(),
        "every trial ended, yet the sweep is not finished and nothing will finish it"
    );
}
