//! Machines die: a worker killed mid-trial loses nothing, its trial is rerun elsewhere.

use std::time::{Duration, Instant};

use lrsweep_tests::{start_worker, wait_for_stored_points, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Trials long enough (tens of milliseconds at least) to kill a worker in the middle of one.
const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 1.0
rounds = 1
steps = [4000]
data_fraction = [1.0]
replicates = 2

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [32] }
"#;

#[test]
fn a_worker_killed_mid_trial_has_its_trial_rerun_on_the_other() {
    let setup = Setup::new("kill-worker", SPEC);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--lease-ms", "500"]);
    let mut doomed = start_worker(WORKER, &addr, "doomed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while doomed.events("trial_started").is_empty() {
        assert!(Instant::now() < deadline, "{:#?}", doomed.tail(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    // Wait for some of its trace to reach the coordinator, then kill it without warning.
    wait_for_stored_points(&setup.db, 1, Duration::from_secs(30));
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    let mut survivor = start_worker(WORKER, &addr, "survivor");

    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    coordinator.assert_exit(status, 0);
    let (status, _) = survivor.wait_output(Duration::from_secs(30));
    survivor.assert_exit(status, 0);
    assert!(!coordinator.events("lease_expired").is_empty());

    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    for t in trials {
        let status = t["status"].as_str().unwrap();
        assert!(
            ["completed", "pruned", "cancelled", "failed"].contains(&status),
            "{t}"
        );
    }
    let rerun: Vec<_> = trials
        .iter()
        .filter(|t| t["attempts"].as_u64().unwrap() >= 2)
        .collect();
    assert!(!rerun.is_empty(), "no trial was rerun: {trials:#?}");
    for t in rerun {
        assert_eq!(t["worker"], "survivor", "{t}");
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["steps"], t["budget"], "{t}");
    }
}

#[test]
fn a_failing_trainer_fails_its_attempts_and_the_worker_stays_up() {
    // The spec names a file in the setup's own directory: written once the directory exists.
    let setup = Setup::new("bad-data", "");
    let missing = setup.path("no-such-file.csv");
    std::fs::write(
        &setup.spec,
        format!(
            r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-2
max_lr = 1.0
rounds = 1
steps = [50]
data_fraction = [1.0]
replicates = 1

[trainer]
dataset = {{ kind = "csv", path = "{}", label = "y" }}
model = {{ kind = "softmax" }}
"#,
            missing.display()
        ),
    )
    .unwrap();
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--max-attempts", "2"]);
    let mut worker = start_worker(WORKER, &addr, "steady");
    let (status, summary) = coordinator.wait_output(Duration::from_secs(120));
    // Nothing to recommend: a clear failure (exit 1), with the report written all the same, and
    // the summary says what went wrong with how many trials.
    coordinator.assert_exit(status, 1);
    let line = summary
        .lines()
        .find(|l| l.starts_with("failed"))
        .unwrap_or_else(|| panic!("no failures line in:\n{summary}"));
    assert!(
        line.contains("3 trials failed: ") && line.contains("no-such-file.csv"),
        "{line}"
    );
    // The worker stays up through the failures and leaves with the sweep (exit 0).
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    worker.assert_exit(status, 0);
    // No attempt can find the file: the worker says so (TrialFailed.permanent), and each trial
    // fails on its first attempt instead of using up --max-attempts.
    assert_eq!(worker.events("trial_failed").len(), 3);
    for failed in worker.events("trial_failed") {
        assert_eq!(failed["permanent"], true, "{failed}");
    }

    let report = setup.report();
    assert!(report["best_lr"].is_null());
    let trials = report["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 3);
    for t in trials {
        assert_eq!(t["status"], "failed", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
        let error = t["error"].as_str().unwrap();
        assert!(error.contains("no-such-file.csv"), "{error}");
    }
}
