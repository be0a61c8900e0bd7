//! The gRPC health service (`grpc.health.v1`) on the coordinator's port, asked the way probes ask
//! it: through `lrsweep-coordinator health`, without the worker token. SERVING while the sweep
//! runs, NOT_SERVING from the moment the coordinator stops dispatching, gone with the server.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{Hello, RegisterRequest, WorkerMessage};
use lrsweep_tests::{sigterm, Setup};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::metadata::MetadataValue;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const TOKEN: &str = "s3cret-for-workers-only";

const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-3
max_lr = 1.0
rounds = 1
steps = [100]
"#;

/// `lrsweep-coordinator health --addr http://ADDR [--service NAME]`, with no token anywhere.
fn health(addr: &str, service: &str) -> Output {
    Command::new(COORDINATOR)
        .args([
            "health",
            "--addr",
            &format!("http://{addr}"),
            "--service",
            service,
        ])
        .env_remove("LRSWEEP_TOKEN")
        .output()
        .expect("run the health subcommand")
}

fn answer(output: &Output) -> String {
    format!(
        "exit {:?}, stdout {:?}, stderr {:?}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_serving_without_the_token_then_not_serving_at_shutdown() {
    let setup = Setup::new("health", SPEC);
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--token", TOKEN]);

    for service in ["", "lrsweep.v1.Coordinator"] {
        let out = health(&addr, service);
        assert!(out.status.success(), "{service:?}: {}", answer(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");
    }
    let out = health(&addr, "no.such.Service");
    assert!(!out.status.success(), "{}", answer(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not registered"),
        "{}",
        answer(&out)
    );
    // The health service is open; the coordinator's own service still wants the token.
    let mut anonymous = CoordinatorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let refused = anonymous.register(register()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // A worker that never hangs up holds the coordinator in its shutdown drain (5 s), the
    // window in which probes must already hear NOT_SERVING.
    let bearer: MetadataValue<_> = format!("Bearer {TOKEN}").parse().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        CoordinatorClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        });
    let worker_id = client
        .register(register())
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(WorkerMessage {
        kind: Some(Up::Hello(Hello { worker_id })),
    })
    .unwrap();
    let _inbound = client
        .session(UnboundedReceiverStream::new(rx))
        .await
        .unwrap();

    sigterm(&coordinator);
    let deadline = Instant::now() + Duration::from_secs(4);
    let out = loop {
        let out = tokio::task::spawn_blocking({
            let addr = addr.clone();
            move || health(&addr, "lrsweep.v1.Coordinator")
        })
        .await
        .unwrap();
        if !out.status.success() || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOT_SERVING"),
        "{}",
        answer(&out)
    );
    assert!(!health(&addr, "").status.success());

    // The health service goes with the server: no answer at all once the coordinator is gone.
    drop(tx);
    let (status, _) = coordinator.wait_output(Duration::from_secs(30));
    assert!(status.success(), "{:#?}", coordinator.tail(20));
    let out = health(&addr, "");
    assert!(!out.status.success(), "{}", answer(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("SERVING"));
}

fn register() -> RegisterRequest {
    RegisterRequest {
        name: "probe-test".into(),
        host: "test".into(),
        slots: 1,
        instance: "probe-test-1".into(),
        running: Vec::new(),
    }
}
