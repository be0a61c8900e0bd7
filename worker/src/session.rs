//! Connections to the coordinator: register, hold the stream, run the trials it assigns and
//! stream their traces back. When a stream breaks, `run` reconnects with backoff and the worker
//! resumes its trials where the coordinator lost them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lrsweep_proto::cli::shutdown_signal;
use lrsweep_proto::domain::TrialAssignment;
use lrsweep_proto::rng::{hash, unit};
use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{Heartbeat, Hello, Leaving, RegisterRequest, TrialFailed};
use tokio::sync::watch;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::{info, warn, Instrument};

use crate::backoff::Backoff;
use crate::data_cache::DataCache;
use crate::outbox::Outbox;
use crate::slots::Slots;
use crate::trials::{up, TrialEnd, Trials};
use crate::WorkerError;

/// The longest a stopping worker waits for its trials: the largest grace a command trainer may
/// have, and some.
const STOP_WAIT: Duration = Duration::from_millis(lrsweep_proto::domain::MAX_STOP_GRACE_MS + 5_000);

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Coordinator URL, e.g. `http://127.0.0.1:50051`.
    pub coordinator: String,
    pub name: String,
    pub host: String,
    /// Trials run at once.
    pub slots: u32,
    /// Device of each slot (`CUDA_VISIBLE_DEVICES` of its command trials); empty or one per slot.
    pub devices: Vec<String>,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Shared secret sent with every RPC.
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an `https://` coordinator.
    pub ca: Option<std::path::PathBuf>,
    /// Exit 0 after this long without a coordinator (a Job's or Slurm step's worker must end).
    pub give_up_after: Option<Duration>,
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
        .tcp_nodelay(true)
        // Across a network partition nothing arrives and nothing fails: without pings the
        // stream waits on a dead connection for the kernel's retransmission timeout (minutes).
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
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

/// Everything that outlives one connection.
struct Worker {
    config: WorkerConfig,
    /// Random per process: lets the coordinator recognise this worker when it reconnects.
    instance: String,
    trials: Arc<Trials>,
    cache: Arc<DataCache>,
    outbox: Arc<Outbox>,
    slots: Arc<Slots>,
}

enum SessionEnd {
    /// The coordinator said there is no more work, or we said goodbye.
    Over,
    /// The stream ended without a shutdown order: reconnect.
    Lost(String),
}

/// Runs until the coordinator says the sweep is over or a shutdown signal arrives.
pub async fn run(config: WorkerConfig) -> Result<(), WorkerError> {
    let (endpoint, token) = endpoint(&config)?;
    let span = tracing::info_span!("worker", worker = %config.name);
    let (leave_tx, mut leave) = watch::channel(false);
    let signal = shutdown_signal();
    tokio::spawn(async move {
        signal.await;
        let _ = leave_tx.send(true);
    });
    let worker = Worker {
        instance: instance_id(),
        trials: Arc::default(),
        cache: Arc::default(),
        outbox: Arc::default(),
        slots: Arc::new(Slots::new(config.slots, config.devices.clone())),
        config,
    };
    let mut backoff = Backoff::new(
        worker.config.initial_backoff,
        worker.config.max_backoff,
        u64::from(std::process::id()),
    );
    let mut alone_since = Instant::now();
    loop {
        let mut registered = false;
        let outcome = worker
            .session(
                &endpoint,
                &token,
                &mut backoff,
                &mut registered,
                leave.clone(),
            )
            .instrument(span.clone())
            .await;
        if registered {
            alone_since = Instant::now();
        }
        worker.outbox.close();
        let (why, hint) = match outcome {
            Ok(SessionEnd::Over) => {
                worker.stop_trials().instrument(span.clone()).await;
                return Ok(());
            }
            Ok(SessionEnd::Lost(why)) => (why, None),
            // Retrying cannot fix a refused token or a registration the coordinator rejects.
            Err(WorkerError::Rpc(status))
                if matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::InvalidArgument
                ) =>
            {
                worker.stop_trials().instrument(span.clone()).await;
                return Err(WorkerError::Rpc(status));
            }
            Err(e) => crate::diagnose::explain(&e, &worker.config.coordinator).await,
        };
        let mut delay = backoff.next_delay();
        if let Some(limit) = worker.config.give_up_after {
            let alone = alone_since.elapsed();
            if alone >= limit {
                info!(parent: &span, event = "giving_up", alone_s = alone.as_secs(), reason = "no coordinator for --give-up-after");
                worker.stop_trials().instrument(span.clone()).await;
                return Ok(());
            }
            // One last attempt when the time is up, not a full backoff later.
            delay = delay.min(limit - alone);
        }
        warn!(
            parent: &span,
            event = "coordinator_unreachable",
            coordinator = %worker.config.coordinator,
            error = %why,
            hint,
            attempt = backoff.failures(),
            retry_in_ms = delay.as_millis() as u64,
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = leave.wait_for(|l| *l) => {
                info!(parent: &span, event = "shutdown_requested");
                worker.stop_trials().instrument(span.clone()).await;
                return Ok(());
            }
        }
    }
}

fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}-{:x}", std::process::id(), nanos)
}

