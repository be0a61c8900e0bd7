//! Issue 10's determinism: edge descent's recommendation depends only on the spec and the
//! trainer's results. The same sweep, as real processes over gRPC with a real database, with 1
//! local worker, with 3, with 3 separate workers one of which is killed while it trains a
//! full-budget trial, and with the coordinator killed once the full budget began and restarted
//! on its database, recommends the same rates.

use std::time::Duration;

use lrsweep_tests::{
    free_addr, start_coordinator_on, start_retrying_worker, start_worker, wait_sweep_end, Setup,
};
use serde_json::Value;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Digits with a one-hidden-layer MLP: a full-budget trial takes long enough (a few hundred
/// milliseconds) to be under way when its worker is killed. Three ladder rates per round, so
/// that each of three workers gets a full-budget trial; the default three rounds (probes, scout,
/// full budget).
const SPEC: &str = r#"
[search]
strategy = "edge-descent"
min_lr = 1e-4
max_lr = 10.0
rounds = 3
steps = [30, 60, 300]
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
fn the_recommendation_is_the_same_with_1_or_3_workers_and_after_a_worker_or_the_coordinator_is_killed(
) {
    let one = with_local_workers(1);
    let three = with_local_workers(3);
    assert_eq!(one, three, "1 worker vs 3 workers");
    assert_eq!(
        one,
        coordinator_killed_mid_sweep(),
        "undisturbed vs the coordinator killed and restarted"
    );

    // A held ladder rate may be stopped behind the incumbent within a few dozen steps, before
    // the kill lands; such a run disturbed nothing, and the sweep is run again (at most 3 times).
    for run in 1..=3 {
        let (killed, hit) = killed_mid_trial();
        assert_eq!(
            one, killed,
            "undisturbed vs a worker killed mid-sweep (run {run})"
        );
        if hit {
            return;
        }
    }
    panic!("in 3 runs, the worker's full-budget trial always ended before the kill");
}

/// A sweep with 3 workers, one killed as soon as it is handed a full-budget trial: the
/// recommendation, and whether the trial was still running then (it was dispatched again).
fn killed_mid_trial() -> ((f64, f64), bool) {
    let s = Setup::new("determinism-kill", SPEC);
    let (mut coordinator, addr) = s.start_coordinator(COORDINATOR, &[]);
    let mut workers: Vec<_> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|name| start_worker(WORKER, &addr, name))
        .collect();
    let gamma = coordinator.wait_for_event("worker_registered", Duration::from_secs(30), |e| {
        e["name"] == "gamma"
    });
    let id = gamma["worker"].clone();
    let dispatched =
        coordinator.wait_for_event("trial_dispatched", Duration::from_secs(120), |e| {
            e["worker"] == id && e["steps"] == 300
        });
    let trial = dispatched["trial"].clone();
    workers[2].child.kill().expect("SIGKILL a worker");
    workers[2].child.wait().expect("the worker is gone");
    let ended_before = ["trial_pruned", "trial_completed", "trial_cancelled"]
        .iter()
        .any(|event| {
            coordinator
                .events(event)
                .iter()
                .any(|e| e["trial"] == trial)
        });
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    let again = coordinator
        .events("trial_dispatched")
        .iter()
        .filter(|e| e["trial"] == trial)
        .count()
        > 1;
    assert!(
        again || ended_before,
        "trial {trial} was running when its worker died, and never ran again"
    );
    (recommendation(&s.report()), again)
}

/// A sweep with 2 workers whose coordinator is SIGKILLed as soon as it hands out the first
/// full-budget trial and restarted on the same database and address: the resumed sweep rebuilds
/// the probes' and the scout's results (stability, scores, what each did to its training loss)
/// from the stored traces. Its recommendation.
fn coordinator_killed_mid_sweep() -> (f64, f64) {
    let s = Setup::new("determinism-restart", SPEC);
    let addr = free_addr();
    let report = s.report.to_str().expect("utf-8 temp dir");
    let args = ["--db", &s.db, "--spec", &s.spec, "--report", report];
    let (mut first, _) = start_coordinator_on(COORDINATOR, &addr, &args);
    let mut workers = vec![
        start_retrying_worker(&[], WORKER, &addr, "alpha"),
        start_retrying_worker(&[], WORKER, &addr, "beta"),
    ];
    first.wait_for_event("trial_dispatched", Duration::from_secs(120), |e| {
        e["steps"] == 300
    });
    first.child.kill().expect("SIGKILL the coordinator");
    first.child.wait().expect("the coordinator is gone");
    assert!(
        first.events("recommendation").is_empty(),
        "the sweep ended before the kill: {:#?}",
        first.tail(10)
    );
    let (mut second, _) = start_coordinator_on(COORDINATOR, &addr, &args);
    wait_sweep_end(&mut second, &mut workers);
    assert_eq!(
        second.events("sweep_resumed").len(),
        1,
        "{:#?}",
        second.tail(20)
    );
    recommendation(&s.report())
}
