//! The coordinator dies (SIGKILL) or is stopped (SIGTERM) mid-sweep and comes back on the same
//! database: the sweep resumes where it was, completed trials are not rerun, workers find their
//! way back on their own, and the report has every trial exactly once. A resume with another
//! spec is refused. The report can be rebuilt from the database alone. Two narrower cases: a
//! worker given its own trial back after a restart runs it, and a worker told to shut down
//! stops its trial rather than training it to the end.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lrsweep_tests::{
    free_addr, read_json, sigterm, start_coordinator_on, wait_for_stored_points, Proc, Setup,
    SLOW_STEPS,
};
use serde_json::Value;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Sixteen trials (five decades times two replicates, then three refined rates times two) of
/// thousands of MLP steps, a few tenths of a second each: the coordinator can be stopped in the
/// middle of the sweep. No rung pruning, so which trials run does not depend on timing.
const LONG: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-4
max_lr = 1.0
rounds = 2
candidates_per_round = 3
final_below = 2
final_above = 0
steps = [3000, 4000]
data_fraction = [0.5, 1.0]
replicates = 2
eval_every = 100

[pruning]
rule = "none"

[trainer]
model = { kind = "mlp", hidden = [32] }
batch_size = 32
seed = 1
"#;

/// A quick sweep for the report tests.
const SMALL: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 10.0
rounds = 2
candidates_per_round = 3
steps = [100, 200]
data_fraction = [0.5, 1.0]
replicates = 2
eval_every = 20

[trainer]
model = { kind = "mlp", hidden = [16] }
seed = 3
"#;

const SETTLED: [&str; 4] = ["completed", "pruned", "cancelled", "failed"];

/// A worker that retries quickly when its coordinator goes away.
fn worker(addr: &str, name: &str) -> Proc {
    Proc::spawn(
        WORKER,
        &[
            "--coordinator",
            &format!("http://{addr}"),
            "--name",
            name,
            "--max-backoff-ms",
            "300",
        ],
    )
    .0
}

