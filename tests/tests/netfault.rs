//! Network partitions between hosts, made real with network namespaces: a process in a namespace
//! of its own reaches the others over a veth pair, and setting the host's end of the pair down
//! cuts it off without killing anything (its packets go nowhere, its connections hang), until
//! the link comes back up.
//!
//! - A worker cut off for longer than its lease: its trial runs again on the other worker, and
//!   when the worker comes back, what it sent late for the superseded attempt is dropped. The
//!   database holds, for that trial, the lost attempt's points as they stood when it was marked
//!   lost, the accepted attempt's one per step, and no step twice.
//! - The coordinator cut off from every worker for less than the lease: the workers keep their
//!   trials, reconnect, and stream on; the sweep completes with nothing run twice.
//!
//! Root only (`ip netns`, veth): skipped with a message otherwise.

use std::path::Path;
use std::time::{Duration, Instant};

use lrsweep_tests::privileged::{root_with, run, run_quietly};
use lrsweep_tests::sweep_check::{check_finished, finish_without_reruns, AttemptRow, SweepDb};
use lrsweep_tests::{
    start_coordinator_under, start_retrying_worker, wait_sweep_end, Proc, Setup, FAULT_SPEC,
};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

const MINUTE: Duration = Duration::from_secs(60);

/// A network namespace joined to this one by a veth pair on 10.201.`subnet`.0/30: the host's end
/// is .1, the namespace's .2. Removed on drop.
struct Netns {
    name: String,
    host_end: String,
    host_ip: String,
    ns_ip: String,
}

impl Netns {
    fn new(tag: &str, subnet: u8) -> Netns {
        let id = std::process::id() % 100_000;
        let ns = Netns {
            name: format!("lrsweep-{tag}-{id}"),
            // Interface names have at most 15 bytes.
            host_end: format!("lrs{tag}{id}"),
            host_ip: format!("10.201.{subnet}.1"),
            ns_ip: format!("10.201.{subnet}.2"),
        };
        let inner = format!("lrs{tag}{id}n");
        run("ip", &["netns", "add", &ns.name]);
        run(
            "ip",
            &[
                "link",
                "add",
                &ns.host_end,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
            ],
        );
        run("ip", &["link", "set", &inner, "netns", &ns.name]);
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", ns.host_ip),
                "dev",
                &ns.host_end,
            ],
        );
        run("ip", &["link", "set", &ns.host_end, "up"]);
        let (n, ns_addr) = (ns.name.as_str(), format!("{}/30", ns.ns_ip));
        run("ip", &["-n", n, "addr", "add", &ns_addr, "dev", &inner]);
        run("ip", &["-n", n, "link", "set", &inner, "up"]);
        run("ip", &["-n", n, "link", "set", "lo", "up"]);
        ns
    }

    /// The command prefix that runs a program inside.
    fn exec(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }

    fn partition(&self) {
        run("ip", &["link", "set", &self.host_end, "down"]);
    }

    fn heal(&self) {
        run("ip", &["link", "set", &self.host_end, "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        run_quietly("ip", &["link", "del", &self.host_end]);
        run_quietly("ip", &["netns", "del", &self.name]);
    }
}

fn worker(wrapper: &[&str], addr: &str, name: &str) -> Proc {
    start_retrying_worker(wrapper, WORKER, addr, name)
}

fn coordinator_args<'a>(s: &'a Setup, report: &'a str, lease_ms: &'a str) -> [&'a str; 8] {
    [
        "--spec",
        &s.spec,
        "--db",
        &s.db,
        "--report",
        report,
        "--lease-ms",
        lease_ms,
    ]
}

/// The test's files and its namespace (`tag`, `subnet`: see `Netns`); None, after saying why,
/// where it cannot run.
fn prepare(test: &str, tag: &str, subnet: u8) -> Option<(Setup, Netns)> {
    if !root_with(test, &["ip"]) {
        return None;
    }
    let s = Setup::new(&format!("netfault-{tag}"), FAULT_SPEC);
    Some((s, Netns::new(tag, subnet)))
}

