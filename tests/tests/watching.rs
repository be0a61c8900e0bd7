//! Watching a sweep from outside: Prometheus metrics on `--metrics-listen`, scraped while a
//! sweep runs; `status` (and `status --watch` without a terminal) read from the database beside
//! the running coordinator and after it; the per-round progress lines of the log.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_tests::scripted::{batch, Session};
use lrsweep_tests::Setup;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");

const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `probe` until it gives a value, failing with `what` after `PATIENCE`.
fn poll<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!("{what}: never; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// `GET /metrics` over plain HTTP/1.0; the body.
fn scrape(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: lrsweep\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end: {response}"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_string());
    }
    Ok(body.to_string())
}

/// The samples of a scrape by series (`name{labels}`), checking the text format on the way:
/// every sample line is `name{labels} value` (or `name value`), with a HELP and a TYPE line for
/// its family before it.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let (mut typed, mut helped) = (Vec::<String>::new(), Vec::<String>::new());
    let mut samples = BTreeMap::new();
    let word = |rest: &str| rest.split(' ').next().unwrap_or_default().to_string();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.push(word(rest));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(word(rest));
            continue;
        }
        if line == "# EOF" {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not `series value`: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line:?}"));
            for pair in inner.split(',') {
                let (key, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("bad label: {line:?}"));
                assert!(!key.is_empty() && value.len() >= 2, "bad label: {line:?}");
                assert!(value.starts_with('"') && value.ends_with('"'), "{line:?}");
            }
        }
        let family = typed
            .iter()
            .find(|f| name == f.as_str() || name.starts_with(&format!("{f}_")))
            .unwrap_or_else(|| panic!("no TYPE line for {name}:\n{text}"));
        assert!(helped.contains(family), "no HELP line for {family}");
        samples.insert(series.to_string(), value);
    }
    samples
}

/// Scrapes until `ok` holds of the samples; returns them.
fn metrics_until(
    addr: &str,
    what: &str,
    ok: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    poll(what, || {
        let samples = parse(&scrape(addr)?);
        if ok(&samples) {
            Ok(samples)
        } else {
            Err(format!("{samples:?}"))
        }
    })
}

fn sample(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(f64::NAN)
}

