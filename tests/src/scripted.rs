//! A worker played by the test over real gRPC: it registers, opens its session and sends
//! exactly the messages the test scripts, so a test can hold a sweep at any point it likes.

use std::time::Duration;

use lrsweep_proto::v1::coordinator_client::CoordinatorClient;
use lrsweep_proto::v1::coordinator_message::Kind as Down;
use lrsweep_proto::v1::worker_message::Kind as Up;
use lrsweep_proto::v1::{
    AssignTrial, CoordinatorMessage, Hello, RegisterRequest, TraceBatch, TracePoint, WorkerMessage,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// A one-slot worker named `name`.
pub fn register(name: &str) -> RegisterRequest {
    RegisterRequest {
        name: name.into(),
        host: "test".into(),
        slots: 1,
        instance: format!("instance-{name}"),
        running: Vec::new(),
    }
}

pub fn up(kind: Up) -> WorkerMessage {
    WorkerMessage { kind: Some(kind) }
}

/// A registered worker's open session.
pub struct Session {
    pub tx: mpsc::UnboundedSender<WorkerMessage>,
    pub inbound: Streaming<CoordinatorMessage>,
}

impl Session {
    pub async fn open(client: &mut CoordinatorClient<Channel>, name: &str) -> Session {
        let worker_id = client
            .register(register(name))
            .await
            .unwrap()
            .into_inner()
            .worker_id;
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(up(Up::Hello(Hello { worker_id }))).unwrap();
        let inbound = client
            .session(UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Session { tx, inbound }
    }

    pub async fn next_assignment(&mut self) -> AssignTrial {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
                .await
                .expect("an assignment in time")
                .unwrap()
                .expect("stream open");
            if let Some(Down::Assign(a)) = message.kind {
                return a;
            }
        }
    }

    /// Sends one message and returns the status the coordinator ends the stream with.
    pub async fn rejected_with(mut self, message: WorkerMessage) -> tonic::Status {
        self.tx.send(message).unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
                .await
                .expect("an answer in time")
            {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream closed without an error"),
                Err(status) => return status,
            }
        }
    }
}

/// A trace batch of `a` with one point per step, all at `loss`.
pub fn batch(a: &AssignTrial, steps: &[u64], loss: f64) -> WorkerMessage {
    up(Up::Trace(TraceBatch {
        trial_id: a.trial_id,
        attempt: a.attempt,
        points: steps
            .iter()
            .map(|&step| TracePoint {
                step,
                train_loss: loss,
                lr: a.lr,
                val_loss: None,
            })
            .collect(),
    }))
}
