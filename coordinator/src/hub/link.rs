//! What the hub keeps of each worker, and how messages reach it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// The open stream to one worker, with a count of the messages to it that wait for a commit: a
/// message may go out at once only while none does, so that each worker hears everything in the
/// order decided.
#[derive(Clone)]
pub(super) struct Stream {
    outbox: Outbox,
    held: Arc<AtomicUsize>,
}

/// A message for a worker, held until a commit, with when the trace batch that caused it arrived
/// (stop orders).
pub(super) struct Outgoing {
    stream: Stream,
    message: CoordinatorMessage,
    received: Option<Instant>,
}

impl Stream {
    pub(super) fn new(outbox: Outbox) -> Stream {
        Stream {
            outbox,
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Ends the stream with `status` (the worker reads it as the session's end).
    pub(super) fn close(&self, status: Status) {
        let _ = self.outbox.send(Err(status));
    }

    /// Sends `message` now, unless an earlier message to this worker still waits for a commit.
    /// `None`: sent; else the message, to hold until the next commit.
    pub(super) fn send_now(
        &self,
        message: CoordinatorMessage,
        received: Option<Instant>,
        metrics: Option<&Metrics>,
    ) -> Option<Outgoing> {
        if self.held.load(Ordering::Acquire) > 0 {
            return Some(self.hold(message, received));
        }
        self.send(message, received, metrics);
        None
    }

    /// Holds `message` until the next commit.
    pub(super) fn hold(&self, message: CoordinatorMessage, received: Option<Instant>) -> Outgoing {
        self.held.fetch_add(1, Ordering::AcqRel);
        Outgoing {
            stream: self.clone(),
            message,
            received,
        }
    }

    /// A stop order's latency is measured here, as it is handed to the stream.
    fn send(
        &self,
        message: CoordinatorMessage,
        received: Option<Instant>,
        metrics: Option<&Metrics>,
    ) {
        let sent = self.outbox.send(Ok(message)).is_ok();
        if let (true, Some(received), Some(m)) = (sent, received, metrics) {
            m.stop_sent(received);
        }
    }
}

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
    pub(super) outbox: Option<(u64, Stream)>,
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

/// Sends the held `messages` once the event that caused them is committed. If it never will be
/// (the store failed, which ends the sweep) only the Shutdown orders go out.
pub(super) fn deliver(messages: Vec<Outgoing>, metrics: Option<Metrics>) -> Option<Then> {
    if messages.is_empty() {
        return None;
    }
    Some(Box::new(move |committed| {
        for Outgoing {
            stream,
            message,
            received,
        } in messages
        {
            if committed || matches!(message.kind, Some(Down::Shutdown(_))) {
                stream.send(message, received, metrics.as_ref());
            }
            stream.held.fetch_sub(1, Ordering::AcqRel);
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

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_proto::v1::StopTrial;

    fn stop(trial_id: u64) -> CoordinatorMessage {
        CoordinatorMessage {
            kind: Some(Down::Stop(StopTrial {
                trial_id,
                ..StopTrial::default()
            })),
        }
    }

    fn sent(rx: &mut mpsc::UnboundedReceiver<Result<CoordinatorMessage, Status>>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|m| match m.ok().and_then(|m| m.kind) {
                Some(Down::Stop(s)) => format!("stop {}", s.trial_id),
                Some(Down::Shutdown(_)) => "shutdown".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_stop_goes_out_at_once_unless_an_earlier_message_waits_for_a_commit() {
        let (outbox, mut rx) = mpsc::unbounded_channel();
        let stream = Stream::new(outbox);
        assert!(stream.send_now(stop(1), None, None).is_none());
        assert_eq!(sent(&mut rx), ["stop 1"]);

        // Held until the commit: a later stop waits behind it, in order.
        let first = stream.hold(shutdown_message("done"), None);
        let second = stream.send_now(stop(2), None, None).expect("held");
        assert!(sent(&mut rx).is_empty());
        let then = deliver(vec![first, second], None).expect("something to send");
        then(true);
        assert_eq!(sent(&mut rx), ["shutdown", "stop 2"]);

        // Nothing waits any more: the next stop goes at once again.
        assert!(stream.send_now(stop(3), None, None).is_none());
        assert_eq!(sent(&mut rx), ["stop 3"]);
    }

    #[test]
    fn held_messages_of_a_failed_commit_are_dropped_but_shutdown() {
        let (outbox, mut rx) = mpsc::unbounded_channel();
        let stream = Stream::new(outbox);
        let held = vec![
            stream.hold(stop(1), None),
            stream.hold(shutdown_message("store failed"), None),
        ];
        deliver(held, None).expect("something to send")(false);
        assert_eq!(sent(&mut rx), ["shutdown"]);
        assert!(stream.send_now(stop(2), None, None).is_none());
        assert_eq!(sent(&mut rx), ["stop 2"]);
    }
}
