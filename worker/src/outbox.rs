//! What waits to go up the session stream. Points of a trial whose last batch still waits join
//! that batch instead of queueing behind it, and a built-in trainer `ROOM_POINTS` or more ahead
//! of the stream waits for it: a coordinator that cannot keep up slows the trainers down rather
//! than let their points pile up here, where a stop order's cause would wait behind them (and the
//! trainer train on past a divergence for nothing).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{TraceBatch, WorkerMessage};
use tokio_stream::Stream;

use crate::stop::StopSignal;

/// Trace points queued before a built-in trainer waits: 16 full batches, as many as the load
/// generator's simulated workers keep (`UPSTREAM_QUEUE`).
pub const ROOM_POINTS: usize = 512;
/// The most points one message carries after joining batches (the coordinator takes 100,000).
pub const MAX_MESSAGE_POINTS: usize = 4096;
/// How often a waiting trainer looks at its stop signal.
const STOP_POLL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Queue {
    /// Sends are taken: a stream is open and not hanging up.
    accepting: bool,
    /// Bumped by every `open`: the stream of an earlier session ends.
    generation: u64,
    messages: VecDeque<WorkerMessage>,
    /// Trace points in `messages`.
    points: usize,
    /// The stream's task, waiting for a message.
    waker: Option<Waker>,
}

