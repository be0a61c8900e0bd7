//! End to end: a coordinator process and two worker processes on loopback run a small sweep on
//! the bundled digits data.

use std::time::Duration;

use lrsweep_tests::{start_worker, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Decades 1e-4..100 on the MLP: the top rates must diverge, the useful ones lie in between.
const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-4
max_lr = 100.0
rounds = 2
candidates_per_round = 3
steps = [300, 600]
data_fraction = [0.5, 1.0]
replicates = 2
eval_every = 25

[trainer]
model = { kind = "mlp", hidden = [32] }
batch_size = 32
seed = 1
"#;

#[test]
fn two_workers_run_a_sweep_and_prune_divergent_rates() {
    let setup = Setup::new("e2e", SPEC);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let mut workers = [
        start_worker(WORKER, &addr, "alpha"),
        start_worker(WORKER, &addr, "beta"),
    ];

    let (status, stdout) = coordinator.wait_output(Duration::from_secs(300));
    assert!(
        status.success(),
        "coordinator failed: {:#?}",
        coordinator.tail(30)
    );
    for w in &mut workers {
        let (status, _) = w.wait_output(Duration::from_secs(30));
        assert!(status.success(), "worker failed: {:#?}", w.tail(20));
    }
    assert!(stdout.contains("best_lr"), "summary on stdout: {stdout}");

    let report = setup.report();
    let best = report["best_lr"].as_f64().expect("a best rate");
    let max_stable = report["max_stable_lr"].as_f64().expect("a max stable rate");
    // SGD on a small MLP over standardised digits trains well between about 0.01 and 1.
    assert!((1e-2..=2.0).contains(&best), "best_lr {best}");
    assert!(
        max_stable >= best && max_stable < 100.0,
        "max_stable_lr {max_stable}"
    );
    assert_eq!(report["outcome"], "completed");

    let trials = report["trials"].as_array().unwrap();
    let diverged_early = trials.iter().any(|t| {
        t["status"] == "pruned"
            && (t["prune_reason"] == "diverged" || t["prune_reason"] == "nan")
            && t["lr"].as_f64().unwrap() > best
            && t["steps"].as_u64().unwrap() < t["budget"].as_u64().unwrap()
    });
    assert!(diverged_early, "no large rate pruned early: {trials:#?}");
    for name in ["alpha", "beta"] {
        assert!(
            trials.iter().any(|t| t["worker"] == name),
            "worker {name} ran no trial"
        );
    }
    let steps: u64 = trials.iter().map(|t| t["steps"].as_u64().unwrap()).sum();
    assert_eq!(report["total_steps"].as_u64().unwrap(), steps);
    assert!(trials
        .iter()
        .all(|t| t["status"] != "running" && t["status"] != "queued"));
    // Logs are structured: the prune decisions are events with their reason and rate.
    let prunes = coordinator.events("trial_pruned");
    assert!(prunes
        .iter()
        .any(|p| p["reason"] == "diverged" || p["reason"] == "nan"));
    assert!(prunes.iter().all(|p| p["lr"].is_number()));
}
