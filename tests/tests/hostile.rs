//! Hostile and broken input over real gRPC: every bad field gets INVALID_ARGUMENT (or NOT_FOUND
//! for unknown ids) with a reason, and NaN losses are data, not errors.

use std::time::Duration;

use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{AssignTrial, Hello, RegisterRequest, TrialProgress};
use lrsweep_tests::scripted::{batch, register, up, Session};
use lrsweep_tests::{Proc, Setup};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");

const SPEC: &str = r#"
[search]
strategy = "coarse-to-fine"
min_lr = 1e-7
max_lr = 10.0
rounds = 1
steps = [100]
data_fraction = [0.5]
replicates = 1
"#;

/// A coordinator on `SPEC` and a client connected to it; the setup and process live as long as
/// the returned values.
async fn coordinator_and_client(tag: &str) -> (Setup, Proc, CoordinatorClient<Channel>) {
    let setup = Setup::new(tag, SPEC);
    let (coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let client = CoordinatorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (setup, coordinator, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_invalid_argument_with_a_reason() {
    let (_setup, _coordinator, mut client) = coordinator_and_client("hostile").await;

    // Registration fields.
    for (request, needle) in [
        (register(""), "name"),
        (
            RegisterRequest {
                slots: 0,
                ..register("w")
            },
            "slots",
        ),
        (
            RegisterRequest {
                name: "x".repeat(10_000),
                ..register("w")
            },
            "name",
        ),
        (
            RegisterRequest {
                running: vec![TrialProgress::default(); 100_000],
                ..register("w")
            },
            "running",
        ),
    ] {
        let status = client.register(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }

    // A session must start with hello, and with an id the coordinator gave out.
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(up(Up::Heartbeat(Default::default()))).unwrap();
    let status = client
        .session(UnboundedReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let (tx, rx) = mpsc::unbounded_channel();
    tx.send(up(Up::Hello(Hello {
        worker_id: "w999".into(),
    })))
    .unwrap();
    let status = client
        .session(UnboundedReceiverStream::new(rx))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Trace batches about trials that are not ours, or with steps going backwards.
    let mut s = Session::open(&mut client, "a").await;
    let a = s.next_assignment().await;
    let unknown = AssignTrial {
        trial_id: 99_999,
        ..a.clone()
    };
    let status = s.rejected_with(batch(&unknown, &[1], 1.0)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("unknown trial"), "{status:?}");

    let mut s = Session::open(&mut client, "b").await;
    let b = s.next_assignment().await;
    let status = s.rejected_with(batch(&b, &[3, 2], 1.0)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("after step"), "{status:?}");

    let mut s = Session::open(&mut client, "c").await;
    let c = s.next_assignment().await;
    let status = s.rejected_with(batch(&c, &[0], 1.0)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let mut s = Session::open(&mut client, "d").await;
    let d = s.next_assignment().await;
    let status = s.rejected_with(batch(&d, &[1_000_000], 1.0)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("budget"), "{status:?}");

    // A message over the size limit is refused before it is decoded.
    let mut s = Session::open(&mut client, "e").await;
    let e = s.next_assignment().await;
    let huge = up(Up::Failed(lrsweep_proto::v1::TrialFailed {
        trial_id: e.trial_id,
        attempt: e.attempt,
        error: "x".repeat(5 * 1024 * 1024),
        permanent: false,
    }));
    let status = s.rejected_with(huge).await;
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");
    // The coordinator shrugs it off: a newcomer still registers and gets work.
    let mut s = Session::open(&mut client, "f").await;
    let f = s.next_assignment().await;
    assert!(f.steps > 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_losses_are_data_and_prune_the_trial() {
    let (_setup, _coordinator, mut client) = coordinator_and_client("nan").await;
    let mut s = Session::open(&mut client, "nan").await;
    let a = s.next_assignment().await;
    s.tx.send(batch(&a, &[1, 2], 2.0)).unwrap();
    s.tx.send(batch(&a, &[3], f64::NAN)).unwrap();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), s.inbound.message())
            .await
            .unwrap()
            .expect("the stream stays healthy")
            .unwrap();
        if let Some(Down::Stop(stop)) = message.kind {
            assert_eq!(stop.trial_id, a.trial_id);
            assert_eq!(stop.reason, "nan");
            break;
        }
    }
}
