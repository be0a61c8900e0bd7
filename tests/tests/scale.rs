//! Scale: 200 simulated workers (the `loadgen` binary, each a real gRPC client with its own
//! session) connect at once and stream synthetic traces; every point they sent is in the
//! database afterwards.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lrsweep_coordinator::storage::store::Store;
use lrsweep_tests::{read_json, Proc, Setup};
use serde_json::Value;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const WORKERS: usize = 200;

/// One round of 547 log-spaced rates from 1e-6 to 10 (neighbours at most 3% apart), so that 200
/// workers are all busy at once. The loadgen's traces diverge above lr 0.5 (about 100 of the rates);
/// only divergence stops trials early.
const SPEC: &str = r#"
[search]
strategy = "grid"
min_lr = 1e-6
max_lr = 10.0
resolution = 1.03
steps = [1000]
replicates = 1

[pruning]
rule = "none"
"#;

#[test]
fn two_hundred_workers_stream_at_once_and_no_point_is_dropped() {
    let setup = Setup::new("scale", SPEC);
    let attempts_path = setup.path("attempts.json");
    let started = Instant::now();
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let (mut loadgen, _) = Proc::spawn(
        LOADGEN,
        &[
            "--coordinator",
            &format!("http://{addr}"),
            "--workers",
            &WORKERS.to_string(),
            "--max-seconds",
            "90",
            "--seed",
            "1",
            "--attempts-out",
            attempts_path.to_str().unwrap(),
        ],
    );

    let (status, stdout) = loadgen.wait_output(Duration::from_secs(120));
    assert!(
        status.success(),
        "loadgen failed ({status}): {stdout}\n{:#?}",
        loadgen.tail(20)
    );
    let (status, summary) = coordinator.wait_output(Duration::from_secs(60));
    assert!(
        status.success(),
        "coordinator failed ({status}): {:#?}",
        coordinator.tail(30)
    );
    assert!(summary.contains("best_lr"), "summary on stdout: {summary}");
    let line: Value = serde_json::from_str(
        stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .expect("a JSON line on stdout"),
    )
    .unwrap_or_else(|e| panic!("loadgen stdout is not one JSON line ({e}): {stdout}"));
    eprintln!("loadgen: {line}");
    eprintln!("whole run: {:.1} s", started.elapsed().as_secs_f64());

    // Every simulated worker connected, worked, and was released by the coordinator.
    assert_eq!(line["workers"], WORKERS);
    assert_eq!(line["sessions_opened"], WORKERS, "{line}");
    assert_eq!(line["released"], WORKERS, "{line}");
    assert_eq!(line["errors"], 0, "{line}");
    assert_eq!(line["protocol_surprises"], 0, "{line}");
    assert_eq!(line["timed_out"], false);
    let points_sent = line["points_sent"].as_u64().unwrap();
    assert!(points_sent > 0);

    let store = Store::open(Path::new(&setup.db)).unwrap();
    let sweep = store.latest_sweep().unwrap().expect("the sweep is stored");
    assert_eq!(sweep.status.as_str(), "completed");
    let stored_total = store.point_count(&sweep.sweep_id).unwrap();
    let trials = store.trials(&sweep.sweep_id).unwrap();
    assert_eq!(trials.len(), 547);

    // Every trial ended, and the large rates were pruned for divergence.
    let statuses: HashMap<u64, (&str, Option<&str>)> = trials
        .iter()
        .map(|t| {
            (
                t.id,
                (t.status.as_str(), t.prune_reason.map(|r| r.as_str())),
            )
        })
        .collect();
    for t in &trials {
        assert!(
            ["completed", "pruned", "cancelled", "failed"].contains(&t.status.as_str()),
            "trial {} (lr {}) ended {}",
            t.id,
            t.lr,
            t.status.as_str()
        );
    }
    let diverged: Vec<_> = trials
        .iter()
        .filter(|t| {
            t.status.as_str() == "pruned" && t.prune_reason.is_some_and(|r| r.is_divergence())
        })
        .collect();
    assert!(!diverged.is_empty(), "no trial was pruned as diverged");
    // (Streaming as fast as it can, a worker may have sent its whole budget before the stop
    // order reached it: no assertion on the steps.)
    assert!(diverged.iter().all(|t| t.lr > 0.5), "{diverged:?}");
    // Stable rates ran their whole budget.
    assert!(trials
        .iter()
        .filter(|t| t.lr <= 0.5)
        .all(|t| t.status.as_str() == "completed" && t.steps == t.budget));
    // Per attempt: points of completed attempts are all stored; of stopped ones, at least those
    // sent before the stop order arrived (and never more than were sent).
    let attempts: Vec<Value> = serde_json::from_value(read_json(&attempts_path)).unwrap();
    let mut accounted = 0;
    let mut sent_total = 0;
    for a in &attempts {
        let (trial, attempt) = (a["trial"].as_u64().unwrap(), a["attempt"].as_u64().unwrap());
        let sent = a["sent"].as_u64().unwrap();
        let before_stop = a["sent_before_stop"].as_u64().unwrap();
        let stored = store
            .points(&sweep.sweep_id, trial, attempt as u32)
            .unwrap()
            .len() as u64;
        let (status, _) = statuses[&trial];
        if a["stop_reason"].is_null() {
            assert!(
                a["completed"] == true,
                "attempt neither completed nor stopped: {a}"
            );
            assert_eq!(status, "completed", "{a}");
            assert_eq!(stored, sent, "completed attempt lost points: {a}");
        } else {
            assert!(
                (before_stop..=sent).contains(&stored),
                "stopped attempt: {stored} stored: {a}"
            );
        }
        accounted += stored;
        sent_total += sent;
    }
    assert_eq!(
        sent_total, points_sent,
        "attempt records add up to the total"
    );
    // A TrialCompleted may cross the stop order of a trial pruned on its last batch: those count
    // as stopped.
    let completed_clean = attempts
        .iter()
        .filter(|a| a["completed"] == true && a["stop_reason"].is_null())
        .count();
    assert_eq!(
        completed_clean,
        trials
            .iter()
            .filter(|t| t.status.as_str() == "completed")
            .count()
    );
    assert_eq!(
        accounted, stored_total,
        "points stored for attempts the loadgen never ran"
    );
    // Stopped attempts' points are kept too (the coordinator stores what arrives for the current
    // attempt even after its stop order), and the loadgen sends nothing after a stop: all of it.
    assert_eq!(stored_total, points_sent, "{line}");

    let latency = &line["prune_latency_ms"];
    assert!(latency["n"].as_u64().unwrap() > 0, "{line}");
    assert!(latency["p50"].as_f64().is_some() && line["dispatch_latency_ms"]["p50"].is_number());

    let report = setup.report();
    assert_eq!(report["outcome"], "completed");
    let best = report["best_lr"].as_f64().expect("a best rate");
    // The synthetic loss floor is lowest at lr 0.1.
    assert!((0.08..=0.125).contains(&best), "best_lr {best}");
}