/// `lrsweep-coordinator status --db DB [extra]`, stdout piped (not a terminal); its stdout,
/// once it exited 0 within `PATIENCE`.
fn status(db: &str, extra: &[&str]) -> String {
    let mut child = Command::new(COORDINATOR)
        .args(["status", "--db", db])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run status");
    let exit = poll("status exits", || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(exit.success(), "status failed: {err}");
    out
}

/// Runs `status` until its output has every one of `lines`; returns it.
fn status_until(db: &str, lines: &[&str]) -> String {
    poll(&format!("status shows {lines:?}"), || {
        let out = status(db, &[]);
        if lines.iter().all(|l| out.lines().any(|o| o.starts_with(l))) {
            Ok(out)
        } else {
            Err(out)
        }
    })
}

const SCRIPTED_SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 1.0
rounds = 1
steps = [100]
data_fraction = [0.5]
replicates = 1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_follow_a_sweep_while_it_runs() {
    let setup = Setup::new("watch-live", SCRIPTED_SPEC);
    let (mut coordinator, addr) =
        setup.start_coordinator(COORDINATOR, &["--metrics-listen", "127.0.0.1:0"]);
    let metrics = coordinator.wait_for_event("metrics_listening", PATIENCE, |_| true)["addr"]
        .as_str()
        .expect("the metrics address")
        .to_string();
    let mut client = CoordinatorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut worker = Session::open(&mut client, "scripted").await;
    let a = worker.next_assignment().await;

    worker
        .tx
        .send(batch(&a, &(1..=10).collect::<Vec<_>>(), 2.0))
        .unwrap();
    let first = metrics_until(&metrics, "10 points and a worker", |m| {
        sample(m, "lrsweep_trace_points_total") >= 10.0
            && sample(m, "lrsweep_workers_connected") >= 1.0
    });
    assert_eq!(sample(&first, "lrsweep_round"), 0.0);
    assert_eq!(sample(&first, "lrsweep_trials{status=\"running\"}"), 1.0);
    assert!(first
        .keys()
        .any(|k| k.starts_with("lrsweep_build_info{version=")));
    assert!(
        !first.keys().any(|k| k.contains("trial=")),
        "no label names a trial: {first:?}"
    );
    worker
        .tx
        .send(batch(&a, &(11..=20).collect::<Vec<_>>(), 1.9))
        .unwrap();
    let second = metrics_until(&metrics, "more points", |m| {
        sample(m, "lrsweep_trace_points_total") > sample(&first, "lrsweep_trace_points_total")
    });
    assert_eq!(sample(&second, "lrsweep_trace_points_total"), 20.0);

    // The database, read beside the running coordinator.
    let live = status_until(
        &setup.db,
        &[
            "workers  1 connected, 1 busy (1 of 1 slots)",
            "round    1 of 1",
        ],
    );
    assert!(
        live.lines().next().unwrap().ends_with("(running)"),
        "{live}"
    );
    assert!(live.contains("\neta      "), "{live}");
    // --watch without a terminal prints once and exits.
    let once = status(&setup.db, &["--watch"]);
    assert_eq!(
        once.lines().filter(|l| l.starts_with("sweep ")).count(),
        1,
        "{once}"
    );

    // The runtime's lag is sampled all along, 100 times a second.
    metrics_until(&metrics, "the runtime's lag sampled", |m| {
        sample(m, "lrsweep_runtime_lag_seconds_count") >= 10.0
    });

    // A NaN prunes the trial: its stop order's latency is measured, its end counted.
    worker.tx.send(batch(&a, &[21], f64::NAN)).unwrap();
    loop {
        let message = tokio::time::timeout(PATIENCE, worker.inbound.message())
            .await
            .expect("a stop order in time")
            .unwrap()
            .expect("stream open");
        if let Some(Down::Stop(stop)) = message.kind {
            assert_eq!(stop.trial_id, a.trial_id);
            break;
        }
    }
    let pruned = metrics_until(&metrics, "the prune counted", |m| {
        // The stop order is handed over once the prune is committed, a moment after it is
        // counted.
        sample(
            m,
            "lrsweep_trials_finished_total{status=\"pruned\",reason=\"nan\"}",
        ) == 1.0
            && sample(m, "lrsweep_stop_order_latency_seconds_count") >= 1.0
    });
    assert_eq!(
        sample(&pruned, "lrsweep_stop_order_latency_seconds_count"),
        1.0
    );
    assert_eq!(
        sample(
            &pruned,
            "lrsweep_stop_order_latency_seconds_bucket{le=\"+Inf\"}"
        ),
        1.0
    );

    // Stability is monotone in the rate: the NaN cancelled the rest of the round, so the sweep
    // is over (with nothing to recommend: the coordinator says so and exits 1).
    let (_, _) = coordinator.wait_output(Duration::from_secs(30));
    coordinator.wait_for_event("sweep_finished", PATIENCE, |_| true);
    drop(worker);
    assert!(
        scrape(&metrics).is_err(),
        "the metrics server stops with the coordinator"
    );
    let after = status(&setup.db, &[]);
    assert!(
        after.lines().next().unwrap().ends_with("(completed)"),
        "{after}"
    );
    assert!(after.contains("workers  0 connected"), "{after}");
    assert!(
        after.contains("eta      unknown (the sweep is not running)"),
        "{after}"
    );
}

const REAL_SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 10.0
rounds = 2
candidates_per_round = 3
steps = [100, 200]
data_fraction = [0.5, 1.0]
replicates = 1
eval_every = 25

[trainer]
model = { kind = "mlp", hidden = [16] }
batch_size = 32
seed = 1
"#;

#[test]
fn a_finished_sweep_shows_every_trial_final_and_logged_its_rounds() {
    let setup = Setup::new("watch-done", REAL_SPEC);
    let (mut coordinator, _) = setup.start_coordinator(
        COORDINATOR,
        &["--local-workers", "2", "--worker-bin", WORKER],
    );
    let (exit, stdout) = coordinator.wait_output(Duration::from_secs(300));
    assert!(exit.success(), "{:#?}", coordinator.tail(20));
    assert!(
        stdout.contains("best_lr"),
        "the summary table stays: {stdout}"
    );

    let report = setup.report();
    let trials = report["trials"].as_array().unwrap().len();
    let rounds = report["rounds"].as_u64().unwrap();
    let out = status(&setup.db, &[]);
    for line in [
        "sweep    ",
        &format!("round    {rounds} of 2"),
        &format!("trials   {trials} of {trials} done: "),
        // Released by the coordinator, both hung up: they left, not lost or disconnected.
        "workers  0 connected, 0 busy (0 of 0 slots), 2 left\n",
        "best     lr ",
        "eta      unknown (the sweep is not running)",
    ] {
        assert!(
            out.lines().any(|l| format!("{l}\n").starts_with(line)),
            "no `{line}`:\n{out}"
        );
    }
    assert!(
        out.lines().next().unwrap().ends_with("(completed)"),
        "{out}"
    );
    assert!(
        !out.contains("queued") && !out.contains("running,"),
        "{out}"
    );

    // A progress line per finished trial (or group of them), named and structured; each round's
    // last one counts all of its trials.
    let progress = coordinator.events("round_progress");
    for round in 0..rounds {
        let last = progress
            .iter()
            .rfind(|p| p["round"] == round)
            .unwrap_or_else(|| panic!("no progress for round {round}: {progress:#?}"));
        assert_eq!(last["done"], last["trials"], "{last}");
        let message = last["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("round {}/2: ", round + 1))
                && message.contains(" trials done ("),
            "{message}"
        );
    }
    assert!(
        progress.len() <= trials,
        "not one per trace batch: {progress:#?}"
    );
}
