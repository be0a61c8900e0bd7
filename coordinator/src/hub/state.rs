//! The hub's state and what each event does to it. Owned by the hub's task alone: decisions are
//! serial without a lock, and nothing here waits on anything but the store's queue.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::{
    CoordinatorMessage, RegisterRequest, RegisterResponse, StopTrial, TrialProgress,
};
use tokio::sync::watch;
use tonic::Status;
use tracing::{info, warn};

use super::link::{deliver, shutdown_message, Outbox, Outgoing, Stream, WorkerLink};
use super::progress::Progress;
use super::WorkerEvent;
use crate::metrics::Metrics;
use crate::storage::{Durable, WorkerState};
use crate::sweep::{Command, Sweep, WorkerId};
use crate::CoordinatorError;

/// How often a worker sends a heartbeat while it has nothing else to say.
pub const HEARTBEAT_INTERVAL_MS: u32 = 2_000;

/// A worker's last-seen time is written when it moved this much since the last write: `status`
/// shows it to the second, and a row per message would cost a write per trace batch.
const LAST_SEEN_RESOLUTION: Duration = Duration::from_secs(1);

pub(super) struct HubState {
    pub(super) sweep_id: String,
    pub(super) sweep: Sweep,
    pub(super) durable: Durable,
    workers: HashMap<WorkerId, WorkerLink>,
    /// Each worker process's id (`instance`) to the id the hub gave it: a reconnect finds its
    /// worker without a scan (10,000 workers register within seconds).
    instances: HashMap<String, WorkerId>,
    /// A worker row was recorded since the last `flush`: the connected count is taken again.
    workers_changed: bool,
    sessions: u64,
    next_worker: u64,
    shutdown_sent: bool,
    /// How long a worker may stay silent or away before its trials go to others.
    lease: Duration,
    /// Becomes true once the sweep is over and every worker has been told.
    done: watch::Sender<bool>,
    /// Messages decided since the last `flush`, in order: they go out once what caused them is
    /// committed.
    outgoing: Vec<Outgoing>,
    /// When the trace batch being decided arrived: its stop orders' latency runs from there.
    trigger: Option<Instant>,
    progress: Progress,
    /// None when metrics are off: nothing is counted.
    metrics: Option<Metrics>,
}

impl HubState {
    pub(super) fn new(
        sweep_id: String,
        sweep: Sweep,
        durable: Durable,
        lease: Duration,
        done: watch::Sender<bool>,
        metrics: Option<Metrics>,
    ) -> HubState {
        HubState {
            progress: Progress::new(&sweep, metrics.as_ref()),
            metrics,
            trigger: None,
            sweep_id,
            sweep,
            durable,
            workers: HashMap::new(),
            instances: HashMap::new(),
            workers_changed: false,
            sessions: 0,
            next_worker: 1,
            shutdown_sent: false,
            lease,
            done,
            outgoing: Vec::new(),
        }
    }

