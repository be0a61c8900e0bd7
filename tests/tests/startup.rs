//! Start-up paths: workers that come before the coordinator, `--local-workers`, bad specs.

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use lrsweep_tests::{start_coordinator, start_worker, Proc, TempDir};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

const SMALL: &str = r#"
[search]
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

fn write_spec(dir: &TempDir, text: &str) -> String {
    let path = dir.path().join("spec.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn read_report(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_worker_started_first_retries_until_the_coordinator_comes() {
    let dir = TempDir::new("late-coordinator");
    let spec = write_spec(&dir, SMALL);
    let report = dir.path().join("report.json");
    // Reserve a free port, then release it for the coordinator to take later.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
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
            dir.path().join("sweep.db").to_str().unwrap(),
            "--spec",
            &spec,
            "--report",
            report.to_str().unwrap(),
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
    let report = read_report(&report);
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
    let dir = TempDir::new("late-worker");
    let spec = write_spec(
        &dir,
        &SMALL.replace("steps = [100, 200]", "steps = [2000, 20000]"),
    );
    let report = dir.path().join("report.json");
    let (mut coordinator, addr) = start_coordinator(
        COORDINATOR,
        &["--spec", &spec, "--report", report.to_str().unwrap()],
    );
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
    let report = read_report(&report);
    let trials = report["trials"].as_array().unwrap();
    assert!(
        trials.iter().any(|t| t["worker"] == "second"),
        "{trials:#?}"
    );
}

#[test]
fn local_workers_run_the_sweep_from_one_command() {
    let dir = TempDir::new("local");
    let spec = write_spec(&dir, SMALL);
    let report = dir.path().join("report.json");
    let (mut coordinator, _) = start_coordinator(
        COORDINATOR,
        &[
            "--spec",
            &spec,
            "--report",
            report.to_str().unwrap(),
            "--local-workers",
            "2",
            "--worker-bin",
            WORKER,
        ],
    );
    let (status, stdout) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(stdout.contains("max_stable_lr"), "{stdout}");
    assert_eq!(coordinator.events("local_worker_started").len(), 2);
    let report = read_report(&report);
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
    let dir = TempDir::new("bad-spec");
    for (text, field) in [
        ("[search]\nmin_lr = 1.0\nmax_lr = 0.1\n", "search.min_lr"),
        ("[search]\nlearning_rate = 0.1\n", "learning_rate"),
        ("[trainer]\nbatch_size = 0\n", "trainer.batch_size"),
    ] {
        let spec = write_spec(&dir, text);
        let out = Command::new(COORDINATOR)
            .args(["--spec", &spec, "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{text}: {stderr}");
    }
}
