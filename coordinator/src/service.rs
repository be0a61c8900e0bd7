//! The gRPC face of the sweep: registers workers, holds one stream per worker, feeds what
//! arrives into the `Sweep` state machine and sends out the commands it returns.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lrsweep_proto::domain::TracePoint;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::coordinator_server::Coordinator;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{
    CoordinatorMessage, RegisterRequest, RegisterResponse, Shutdown, StopTrial, WorkerMessage,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn, Instrument};

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

struct Registration {
    name: String,
    slots: u32,
}

struct State {
    sweep: Sweep,
    links: HashMap<WorkerId, Outbox>,
    pending: HashMap<WorkerId, Registration>,
    shutdown_sent: bool,
}

/// Shared by every connection; the sweep sits behind one lock so decisions are serial.
pub struct Hub {
    sweep_id: String,
    state: Mutex<State>,
    next_worker: AtomicU64,
    /// Becomes true once the sweep is over and every worker has been told.
    done: watch::Sender<bool>,
}

impl Hub {
    pub fn new(sweep_id: String, sweep: Sweep) -> Arc<Hub> {
        Arc::new(Hub {
            sweep_id,
            state: Mutex::new(State {
                sweep,
                links: HashMap::new(),
                pending: HashMap::new(),
                shutdown_sent: false,
            }),
            next_worker: AtomicU64::new(1),
            done: watch::channel(false).0,
        })
    }

    pub fn sweep_id(&self) -> &str {
        &self.sweep_id
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

    pub fn connected_workers(&self) -> usize {
        self.lock().links.len()
    }

    /// Stop taking work: nothing more is dispatched and every worker is told to exit.
    pub fn interrupt(&self, reason: &str) {
        let mut st = self.lock();
        st.sweep.finish_early();
        self.send_shutdown(&mut st, reason);
    }

    /// Carries out the sweep's commands, then tells everyone to go home if the sweep is over.
    fn apply(&self, st: &mut State, commands: Vec<Command>) {
        for command in commands {
            let (worker, kind) = match command {
                Command::Assign { worker, assignment } => {
                    (worker, Down::Assign((&assignment).into()))
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
                        trial_id: trial,
                        attempt,
                        kind: lrsweep_proto::v1::StopKind::from(kind).into(),
                        reason: reason.to_string(),
                    }),
                ),
            };
            if let Some(link) = st.links.get(&worker) {
                // A closed link is a worker on its way out; its disconnect re-queues its trials.
                let _ = link.send(Ok(CoordinatorMessage { kind: Some(kind) }));
            }
        }
        if st.sweep.is_finished() {
            self.send_shutdown(st, "sweep finished");
        }
    }

    fn send_shutdown(&self, st: &mut State, reason: &str) {
        if !st.shutdown_sent {
            st.shutdown_sent = true;
            info!(event = "workers_released", workers = st.links.len(), reason);
        }
        for link in st.links.values() {
            let _ = link.send(Ok(shutdown_message(reason)));
        }
        self.done.send_replace(true);
    }

    fn handle(&self, worker: &str, message: WorkerMessage) -> Result<(), CoordinatorError> {
        let mut st = self.lock();
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
                st.sweep
                    .on_trace(worker, batch.trial_id, batch.attempt, &points)?
            }
            Some(Up::Completed(c)) => st
                .sweep
                .on_completed(worker, c.trial_id, c.attempt, c.steps)?,
            Some(Up::Failed(f)) => st
                .sweep
                .on_failed(worker, f.trial_id, f.attempt, &f.error)?,
            Some(Up::Heartbeat(_)) => Vec::new(),
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

    fn connect(&self, worker: &str, outbox: Outbox) -> Result<(), CoordinatorError> {
        let mut st = self.lock();
        let registration = st
            .pending
            .remove(worker)
            .ok_or_else(|| CoordinatorError::UnknownWorker(worker.to_string()))?;
        if st.shutdown_sent {
            let _ = outbox.send(Ok(shutdown_message("sweep finished")));
            return Ok(());
        }
        info!(event = "worker_connected", worker, name = %registration.name, slots = registration.slots);
        st.sweep
            .add_worker(worker.to_string(), registration.name, registration.slots);
        st.links.insert(worker.to_string(), outbox);
        let commands = st.sweep.dispatch();
        self.apply(&mut st, commands);
        Ok(())
    }

    fn disconnect(&self, worker: &str) {
        let mut st = self.lock();
        st.links.remove(worker);
        st.sweep.remove_worker(worker);
        let commands = st.sweep.dispatch();
        self.apply(&mut st, commands);
    }
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
        let r = request.into_inner();
        let name = r.name.trim();
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(CoordinatorError::InvalidRequest(format!(
                "worker name must have 1 to {MAX_NAME_LEN} characters"
            ))
            .into());
        }
        if r.slots == 0 || r.slots > MAX_SLOTS {
            return Err(CoordinatorError::InvalidRequest(format!(
                "slots must lie in 1..={MAX_SLOTS}, got {}",
                r.slots
            ))
            .into());
        }
        let worker_id = format!("w{}", self.hub.next_worker.fetch_add(1, Ordering::Relaxed));
        info!(event = "worker_registered", worker = %worker_id, name, host = %r.host, slots = r.slots);
        self.hub.lock().pending.insert(
            worker_id.clone(),
            Registration {
                name: name.to_string(),
                slots: r.slots,
            },
        );
        Ok(Response::new(RegisterResponse {
            worker_id,
            sweep_id: self.hub.sweep_id.clone(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        }))
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
        self.hub.connect(&worker, outbox.clone())?;
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
                            break;
                        }
                    }
                }
                info!(event = "worker_disconnected");
                hub.disconnect(&worker);
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
        for bad in [None, Some("Bearer s3cre"), Some("Bearer s3cret!"), Some("s3cret")] {
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
