//! Who may talk to the coordinator: the shared-secret token and TLS, with real processes.

use std::time::Duration;

use lrsweep_tests::{Proc, Setup};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");
const TOKEN: &str = "correct-horse-battery-staple";

const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-2
max_lr = 10.0
rounds = 1
steps = [100]
data_fraction = [0.5]
replicates = 1

[trainer]
model = { kind = "softmax" }
"#;

/// How long a log line that must come may take.
const WAIT: Duration = Duration::from_secs(30);

/// A string field of a log line, "" when absent.
fn text<'a>(line: &'a serde_json::Value, field: &str) -> &'a str {
    line[field].as_str().unwrap_or_default()
}

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
    // A refused token ends the worker: retrying cannot fix it (exit 1).
    let (status, _) = intruder.wait_output(Duration::from_secs(30));
    intruder.assert_exit(status, 1);
    assert!(
        all_logs(&intruder).contains("token"),
        "{}",
        all_logs(&intruder)
    );
    let (mut anonymous, _) = Proc::spawn(WORKER, &["--coordinator", &url]);
    let (status, _) = anonymous.wait_output(Duration::from_secs(30));
    anonymous.assert_exit(status, 1);
    assert_eq!(coordinator.events("unauthenticated").len(), 2);

    let (mut worker, _) = Proc::spawn(
        WORKER,
        &["--coordinator", &url, "--token", TOKEN, "--name", "trusted"],
    );
    let (status, _) = coordinator.wait_output(Duration::from_secs(120));
    coordinator.assert_exit(status, 0);
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    worker.assert_exit(status, 0);
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
    coordinator.assert_exit(status, 0);
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    worker.assert_exit(status, 0);
    let report = setup.report();
    let trials = report["trials"].as_array().unwrap();
    assert!(
        trials.iter().all(|t| t["worker"] == "encrypted"),
        "{trials:#?}"
    );
    // The plain worker is told why, and the coordinator logs the handshakes it refused.
    let line = plain.wait_for_event("coordinator_unreachable", WAIT, |l| {
        text(l, "hint").contains("use https://")
    });
    assert!(!text(&line, "error").is_empty(), "{line}");
    let refused = coordinator.wait_for_event("tls_handshake_failed", WAIT, |l| {
        text(l, "hint").contains("http://")
    });
    assert!(
        text(&refused, "peer").starts_with("127.0.0.1:"),
        "{refused}"
    );
    let _ = plain.child.kill();
}

/// A self-signed CA certificate as the server's own, as `openssl req -x509` makes by default:
/// rustls refuses it (CaUsedAsEndEntity), and both sides say so.
#[test]
fn a_ca_certificate_as_the_coordinators_own_is_explained_on_both_sides() {
    let setup = Setup::new("tls-ca", SPEC);
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let ca = params.self_signed(&key).unwrap();
    let (cert, key_file) = (setup.path("ca.pem"), setup.path("ca-key.pem"));
    std::fs::write(&cert, ca.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let cert = cert.to_str().unwrap();
    let (coordinator, addr) = setup.start_coordinator(
        COORDINATOR,
        &["--tls-cert", cert, "--tls-key", key_file.to_str().unwrap()],
    );
    let (worker, _) = Proc::spawn(
        WORKER,
        &["--coordinator", &format!("https://{addr}"), "--ca", cert],
    );
    let line = worker.wait_for_event("coordinator_unreachable", WAIT, |l| {
        text(l, "error").contains("CaUsedAsEndEntity")
    });
    let hint = text(&line, "hint");
    assert!(
        hint.contains("CA certificate") && hint.contains("README"),
        "{line}"
    );
    let refused = coordinator.wait_for_event("tls_handshake_failed", WAIT, |l| {
        text(l, "peer").starts_with("127.0.0.1:")
    });
    assert!(!text(&refused, "error").is_empty(), "{refused}");
}