    /// Workers with an open stream, or registered and about to open one: the ones that still
    /// have to hear that the sweep is over.
    pub(super) fn connected_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| w.outbox.is_some() || !w.joined)
            .count()
    }

    /// Stop taking work: nothing more is dispatched and every worker is told to exit.
    pub(super) fn interrupt(&mut self, reason: &str) {
        self.sweep.finish_early();
        self.record_and_send(&[], reason);
    }

    /// Workers silent or away for longer than the lease lose their trials to others. Time the
    /// store spent refusing writes does not count: the hub sent nothing then, and read late.
    pub(super) fn expire_leases(&mut self, now: Instant) {
        let stalled = self.durable.stalled_until();
        let expired: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| {
                let seen = stalled.map_or(w.last_seen, |at| at.max(w.last_seen));
                now.saturating_duration_since(seen) > self.lease
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(link) = self.forget(&id) {
                warn!(event = "lease_expired", worker = %id, name = %link.name, connected = link.outbox.is_some());
                self.record_gone(&id, &link, WorkerState::Lost);
                if let Some((_, stream)) = link.outbox {
                    stream.close(Status::unavailable("lease expired"));
                }
            }
            let commands = self.sweep.remove_worker(&id, "lease expired");
            self.apply(commands);
        }
        // Heartbeats only move `last_seen`: written here, at most once a resolution.
        let seen: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.last_seen.duration_since(w.recorded_seen) >= LAST_SEEN_RESOLUTION)
            .map(|(id, _)| id.clone())
            .collect();
        for id in seen {
            self.record_worker(&id);
        }
    }

    /// Queues the row of a worker the hub holds, as it stands, for the store.
    fn record_worker(&mut self, id: &str) {
        if let Some(link) = self.workers.get_mut(id) {
            link.recorded_seen = link.last_seen;
            self.durable.record_worker(link.row(id, link.state()));
        }
        self.workers_changed = true;
    }

    /// Queues the last row of a worker the hub let go.
    fn record_gone(&mut self, id: &str, link: &WorkerLink, state: WorkerState) {
        self.durable.record_worker(link.row(id, state));
        self.workers_changed = true;
    }

    /// Lets a worker go: a later register with its instance id makes a new worker.
    fn forget(&mut self, id: &str) -> Option<WorkerLink> {
        let link = self.workers.remove(id)?;
        self.instances.remove(&link.instance);
        Some(link)
    }

    /// The coordinator stops: no stream stays open.
    pub(super) fn disconnect_all(&mut self) {
        let ids: Vec<WorkerId> = self.workers.keys().cloned().collect();
        for id in ids {
            if let Some(link) = self.forget(&id) {
                self.record_gone(&id, &link, WorkerState::Disconnected);
            }
        }
    }

    /// Carries out the sweep's commands, then tells everyone to go home if the sweep is over.
    pub(super) fn apply(&mut self, commands: Vec<Command>) {
        self.record_and_send(&commands, "sweep finished");
    }

    /// Queues what changed for the store with the messages that follow from it, in the order
    /// decided: both go to the writer together at the next `flush`. A failed store ends the
    /// sweep.
    ///
    /// Stop orders go out at once, without waiting for the commit of the points that caused
    /// them (unless an earlier message to that worker still waits): a stop is idempotent, and a
    /// coordinator that dies before the commit decides it again. Either the points were stored,
    /// and resume replays them through the same rules, or they were not, and the trial, which the
    /// worker no longer runs, is run again from its start (`resume_decides_a_stop_again`).
    fn record_and_send(&mut self, commands: &[Command], shutdown_reason: &str) {
        if self.durable.failure().is_some() && !self.sweep.is_finished() {
            self.sweep.finish_early();
        }
        let trigger = self.trigger;
        for command in commands {
            let (worker, kind, received) = match command {
                Command::Assign { worker, assignment } => {
                    (worker, Down::Assign(assignment.as_ref().into()), None)
                }
                Command::Stop {
                    worker,
                    trial,
                    attempt,
                    kind,
                    reason,
                } => (
                    worker,
                    Down::Stop(StopTrial {
                        trial_id: *trial,
                        attempt: *attempt,
                        kind: lrsweep_proto::v1::StopKind::from(*kind).into(),
                        reason: reason.to_string(),
                    }),
                    trigger,
                ),
            };
            // A worker that is away gets no assignments, and learns of a stop when it comes back
            // (that trial is not resumed).
            let Some((_, stream)) = self.workers.get(worker).and_then(|w| w.outbox.as_ref()) else {
                continue;
            };
            let message = CoordinatorMessage { kind: Some(kind) };
            let held = match message.kind {
                Some(Down::Stop(_)) => stream.send_now(message, received, self.metrics.as_ref()),
                _ => Some(stream.hold(message, received)),
            };
            self.outgoing.extend(held);
        }
        if self.sweep.is_finished() {
            let shutdowns = self.shutdown_messages(shutdown_reason);
            self.outgoing.extend(shutdowns);
        }
    }

    /// Hands everything decided since the last flush to the store's writer; the held messages go
    /// out once it is committed. One flush per batch of events: one queue entry, not one per
    /// event.
    pub(super) async fn flush(&mut self) {
        self.progress.observe(&self.sweep, self.metrics.as_ref());
        if std::mem::take(&mut self.workers_changed) {
            if let Some(m) = &self.metrics {
                m.set_workers_connected(
                    self.workers.values().filter(|w| w.outbox.is_some()).count(),
                );
            }
        }
        let messages = std::mem::take(&mut self.outgoing);
        let then = deliver(messages, self.metrics.clone());
        self.durable.sync(&mut self.sweep, then).await;
    }

    /// A Shutdown for every connected worker, once; the sweep is done from here on. A worker that
    /// connects later is told by `connect`. (Sent again on every later event, 10,000 workers'
    /// last heartbeats made 10^8 of them.)
    fn shutdown_messages(&mut self, reason: &str) -> Vec<Outgoing> {
        if self.shutdown_sent {
            return Vec::new();
        }
        self.shutdown_sent = true;
        info!(
            event = "workers_released",
            workers = self.workers.len(),
            reason
        );
        self.done.send_replace(true);
        self.workers
            .values()
            .filter_map(|w| w.outbox.as_ref())
            .map(|(_, stream)| stream.hold(shutdown_message(reason), None))
            .collect()
    }

    /// A worker announces itself (again, after a reconnect: same `instance`).
    pub(super) fn register(&mut self, r: RegisterRequest) -> RegisterResponse {
        let name = r.name.trim();
        let known = self
            .instances
            .get(&r.instance)
            .filter(|_| !r.instance.is_empty())
            .and_then(|id| Some((id.clone(), self.workers.get(id)?.joined)));
        let (worker_id, resume) = match known {
            Some((id, joined)) => {
                let reported: Vec<(u64, u32)> =
                    r.running.iter().map(|t| (t.trial_id, t.attempt)).collect();
                let kept = if joined {
                    self.sweep.reattach_worker(&id, &reported)
                } else {
                    Vec::new()
                };
                info!(event = "worker_reconnected", worker = %id, name, resumed = kept.len());
                if let Some(link) = self.workers.get_mut(&id) {
                    link.last_seen = Instant::now();
                }
                self.record_worker(&id);
                (id, kept)
            }
            None => {
                let id = format!("w{}", self.next_worker);
                self.next_worker += 1;
                info!(event = "worker_registered", worker = %id, name, host = %r.host, slots = r.slots);
                self.workers.insert(
                    id.clone(),
                    WorkerLink::new(&r.instance, name, &r.host, r.slots),
                );
                if !r.instance.is_empty() {
                    self.instances.insert(r.instance.clone(), id.clone());
                }
                self.record_worker(&id);
                (id, Vec::new())
            }
        };
        let commands = self.sweep.dispatch();
        self.apply(commands);
        RegisterResponse {
            worker_id,
            sweep_id: self.sweep_id.clone(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            resume: resume
                .into_iter()
                .map(|(trial_id, attempt, last_step)| TrialProgress {
                    trial_id,
                    attempt,
                    last_step,
                })
                .collect(),
        }
    }

    /// Opens a session: returns its number, for `hang_up`.
    pub(super) fn connect(
        &mut self,
        worker: &str,
        outbox: Outbox,
    ) -> Result<u64, CoordinatorError> {
        self.sessions += 1;
        let session = self.sessions;
        if !self.workers.contains_key(worker) {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        }
        if self.shutdown_sent {
            // Too late for work: told at once, and nothing more to wait for.
            let _ = outbox.send(Ok(shutdown_message("sweep finished")));
            if let Some(link) = self.forget(worker) {
                self.record_gone(worker, &link, WorkerState::Left);
            }
            return Ok(session);
        }
        let Some(link) = self.workers.get_mut(worker) else {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        };
        link.last_seen = Instant::now();
        link.outbox = Some((session, Stream::new(outbox)));
        if link.joined {
            self.sweep.set_available(worker, true);
        } else {
            link.joined = true;
            let (name, slots) = (link.name.clone(), link.slots);
            info!(event = "worker_connected", worker, name = %name, slots);
            self.sweep.add_worker(worker.to_string(), name, slots);
        }
        self.record_worker(worker);
        let commands = self.sweep.dispatch();
        self.apply(commands);
        Ok(session)
    }

    /// Whether `session` is the worker's open stream (not one rejected or replaced since).
    fn is_current(&self, worker: &str, session: u64) -> bool {
        self.workers
            .get(worker)
            .and_then(|w| w.outbox.as_ref())
            .is_some_and(|(s, _)| *s == session)
    }

    /// The stream ended without a goodbye: the worker keeps its trials while its lease runs.
    /// Once the workers were released, a hang-up is the goodbye: the worker left (its lease does
    /// not run out later, as if it had been lost).
    pub(super) fn hang_up(&mut self, worker: &str, session: u64) {
        if !self.is_current(worker, session) {
            return;
        }
        if self.shutdown_sent {
            if let Some(link) = self.forget(worker) {
                self.record_gone(worker, &link, WorkerState::Left);
            }
            return;
        }
        if let Some(link) = self.workers.get_mut(worker) {
            link.outbox = None;
            link.last_seen = Instant::now();
        }
        self.sweep.set_available(worker, false);
        self.record_worker(worker);
    }

    /// One message from a worker's stream, decoded. A message that breaks the protocol ends
    /// that session: the worker gets the error as its stream's status.
    pub(super) fn on_worker_message(&mut self, worker: &str, session: u64, event: WorkerEvent) {
        // A session that was rejected or replaced by a reconnect has nothing more to say: what
        // it sent late, the worker resends on its current session.
        if !self.is_current(worker, session) {
            return;
        }
        if let Err(e) = self.on_worker_event(worker, event) {
            warn!(event = "worker_rejected", worker, error = %e);
            if self.is_current(worker, session) {
                let link = self.workers.get_mut(worker);
                if let Some((_, stream)) = link.and_then(|l| l.outbox.take()) {
                    stream.close(e.into());
                }
                self.sweep.set_available(worker, false);
                self.record_worker(worker);
            }
        }
    }

    fn on_worker_event(
        &mut self,
        worker: &str,
        event: WorkerEvent,
    ) -> Result<(), CoordinatorError> {
        let Some(link) = self.workers.get_mut(worker) else {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        };
        link.last_seen = Instant::now();
        let commands = match event {
            WorkerEvent::Trace {
                trial,
                attempt,
                points,
                received,
            } => {
                // Only a trace batch leads to stop orders.
                self.trigger = Some(received);
                self.sweep.on_trace(worker, trial, attempt, &points)?
            }
            WorkerEvent::Completed {
                trial,
                attempt,
                steps,
            } => self.sweep.on_completed(worker, trial, attempt, steps)?,
            WorkerEvent::Failed {
                trial,
                attempt,
                error,
                permanent,
            } => self
                .sweep
                .on_failed(worker, trial, attempt, &error, permanent)?,
            WorkerEvent::Heartbeat => Vec::new(),
            WorkerEvent::Leaving { reason } => {
                info!(event = "worker_leaving", worker, reason = %reason);
                if let Some(link) = self.forget(worker) {
                    self.record_gone(worker, &link, WorkerState::Left);
                }
                self.sweep.remove_worker(worker, "left")
            }
        };
        self.apply(commands);
        self.trigger = None;
        Ok(())
    }
}
