//! The hub: one task owns the sweep, its store and the workers' links, fed by bounded channels
//! of events from the gRPC sessions (the shape of tokio-console's aggregator). Decisions are
//! serial without a lock; a session that sends faster than the hub decides waits on the channel,
//! and the hub waits only on the store's queue, never blocking a runtime thread.
//!
//! Arrivals (register, connect) come on a lane of their own, taken a small batch at a time in
//! turn with the sessions' events: 10,000 workers registering at once do not hold up the stop
//! orders of the trials already running.

mod link;
mod progress;
mod state;

use std::time::{Duration, Instant};

use lrsweep_proto::domain::{TracePoint, TrialId};
use lrsweep_proto::v1::{RegisterRequest, RegisterResponse};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

pub use link::Outbox;
pub use state::HEARTBEAT_INTERVAL_MS;

use crate::metrics::Metrics;
use crate::storage::Durable;
use crate::sweep::Sweep;
use crate::CoordinatorError;
use state::HubState;

/// Events waiting for the hub before senders wait: sessions get backpressure, not a queue that
/// grows without bound.
const QUEUED_EVENTS: usize = 4096;
/// Events decided together and written in one queue entry; bounds how long a stop order waits
/// behind the events received with it.
const BATCH_EVENTS: usize = 256;
/// Arrivals waiting for the hub before new ones wait, and how many it takes in one turn: a
/// session's event waits behind at most this many registrations.
const QUEUED_ARRIVALS: usize = 256;
const BATCH_ARRIVALS: usize = 32;

/// What a worker said on its stream, decoded and checked by the service.
#[derive(Debug)]
pub enum WorkerEvent {
    Trace {
        trial: TrialId,
        attempt: u32,
        points: Vec<TracePoint>,
        /// When the service read it off the stream.
        received: Instant,
    },
    Completed {
        trial: TrialId,
        attempt: u32,
        steps: u64,
    },
    Failed {
        trial: TrialId,
        attempt: u32,
        error: String,
        /// Retrying cannot help: the trial fails at once.
        permanent: bool,
    },
    Heartbeat,
    Leaving {
        reason: String,
    },
}

enum Event {
    Register {
        request: RegisterRequest,
        reply: oneshot::Sender<RegisterResponse>,
    },
    Connect {
        worker: String,
        outbox: Outbox,
        reply: oneshot::Sender<Result<u64, CoordinatorError>>,
    },
    /// No reply: the session goes on reading while the hub decides. A message that breaks the
    /// protocol ends the session from the hub's side.
    Worker {
        worker: String,
        session: u64,
        event: WorkerEvent,
    },
    HangUp {
        worker: String,
        session: u64,
    },
    Interrupt {
        reason: String,
    },
    ConnectedWorkers {
        reply: oneshot::Sender<usize>,
    },
    /// Ends the task; it hands back the sweep and its store.
    Close,
}

/// A handle on the hub's task; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    events: mpsc::Sender<Event>,
    /// Register and Connect only.
    arrivals: mpsc::Sender<Event>,
    done: watch::Receiver<bool>,
}

