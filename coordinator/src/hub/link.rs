//! What the hub keeps of each worker, and how messages reach it.

use std::time::Instant;

use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::{CoordinatorMessage, Shutdown};
use tokio::sync::mpsc;
use tonic::Status;

use crate::storage::Then;

/// The open stream to one worker.
pub type Outbox = mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>;

/// What the hub knows of one worker, connected or not.
pub(super) struct WorkerLink {
    /// The worker process's own id, the same across its reconnects.
    pub(super) instance: String,
    pub(super) name: String,
    pub(super) slots: u32,
    /// The open stream, tagged with its session number so that a dead session's hang-up does not
    /// close the stream of the session that replaced it.
    pub(super) outbox: Option<(u64, Outbox)>,
    /// Any message, a connect or a hang-up renews the lease from here.
    pub(super) last_seen: Instant,
    /// Whether the sweep counts it (from its first session on).
    pub(super) joined: bool,
}

/// Sends `messages` once the event that caused them is committed. If it never will be (the store
/// failed, which ends the sweep) only the Shutdown orders go out.
pub(super) fn deliver(messages: Vec<(Outbox, CoordinatorMessage)>) -> Option<Then> {
    if messages.is_empty() {
        return None;
    }
    Some(Box::new(move |committed| {
        for (outbox, message) in messages {
            if committed || matches!(message.kind, Some(Down::Shutdown(_))) {
                let _ = outbox.send(Ok(message));
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
