//! A worker's life seen from outside: SIGTERM hands its trial back at once, several slots train
//! several trials at once, and a worker that stays connected but goes silent loses its trials
//! when its lease runs out.

use std::time::Duration;

use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{Hello, RegisterRequest, WorkerMessage};
use lrsweep_tests::{sigterm, start_worker, wait_for_stored_points, Proc, Setup, SLOW_STEPS};
use tokio_stream::wrappers::UnboundedReceiverStream;

const COORDINATOR: &str = env!("CARGO_BIN_EXE_e2e-coordinator");
const WORKER: &str = env!("CARGO_BIN_EXE_e2e-worker");
const WAIT: Duration = Duration::from_secs(60);

/// The trial an event is about: its own field, or its span's (the worker's trial span).
fn trial_of(event: &serde_json::Value) -> u64 {
    event["trial"]
        .as_u64()
        .or_else(|| event["span"]["trial"].as_u64())
        .unwrap_or_else(|| panic!("no trial in {event}"))
}

fn trials(setup: &Setup) -> Vec<serde_json::Value> {
    setup.report()["trials"].as_array().unwrap().clone()
}

#[test]
fn a_worker_stopped_by_sigterm_hands_its_trial_back_at_once() {
    let setup = Setup::new("sigterm-worker", &SLOW_STEPS.replace("STEPS", "200"));
    // A lease far longer than the test: only the hand-back can free the trial in time.
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--lease-ms", "600000"]);
    let mut leaving = start_worker(WORKER, &addr, "leaving");
    let started = leaving.wait_for_event("trial_started", WAIT, |_| true);
    wait_for_stored_points(&setup.db, 1, WAIT);
    sigterm(&leaving);
    let (status, _) = leaving.wait_output(Duration::from_secs(30));
    leaving.assert_exit(status, 0);
    coordinator.wait_for_event("worker_leaving", WAIT, |_| true);
    let requeued = coordinator.wait_for_event("trial_requeued", WAIT, |_| true);
    assert_eq!(trial_of(&requeued), trial_of(&started), "{requeued}");

    let mut staying = start_worker(WORKER, &addr, "staying");
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    coordinator.assert_exit(status, 0);
    let (status, _) = staying.wait_output(Duration::from_secs(30));
    staying.assert_exit(status, 0);
    assert!(coordinator.events("lease_expired").is_empty());
    let handed_back = trials(&setup)
        .into_iter()
        .find(|t| t["id"] == trial_of(&started))
        .expect("the handed-back trial in the report");
    assert_eq!(handed_back["attempts"], 2, "{handed_back}");
    assert_eq!(handed_back["worker"], "staying", "{handed_back}");
    assert_eq!(handed_back["status"], "completed", "{handed_back}");
}

#[test]
fn a_worker_with_three_slots_trains_three_trials_at_once() {
    let setup = Setup::new("slots", &SLOW_STEPS.replace("STEPS", "200"));
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &[]);
    let url = format!("http://{addr}");
    let (mut worker, _) = Proc::spawn(
        WORKER,
        &["--coordinator", &url, "--name", "wide", "--slots", "3"],
    );
    let (status, _) = coordinator.wait_output(Duration::from_secs(300));
    coordinator.assert_exit(status, 0);
    let (status, _) = worker.wait_output(Duration::from_secs(30));
    worker.assert_exit(status, 0);
    let registered = coordinator.events("worker_registered");
    assert_eq!(registered.len(), 1, "{registered:#?}");
    assert_eq!(registered[0]["slots"], 3);
    // Every trial started before any finished: the three ran side by side.
    let log = worker.logs.lock().unwrap().clone();
    let first_finish = log
        .iter()
        .position(|l| l["event"] == "trial_finished")
        .expect("a finished trial");
    let started_before = log[..first_finish]
        .iter()
        .filter(|l| l["event"] == "trial_started")
        .count();
    assert_eq!(started_before, 3, "{:#?}", &log[..first_finish]);
    let all = trials(&setup);
    assert_eq!(all.len(), 3);
    assert!(
        all.iter()
            .all(|t| t["status"] == "completed" && t["worker"] == "wide"),
        "{all:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_worker_that_goes_silent_loses_its_trial_at_the_lease() {
    let setup = Setup::new("silent", &SLOW_STEPS.replace("STEPS", "100"));
    let (mut coordinator, addr) = setup.start_coordinator(COORDINATOR, &["--lease-ms", "1000"]);
    // A worker that registers, takes a trial and then says nothing, its stream left open.
    let mut client = CoordinatorClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let worker_id = client
        .register(RegisterRequest {
            name: "mute".into(),
            host: "test".into(),
            slots: 1,
            instance: "mute-1".into(),
            running: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(WorkerMessage {
        kind: Some(Up::Hello(Hello { worker_id })),
    })
    .unwrap();
    let mut inbound = client
        .session(UnboundedReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let taken = loop {
        match inbound.message().await.unwrap().expect("an assignment") {
            lrsweep_proto::v1::CoordinatorMessage {
                kind: Some(Down::Assign(a)),
            } => break a,
            _ => continue,
        }
    };
    // The coordinator ends the silent stream itself when the lease runs out.
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ended by the lease");
    let status = ended.expect_err("ended with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("lease"), "{status:?}");
    let expired =
        tokio::task::block_in_place(|| coordinator.wait_for_event("lease_expired", WAIT, |_| true));
    assert_eq!(expired["connected"], true, "{expired}");

    let mut real = start_worker(WORKER, &addr, "real");
    let (status, _) =
        tokio::task::block_in_place(|| coordinator.wait_output(Duration::from_secs(300)));
    coordinator.assert_exit(status, 0);
    let (status, _) = tokio::task::block_in_place(|| real.wait_output(Duration::from_secs(30)));
    real.assert_exit(status, 0);
    // Only the mute worker's lease ran out while it was connected; the real one's heartbeats
    // kept its own.
    let expired = coordinator.events("lease_expired");
    assert!(
        expired
            .iter()
            .all(|e| e["name"] == "mute" || e["connected"] == false),
        "{expired:#?}"
    );
    drop(tx);
    let retaken = trials(&setup)
        .into_iter()
        .find(|t| t["id"] == taken.trial_id)
        .expect("the silent worker's trial in the report");
    assert_eq!(retaken["attempts"], 2, "{retaken}");
    assert_eq!(retaken["worker"], "real", "{retaken}");
    assert_eq!(retaken["status"], "completed", "{retaken}");
}
