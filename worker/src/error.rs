//! The worker's one error type and its mapping to gRPC status.

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A data file or bundled dataset could not be read or parsed.
    #[error("{source_name}:{line}: {reason}")]
    Data {
        source_name: String,
        line: usize,
        reason: String,
    },
    /// A trial asks for something this worker cannot train.
    #[error("invalid trial: {0}")]
    InvalidTrial(String),
    /// A message from the coordinator failed validation.
    #[error(transparent)]
    Convert(#[from] lrsweep_proto::ConvertError),
    #[error("cannot connect to coordinator: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("coordinator answered: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<WorkerError> for tonic::Status {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Rpc(status) => status,
            WorkerError::Convert(c) => c.into(),
            WorkerError::InvalidTrial(_) | WorkerError::Data { .. } => {
                tonic::Status::invalid_argument(e.to_string())
            }
            other => tonic::Status::internal(other.to_string()),
        }
    }
}