/// Polls the database until `attempt` of `trial` satisfies `done`; returns its row.
fn wait_for_attempt(
    db: &SweepDb,
    trial: u64,
    attempt: u32,
    done: impl Fn(&AttemptRow) -> bool,
) -> AttemptRow {
    let deadline = Instant::now() + MINUTE;
    loop {
        let rows = db.attempts().unwrap();
        let row = rows
            .into_iter()
            .find(|a| (a.trial, a.attempt) == (trial, attempt));
        match row {
            Some(row) if done(&row) => return row,
            row => assert!(
                Instant::now() < deadline,
                "attempt {attempt} of trial {trial}: {row:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_worker_cut_off_past_its_lease_loses_its_trial_and_its_late_points() {
    let test = "a_worker_cut_off_past_its_lease_loses_its_trial_and_its_late_points";
    let Some((s, away)) = prepare(test, "w", 1) else {
        return;
    };
    let report = s.report.display().to_string();
    // The coordinator listens on the host's end of the pair: the namespace reaches it over the
    // veth, the host's own worker over loopback (a local address stays local when its link is
    // down).
    let listen = format!("{}:0", away.host_ip);
    let args = coordinator_args(&s, &report, "4000");
    let (mut c, addr) = start_coordinator_under(&[], COORDINATOR, &listen, &args);
    let mut workers = [
        worker(&away.exec(), &addr, "away"),
        worker(&[], &addr, "home"),
    ];

    let started = workers[0].wait_for_event("trial_started", MINUTE, |_| true);
    let (trial, attempt) = (
        started["span"]["trial"]
            .as_u64()
            .expect("trial in the span"),
        started["span"]["attempt"]
            .as_u64()
            .expect("attempt in the span") as u32,
    );
    // Cut off once some of its points are stored, with the rest of the trial still to come.
    let db = SweepDb::open(Path::new(&s.db)).unwrap();
    wait_for_attempt(&db, trial, attempt, |a| a.points > 0);
    away.partition();
    c.wait_for_event("lease_expired", MINUTE, |e| e["name"] == "away");
    // Once the database says the attempt was lost, it holds every point accepted before.
    let lost = wait_for_attempt(&db, trial, attempt, |a| {
        a.outcome.as_deref() == Some("lost")
    });
    away.heal();
    // Back: it registers again (its old stream carried what it sent meanwhile, if anything).
    workers[0].wait_for_event("registered", MINUTE, |_| true);
    let deadline = Instant::now() + MINUTE;
    while workers[0].events("registered").len() < 2 {
        assert!(Instant::now() < deadline, "{:#?}", workers[0].tail(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_sweep_end(&mut c, &mut workers);

    let finished = check_finished(COORDINATOR, Path::new(&s.db), &s.report)
        .unwrap_or_else(|e| panic!("after the partition: {e}"));
    let attempts = db.attempts().unwrap();
    let of_trial: Vec<_> = attempts.iter().filter(|a| a.trial == trial).collect();
    let late = of_trial.iter().find(|a| a.attempt == attempt).unwrap();
    assert_eq!(
        (late.outcome.as_deref(), late.points),
        (Some("lost"), lost.points),
        "the lost attempt's late points were kept: {of_trial:?}"
    );
    assert!(
        of_trial.len() >= 2,
        "trial {trial} did not run again: {of_trial:?}"
    );
    assert!(lost.points > 0 && lost.points < 20_000, "{lost:?}");
    for a in &attempts {
        assert_eq!(a.points, a.distinct_steps, "a step stored twice: {a:?}");
    }
    let away_events: Vec<String> = workers[0]
        .logs
        .lock()
        .unwrap()
        .iter()
        .map(|v| {
            format!(
                "{} {} {} {}",
                v["event"], v["span"]["trial"], v["span"]["attempt"], v["error"]
            )
        })
        .collect();
    eprintln!("trial {trial}: {of_trial:?}; {finished:?}; away: {away_events:#?}");
}

#[test]
fn workers_keep_their_trials_through_a_short_coordinator_outage() {
    let test = "workers_keep_their_trials_through_a_short_coordinator_outage";
    let Some((s, away)) = prepare(test, "c", 2) else {
        return;
    };
    let report = s.report.display().to_string();
    let listen = format!("{}:0", away.ns_ip);
    // A lease longer than the outage: the workers notice the dead connection (keepalive, 5 s +
    // 5 s) and fail to reconnect well within it.
    let args = coordinator_args(&s, &report, "30000");
    let (mut c, addr) = start_coordinator_under(&away.exec(), COORDINATOR, &listen, &args);
    let mut workers = [worker(&[], &addr, "alpha"), worker(&[], &addr, "beta")];
    for w in &workers {
        w.wait_for_event("trial_started", MINUTE, |_| true);
    }

    away.partition();
    let cut = Instant::now();
    for w in &workers {
        w.wait_for_event("coordinator_unreachable", MINUTE, |_| true);
    }
    let outage = cut.elapsed();
    away.heal();
    let db = Path::new(&s.db);
    let finished = finish_without_reruns(COORDINATOR, &mut c, &mut workers, db, &s.report);
    let reconnected = c.events("worker_reconnected");
    assert!(
        reconnected.iter().any(|e| e["resumed"].as_u64() >= Some(1)),
        "no worker came back to its trial: {reconnected:#?}"
    );
    eprintln!("outage {outage:?}; {finished:?}");
}
