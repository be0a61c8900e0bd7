//! One connection to the coordinator: register, hold the stream, run the trials it assigns and
//! stream their traces back. `run` reconnects when a session is lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lrsweep_proto::cli::shutdown_signal;
use lrsweep_proto::domain::{TracePoint, TrainerConfig, TrialAssignment, TrialId};
use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{
    Heartbeat, Hello, RegisterRequest, TraceBatch, TrialCompleted, TrialFailed, WorkerMessage,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::{info, warn, Instrument};

use crate::backoff::Backoff;
use crate::trainer::{run_trial, PreparedData};
use crate::WorkerError;

/// Points are sent in batches of at most this many...
const BATCH_POINTS: usize = 32;
/// ...or after this long, so the coordinator sees a divergence within milliseconds.
const BATCH_AGE: Duration = Duration::from_millis(5);

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:50051`.
    pub coordinator: String,
    pub name: String,
    pub host: String,
    /// Trials run at once.
    pub slots: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Shared secret sent with every RPC.
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an `https://` coordinator.
    pub ca: Option<std::path::PathBuf>,
}

type Client = CoordinatorClient<InterceptedService<Channel, AttachToken>>;

/// Adds `authorization: Bearer TOKEN` to every request.
#[derive(Clone)]
struct AttachToken(Option<MetadataValue<Ascii>>);

impl Interceptor for AttachToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Checks the address, token and TLS settings once, before any connection is tried.
fn endpoint(config: &WorkerConfig) -> Result<(Endpoint, AttachToken), WorkerError> {
    let bad =
        |what: String| WorkerError::Config(format!("--coordinator {}: {what}", config.coordinator));
    let mut endpoint = Endpoint::from_shared(config.coordinator.clone())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let https = config.coordinator.starts_with("https://");
    match (&config.ca, https) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca)
                .map_err(|e| WorkerError::Config(format!("reading --ca {}: {e}", ca.display())))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?;
        }
        (None, true) => return Err(bad("an https coordinator needs --ca".into())),
        (Some(_), false) => return Err(bad("--ca needs an https:// coordinator".into())),
        (None, false) => {}
    }
    let token = match &config.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| WorkerError::Config("the token must be printable ASCII".into()))?,
        ),
        None => None,
    };
    Ok((endpoint, AttachToken(token)))
}

enum SessionEnd {
    /// The coordinator said there is no more work.
    Shutdown,
    /// The stream ended without a shutdown order: reconnect.
    Lost(String),
}

/// Runs until the coordinator says the sweep is over or a shutdown signal arrives.
pub async fn run(config: WorkerConfig) -> Result<(), WorkerError> {
    let (endpoint, token) = endpoint(&config)?;
    let span = tracing::info_span!("worker", worker = %config.name);
    let cache = DataCache::default();
    let mut backoff = Backoff::new(
        config.initial_backoff,
        config.max_backoff,
        u64::from(std::process::id()),
    );
    loop {
        let outcome = tokio::select! {
            outcome = session(&config, &endpoint, &token, &cache, &mut backoff).instrument(span.clone()) => outcome,
            () = shutdown_signal() => {
                info!(parent: &span, event = "shutdown_requested");
                return Ok(());
            }
        };
        let why = match outcome {
            Ok(SessionEnd::Shutdown) => return Ok(()),
            Ok(SessionEnd::Lost(why)) => why,
            // Retrying cannot fix a refused token or a registration the coordinator rejects.
            Err(WorkerError::Rpc(status))
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(WorkerError::Rpc(status));
            }
            Err(e) => e.to_string(),
        };
        let delay = backoff.next_delay();
        warn!(
            parent: &span,
            event = "coordinator_unreachable",
            coordinator = %config.coordinator,
            error = %why,
            attempt = backoff.failures(),
            retry_in_ms = delay.as_millis() as u64,
        );
        tokio::time::sleep(delay).await;
    }
}

