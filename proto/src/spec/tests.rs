use super::*;
use crate::domain::{ModelSpec, Ramp, TrainerConfig};

fn field_of(text: &str) -> String {
    match SweepSpec::from_toml_str(text) {
        Err(SpecError::Invalid { field, .. }) => field,
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
    assert_eq!(spec.search.steps, vec![50, 100, 1000]);
    assert_eq!(spec.search.data_fraction, vec![1.0]);
    assert_eq!(spec.search.replicates, 1);
    let StrategySpec::EdgeDescent(e) = &spec.search.strategy else {
        panic!("{:?}", spec.search.strategy)
    };
    assert_eq!((e.resolution, e.edge_probes), (1.25, 3));
    assert_eq!((e.ladder_stride, e.ladder_width), (10, 2));
    assert_eq!((e.ladder_patience, e.finest_stride), (2, 2));
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
    let spec = SweepSpec::from_toml_str(include_str!("../../../examples/digits.toml")).unwrap();
    assert_eq!(spec, SweepSpec::default());
}

#[test]
fn coarse_to_fine_example_spells_out_its_defaults() {
    let spec =
        SweepSpec::from_toml_str(include_str!("../../../examples/coarse-to-fine.toml")).unwrap();
    let bare = SweepSpec::from_toml_str("[search]\nstrategy = \"coarse-to-fine\"\n").unwrap();
    assert_eq!(spec, bare);
    assert_eq!(
        (spec.search.rounds, spec.search.steps),
        (3, vec![50, 300, 1000])
    );
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
    assert_eq!(trainer.model, ModelSpec::Softmax { intercept: true });
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
        candidates_per_round = 3
        "#,
    )
    .unwrap();
    let StrategySpec::RangeTest(r) = &spec.search.strategy else {
        panic!("{:?}", spec.search.strategy)
    };
    assert_eq!((r.range_steps, r.ramp, r.shards), (300, Ramp::Linear, 4));
    assert_eq!(r.refine.as_ref().map(|c| c.candidates_per_round), Some(3));
    let plain = SweepSpec::from_toml_str("[search]\nstrategy = \"range-test\"").unwrap();
    assert_eq!(
        plain.search.strategy,
        StrategySpec::RangeTest(RangeTestSpec::default())
    );
    let spec =
        SweepSpec::from_toml_str("[search]\nstrategy = \"random\"\nrandom_trials = 5\nseed = 7")
            .unwrap();
    assert_eq!(
        spec.search.strategy,
        StrategySpec::Random(RandomSpec {
            random_trials: 5,
            seed: 7
        })
    );
    let grid = SweepSpec::from_toml_str("[search]\nstrategy = \"grid\"\nresolution = 1.5").unwrap();
    assert_eq!(
        grid.search.strategy,
        StrategySpec::Grid(GridSpec { resolution: 1.5 })
    );
}

