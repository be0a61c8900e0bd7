//! The gRPC face of the sweep: registers workers, holds one stream per worker, feeds what
//! arrives into the `Sweep` state machine and sends out the commands it returns.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lrsweep_proto::domain::TracePoint;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::coordinator_server::Coordinator;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{
    CoordinatorMessage, RegisterRequest, RegisterResponse, Shutdown, StopTrial, TrialProgress,
    WorkerMessage,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn, Instrument};

use crate::durable::{Durable, Then};
use crate::sweep::{Command, Sweep, WorkerId};
use crate::CoordinatorError;

pub const HEARTBEAT_INTERVAL_MS: u32 = 2_000;
const MAX_NAME_LEN: usize = 256;
const MAX_SLOTS: u32 = 1024;
/// Largest message accepted from a worker; a trace batch is a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// A trace batch bigger than this is a broken or hostile worker, not a fast one.
const MAX_POINTS_PER_BATCH: usize = 100_000;

type Outbox = mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>;

/// What the hub knows of one worker, connected or not.
struct WorkerLink {
    /// The worker process's own id, the same across its reconnects.
    instance: String,
    name: String,
    slots: u32,
    /// The open stream, tagged with its session number so that a dead session's hang-up does not
    /// close the stream of the session that replaced it.
    outbox: Option<(u64, Outbox)>,
    /// Any message, a connect or a hang-up renews the lease from here.
    last_seen: Instant,
    /// Whether the sweep counts it (from its first session on).
    joined: bool,
}

struct State {
    sweep: Sweep,
    durable: Durable,
    workers: HashMap<WorkerId, WorkerLink>,
    sessions: u64,
    shutdown_sent: bool,
}

/// Shared by every connection; the sweep sits behind one lock so decisions are serial.
pub struct Hub {
    sweep_id: String,
    state: Mutex<State>,
    next_worker: AtomicU64,
    /// How long a worker may stay silent or away before its trials go to others.
    lease: Duration,
    /// Becomes true once the sweep is over and every worker has been told.
    done: watch::Sender<bool>,
}

