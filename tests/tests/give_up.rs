//! `--give-up-after`: a worker in a batch job must end once there is no coordinator to work for,
//! counted from its last contact, not from its start.

use std::time::{Duration, Instant};

use lrsweep_tests::{free_addr, Proc, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

/// Trials of a few seconds each, so the coordinator is killed while the worker trains.
const LONG: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-4
max_lr = 1.0
rounds = 1
steps = [200000]
"#;

fn worker(addr: &str, give_up_after: &str) -> Proc {
    Proc::spawn(
        WORKER,
        &[
            "--coordinator",
            &format!("http://{addr}"),
            "--name",
            "batch-worker",
            "--max-backoff-ms",
            "300",
            "--give-up-after",
            give_up_after,
        ],
    )
    .0
}

#[test]
fn a_worker_that_never_finds_a_coordinator_gives_up_and_exits_0() {
    let started = Instant::now();
    let mut w = worker(&free_addr(), "1500ms");
    let (status, _) = w.wait_output(Duration::from_secs(30));
    let took = started.elapsed();
    assert!(status.success(), "{:#?}", w.tail(10));
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(!w.events("coordinator_unreachable").is_empty());
    assert_eq!(w.events("giving_up").len(), 1, "{:#?}", w.tail(10));
}

#[test]
fn the_wait_counts_from_the_coordinator_lost_not_from_the_start() {
    let setup = Setup::new("give-up", LONG);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let mut w = worker(&addr, "2s");
    // Connected for longer than the limit before the coordinator goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.events("trial_started").is_empty() {
        assert!(Instant::now() < deadline, "{:#?}", w.tail(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(w.child.try_wait().unwrap().is_none(), "{:#?}", w.tail(10));

    coordinator.child.kill().unwrap();
    let lost = Instant::now();
    let _ = coordinator.child.wait();
    let (status, _) = w.wait_output(Duration::from_secs(30));
    let alone = lost.elapsed();
    assert!(status.success(), "{:#?}", w.tail(10));
    assert!(alone >= Duration::from_secs(2), "gave up after {alone:?}");
    assert_eq!(w.events("giving_up").len(), 1, "{:#?}", w.tail(10));
}
