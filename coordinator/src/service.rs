//! The gRPC face of the coordinator: checks and decodes what workers send, hands it to the hub,
//! and streams the hub's orders back.

use std::pin::Pin;
use std::time::Instant;

use lrsweep_proto::domain::TracePoint;
use lrsweep_proto::v1::coordinator_server::Coordinator;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{CoordinatorMessage, RegisterRequest, RegisterResponse, WorkerMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn, Instrument};

use crate::hub::{Hub, WorkerEvent};
use crate::CoordinatorError;

const MAX_NAME_LEN: usize = 256;
const MAX_SLOTS: u32 = 1024;
/// Largest message accepted from a worker; a trace batch is a few KiB.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// A trace batch bigger than this is a broken or hostile worker, not a fast one.
const MAX_POINTS_PER_BATCH: usize = 100_000;

/// The tonic service; cheap to clone.
#[derive(Clone)]
pub struct CoordinatorService {
    hub: Hub,
    sweep_id: String,
}

impl CoordinatorService {
    pub fn new(hub: Hub, sweep_id: String) -> Self {
        CoordinatorService { hub, sweep_id }
    }
}

/// Rejects a registration with an empty or overlong name, an impossible slot count, or lists
/// too long to be honest. Public for the fuzz targets (fuzz/).
pub fn check_register(r: &RegisterRequest) -> Result<(), CoordinatorError> {
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
    Ok(())
}

/// A message after the session's hello, as the hub takes it. Public for the fuzz targets.
pub fn decode(message: WorkerMessage) -> Result<WorkerEvent, CoordinatorError> {
    Ok(match message.kind {
        Some(Up::Trace(batch)) => {
            if batch.points.len() > MAX_POINTS_PER_BATCH {
                return Err(CoordinatorError::InvalidRequest(format!(
                    "trace batch of {} points exceeds the limit of {MAX_POINTS_PER_BATCH}",
                    batch.points.len()
                )));
            }
            WorkerEvent::Trace {
                received: Instant::now(),
                trial: batch.trial_id,
                attempt: batch.attempt,
                points: batch
                    .points
                    .into_iter()
                    .map(TracePoint::try_from)
                    .collect::<Result<Vec<_>, _>>()?,
            }
        }
        Some(Up::Completed(c)) => WorkerEvent::Completed {
            trial: c.trial_id,
            attempt: c.attempt,
            steps: c.steps,
        },
        Some(Up::Failed(f)) => WorkerEvent::Failed {
            trial: f.trial_id,
            attempt: f.attempt,
            error: f.error,
            permanent: f.permanent,
        },
        Some(Up::Heartbeat(_)) => WorkerEvent::Heartbeat,
        Some(Up::Leaving(l)) => WorkerEvent::Leaving { reason: l.reason },
        Some(Up::Hello(_)) => {
            return Err(CoordinatorError::InvalidRequest(
                "hello sent twice on one stream".into(),
            ))
        }
        None => return Err(CoordinatorError::InvalidRequest("empty message".into())),
    })
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let request = request.into_inner();
        check_register(&request)?;
        Ok(Response::new(self.hub.register(request).await?))
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
        let session = self.hub.connect(worker.clone(), outbox.clone()).await?;
        let hub = self.hub.clone();
        let span = tracing::info_span!("session", sweep = %self.sweep_id, worker = %worker);
        tokio::spawn(
            async move {
                loop {
                    let message = match inbound.message().await {
                        Ok(Some(message)) => message,
                        Ok(None) => break,
                        Err(status) => {
                            warn!(event = "stream_broken", error = %status.message());
                            // Tell the worker why, if it can still hear (e.g. an oversized message).
                            let _ = outbox.send(Err(status));
                            break;
                        }
                    };
                    let handed = match decode(message) {
                        Ok(event) => hub.worker_event(worker.clone(), session, event).await,
                        Err(e) => {
                            warn!(event = "worker_rejected", error = %e);
                            let _ = outbox.send(Err(e.into()));
                            break;
                        }
                    };
                    if handed.is_err() {
                        break;
                    }
                }
                info!(event = "worker_disconnected");
                hub.hang_up(worker, session).await;
            }
            .instrument(span),
        );
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