impl Queue {
    fn push_trace(&mut self, batch: TraceBatch) {
        self.points += batch.points.len();
        if let Some(WorkerMessage {
            kind: Some(Up::Trace(last)),
        }) = self.messages.back_mut()
        {
            if last.trial_id == batch.trial_id
                && last.attempt == batch.attempt
                && last.points.len() + batch.points.len() <= MAX_MESSAGE_POINTS
            {
                last.points.extend_from_slice(&batch.points);
                return;
            }
        }
        let trace = |points| WorkerMessage {
            kind: Some(Up::Trace(TraceBatch {
                trial_id: batch.trial_id,
                attempt: batch.attempt,
                points,
            })),
        };
        if batch.points.len() <= MAX_MESSAGE_POINTS {
            self.messages.push_back(trace(batch.points));
        } else {
            for chunk in batch.points.chunks(MAX_MESSAGE_POINTS) {
                self.messages.push_back(trace(chunk.to_vec()));
            }
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The stream of the current session, or none while disconnected. Messages sent while none is
/// open are dropped: the trial logs keep what must be resent.
#[derive(Default)]
pub struct Outbox {
    queue: Mutex<Queue>,
    room: Condvar,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a new session's stream with `first` (its hello) at its head; whatever an earlier
    /// session left unsent is dropped (a reconnect resends from the trial logs).
    pub fn open(self: &Arc<Self>, first: WorkerMessage) -> UpStream {
        let mut queue = self.lock();
        queue.generation += 1;
        queue.accepting = true;
        queue.messages.clear();
        queue.messages.push_back(first);
        queue.points = 0;
        queue.wake();
        let generation = queue.generation;
        drop(queue);
        self.room.notify_all();
        UpStream {
            outbox: self.clone(),
            generation,
        }
    }

    /// Queues `message`; false when no stream takes it. A trace batch joins the last queued
    /// message when that is a batch of the same attempt with room for it; one larger than
    /// `MAX_MESSAGE_POINTS` (a resend after a reconnect) goes in messages of that size.
    pub fn send(&self, message: WorkerMessage) -> bool {
        let mut queue = self.lock();
        if !queue.accepting {
            return false;
        }
        match message.kind {
            Some(Up::Trace(batch)) => queue.push_trace(batch),
            _ => queue.messages.push_back(message),
        }
        queue.wake();
        true
    }

    /// Hangs up: nothing more is taken, the stream ends once what is queued has gone.
    pub fn close(&self) {
        let mut queue = self.lock();
        queue.accepting = false;
        queue.wake();
        drop(queue);
        self.room.notify_all();
    }

    /// Blocks this (trainer) thread while `ROOM_POINTS` or more points wait for an open stream,
    /// until they drain, the stream closes, or `stop` is given.
    pub fn wait_for_room(&self, stop: &StopSignal) {
        let mut queue = self.lock();
        while queue.accepting && queue.points >= ROOM_POINTS && !stop.is_stopped() {
            queue = self
                .room
                .wait_timeout(queue, STOP_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

fn points(message: &WorkerMessage) -> usize {
    match &message.kind {
        Some(Up::Trace(batch)) => batch.points.len(),
        _ => 0,
    }
}

/// One session's upstream, as tonic polls it. Dropping it (the call ended) closes the outbox
/// for its session, so the next send reports the stream gone.
pub struct UpStream {
    outbox: Arc<Outbox>,
    generation: u64,
}

impl Stream for UpStream {
    type Item = WorkerMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WorkerMessage>> {
        let mut queue = self.outbox.lock();
        if queue.generation != self.generation {
            return Poll::Ready(None);
        }
        if let Some(message) = queue.messages.pop_front() {
            queue.points -= points(&message);
            drop(queue);
            self.outbox.room.notify_all();
            return Poll::Ready(Some(message));
        }
        if !queue.accepting {
            return Poll::Ready(None);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for UpStream {
    fn drop(&mut self) {
        let mut queue = self.outbox.lock();
        if queue.generation == self.generation {
            queue.accepting = false;
            drop(queue);
            self.outbox.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lrsweep_proto::v1::{Heartbeat, Hello, TracePoint};
    use tokio_stream::StreamExt;

    fn hello() -> WorkerMessage {
        WorkerMessage {
            kind: Some(Up::Hello(Hello {
                worker_id: "w1".into(),
            })),
        }
    }

    fn batch(trial_id: u64, attempt: u32, steps: std::ops::RangeInclusive<u64>) -> WorkerMessage {
        WorkerMessage {
            kind: Some(Up::Trace(TraceBatch {
                trial_id,
                attempt,
                points: steps
                    .map(|step| TracePoint {
                        step,
                        train_loss: 1.0,
                        lr: 0.1,
                        val_loss: None,
                    })
                    .collect(),
            })),
        }
    }

    fn heartbeat() -> WorkerMessage {
        WorkerMessage {
            kind: Some(Up::Heartbeat(Heartbeat {
                running_trials: vec![1],
            })),
        }
    }

    /// (trial, first step, last step) of a trace message, None for any other.
    fn span(message: &WorkerMessage) -> Option<(u64, u64, u64)> {
        match &message.kind {
            Some(Up::Trace(b)) => Some((b.trial_id, b.points[0].step, b.points.last()?.step)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn waiting_batches_of_an_attempt_join_in_order() {
        let outbox = Arc::new(Outbox::default());
        assert!(!outbox.send(batch(1, 1, 1..=2)), "nothing open yet");
        let mut stream = outbox.open(hello());
        assert!(outbox.send(batch(1, 1, 1..=32)));
        assert!(outbox.send(batch(1, 1, 33..=64)));
        // Another attempt, another trial, anything else: a new message.
        assert!(outbox.send(batch(1, 2, 1..=3)));
        assert!(outbox.send(batch(2, 1, 1..=3)));
        assert!(outbox.send(heartbeat()));
        assert!(outbox.send(batch(2, 1, 4..=5)));
        let first = stream.next().await.unwrap();
        assert!(matches!(first.kind, Some(Up::Hello(_))));
        let mut spans = Vec::new();
        for _ in 0..5 {
            spans.push(span(&stream.next().await.unwrap()));
        }
        assert_eq!(
            spans,
            [
                Some((1, 1, 64)),
                Some((1, 1, 3)),
                Some((2, 1, 3)),
                None,
                Some((2, 4, 5))
            ]
        );
    }

    #[tokio::test]
    async fn a_joined_batch_stays_within_the_message_limit() {
        let outbox = Arc::new(Outbox::default());
        let mut stream = outbox.open(hello());
        let chunk = MAX_MESSAGE_POINTS as u64 / 2;
        for i in 0..3 {
            assert!(outbox.send(batch(1, 1, i * chunk + 1..=(i + 1) * chunk)));
        }
        stream.next().await.unwrap();
        let sizes: Vec<u64> = [stream.next().await, stream.next().await]
            .iter()
            .map(|m| {
                span(m.as_ref().unwrap())
                    .map(|(_, a, b)| b + 1 - a)
                    .unwrap()
            })
            .collect();
        assert_eq!(sizes, [2 * chunk, chunk]);
    }

    #[tokio::test]
    async fn a_batch_over_the_limit_goes_in_messages_within_it() {
        let outbox = Arc::new(Outbox::default());
        let mut stream = outbox.open(hello());
        let limit = MAX_MESSAGE_POINTS as u64;
        assert!(outbox.send(batch(1, 1, 1..=2 * limit + 5)));
        stream.next().await.unwrap();
        let mut spans = Vec::new();
        for _ in 0..3 {
            spans.push(span(&stream.next().await.unwrap()));
        }
        assert_eq!(
            spans,
            [
                Some((1, 1, limit)),
                Some((1, limit + 1, 2 * limit)),
                Some((1, 2 * limit + 1, 2 * limit + 5))
            ]
        );
    }

    #[tokio::test]
    async fn closing_drains_then_ends_and_reopening_drops_leftovers() {
        let outbox = Arc::new(Outbox::default());
        let mut old = outbox.open(hello());
        assert!(outbox.send(batch(1, 1, 1..=4)));
        outbox.close();
        assert!(!outbox.send(heartbeat()), "hung up: nothing more taken");
        assert!(old.next().await.is_some());
        assert_eq!(span(&old.next().await.unwrap()), Some((1, 1, 4)));
        assert!(old.next().await.is_none());

        let mut stale = outbox.open(hello());
        assert!(outbox.send(batch(1, 1, 5..=6)));
        let mut new = outbox.open(hello());
        assert!(
            stale.next().await.is_none(),
            "an earlier session's stream ends"
        );
        drop(stale);
        assert!(
            outbox.send(heartbeat()),
            "the old stream's drop leaves the new one open"
        );
        assert!(matches!(new.next().await.unwrap().kind, Some(Up::Hello(_))));
        assert!(matches!(
            new.next().await.unwrap().kind,
            Some(Up::Heartbeat(_))
        ));
        drop(new);
        assert!(
            !outbox.send(heartbeat()),
            "its stream dropped: the session is gone"
        );
    }

    #[tokio::test]
    async fn a_trainer_ahead_of_the_stream_waits_for_room() {
        let outbox = Arc::new(Outbox::default());
        let mut stream = outbox.open(hello());
        let stop = StopSignal::default();
        assert!(outbox.send(batch(1, 1, 1..=ROOM_POINTS as u64)));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn({
            let (outbox, stop) = (outbox.clone(), stop.clone());
            move || {
                outbox.wait_for_room(&stop);
                tx.send(()).unwrap();
            }
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "returned with {ROOM_POINTS} points waiting"
        );
        stream.next().await.unwrap();
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        stream.next().await.unwrap();
        rx.recv_timeout(Duration::from_secs(5))
            .expect("the stream took the points: room again");
        waiter.join().unwrap();

        // A stop order or a hang-up frees a waiting trainer too.
        assert!(outbox.send(batch(1, 1, 1..=ROOM_POINTS as u64)));
        stop.stop();
        outbox.wait_for_room(&stop);
        let running = StopSignal::default();
        outbox.close();
        outbox.wait_for_room(&running);
    }
}
