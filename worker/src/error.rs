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
    /// A data file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    DataFile {
        path: String,
        source: std::io::Error,
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

impl WorkerError {
    /// Whether a trial that failed with this error would fail again on any attempt, here or on
    /// another worker (`TrialFailed.permanent`): bad data, an invalid trial, a data file that is
    /// not there, not readable or not a file. An I/O error that may pass (interrupted, timed
    /// out, a busy or stale network file) is not permanent, nor is anything unforeseen: those
    /// are retried as before.
    pub fn is_permanent(&self) -> bool {
        use std::io::ErrorKind::*;
        match self {
            WorkerError::Data { .. }
            | WorkerError::InvalidTrial(_)
            | WorkerError::Convert(_)
            | WorkerError::Config(_) => true,
            WorkerError::DataFile { source, .. } => matches!(
                source.kind(),
                NotFound
                    | PermissionDenied
                    | IsADirectory
                    | NotADirectory
                    | InvalidInput
                    | InvalidData
                    | InvalidFilename
            ),
            WorkerError::Transport(_) | WorkerError::Rpc(_) | WorkerError::Io(_) => false,
        }
    }
}

impl From<WorkerError> for tonic::Status {
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Rpc(status) => status,
            WorkerError::Convert(c) => c.into(),
            WorkerError::InvalidTrial(_)
            | WorkerError::Data { .. }
            | WorkerError::DataFile { .. } => tonic::Status::invalid_argument(e.to_string()),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    fn file(kind: ErrorKind) -> WorkerError {
        WorkerError::DataFile {
            path: "d.csv".into(),
            source: Error::from(kind),
        }
    }

    #[test]
    fn only_failures_no_retry_can_fix_are_permanent() {
        let data = WorkerError::Data {
            source_name: "d.csv".into(),
            line: 3,
            reason: "not a number".into(),
        };
        for permanent in [
            data,
            WorkerError::InvalidTrial("no such model".into()),
            file(ErrorKind::NotFound),
            file(ErrorKind::PermissionDenied),
            file(ErrorKind::IsADirectory),
        ] {
            assert!(permanent.is_permanent(), "{permanent:?}");
        }
        for transient in [
            file(ErrorKind::Interrupted),
            file(ErrorKind::TimedOut),
            file(ErrorKind::Other),
            WorkerError::Io(Error::from(ErrorKind::UnexpectedEof)),
        ] {
            assert!(!transient.is_permanent(), "{transient:?}");
        }
    }
}
