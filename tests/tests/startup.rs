//! Start-up paths: workers that come before the coordinator, `--local-workers`, bad specs.

use std::process::Command;
use std::time::Duration;

use lrsweep_tests::{free_addr, start_worker, Proc, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

const SMALL: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 10.0
rounds = 2
candidates_per_round = 3
steps = [100, 200]
data_fraction = [0.5, 1.0]
replicates = 1

[trainer]
model = { kind = "softmax" }
"#;

#[test]
fn a_worker_started_first_retries_until_the_coordinator_comes() {
    let setup = Setup::new("late-coordinator", SMALL);
    // A port free now, for the coordinator to take later.
    let addr = free_addr();
    let mut worker = start_worker(WORKER, &addr, "early");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while worker.events("coordinator_unreachable").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:#?}",
            worker.tail(10)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut coordinator, _) = Proc::spawn(
        COORDINATOR,
        &[
            "--listen",
            &addr,
            "--db",
            &setup.db,
            "--spec",
            &setup.spec,
            "--report",
            setup.report.to_str().unwrap(),
        ],
    );
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    assert!(status.success(), "{:#?}", worker.tail(20));

    // The retries back off: the announced delays grow.
    let delays: Vec<u64> = worker
        .events("coordinator_unreachable")
        .iter()
        .map(|e| e["retry_in_ms"].as_u64().unwrap())
        .collect();
    assert!(
        delays.len() >= 2 && delays.last() > delays.first(),
        "{delays:?}"
    );
    let report = setup.report();
    assert!(report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["worker"] == "early"));
    // Every stderr line of both processes was one JSON object.
    for p in [&coordinator, &worker] {
        assert!(p
            .logs
            .lock()
            .unwrap()
            .iter()
            .all(|v| v.get("raw").is_none()));
    }
}

#[test]
fn a_worker_joining_mid_sweep_gets_work() {
    let setup = Setup::new(
        "late-worker",
        &SMALL.replace("steps = [100, 200]", "steps = [2000, 20000]"),
    );
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let mut first = start_worker(WORKER, &addr, "first");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while coordinator.events("trial_completed").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "{:#?}",
            coordinator.tail(10)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut second = start_worker(WORKER, &addr, "second");
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    for w in [&mut first, &mut second] {
        assert!(w.wait_output(Duration::from_secs(30)).0.success());
    }
    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    assert!(
        trials.iter().any(|t| t["worker"] == "second"),
        "{trials:#?}"
    );
}

#[test]
fn local_workers_run_the_sweep_from_one_command() {
    // Trials long enough that the second worker is up before the first has run them all.
    let setup = Setup::new(
        "local",
        &SMALL.replace("steps = [100, 200]", "steps = [2000, 20000]"),
    );
    let (mut coordinator, _) = setup.start_coordinator(
        COORDINATOR,
        &["--local-workers", "2", "--worker-bin", WORKER],
    );
    let (status, stdout) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(stdout.contains("max_stable_lr"), "{stdout}");
    assert_eq!(coordinator.events("local_worker_started").len(), 2);
    let report = setup.report();
    let workers: std::collections::BTreeSet<&str> = report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["worker"].as_str())
        .collect();
    assert_eq!(workers, ["local-0", "local-1"].into_iter().collect());
}

#[test]
fn a_bad_spec_is_refused_at_start_naming_the_field() {
    let setup = Setup::new("bad-spec", "");
    for (text, field) in [
        ("[search]\nmin_lr = 1.0\nmax_lr = 0.1\n", "search.min_lr"),
        ("[search]\nlearning_rate = 0.1\n", "learning_rate"),
        ("[trainer]\nbatch_size = 0\n", "trainer.batch_size"),
    ] {
        std::fs::write(&setup.spec, text).unwrap();
        let out = Command::new(COORDINATOR)
            .args(["--spec", &setup.spec, "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{text}: {stderr}");
    }
}