impl Worker {
    /// Stops every trial and waits until their programs are gone (a command trial's program
    /// has its grace to exit), so that the worker never leaves one running behind it.
    async fn stop_trials(&self) {
        self.trials.stop_all();
        let waited = tokio::time::timeout(STOP_WAIT, self.slots.idle()).await;
        if waited.is_err() {
            warn!(
                event = "trials_still_stopping",
                waited_ms = STOP_WAIT.as_millis() as u64
            );
        }
    }

    async fn session(
        &self,
        endpoint: &Endpoint,
        token: &AttachToken,
        backoff: &mut Backoff,
        registered: &mut bool,
        mut leave: watch::Receiver<bool>,
    ) -> Result<SessionEnd, WorkerError> {
        let channel = endpoint.connect().await?;
        let mut client: Client = CoordinatorClient::with_interceptor(channel, token.clone());
        let registration = client
            .register(RegisterRequest {
                name: self.config.name.clone(),
                host: self.config.host.clone(),
                slots: self.config.slots,
                instance: self.instance.clone(),
                running: self.trials.progress(),
            })
            .await?
            .into_inner();
        backoff.reset();
        *registered = true;

        let hello = up(Up::Hello(Hello {
            worker_id: registration.worker_id.clone(),
        }));
        let (resumed, upstream) = self
            .trials
            .resume(&registration.resume, &self.outbox, hello);
        info!(
            event = "registered",
            worker_id = %registration.worker_id,
            sweep = %registration.sweep_id,
            slots = self.config.slots,
            resumed,
        );
        let mut inbound = client.session(upstream).await?.into_inner();
        // The first beat at this worker's own point of the interval: workers that registered in
        // the same second (a job array, a restarted coordinator) do not all beat at once.
        let every = Duration::from_millis(u64::from(registration.heartbeat_interval_ms.max(100)));
        let seed = self.instance.bytes().fold(0, |h, b| hash(h ^ u64::from(b)));
        let phase = every.mul_f64(unit(seed));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + phase, every);
        loop {
            tokio::select! {
                message = inbound.message() => {
                    let Some(message) = message? else {
                        return Ok(SessionEnd::Lost("coordinator closed the stream".into()));
                    };
                    match message.kind {
                        Some(Down::Assign(wire)) => self.assign(wire),
                        Some(Down::Stop(stop)) => {
                            info!(event = "stop_received", trial = stop.trial_id, reason = %stop.reason);
                            self.trials.stop(stop.trial_id, stop.attempt);
                        }
                        Some(Down::Shutdown(s)) => {
                            info!(event = "shutdown_received", reason = %s.reason);
                            // Whatever still trains is of no use to anyone now.
                            self.trials.stop_all();
                            self.hang_up(inbound).await;
                            return Ok(SessionEnd::Over);
                        }
                        None => warn!(event = "empty_message_ignored"),
                    }
                }
                _ = heartbeat.tick() => {
                    let running_trials = self.trials.running();
                    if !self.outbox.send(up(Up::Heartbeat(Heartbeat { running_trials }))) {
                        return Ok(SessionEnd::Lost("outbound stream closed".into()));
                    }
                }
                _ = leave.wait_for(|l| *l) => {
                    info!(event = "shutdown_requested");
                    // Hand the trials back now rather than when the lease runs out.
                    self.trials.stop_all();
                    self.outbox.send(up(Up::Leaving(Leaving { reason: "worker shutting down".into() })));
                    self.hang_up(inbound).await;
                    return Ok(SessionEnd::Over);
                }
            }
        }
    }

    /// Ends our half of the stream and waits briefly for the coordinator to end its half, rather
    /// than cutting the connection under it.
    async fn hang_up(&self, mut inbound: tonic::Streaming<lrsweep_proto::v1::CoordinatorMessage>) {
        self.outbox.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(Some(_)) = inbound.message().await {}
        })
        .await;
    }

    /// Queues the trial for a free slot; its training runs on a blocking thread.
    fn assign(&self, wire: lrsweep_proto::v1::AssignTrial) {
        let (trial_id, attempt) = (wire.trial_id, wire.attempt);
        let assignment = match TrialAssignment::try_from(wire) {
            Ok(a) => a,
            Err(e) => {
                warn!(event = "assignment_rejected", trial = trial_id, error = %e);
                self.outbox.send(up(Up::Failed(TrialFailed {
                    trial_id,
                    attempt,
                    error: e.to_string(),
                    // A message this worker cannot read fails the same way everywhere.
                    permanent: true,
                })));
                return;
            }
        };
        let state = self.trials.add(&assignment);
        let (slots, trials, cache, outbox) = (
            self.slots.clone(),
            self.trials.clone(),
            self.cache.clone(),
            self.outbox.clone(),
        );
        let span = tracing::info_span!("trial", trial = trial_id, lr = assignment.lr, attempt);
        tokio::spawn(
            async move {
                let Some(slot) = slots.acquire().await else {
                    return;
                };
                info!(
                    event = "trial_started",
                    steps = assignment.steps,
                    slot = slot.index
                );
                match crate::trials::run(assignment, state, &trials, cache, outbox, &slot).await {
                    TrialEnd::Completed(steps) => info!(event = "trial_finished", steps),
                    TrialEnd::Stopped => info!(event = "trial_stopped"),
                    TrialEnd::Failed { error, permanent } => {
                        warn!(event = "trial_failed", error = %error, permanent)
                    }
                }
            }
            .instrument(span),
        );
    }
}