/// Polls `proc`'s logs until `done` holds; panics with its last logs after `timeout`.
fn wait_until(proc: &mut Proc, what: &str, timeout: Duration, done: impl Fn(&Proc) -> bool) {
    let deadline = Instant::now() + timeout;
    while !done(proc) {
        if let Some(status) = proc.child.try_wait().unwrap() {
            // One last look: the lines may have come just before the exit.
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                done(proc),
                "exited ({status}) before {what}: {:#?}",
                proc.tail(30)
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}: {:#?}",
            proc.tail(30)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One line per log record: time, event and the fields that tell trials and workers apart.
fn brief(proc: &Proc, last: usize) -> String {
    proc.tail(last)
        .iter()
        .map(|v| {
            let mut line = format!(
                "{} {}",
                v["timestamp"].as_str().unwrap_or(""),
                v["event"].as_str().unwrap_or("")
            );
            for key in [
                "trial",
                "attempt",
                "worker",
                "name",
                "worker_id",
                "resumed",
                "reason",
                "error",
                "raw",
            ] {
                // Worker trial events carry the trial in their span.
                let value = if v[key].is_null() {
                    &v["span"][key]
                } else {
                    &v[key]
                };
                if !value.is_null() {
                    line += &format!(" {key}={value}");
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits for the coordinator to exit; on timeout kills it and shows its and the workers' logs.
fn finish(
    coordinator: &mut Proc,
    workers: &[&Proc],
    timeout: Duration,
) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + timeout;
    while coordinator.child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = coordinator.child.kill();
            let mut text = format!(
                "coordinator did not finish within {timeout:?}\n--- coordinator\n{}",
                brief(coordinator, 40)
            );
            for w in workers {
                text += &format!("\n--- worker\n{}", brief(w, 40));
            }
            panic!("{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    coordinator.wait_output(Duration::from_secs(5))
}

/// `trial` field of each event named `event`.
fn trial_ids(proc: &Proc, event: &str) -> Vec<u64> {
    proc.events(event)
        .iter()
        .map(|e| {
            e["trial"]
                .as_u64()
                .unwrap_or_else(|| panic!("no trial id: {e}"))
        })
        .collect()
}

/// Checks that the report's trials are exactly ids 0..n, each once, and that the total agrees
/// with the trials' steps; returns the trials by id.
fn trials_exactly_once(report: &Value, context: &str) -> BTreeMap<u64, Value> {
    let trials = report["trials"]
        .as_array()
        .unwrap_or_else(|| panic!("{context}: no trials array: {report:#}"));
    let ids: Vec<u64> = trials.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (0..trials.len() as u64).collect();
    assert_eq!(
        ids, expected,
        "{context}: trial ids not exactly 0..n, each once"
    );
    // total_steps counts every step run, lost attempts included: the sum of the trials' final
    // steps when no attempt was lost (rerun, or re-queued), at least that otherwise.
    let steps: u64 = trials.iter().map(|t| t["steps"].as_u64().unwrap()).sum();
    let total = report["total_steps"].as_u64().unwrap();
    let lost_work = |t: &&Value| {
        let attempts = t["attempts"].as_u64().unwrap();
        attempts > 1 || (attempts == 1 && t["status"] == "queued")
    };
    if !trials.iter().any(|t| lost_work(&t)) {
        assert_eq!(
            total, steps,
            "{context}: total_steps is not the sum of the trials' steps"
        );
    } else {
        assert!(
            total >= steps,
            "{context}: total_steps {total} < the trials' {steps}"
        );
    }
    trials
        .iter()
        .map(|t| (t["id"].as_u64().unwrap(), t.clone()))
        .collect()
}

/// Trials whose status is `running`.
fn running(report: &Value) -> Vec<Value> {
    report["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "running")
        .cloned()
        .collect()
}

fn assert_all_settled(report: &Value, context: &str) {
    for t in report["trials"].as_array().unwrap() {
        let status = t["status"].as_str().unwrap();
        assert!(SETTLED.contains(&status), "{context}: unsettled trial {t}");
    }
}

/// `lrsweep-coordinator report --db DB --report OUT`: exit status, stdout, stderr.
fn rebuild_report(db: &str, out: &Path) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(COORDINATOR)
        .args(["report", "--db", db, "--report", out.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .expect("run the report subcommand");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Everything the coordinator printed outside its JSON logs (its `error: …` line).
fn raw_stderr(proc: &Proc) -> String {
    proc.logs
        .lock()
        .unwrap()
        .iter()
        .filter_map(|v| v["raw"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_clean_error(text: &str, context: &str) {
    assert!(
        !text.contains("panicked") && !text.contains("RUST_BACKTRACE"),
        "{context}: panicked: {text}"
    );
}

/// Starting on `s.db` with another spec than its unfinished sweep's is refused: a non-zero exit
/// before listening, and a message naming the database and the ways out.
fn assert_other_spec_refused(s: &Setup) {
    // Another spec: a different rate range.
    let other = s.path("other.toml");
    std::fs::write(&other, LONG.replace("max_lr = 1.0", "max_lr = 10.0")).unwrap();
    let (mut refused, _) = Proc::spawn(
        COORDINATOR,
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            &s.db,
            "--spec",
            other.to_str().unwrap(),
            "--report",
            s.path("refused.json").to_str().unwrap(),
        ],
    );
    let (status, _) = refused.wait_output(Duration::from_secs(30));
    let message = raw_stderr(&refused);
    assert!(
        !status.success(),
        "a different spec was accepted: {:#?}",
        refused.tail(20)
    );
    assert!(
        refused.events("listening").is_empty() && refused.events("sweep_resumed").is_empty(),
        "{:#?}",
        refused.tail(20)
    );
    assert!(
        message.contains(&s.db),
        "does not name the database: {message}"
    );
    assert!(
        message.contains("without --spec") && message.contains("--db"),
        "does not say the way out: {message}"
    );
    assert_clean_error(&message, "spec mismatch");
    assert!(!s.path("refused.json").exists());
}

#[test]
fn coordinator_killed_mid_sweep_resumes_on_the_same_database() {
    let s = Setup::new("restart-kill", LONG);
    let addr = free_addr();
    let args = [
        "--db",
        &s.db,
        "--spec",
        &s.spec,
        "--report",
        s.report.to_str().unwrap(),
    ];
    let (mut first, _) = start_coordinator_on(COORDINATOR, &addr, &args);
    let mut workers = [worker(&addr, "alpha"), worker(&addr, "beta")];

    wait_until(
        &mut first,
        "3 completed trials",
        Duration::from_secs(60),
        |c| c.events("trial_completed").len() >= 3,
    );
    // What the first incarnation settled, as its logs tell. The pause lets the database writes
    // that follow each of these lines land (they happen under the same lock right after it);
    // a trial settled during the pause is simply not counted here.
    let completed: BTreeMap<u64, u64> = first
        .events("trial_completed")
        .iter()
        .map(|e| (e["trial"].as_u64().unwrap(), e["steps"].as_u64().unwrap()))
        .collect();
    let pruned: BTreeSet<u64> = trial_ids(&first, "trial_pruned").into_iter().collect();
    std::thread::sleep(Duration::from_millis(100));
    first.child.kill().expect("SIGKILL the coordinator");
    first.child.wait().unwrap();
    let first_attempts: BTreeMap<u64, u64> = first
        .events("trial_dispatched")
        .iter()
        .map(|e| (e["trial"].as_u64().unwrap(), e["attempt"].as_u64().unwrap()))
        .collect();
    let first_sweep = workers[0].events("registered")[0]["sweep"].clone();
    assert!(
        first.events("recommendation").is_empty(),
        "the sweep ended before the kill; make LONG longer: {:#?}",
        first.tail(10)
    );

    // The workers notice and keep retrying the same address.
    for w in &mut workers {
        wait_until(w, "coordinator_unreachable", Duration::from_secs(10), |w| {
            !w.events("coordinator_unreachable").is_empty()
        });
    }

    let restarted_at = Instant::now();
    let (mut second, _) = start_coordinator_on(COORDINATOR, &addr, &args);
    let (status, stdout) = finish(
        &mut second,
        &[&workers[0], &workers[1]],
        Duration::from_secs(60),
    );
    let second_took = restarted_at.elapsed();
    assert!(
        status.success(),
        "resumed coordinator failed: {:#?}",
        second.tail(30)
    );
    assert!(stdout.contains("best_lr"), "summary on stdout: {stdout}");
    for w in &mut workers {
        let (status, _) = w.wait_output(Duration::from_secs(30));
        assert!(status.success(), "worker failed: {:#?}", w.tail(20));
        // Registered with the first incarnation, then again with the second, on their own,
        // and the second registration is for the same (resumed) sweep.
        let registered = w.events("registered");
        assert!(
            registered.len() >= 2,
            "worker did not reconnect: {:#?}",
            w.tail(20)
        );
        assert!(
            registered.iter().all(|r| r["sweep"] == first_sweep),
            "worker registered with another sweep: {registered:#?}"
        );
        assert!(
            !w.events("shutdown_received").is_empty(),
            "{:#?}",
            w.tail(10)
        );
    }

    let resumed = second.events("sweep_resumed");
    assert_eq!(resumed.len(), 1, "{:#?}", second.tail(30));
    let done_at_resume = resumed[0]["done"].as_u64().unwrap();
    assert!(
        done_at_resume >= (completed.len() + pruned.len()) as u64,
        "resumed with {done_at_resume} trials done, but {} completed and {} pruned before the kill",
        completed.len(),
        pruned.len()
    );

    let report = s.report();
    assert_eq!(report["outcome"], "completed", "{report:#}");
    let trials = trials_exactly_once(&report, "resumed sweep");
    assert_all_settled(&report, "resumed sweep");
    // None lost: every trial either incarnation dispatched is in the report, and so is every
    // trial the resumed coordinator knew of when it started.
    let dispatched_again = trial_ids(&second, "trial_dispatched");
    for id in first_attempts.keys().chain(&dispatched_again) {
        assert!(trials.contains_key(id), "trial {id} lost: {report:#}");
    }
    assert!(trials.len() as u64 >= resumed[0]["trials"].as_u64().unwrap());
    assert_eq!(
        trials.len(),
        16,
        "LONG plans 5 decades x 2 + a last round of 3 rates x 2"
    );

    // Nothing settled before the kill ran again.
    for (&id, &steps) in &completed {
        let t = &trials[&id];
        assert_eq!(
            t["status"], "completed",
            "trial {id} completed before the kill: {t}"
        );
        assert_eq!(t["steps"].as_u64(), Some(steps), "trial {id}: {t}");
        assert_eq!(t["steps"], t["budget"], "trial {id}: {t}");
        assert_eq!(
            t["attempts"].as_u64(),
            Some(first_attempts[&id]),
            "trial {id} was rerun: {t}"
        );
        assert_eq!(t["attempts"], 1, "trial {id}: {t}");
    }
    for &id in &pruned {
        let t = &trials[&id];
        assert_eq!(
            t["status"], "pruned",
            "trial {id} pruned before the kill: {t}"
        );
        assert_eq!(t["attempts"].as_u64(), Some(first_attempts[&id]), "{t}");
    }
    let rerun: Vec<u64> = dispatched_again
        .iter()
        .copied()
        .filter(|id| completed.contains_key(id) || pruned.contains(id))
        .collect();
    assert!(
        rerun.is_empty(),
        "settled trials dispatched again after the restart: {rerun:?}"
    );
    // The second incarnation did work (the kill really was mid-sweep) and each trial it ran
    // was dispatched once.
    assert!(!dispatched_again.is_empty());
    let unique: BTreeSet<u64> = dispatched_again.iter().copied().collect();
    assert_eq!(
        unique.len(),
        dispatched_again.len(),
        "a trial dispatched twice after the restart: {dispatched_again:?}"
    );

    // The database agrees with the report the sweep wrote.
    let rebuilt_path = s.path("rebuilt.json");
    let (status, _, stderr) = rebuild_report(&s.db, &rebuilt_path);
    assert!(status.success(), "{stderr}");
    assert_eq!(read_json(&rebuilt_path), report);
    eprintln!(
        "kill test: {} completed + {} pruned before the kill, {} dispatched after; \
         second incarnation took {second_took:?}",
        completed.len(),
        pruned.len(),
        dispatched_again.len()
    );
}

#[test]
fn report_is_rebuilt_from_the_database_alone() {
    let s = Setup::new("restart-report", SMALL);
    let (mut c, addr) = s.start_coordinator(COORDINATOR, &[]);
    let mut workers = [worker(&addr, "alpha"), worker(&addr, "beta")];
    let (status, stdout) = finish(&mut c, &[&workers[0], &workers[1]], Duration::from_secs(60));
    assert!(status.success(), "{:#?}", c.tail(30));
    for w in &mut workers {
        assert!(w.wait_output(Duration::from_secs(30)).0.success());
    }
    let written = s.report();
    assert_eq!(written["outcome"], "completed");
    trials_exactly_once(&written, "written report");

    let rebuilt_path = s.path("rebuilt.json");
    let (status, summary, stderr) = rebuild_report(&s.db, &rebuilt_path);
    assert!(status.success(), "report subcommand failed: {stderr}");
    let rebuilt = read_json(&rebuilt_path);
    for key in [
        "sweep_id",
        "outcome",
        "best_lr",
        "best_loss",
        "max_stable_lr",
        "suggested_min_lr",
        "suggested_max_lr",
        "rounds",
        "total_steps",
    ] {
        assert_eq!(rebuilt[key], written[key], "{key} differs");
    }
    assert!(rebuilt["best_lr"].is_number(), "{rebuilt:#}");
    let (a, b) = (
        written["trials"].as_array().unwrap(),
        rebuilt["trials"].as_array().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    let mut loss_diffs = Vec::new();
    for (w, r) in a.iter().zip(b) {
        for key in [
            "id",
            "lr",
            "round",
            "subset",
            "status",
            "prune_reason",
            "steps",
            "budget",
            "worker",
            "attempts",
            "error",
        ] {
            assert_eq!(
                r[key], w[key],
                "trial {}: {key} differs:\n{w}\n{r}",
                w["id"]
            );
        }
        if r["final_loss"] != w["final_loss"] {
            loss_diffs.push(format!(
                "trial {} ({}, {}): final_loss written {} rebuilt {}",
                w["id"], w["status"], w["prune_reason"], w["final_loss"], r["final_loss"]
            ));
        }
    }
    // The summary printed is the one the sweep printed.
    assert_eq!(summary, stdout);

    // A missing database: a clear error naming it, and no file created in its place.
    let missing = s.path("nowhere.db");
    let out = s.path("missing-report.json");
    let (status, _, stderr) = rebuild_report(missing.to_str().unwrap(), &out);
    assert!(!status.success(), "missing db accepted: {stderr}");
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "error does not name the path: {stderr}"
    );
    assert_clean_error(&stderr, "missing db");
    assert!(!missing.exists(), "the report subcommand created the db");
    assert!(!out.exists());

    // A file that is not SQLite at all: refused untouched, without a panic.
    let garbage = s.path("garbage.db");
    let junk = "this is not a database, just text\n".repeat(200);
    std::fs::write(&garbage, &junk).unwrap();
    let (status, _, stderr) = rebuild_report(garbage.to_str().unwrap(), &out);
    assert!(!status.success(), "garbage db accepted: {stderr}");
    assert!(
        stderr.contains(garbage.to_str().unwrap()) && stderr.contains("not an lrsweep database"),
        "unclear error: {stderr}"
    );
    assert_clean_error(&stderr, "garbage db");
    assert_eq!(std::fs::read_to_string(&garbage).unwrap(), junk);
    assert!(!out.exists());

    // An lrsweep database of another schema version. The report subcommand above closed the
    // database cleanly (its WAL folded into the main file), so the SQLite header holds the
    // current state: write user_version (big-endian u32 at offset 60) in a copy.
    let wal = PathBuf::from(format!("{}-wal", s.db));
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL left after a clean close"
    );
    let mut bytes = std::fs::read(&s.db).unwrap();
    assert_eq!(&bytes[..16], b"SQLite format 3\0");
    assert_eq!(
        &bytes[60..64],
        &(lrsweep_coordinator::storage::store::SCHEMA_VERSION as u32).to_be_bytes(),
        "the current schema version expected"
    );
    bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
    let future = s.path("future.db");
    std::fs::write(&future, &bytes).unwrap();
    let (status, _, stderr) = rebuild_report(future.to_str().unwrap(), &out);
    assert!(!status.success(), "db of schema 99 accepted: {stderr}");
    assert!(
        stderr.contains(future.to_str().unwrap()) && stderr.contains("version 99"),
        "unclear error: {stderr}"
    );
    assert_clean_error(&stderr, "schema 99");
    assert!(!out.exists());
    // The sweep itself refuses it the same way, and leaves it as it was.
    let (mut refused, _) = Proc::spawn(
        COORDINATOR,
        &[
            "--listen",
            "127.0.0.1:0",
            "--db",
            future.to_str().unwrap(),
            "--report",
            out.to_str().unwrap(),
        ],
    );
    let (status, _) = refused.wait_output(Duration::from_secs(30));
    let message = raw_stderr(&refused);
    assert!(!status.success(), "{:#?}", refused.tail(10));
    assert!(
        message.contains(future.to_str().unwrap()) && message.contains("version 99"),
        "unclear error: {message}"
    );
    assert_clean_error(&message, "schema 99 run");
    assert_eq!(
        &std::fs::read(&future).unwrap()[60..64],
        &99u32.to_be_bytes()
    );
    assert!(!out.exists());

    // Checked last, so that the checks above run either way: the rebuilt trials carry the
    // same losses, and nothing else differs either.
    assert!(
        loss_diffs.is_empty(),
        "the report rebuilt from the database has other losses:\n{}",
        loss_diffs.join("\n")
    );
    assert_eq!(rebuilt, written);
}

#[test]
fn sigterm_stops_dispatching_tells_workers_and_exits_cleanly() {
    let s = Setup::new("restart-term", LONG);
    let args = [
        "--db",
        &s.db,
        "--spec",
        &s.spec,
        "--report",
        s.report.to_str().unwrap(),
    ];
    let (mut first, addr) = start_coordinator_on(COORDINATOR, "127.0.0.1:0", &args);
    let mut w1 = worker(&addr, "first");
    wait_until(
        &mut first,
        "a completed trial",
        Duration::from_secs(60),
        |c| !c.events("trial_completed").is_empty(),
    );
    // Wait for the next trial to start on the worker, so that one is running at the signal.
    wait_until(&mut w1, "a second trial", Duration::from_secs(30), |w| {
        w.events("trial_started").len() >= 2
    });
    let completed: BTreeSet<u64> = trial_ids(&first, "trial_completed").into_iter().collect();
    sigterm(&first);
    let signalled = Instant::now();
    let (status, _) = first.wait_output(Duration::from_secs(15));
    let coordinator_exit = signalled.elapsed();
    assert!(
        status.success(),
        "coordinator failed on SIGTERM: {:#?}",
        first.tail(30)
    );
    assert!(
        coordinator_exit < Duration::from_secs(8),
        "coordinator took {coordinator_exit:?} to stop"
    );
    assert!(!first.events("shutdown_requested").is_empty());
    let (status, _) = w1.wait_output(Duration::from_secs(15));
    let worker_exit = signalled.elapsed();
    assert!(status.success(), "worker failed: {:#?}", w1.tail(20));
    assert!(
        !w1.events("shutdown_received").is_empty(),
        "the worker was not told: {:#?}",
        w1.tail(20)
    );
    assert!(
        w1.events("coordinator_unreachable").is_empty(),
        "the worker was not told, it lost the coordinator: {:#?}",
        w1.tail(20)
    );
    // Dispatching stopped: nothing dispatched after the signal was taken.
    let logs = first.logs.lock().unwrap().clone();
    let stop_at = logs
        .iter()
        .position(|v| v["event"] == "shutdown_requested")
        .unwrap();
    assert!(
        logs[stop_at..]
            .iter()
            .all(|v| v["event"] != "trial_dispatched"),
        "dispatched after the shutdown request: {:#?}",
        &logs[stop_at..]
    );

    let report = s.report();
    assert_eq!(report["outcome"], "interrupted", "{report:#}");
    let trials = trials_exactly_once(&report, "interrupted report");
    for id in &completed {
        assert_eq!(trials[id]["status"], "completed");
    }
    // Checked at the end, so that the resume below is exercised either way.
    let left_running = running(&report);
    // The database says the same as the report written on the way out.
    let rebuilt_path = s.path("rebuilt-interrupted.json");
    let (status, _, stderr) = rebuild_report(&s.db, &rebuilt_path);
    assert!(status.success(), "{stderr}");
    let rebuilt = read_json(&rebuilt_path);
    assert_eq!(rebuilt["outcome"], "interrupted");
    let rebuilt_trials = trials_exactly_once(&rebuilt, "rebuilt interrupted report");
    assert_eq!(rebuilt_trials.len(), trials.len());
    // Settled trials are the same in both; the others have the same status.
    let mut status_diffs = Vec::new();
    for (id, t) in &trials {
        let r = &rebuilt_trials[id];
        if SETTLED.contains(&t["status"].as_str().unwrap()) {
            assert_eq!(r, t, "trial {id}: written and rebuilt differ");
        } else if r["status"] != t["status"] {
            status_diffs.push(format!(
                "trial {id}: written {} rebuilt {}",
                t["status"], r["status"]
            ));
        }
    }

    // An interrupted sweep, like a crashed one, is not resumed with another spec.
    assert_other_spec_refused(&s);

    // Restarted on the same database (without --spec: the stored one is used), with a new
    // worker: the sweep resumes and completes.
    let (mut second, addr) = start_coordinator_on(
        COORDINATOR,
        "127.0.0.1:0",
        &["--db", &s.db, "--report", s.report.to_str().unwrap()],
    );
    let mut w2 = worker(&addr, "second");
    let restarted = Instant::now();
    let (status, _) = finish(&mut second, &[&w2], Duration::from_secs(60));
    let second_took = restarted.elapsed();
    assert!(status.success(), "{:#?}", second.tail(30));
    assert!(w2.wait_output(Duration::from_secs(30)).0.success());
    assert_eq!(second.events("sweep_resumed").len(), 1);
    let report = s.report();
    assert_eq!(report["outcome"], "completed", "{report:#}");
    let trials = trials_exactly_once(&report, "resumed report");
    assert_all_settled(&report, "resumed report");
    for id in &completed {
        assert_eq!(trials[id]["status"], "completed", "{}", trials[id]);
        assert_eq!(trials[id]["attempts"], 1, "{}", trials[id]);
        assert_eq!(trials[id]["worker"], "first", "{}", trials[id]);
    }
    let again: Vec<u64> = trial_ids(&second, "trial_dispatched")
        .into_iter()
        .filter(|id| completed.contains(id))
        .collect();
    assert!(again.is_empty(), "completed trials rerun: {again:?}");
    eprintln!(
        "sigterm test: coordinator exit {coordinator_exit:?}, worker exit {worker_exit:?} \
         after the signal; resumed sweep took {second_took:?}"
    );
    // Checked last, so that the resume above is exercised either way. An orderly stop leaves
    // no trial marked as still running: the report written on the way out agrees with the
    // database, which re-queues what was running.
    assert!(
        left_running.is_empty(),
        "the interrupted report shows trials as still running after the coordinator exited \
         (the database, rebuilt: {status_diffs:?}): {left_running:#?}"
    );
    assert!(
        status_diffs.is_empty(),
        "the interrupted report and the one rebuilt from the database disagree: {status_diffs:?}"
    );
}

#[test]
fn spec_mismatch_on_resume_is_refused() {
    let s = Setup::new("restart-mismatch", LONG);
    let (mut first, addr) = s.start_coordinator(COORDINATOR, &[]);
    let mut w = worker(&addr, "alpha");
    wait_until(
        &mut first,
        "a completed trial",
        Duration::from_secs(60),
        |c| !c.events("trial_completed").is_empty(),
    );
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    w.child.kill().unwrap();
    w.child.wait().unwrap();
    let before = s.path("before.json");
    let (status, _, stderr) = rebuild_report(&s.db, &before);
    assert!(status.success(), "{stderr}");

    assert_other_spec_refused(&s);

    // The refused start changed nothing.
    let after = s.path("after.json");
    let (status, _, stderr) = rebuild_report(&s.db, &after);
    assert!(status.success(), "{stderr}");
    assert_eq!(read_json(&after), read_json(&before));
    assert_eq!(read_json(&after)["outcome"], "interrupted");
}

/// After a restart the trial a worker was running when the coordinator died is re-queued first,
/// so the worker, reconnecting alone, gets the same trial back (attempt 2) while its attempt 1
/// is still finishing its current step. The new attempt must run to the end.
#[test]
fn a_trial_given_back_to_its_worker_after_a_restart_runs_to_the_end() {
    let s = Setup::new("restart-same-trial", &SLOW_STEPS.replace("STEPS", "60"));
    let addr = free_addr();
    let args = [
        "--db",
        &s.db,
        "--spec",
        &s.spec,
        "--report",
        s.report.to_str().unwrap(),
    ];
    let (mut first, _) = start_coordinator_on(COORDINATOR, &addr, &args);
    let mut w = worker(&addr, "solo");
    wait_until(&mut w, "a started trial", Duration::from_secs(30), |w| {
        !w.events("trial_started").is_empty()
    });
    // Kill the coordinator once the trial's first points are stored, well short of its end.
    wait_for_stored_points(&s.db, 1, Duration::from_secs(30));
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    assert!(
        first.events("trial_completed").is_empty(),
        "{}",
        brief(&first, 20)
    );

    let (mut second, _) = start_coordinator_on(COORDINATOR, &addr, &args);
    let (status, _) = finish(&mut second, &[&w], Duration::from_secs(30));
    assert!(status.success(), "{}", brief(&second, 30));
    let (status, _) = w.wait_output(Duration::from_secs(30));
    assert!(status.success(), "{}", brief(&w, 30));
    let report = s.report();
    assert_eq!(report["outcome"], "completed");
    let trials = trials_exactly_once(&report, "report");
    assert_all_settled(&report, "report");
    let t = &trials[&0];
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["attempts"], 2, "{t}");
    assert_eq!(t["steps"], t["budget"], "{t}");
    assert_eq!(t["worker"], "solo", "{t}");
}

/// A worker told to shut down (the coordinator got SIGTERM) stops the trial it is training and
/// exits at once, rather than training it to the end for nobody.
#[test]
fn a_worker_told_to_shut_down_stops_its_trial_and_exits_promptly() {
    // One trial of 2000 steps takes most of a minute.
    let s = Setup::new("restart-shutdown", &SLOW_STEPS.replace("STEPS", "2000"));
    let (mut c, addr) = s.start_coordinator(COORDINATOR, &[]);
    let mut w = worker(&addr, "solo");
    wait_until(&mut w, "a started trial", Duration::from_secs(30), |w| {
        !w.events("trial_started").is_empty()
    });
    wait_for_stored_points(&s.db, 1, Duration::from_secs(30));
    sigterm(&c);
    let (status, _) = c.wait_output(Duration::from_secs(15));
    assert!(status.success(), "{}", brief(&c, 20));
    wait_until(&mut w, "shutdown_received", Duration::from_secs(5), |w| {
        !w.events("shutdown_received").is_empty()
    });
    let told = Instant::now();
    let limit = Duration::from_secs(5);
    while w.child.try_wait().unwrap().is_none() {
        if told.elapsed() > limit {
            let _ = w.child.kill();
            panic!(
                "the worker was still running {limit:?} after shutdown_received \
                 (its trial keeps training):\n{}",
                brief(&w, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = w.wait_output(Duration::from_secs(1));
    assert!(status.success(), "{}", brief(&w, 20));
    assert!(
        w.events("trial_finished").is_empty(),
        "the trial was trained to the end after the shutdown: {}",
        brief(&w, 20)
    );
}