impl Hub {
    /// Saves the sweep's initial state at once: a crash right after start loses nothing.
    pub fn new(sweep_id: String, sweep: Sweep, durable: Durable, lease: Duration) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            sweep_id,
            state: Mutex::new(State {
                sweep,
                durable,
                workers: HashMap::new(),
                sessions: 0,
                shutdown_sent: false,
            }),
            next_worker: AtomicU64::new(1),
            lease,
            done: watch::channel(false).0,
        });
        {
            let mut st = hub.lock();
            hub.apply(&mut st, Vec::new());
        }
        hub
    }

    /// Records the end of the sweep; returns the storage failure that ended it, if one did.
    pub fn finish(&self, interrupted: bool, report_json: &str) -> Option<String> {
        self.lock().durable.finish(interrupted, report_json)
    }

    /// A poisoned lock means a panic mid-decision; the state is still the best record there is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn with_sweep<T>(&self, f: impl FnOnce(&Sweep) -> T) -> T {
        f(&self.lock().sweep)
    }

    pub fn done(&self) -> watch::Receiver<bool> {
        self.done.subscribe()
    }

    /// Workers with an open stream, or registered and about to open one: the ones that still
    /// have to hear that the sweep is over.
    pub fn connected_workers(&self) -> usize {
        self.lock()
            .workers
            .values()
            .filter(|w| w.outbox.is_some() || !w.joined)
            .count()
    }

    /// Stop taking work: nothing more is dispatched and every worker is told to exit.
    pub fn interrupt(&self, reason: &str) {
        let mut st = self.lock();
        st.sweep.finish_early();
        self.record_and_send(&mut st, &[], reason);
    }

    /// Workers silent or away for longer than the lease lose their trials to others.
    pub fn expire_leases(&self, now: Instant) {
        let mut st = self.lock();
        let expired: Vec<WorkerId> = st
            .workers
            .iter()
            .filter(|(_, w)| now.duration_since(w.last_seen) > self.lease)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(link) = st.workers.remove(&id) {
                warn!(event = "lease_expired", worker = %id, name = %link.name, connected = link.outbox.is_some());
                if let Some((_, outbox)) = link.outbox {
                    let _ = outbox.send(Err(Status::unavailable("lease expired")));
                }
            }
            let commands = st.sweep.remove_worker(&id, "lease expired");
            self.apply(&mut st, commands);
        }
    }

    /// Carries out the sweep's commands, then tells everyone to go home if the sweep is over.
    fn apply(&self, st: &mut State, commands: Vec<Command>) {
        self.record_and_send(st, &commands, "sweep finished");
    }

    /// Queues what changed for the store, with the messages that follow from it: they go out
    /// once it is committed, in the order decided. A failed store ends the sweep.
    fn record_and_send(&self, st: &mut State, commands: &[Command], shutdown_reason: &str) {
        if st.durable.failure().is_some() && !st.sweep.is_finished() {
            st.sweep.finish_early();
        }
        let mut messages: Vec<(Outbox, CoordinatorMessage)> = commands
            .iter()
            .filter_map(|command| {
                let (worker, kind) = match command {
                    Command::Assign { worker, assignment } => {
                        (worker, Down::Assign(assignment.as_ref().into()))
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
                    ),
                };
                // A worker that is away gets no assignments, and learns of a stop when it comes
                // back (that trial is not resumed).
                let (_, outbox) = st.workers.get(worker)?.outbox.as_ref()?;
                Some((outbox.clone(), CoordinatorMessage { kind: Some(kind) }))
            })
            .collect();
        if st.sweep.is_finished() {
            messages.extend(self.shutdown_messages(st, shutdown_reason));
        }
        let State { sweep, durable, .. } = st;
        durable.sync(sweep, commands, deliver(messages));
    }

    /// A Shutdown for every connected worker; the sweep is done from here on.
    fn shutdown_messages(&self, st: &mut State, reason: &str) -> Vec<(Outbox, CoordinatorMessage)> {
        if !st.shutdown_sent {
            st.shutdown_sent = true;
            info!(
                event = "workers_released",
                workers = st.workers.len(),
                reason
            );
        }
        self.done.send_replace(true);
        st.workers
            .values()
            .filter_map(|w| w.outbox.as_ref())
            .map(|(_, outbox)| (outbox.clone(), shutdown_message(reason)))
            .collect()
    }

    fn register(&self, r: &RegisterRequest) -> Result<RegisterResponse, CoordinatorError> {
        let name = r.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(CoordinatorError::InvalidRequest(format!(
                "worker name must have 1 to {MAX_NAME_LEN} characters"
            )));
        }
        if r.slots == 0 || r.slots > MAX_SLOTS {
            return Err(CoordinatorError::InvalidRequest(format!(
                "slots must lie in 1..={MAX_SLOTS}, got {}",
                r.slots
            )));
        }
        if r.instance.len() > MAX_NAME_LEN || r.running.len() > MAX_SLOTS as usize * 64 {
            return Err(CoordinatorError::InvalidRequest(
                "instance id or running list too long".into(),
            ));
        }
        let mut st = self.lock();
        let known = st
            .workers
            .iter()
            .find(|(_, w)| !r.instance.is_empty() && w.instance == r.instance)
            .map(|(id, w)| (id.clone(), w.joined));
        let (worker_id, resume) = match known {
            Some((id, joined)) => {
                let reported: Vec<(u64, u32)> =
                    r.running.iter().map(|t| (t.trial_id, t.attempt)).collect();
                let kept = if joined {
                    st.sweep.reattach_worker(&id, &reported)
                } else {
                    Vec::new()
                };
                info!(event = "worker_reconnected", worker = %id, name, resumed = kept.len());
                if let Some(link) = st.workers.get_mut(&id) {
                    link.last_seen = Instant::now();
                }
                (id, kept)
            }
            None => {
                let id = format!("w{}", self.next_worker.fetch_add(1, Ordering::Relaxed));
                info!(event = "worker_registered", worker = %id, name, host = %r.host, slots = r.slots);
                st.workers.insert(
                    id.clone(),
                    WorkerLink {
                        instance: r.instance.clone(),
                        name: name.to_string(),
                        slots: r.slots,
                        outbox: None,
                        last_seen: Instant::now(),
                        joined: false,
                    },
                );
                (id, Vec::new())
            }
        };
        let commands = st.sweep.dispatch();
        self.apply(&mut st, commands);
        Ok(RegisterResponse {
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
        })
    }

    /// Opens a session: returns its number, for `hang_up`.
    fn connect(&self, worker: &str, outbox: Outbox) -> Result<u64, CoordinatorError> {
        let mut st = self.lock();
        st.sessions += 1;
        let session = st.sessions;
        if !st.workers.contains_key(worker) {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        }
        if st.shutdown_sent {
            // Too late for work: told at once, and nothing more to wait for.
            let _ = outbox.send(Ok(shutdown_message("sweep finished")));
            st.workers.remove(worker);
            return Ok(session);
        }
        let Some(link) = st.workers.get_mut(worker) else {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        };
        link.last_seen = Instant::now();
        link.outbox = Some((session, outbox));
        if link.joined {
            st.sweep.set_available(worker, true);
        } else {
            link.joined = true;
            let (name, slots) = (link.name.clone(), link.slots);
            info!(event = "worker_connected", worker, name = %name, slots);
            st.sweep.add_worker(worker.to_string(), name, slots);
        }
        let commands = st.sweep.dispatch();
        self.apply(&mut st, commands);
        Ok(session)
    }

    /// The stream ended without a goodbye: the worker keeps its trials while its lease runs.
    fn hang_up(&self, worker: &str, session: u64) {
        let mut st = self.lock();
        if let Some(link) = st.workers.get_mut(worker) {
            if link.outbox.as_ref().is_some_and(|(s, _)| *s == session) {
                link.outbox = None;
                link.last_seen = Instant::now();
                st.sweep.set_available(worker, false);
            }
        }
    }

    fn handle(&self, worker: &str, message: WorkerMessage) -> Result<(), CoordinatorError> {
        let mut st = self.lock();
        let Some(link) = st.workers.get_mut(worker) else {
            return Err(CoordinatorError::UnknownWorker(worker.to_string()));
        };
        link.last_seen = Instant::now();
        let commands = match message.kind {
            Some(Up::Trace(batch)) => {
                if batch.points.len() > MAX_POINTS_PER_BATCH {
                    return Err(CoordinatorError::InvalidRequest(format!(
                        "trace batch of {} points exceeds the limit of {MAX_POINTS_PER_BATCH}",
                        batch.points.len()
                    )));
                }
                let points = batch
                    .points
                    .into_iter()
                    .map(TracePoint::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                let (commands, accepted) =
                    st.sweep
                        .on_trace(worker, batch.trial_id, batch.attempt, &points)?;
                if !accepted.is_empty() {
                    st.durable
                        .append_points(batch.trial_id, batch.attempt, accepted);
                }
                commands
            }
            Some(Up::Completed(c)) => st
                .sweep
                .on_completed(worker, c.trial_id, c.attempt, c.steps)?,
            Some(Up::Failed(f)) => st
                .sweep
                .on_failed(worker, f.trial_id, f.attempt, &f.error)?,
            Some(Up::Heartbeat(_)) => Vec::new(),
            Some(Up::Leaving(l)) => {
                info!(event = "worker_leaving", reason = %l.reason);
                st.workers.remove(worker);
                st.sweep.remove_worker(worker, "left")
            }
            Some(Up::Hello(_)) => {
                return Err(CoordinatorError::InvalidRequest(
                    "hello sent twice on one stream".into(),
                ))
            }
            None => return Err(CoordinatorError::InvalidRequest("empty message".into())),
        };
        self.apply(&mut st, commands);
        Ok(())
    }
}