/// Prepared datasets, shared by all trials with the same data settings.
#[derive(Default, Clone)]
struct DataCache(Arc<Mutex<HashMap<String, Arc<PreparedData>>>>);

impl DataCache {
    fn get(&self, trainer: &TrainerConfig) -> Result<Arc<PreparedData>, WorkerError> {
        let key = format!(
            "{}|{}|{}",
            serde_json::to_string(&trainer.dataset).unwrap_or_default(),
            trainer.seed,
            trainer.validation_fraction
        );
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(data) = cache.get(&key) {
            return Ok(data.clone());
        }
        let data = Arc::new(PreparedData::prepare(
            &trainer.dataset,
            trainer.seed,
            trainer.validation_fraction,
        )?);
        cache.insert(key, data.clone());
        Ok(data)
    }
}

/// Stop flags of this session's trials. Dropping the session stops them all: their trials were
/// handed back to the coordinator the moment the stream closed.
#[derive(Default, Clone)]
struct Running(Arc<Mutex<HashMap<TrialId, Arc<AtomicBool>>>>);

impl Running {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<TrialId, Arc<AtomicBool>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct StopAllOnDrop(Running);

impl Drop for StopAllOnDrop {
    fn drop(&mut self) {
        for flag in self.0.map().values() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

async fn session(
    config: &WorkerConfig,
    endpoint: &Endpoint,
    token: &AttachToken,
    cache: &DataCache,
    backoff: &mut Backoff,
) -> Result<SessionEnd, WorkerError> {
    let channel = endpoint.connect().await?;
    let mut client: Client = CoordinatorClient::with_interceptor(channel, token.clone());
    let registration = client
        .register(RegisterRequest {
            name: config.name.clone(),
            host: config.host.clone(),
            slots: config.slots,
        })
        .await?
        .into_inner();
    backoff.reset();
    let worker_id = registration.worker_id;
    info!(event = "registered", worker_id = %worker_id, sweep = %registration.sweep_id, slots = config.slots);

    let (tx, rx) = mpsc::channel::<WorkerMessage>(1024);
    let _ = tx.send(up(Up::Hello(Hello { worker_id }))).await;
    let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();

    let slots = Arc::new(Semaphore::new(config.slots as usize));
    let running = Running::default();
    let _stop_all = StopAllOnDrop(running.clone());
    let mut heartbeat = tokio::time::interval(Duration::from_millis(u64::from(
        registration.heartbeat_interval_ms.max(100),
    )));
    loop {
        tokio::select! {
            message = inbound.message() => {
                let Some(message) = message? else {
                    return Ok(SessionEnd::Lost("coordinator closed the stream".into()));
                };
                match message.kind {
                    Some(Down::Assign(wire)) => {
                        let (trial, attempt) = (wire.trial_id, wire.attempt);
                        match TrialAssignment::try_from(wire) {
                            Ok(assignment) => start_trial(assignment, &slots, &running, cache, &tx),
                            Err(e) => {
                                warn!(event = "assignment_rejected", trial, error = %e);
                                let _ = tx.send(up(Up::Failed(TrialFailed { trial_id: trial, attempt, error: e.to_string() }))).await;
                            }
                        }
                    }
                    Some(Down::Stop(stop)) => {
                        info!(event = "stop_received", trial = stop.trial_id, reason = %stop.reason);
                        if let Some(flag) = running.map().get(&stop.trial_id) {
                            flag.store(true, Ordering::Relaxed);
                        }
                    }
                    Some(Down::Shutdown(s)) => {
                        info!(event = "shutdown_received", reason = %s.reason);
                        // Hang up cleanly: end our half of the stream and let the coordinator end
                        // its half, rather than cutting the connection under it.
                        drop(tx);
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Ok(Some(_)) = inbound.message().await {}
                        })
                        .await;
                        return Ok(SessionEnd::Shutdown);
                    }
                    None => warn!(event = "empty_message_ignored"),
                }
            }
            _ = heartbeat.tick() => {
                let running_trials = running.map().keys().copied().collect();
                if tx.send(up(Up::Heartbeat(Heartbeat { running_trials }))).await.is_err() {
                    return Ok(SessionEnd::Lost("outbound stream closed".into()));
                }
            }
        }
    }
}

fn up(kind: Up) -> WorkerMessage {
    WorkerMessage { kind: Some(kind) }
}

/// Queues the trial for a free slot; its training runs on a blocking thread.
fn start_trial(
    assignment: TrialAssignment,
    slots: &Arc<Semaphore>,
    running: &Running,
    cache: &DataCache,
    tx: &mpsc::Sender<WorkerMessage>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    running.map().insert(assignment.trial_id, stop.clone());
    let (slots, running, cache, tx) = (slots.clone(), running.clone(), cache.clone(), tx.clone());
    let span = tracing::info_span!(
        "trial",
        trial = assignment.trial_id,
        lr = assignment.lr,
        attempt = assignment.attempt
    );
    tokio::spawn(
        async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            let (trial_id, attempt) = (assignment.trial_id, assignment.attempt);
            if !stop.load(Ordering::Relaxed) {
                info!(event = "trial_started", steps = assignment.steps);
                let trainer_tx = tx.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    let data = cache.get(&assignment.trainer)?;
                    train(&assignment, data, &stop, &trainer_tx)
                })
                .await;
                let message = match outcome {
                    Ok(Ok(Some(steps))) => {
                        info!(event = "trial_finished", steps);
                        Some(Up::Completed(TrialCompleted {
                            trial_id,
                            attempt,
                            steps,
                        }))
                    }
                    Ok(Ok(None)) => {
                        info!(event = "trial_stopped");
                        None
                    }
                    Ok(Err(e)) => Some(failed(trial_id, attempt, e.to_string())),
                    Err(join) => Some(failed(
                        trial_id,
                        attempt,
                        format!("trainer panicked: {join}"),
                    )),
                };
                if let Some(kind) = message {
                    let _ = tx.send(up(kind)).await;
                }
            }
            running.map().remove(&trial_id);
        }
        .instrument(span),
    );
}