#[test]
fn another_strategys_field_is_refused_naming_where_it_belongs() {
    let cases = [
        ("refine = true", "search.refine", "strategy range-test"),
        ("shards = 3", "search.shards", "strategy range-test"),
        (
            "strategy = \"grid\"\nseed = 3",
            "search.seed",
            "strategy random",
        ),
        (
            "strategy = \"range-test\"\nresolution = 1.5",
            "search.resolution",
            "refine = true",
        ),
        (
            "strategy = \"random\"\nfinal_below = 2",
            "search.final_below",
            "coarse-to-fine",
        ),
    ];
    for (body, field, belongs) in cases {
        match SweepSpec::from_toml_str(&format!("[search]\n{body}")) {
            Err(SpecError::Invalid {
                field: f, reason, ..
            }) => {
                assert_eq!(f, field, "{body}");
                assert!(reason.contains(belongs), "{body}: {reason}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn the_toml_written_reads_back_as_the_same_spec() {
    let texts = [
        "",
        "[search]\nstrategy = \"range-test\"\nrefine = true\nrounds = 2\nsteps = [100, 300]",
        "[search]\nstrategy = \"random\"\nseed = 9",
        "[search]\nstrategy = \"grid\"\nresolution = 2.0",
        "[search]\nstrategy = \"coarse-to-fine\"\nhypergradient = { kind = \"sgd-hd\" }",
    ];
    for text in texts {
        let spec = SweepSpec::from_toml_str(text).unwrap();
        assert_eq!(
            SweepSpec::from_toml_str(&spec.to_toml()).unwrap(),
            spec,
            "{text}"
        );
    }
}

#[test]
fn toml_errors_give_the_line_and_column() {
    let text = "[search]\nmin_lr = 1e-6\nsteps = [50, \"x\"]\n";
    match SweepSpec::from_toml_str(text) {
        Err(SpecError::Invalid { at: Some(at), .. }) => {
            assert_eq!((at.line, at.file.as_deref()), (3, None), "{at}");
            assert!(at.column > 1, "{at}");
        }
        other => panic!("{other:?}"),
    }
    let dir = std::env::temp_dir().join(format!("lrsweep-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.toml");
    std::fs::write(&path, "[search]\nmin_lr = 1e-6\n = 3\n").unwrap();
    let message = SweepSpec::load(&path).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(message.contains("broken.toml:3:"), "{message}");
}

#[test]
fn short_lists_repeat_their_last_entry() {
    let spec =
        SweepSpec::from_toml_str("[search]\nrounds = 4\nsteps = [100, 300]\ndata_fraction = [0.1]")
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
        ("strategy = \"coarse-to-fine\"\ncandidates_per_round = 1", "search.candidates_per_round"),
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
        ("strategy = \"coarse-to-fine\"\nfinal_below = 0\nfinal_above = 0", "search.final_below"),
        ("strategy = \"coarse-to-fine\"\nfinal_above = 2000", "search.final_above"),
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
            "strategy = \"coarse-to-fine\"\nhypergradient = { kind = \"sgd\" }",
            "search.hypergradient",
        ),
        (
            "strategy = \"grid\"\nhypergradient = { kind = \"sgd-hd\" }",
            "search.hypergradient",
        ),
        (
            "strategy = \"coarse-to-fine\"\nhypergradient = { kind = \"sgd-hd\", hypergrad_lr = -1.0 }",
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
fn unknown_fields_are_rejected_by_name() {
    match SweepSpec::from_toml_str("[search]\nmin_rl = 1e-6") {
        Err(SpecError::Invalid { field, reason, .. }) => {
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
        Err(SpecError::File { path, .. }) => assert!(path.contains("spec.toml")),
        other => panic!("{other:?}"),
    }
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
    assert_eq!(SweepSpec::from_toml_str(&spec.to_toml()).unwrap(), spec);

    let error = |text: &str| match SweepSpec::from_toml_str(text) {
        Err(SpecError::Invalid { field, reason, .. }) => format!("{field}: {reason}"),
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
        field_of("[search]\nhypergradient = { kind = \"sgd-hd\" }\n[trainer]\ncommand = [\"x\"]"),
        "search.hypergradient"
    );
}

#[test]
fn edge_descent_is_the_default_and_other_strategies_fields_are_refused() {
    let spec = SweepSpec::from_toml_str("[search]\n").unwrap();
    assert_eq!(
        spec.search.strategy,
        StrategySpec::EdgeDescent(EdgeDescentSpec::default())
    );
    assert_eq!(spec.search.steps, vec![50, 100, 1000]);
    spec.validate().unwrap();
    let refused = |text: &str| SweepSpec::from_toml_str(text).unwrap_err().to_string();
    let e = refused("[search]\nstrategy = \"edge-descent\"\nfinal_below = 2\n");
    assert!(e.contains("search.final_below"), "{e}");
    let e = refused("[search]\nstrategy = \"coarse-to-fine\"\nladder_stride = 2\n");
    assert!(e.contains("belongs to strategy edge-descent"), "{e}");
    let e = refused("[search]\nstrategy = \"edge-descent\"\nedge_probes = 0\n");
    assert!(e.contains("search.edge_probes"), "{e}");
}