/// Sends `messages` once the event that caused them is committed. If it never will be (the store
/// failed, which ends the sweep) only the Shutdown orders go out.
fn deliver(messages: Vec<(Outbox, CoordinatorMessage)>) -> Option<Then> {
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

fn shutdown_message(reason: &str) -> CoordinatorMessage {
    CoordinatorMessage {
        kind: Some(Down::Shutdown(Shutdown {
            reason: reason.to_string(),
        })),
    }
}

/// The tonic service; cheap to clone.
#[derive(Clone)]
pub struct CoordinatorService {
    hub: Arc<Hub>,
}

impl CoordinatorService {
    pub fn new(hub: Arc<Hub>) -> Self {
        CoordinatorService { hub }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        Ok(Response::new(self.hub.register(request.get_ref())?))
    }

    type SessionStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let worker = match inbound.message().await? {
            Some(WorkerMessage {
                kind: Some(Up::Hello(hello)),
            }) => hello.worker_id,
            _ => {
                return Err(CoordinatorError::InvalidRequest(
                    "the first message on a session must be hello".into(),
                )
                .into())
            }
        };
        let (outbox, rx) = mpsc::unbounded_channel();
        let session = self.hub.connect(&worker, outbox.clone())?;
        let hub = self.hub.clone();
        let span = tracing::info_span!("session", sweep = %hub.sweep_id, worker = %worker);
        tokio::spawn(
            async move {
                loop {
                    match inbound.message().await {
                        Ok(Some(message)) => {
                            if let Err(e) = hub.handle(&worker, message) {
                                warn!(event = "worker_rejected", error = %e);
                                let _ = outbox.send(Err(e.into()));
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(status) => {
                            warn!(event = "stream_broken", error = %status.message());
                            // Tell the worker why, if it can still hear (e.g. an oversized message).
                            let _ = outbox.send(Err(status));
                            break;
                        }
                    }
                }
                info!(event = "worker_disconnected");
                hub.hang_up(&worker, session);
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

/// Shared-secret check run before every RPC. The token is never logged.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<[u8]>>,
}

impl TokenCheck {
    pub fn new(token: Option<&str>) -> TokenCheck {
        TokenCheck {
            expected: token.map(|t| Arc::from(t.as_bytes())),
        }
    }
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else {
            return Ok(request);
        };
        let presented = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if constant_time_eq(token.as_bytes(), expected) => Ok(request),
            _ => {
                warn!(
                    event = "unauthenticated",
                    remote = ?request.remote_addr(),
                    token_presented = presented.is_some(),
                );
                Err(Status::unauthenticated("missing or wrong token"))
            }
        }
    }
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(a) = auth {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }

    #[test]
    fn token_check_accepts_only_the_exact_bearer_token() {
        let mut check = TokenCheck::new(Some("s3cret"));
        assert!(check.call(request(Some("Bearer s3cret"))).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret!"),
            Some("s3cret"),
        ] {
            let err = check.call(request(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        assert!(TokenCheck::new(None).call(request(None)).is_ok());
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
