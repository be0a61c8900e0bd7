//! What the hub keeps of each worker, and how messages reach it.

use std::time::Instant;

use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::{CoordinatorMessage, Shutdown};
use tokio::sync::mpsc;
use tonic::Status;

use crate::metrics::Metrics;
use crate::storage::store::now_ms;
use crate::storage::{Then, WorkerRow, WorkerState};

/// The open stream to one worker.
pub type Outbox = mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>;

/// A message for a worker, with when the trace batch that caused it arrived (stop orders).
pub(super) type Outgoing = (Outbox, CoordinatorMessage, Option<Instant>);

/// What the hub knows of one worker, connected or not.
pub(super) struct WorkerLink {
    /// The worker process's own id, the same across its reconnects.
    pub(super) instance: String,
    pub(super) name: String,
    pub(super) host: String,
    pub(super) slots: u32,
    pub(super) registered_at_ms: i64,
    /// The open stream, tagged with its session number so that a dead session's hang-up does not
    /// close the stream of the session that replaced it.
    pub(super) outbox: Option<(u64, Outbox)>,
    /// Any message, a connect or a hang-up renews the lease from here.
    pub(super) last_seen: Instant,
    /// Whether the sweep counts it (from its first session on).
    pub(super) joined: bool,
    /// The `last_seen` last written to the store.
    pub(super) recorded_seen: Instant,
}

impl WorkerLink {
    pub(super) fn new(instance: &str, name: &str, host: &str, slots: u32) -> WorkerLink {
        let now = Instant::now();
        WorkerLink {
            instance: instance.to_string(),
            name: name.to_string(),
            host: host.to_string(),
            slots,
            registered_at_ms: wall_ms(now),
            outbox: None,
            last_seen: now,
            joined: false,
            recorded_seen: now,
        }
    }

    /// Where it stands while the hub still holds it.
    pub(super) fn state(&self) -> WorkerState {
        match (&self.outbox, self.joined) {
            (Some(_), _) => WorkerState::Connected,
            (None, false) => WorkerState::Registered,
            (None, true) => WorkerState::Disconnected,
        }
    }

    /// Its row for the store, in `state`.
    pub(super) fn row(&self, id: &str, state: WorkerState) -> WorkerRow {
        WorkerRow {
            worker: id.to_string(),
            name: self.name.clone(),
            host: self.host.clone(),
            slots: self.slots,
            state,
            registered_at_ms: self.registered_at_ms,
            last_seen_ms: wall_ms(self.last_seen),
        }
    }
}

/// The wall-clock time of `at`, in ms since the epoch: the store's times are read by people.
fn wall_ms(at: Instant) -> i64 {
    now_ms() - at.elapsed().as_millis() as i64
}

/// Sends `messages` once the event that caused them is committed. If it never will be (the store
/// failed, which ends the sweep) only the Shutdown orders go out. A stop order's latency is
/// measured here, as it is handed to the stream.
pub(super) fn deliver(messages: Vec<Outgoing>, metrics: Option<Metrics>) -> Option<Then> {
    if messages.is_empty() {
        return None;
    }
    Some(Box::new(move |committed| {
        for (outbox, message, received) in messages {
            if committed || matches!(message.kind, Some(Down::Shutdown(_))) {
                let sent = outbox.send(Ok(message)).is_ok();
                if let (true, Some(received), Some(m)) = (sent, received, &metrics) {
                    m.stop_sent(received);
                }
            }
        }
    }))
}

pub(super) fn shutdown_message(reason: &str) -> CoordinatorMessage {
    CoordinatorMessage {
        kind: Some(Down::Shutdown(Shutdown {
            reason: reason.to_string(),
        })),
    }
}
