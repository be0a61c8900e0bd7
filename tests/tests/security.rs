//! Who may talk to the coordinator: the shared-secret token and TLS, with real processes.

use std::time::Duration;

use lrsweep_tests::{Proc, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");
const TOKEN: &str = "correct-horse-battery-staple";

const SPEC: &str = r#"
[search]
min_lr = 1e-2
max_lr = 10.0
rounds = 1
steps = [100]
data_fraction = [0.5]
replicates = 1

[trainer]
model = { kind = "softmax" }
"#;

fn all_logs(p: &Proc) -> String {
    p.logs
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_wrong_token_is_refused_and_the_right_one_works() {
    let setup = Setup::new("token", SPEC);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--token", TOKEN]);
    let url = format!("http://{addr}");
    let (mut intruder, _) = Proc::spawn(WORKER, &["--coordinator", &url, "--token", "guess"]);
    let (status, _) = intruder.wait_output(Duration::from_secs(30));
    assert!(!status.success(), "a wrong token must end the worker");
    assert!(
        all_logs(&intruder).contains("token"),
        "{}",
        all_logs(&intruder)
    );
    let (mut anonymous, _) = Proc::spawn(WORKER, &["--coordinator", &url]);
    assert!(!anonymous.wait_output(Duration::from_secs(30)).0.success());
    assert_eq!(coordinator.events("unauthenticated").len(), 2);

    let (mut worker, _) = Proc::spawn(
        WORKER,
        &["--coordinator", &url, "--token", TOKEN, "--name", "trusted"],
    );
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(worker.wait_output(Duration::from_secs(30)).0.success());
    let report = std::fs::read_to_string(&setup.report).unwrap();
    assert!(report.contains("\"trusted\""));
    // The secret never reaches a log line.
    for p in [&coordinator, &worker, &intruder] {
        assert!(!all_logs(p).contains(TOKEN));
    }
}

#[test]
fn tls_round_trip_with_a_certificate_made_here() {
    let setup = Setup::new("tls", SPEC);
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = setup.path("cert.pem");
    let key = setup.path("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (mut coordinator, addr) = setup.start_coordinator(
        COORDINATOR,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // Plain text against a TLS server gets nowhere: the worker keeps retrying.
    let (mut plain, _) = Proc::spawn(WORKER, &["--coordinator", &format!("http://{addr}")]);
    let (mut worker, _) = Proc::spawn(
        WORKER,
        &[
            "--coordinator",
            &format!("https://{addr}"),
            "--ca",
            cert.to_str().unwrap(),
            "--name",
            "encrypted",
        ],
    );
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    assert!(worker.wait_output(Duration::from_secs(30)).0.success());
    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    assert!(
        trials.iter().all(|t| t["worker"] == "encrypted"),
        "{trials:#?}"
    );
    assert!(!plain.events("coordinator_unreachable").is_empty());
    let _ = plain.child.kill();
}
