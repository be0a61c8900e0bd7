//! Issue 10's determinism: edge descent's recommendation depends only on the spec and the
//! trainer's results. The same sweep, as real processes over gRPC with a real database, with 1
//! local worker, with 3, and with 3 separate workers one of which is killed while it trains a
//! full-budget trial, recommends the same rates.

use std::time::Duration;

use lrsweep_tests::{start_worker, Setup};
use serde_json::Value;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Digits with a one-hidden-layer MLP: a full-budget trial takes long enough (a few hundred
/// milliseconds) to be under way when its worker is killed. Three ladder rates per round, so
/// that each of three workers gets a full-budget trial.
const SPEC: &str = r#"
[search]
strategy = "edge-descent"
min_lr = 1e-4
max_lr = 10.0
rounds = 2
steps = [30, 300]
ladder_width = 3
eval_every = 20

[trainer]
model = { kind = "mlp", hidden = [128] }
optimizer = { kind = "sgd", momentum = 0.9 }
batch_size = 64
seed = 5
"#;

/// The recommended rates of a finished sweep's report.
fn recommendation(report: &Value) -> (f64, f64) {
    let rate = |field: &str| {
        report[field]
            .as_f64()
            .unwrap_or_else(|| panic!("no {field} in {report:#}"))
    };
    (rate("best_lr"), rate("max_stable_lr"))
}

/// The coordinator with `n` local workers, to the end of the sweep.
fn with_local_workers(n: u32) -> (f64, f64) {
    let s = Setup::new("determinism-local", SPEC);
    let n = n.to_string();
    let (mut coordinator, _) = s.start_coordinator(
        COORDINATOR,
        &["--local-workers", &n, "--worker-bin", WORKER],
    );
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    recommendation(&s.report())
}

#[test]
fn the_recommendation_is_the_same_with_1_or_3_workers_and_after_a_worker_is_killed() {
    let one = with_local_workers(1);
    let three = with_local_workers(3);
    assert_eq!(one, three, "1 worker vs 3 workers");

    let s = Setup::new("determinism-kill", SPEC);
    let (mut coordinator, addr) = s.start_coordinator(COORDINATOR, &[]);
    let workers: Vec<_> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|name| start_worker(WORKER, &addr, name))
        .collect();
    let gamma = coordinator.wait_for_event("worker_registered", Duration::from_secs(30), |e| {
        e["name"] == "gamma"
    });
    let id = gamma["worker"].clone();
    // Killed as soon as it is handed a full-budget trial: that trial runs again elsewhere.
    coordinator.wait_for_event("trial_dispatched", Duration::from_secs(120), |e| {
        e["worker"] == id && e["steps"] == 300
    });
    let mut workers = workers;
    workers[2].child.kill().expect("SIGKILL a worker");
    workers[2].child.wait().expect("the worker is gone");
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    let killed = recommendation(&s.report());
    assert!(
        coordinator.events("trial_dispatched").len()
            > s.report()["trials"].as_array().map_or(0, Vec::len),
        "a trial was dispatched again after the kill"
    );
    assert_eq!(one, killed, "undisturbed vs a worker killed mid-sweep");
}