impl Hub {
    /// Starts the hub's task. It saves the sweep's initial state at once (a crash right after
    /// start loses nothing), expires leases every `lease / 4`, and on `close` hands back the
    /// sweep and its store. With `metrics`, it keeps them up to date.
    pub fn start(
        sweep_id: String,
        sweep: Sweep,
        durable: Durable,
        lease: Duration,
        metrics: Option<Metrics>,
    ) -> (Hub, JoinHandle<(Sweep, Durable)>) {
        let (events, mut inbox) = mpsc::channel(QUEUED_EVENTS);
        let (arrivals, mut arriving) = mpsc::channel(QUEUED_ARRIVALS);
        let (done_tx, done) = watch::channel(false);
        let span = tracing::info_span!("hub", sweep = %sweep_id);
        let mut state = HubState::new(sweep_id, sweep, durable, lease, done_tx, metrics);
        let task = tokio::spawn(
            async move {
                state.flush().await;
                let mut leases = tokio::time::interval((lease / 4).max(Duration::from_millis(50)));
                let mut batch = Vec::with_capacity(BATCH_EVENTS);
                let (mut arrived, mut arrivals_open) = (Vec::with_capacity(BATCH_ARRIVALS), true);
                'serve: loop {
                    // Whichever lane is ready; both ready, either at random: neither starves.
                    tokio::select! {
                        received = inbox.recv_many(&mut batch, BATCH_EVENTS) => {
                            if received == 0 {
                                break 'serve;
                            }
                            for event in batch.drain(..) {
                                if matches!(event, Event::Close) {
                                    state.disconnect_all();
                                    state.flush().await;
                                    break 'serve;
                                }
                                state.handle(event);
                            }
                        }
                        received = arriving.recv_many(&mut arrived, BATCH_ARRIVALS), if arrivals_open => {
                            arrivals_open = received > 0;
                            for event in arrived.drain(..) {
                                state.handle(event);
                            }
                        }
                        _ = leases.tick() => state.expire_leases(Instant::now()),
                    }
                    state.flush().await;
                }
                (state.sweep, state.durable)
            }
            .instrument(span),
        );
        (
            Hub {
                events,
                arrivals,
                done,
            },
            task,
        )
    }

    async fn send(&self, event: Event) -> Result<(), CoordinatorError> {
        let lane = match event {
            Event::Register { .. } | Event::Connect { .. } => &self.arrivals,
            _ => &self.events,
        };
        lane.send(event)
            .await
            .map_err(|_| CoordinatorError::ShuttingDown)
    }

    async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> Event,
    ) -> Result<T, CoordinatorError> {
        let (reply, answer) = oneshot::channel();
        self.send(event(reply)).await?;
        answer.await.map_err(|_| CoordinatorError::ShuttingDown)
    }

    pub async fn register(
        &self,
        request: RegisterRequest,
    ) -> Result<RegisterResponse, CoordinatorError> {
        self.ask(|reply| Event::Register { request, reply }).await
    }

    /// Opens a session on `outbox`: returns its number, for `hang_up`.
    pub async fn connect(&self, worker: String, outbox: Outbox) -> Result<u64, CoordinatorError> {
        self.ask(|reply| Event::Connect {
            worker,
            outbox,
            reply,
        })
        .await?
    }

    /// Hands a message of session `session` to the sweep. Err only once the hub is gone.
    pub async fn worker_event(
        &self,
        worker: String,
        session: u64,
        event: WorkerEvent,
    ) -> Result<(), CoordinatorError> {
        self.send(Event::Worker {
            worker,
            session,
            event,
        })
        .await
    }

    pub async fn hang_up(&self, worker: String, session: u64) {
        let _ = self.send(Event::HangUp { worker, session }).await;
    }

    /// Stop taking work: nothing more is dispatched and every worker is told to exit.
    pub async fn interrupt(&self, reason: &str) {
        let reason = reason.to_string();
        let _ = self.send(Event::Interrupt { reason }).await;
    }

    /// Workers that still have to hear that the sweep is over.
    pub async fn connected_workers(&self) -> usize {
        self.ask(|reply| Event::ConnectedWorkers { reply })
            .await
            .unwrap_or(0)
    }

    /// Becomes true once the sweep is over and every worker has been told.
    pub fn done(&self) -> watch::Receiver<bool> {
        self.done.clone()
    }

    /// Ends the hub's task after the events queued before this one.
    pub async fn close(&self) {
        let _ = self.send(Event::Close).await;
    }
}

impl HubState {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Register { request, reply } => {
                let _ = reply.send(self.register(request));
            }
            Event::Connect {
                worker,
                outbox,
                reply,
            } => {
                let _ = reply.send(self.connect(&worker, outbox));
            }
            Event::Worker {
                worker,
                session,
                event,
            } => self.on_worker_message(&worker, session, event),
            Event::HangUp { worker, session } => self.hang_up(&worker, session),
            Event::Interrupt { reason } => self.interrupt(&reason),
            Event::ConnectedWorkers { reply } => {
                let _ = reply.send(self.connected_workers());
            }
            Event::Close => {}
        }
    }
}
