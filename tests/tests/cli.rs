//! The binaries' outer surface: every documented `LRSWEEP_*` variable takes effect without its
//! flag, and `report --sweep ID` rebuilds the report of that sweep, not the latest.

use std::process::Command;
use std::time::Duration;

use lrsweep_tests::{free_addr, read_json, Proc, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");
const WAIT: Duration = Duration::from_secs(120);

/// Three short softmax trials; `STEPS` marks the budget a test can recognise.
const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-2
max_lr = 1.0
rounds = 1
steps = [STEPS]
data_fraction = [1.0]
replicates = 1
eval_every = 5

[trainer]
model = { kind = "softmax" }
"#;

/// Runs `bin` with `args` and `env`, returning (exit code, stdout and stderr together).
fn run(bin: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(bin)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (out.status.code(), text)
}

#[test]
fn every_documented_variable_takes_effect_without_its_flag() {
    let setup = Setup::new("env", &SPEC.replace("STEPS", "17"));
    let listen = free_addr();
    let report = setup.path("env-report.json");
    let db = setup.path("env.db");
    let coordinator_env = [
        ("LRSWEEP_SPEC", setup.spec.as_str()),
        ("LRSWEEP_LISTEN", listen.as_str()),
        ("LRSWEEP_REPORT", report.to_str().unwrap()),
        ("LRSWEEP_DB", db.to_str().unwrap()),
        ("LRSWEEP_TOKEN", "env-secret"),
        ("LRSWEEP_LOG_FORMAT", "json"),
    ];
    // No flags at all: JSON lines on stderr are LRSWEEP_LOG_FORMAT's doing.
    let (mut coordinator, _) = Proc::spawn_env(COORDINATOR, &[], &coordinator_env);
    let listening = coordinator.wait_for_event("listening", WAIT, |_| true);
    assert_eq!(listening["addr"], listen.as_str(), "{listening}");
    let url = format!("http://{listen}");

    // LRSWEEP_COORDINATOR without LRSWEEP_TOKEN: refused, so the token is the coordinator's.
    let (code, text) = run(
        WORKER,
        &[],
        &[
            ("LRSWEEP_COORDINATOR", &url),
            ("LRSWEEP_GIVE_UP_AFTER", "30s"),
        ],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("token"), "{text}");

    let (mut worker, _) = Proc::spawn_env(
        WORKER,
        &[],
        &[
            ("LRSWEEP_COORDINATOR", &url),
            ("LRSWEEP_WORKER_NAME", "env-worker"),
            ("LRSWEEP_SLOTS", "2"),
            ("LRSWEEP_TOKEN", "env-secret"),
            ("LRSWEEP_LOG_FORMAT", "json"),
        ],
    );
    let (status, _) = coordinator.wait_output(WAIT);
    coordinator.assert_exit(status, 0);
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    worker.assert_exit(status, 0);
    let registered = coordinator.wait_for_event("worker_registered", WAIT, |_| true);
    assert_eq!(registered["name"], "env-worker", "{registered}");
    assert_eq!(registered["slots"], 2, "{registered}");
    assert!(!worker.events("registered").is_empty());
    let written = read_json(&report);
    let trials = written["trials"].as_array().unwrap();
    assert!(!trials.is_empty());
    assert!(
        trials
            .iter()
            .all(|t| t["budget"] == 17 && t["worker"] == "env-worker"),
        "{trials:#?}"
    );
    assert!(db.exists(), "LRSWEEP_DB not used");

    // The variables whose effect is a refusal or a file read: each error names what the
    // variable said, so the variable was read.
    let nowhere = setup.path("absent.pem");
    let nowhere = nowhere.to_str().unwrap();
    let db2 = setup.path("second.db");
    let base = [
        ("LRSWEEP_LISTEN", "127.0.0.1:0"),
        ("LRSWEEP_DB", db2.to_str().unwrap()),
        ("LRSWEEP_SPEC", setup.spec.as_str()),
    ];
    for (extra, args, code, needle) in [
        (vec![("LRSWEEP_LEASE_MS", "soon")], vec![], 2, "soon"),
        (
            vec![("LRSWEEP_TLS_CERT", nowhere), ("LRSWEEP_TLS_KEY", nowhere)],
            vec![],
            1,
            nowhere,
        ),
        (
            vec![("LRSWEEP_WORKER_BIN", nowhere)],
            vec!["--local-workers", "1"],
            1,
            nowhere,
        ),
    ] {
        let env: Vec<_> = base.iter().copied().chain(extra).collect();
        let (got, text) = run(COORDINATOR, &args, &env);
        assert_eq!(got, Some(code), "{env:?}: {text}");
        assert!(text.contains(needle), "{env:?}: {text}");
    }
    for (env, code, needle) in [
        (
            vec![
                ("LRSWEEP_CA", nowhere),
                ("LRSWEEP_COORDINATOR", "https://127.0.0.1:1"),
            ],
            1,
            nowhere,
        ),
        (
            vec![("LRSWEEP_DEVICES", "gpu-a,gpu-b"), ("LRSWEEP_SLOTS", "3")],
            2,
            "--slots 3 with 2 --devices",
        ),
        // Nobody listens on port 1: the worker gives up after a second and exits 0.
        (
            vec![
                ("LRSWEEP_GIVE_UP_AFTER", "1s"),
                ("LRSWEEP_COORDINATOR", "http://127.0.0.1:1"),
            ],
            0,
            "giving_up",
        ),
    ] {
        let (got, text) = run(WORKER, &[], &env);
        assert_eq!(got, Some(code), "{env:?}: {text}");
        assert!(text.contains(needle), "{env:?}: {text}");
    }
}

#[test]
fn report_with_sweep_rebuilds_that_sweep_not_the_latest() {
    let setup = Setup::new("report-sweep", &SPEC.replace("STEPS", "11"));
    let sweep_of = |report: &serde_json::Value| report["sweep_id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    // Two finished sweeps in one database, with different budgets to tell them apart.
    for steps in ["11", "13"] {
        std::fs::write(&setup.spec, SPEC.replace("STEPS", steps)).unwrap();
        let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
        let (mut worker, _) = Proc::spawn(
            WORKER,
            &["--coordinator", &format!("http://{addr}"), "--name", "w"],
        );
        let (status, _) = coordinator.wait_output(WAIT);
        coordinator.assert_exit(status, 0);
        let (status, _) = worker.wait_output(Duration::from_secs(30));
        worker.assert_exit(status, 0);
        ids.push(sweep_of(&setup.report()));
    }
    assert_ne!(ids[0], ids[1]);
    let out = setup.path("rebuilt.json");
    let out_arg = out.to_str().unwrap();
    for (sweep, budget) in [
        (Some(ids[0].as_str()), 11),
        (Some(ids[1].as_str()), 13),
        (None, 13),
    ] {
        let mut args = vec!["report", "--db", &setup.db, "--report", out_arg];
        args.extend(sweep.iter().flat_map(|id| ["--sweep", *id]));
        let (code, text) = run(COORDINATOR, &args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {text}");
        let rebuilt = read_json(&out);
        assert_eq!(sweep_of(&rebuilt), sweep.unwrap_or(&ids[1]), "{args:?}");
        let trials = rebuilt["trials"].as_array().unwrap();
        assert!(
            trials.iter().all(|t| t["budget"] == budget),
            "{args:?}: {trials:#?}"
        );
    }
    let (code, text) = run(
        COORDINATOR,
        &[
            "report",
            "--db",
            &setup.db,
            "--report",
            out_arg,
            "--sweep",
            "no-such-sweep",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no such sweep"), "{text}");
}