fn failed(trial_id: TrialId, attempt: u32, error: String) -> Up {
    warn!(event = "trial_failed", error = %error);
    Up::Failed(TrialFailed {
        trial_id,
        attempt,
        error,
    })
}

/// Trains on this thread, streaming points in small batches. `Some(steps)` when the trial ran
/// to its budget, `None` when it was stopped.
fn train(
    assignment: &TrialAssignment,
    data: Arc<PreparedData>,
    stop: &AtomicBool,
    tx: &mpsc::Sender<WorkerMessage>,
) -> Result<Option<u64>, WorkerError> {
    let mut batch: Vec<TracePoint> = Vec::with_capacity(BATCH_POINTS);
    let mut oldest = Instant::now();
    let send = |points: &mut Vec<TracePoint>| {
        let message = up(Up::Trace(TraceBatch {
            trial_id: assignment.trial_id,
            attempt: assignment.attempt,
            points: points.drain(..).map(Into::into).collect(),
        }));
        // A closed channel means the session is gone; the stop flag ends training next step.
        let _ = tx.blocking_send(message);
    };
    let run = run_trial(
        assignment,
        data,
        &|| stop.load(Ordering::Relaxed),
        &mut |point| {
            if batch.is_empty() {
                oldest = Instant::now();
            }
            batch.push(point);
            // Anything the coordinator may act on at once goes out at once.
            let urgent = !point.train_loss.is_finite() || point.val_loss.is_some();
            if urgent || batch.len() >= BATCH_POINTS || oldest.elapsed() >= BATCH_AGE {
                send(&mut batch);
            }
        },
    )?;
    if !batch.is_empty() {
        send(&mut batch);
    }
    Ok((!run.stopped).then_some(run.steps))
}
