//! The coordinator's one error type and its single mapping to gRPC status.

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The search spec is unreadable or holds an impossible value.
    #[error(transparent)]
    Spec(#[from] lrsweep_proto::spec::SpecError),
    /// A worker sent something that cannot be right (unknown trial, wrong attempt, bad field).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Convert(#[from] lrsweep_proto::ConvertError),
    #[error("unknown worker `{0}`")]
    UnknownWorker(String),
    #[error("cannot serve: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// `lrsweep-coordinator health`: no answer, or an answer other than SERVING.
    #[error("health check of {addr}: {reason}")]
    Health { addr: String, reason: String },
    #[error("the sweep was shut down")]
    ShuttingDown,
    /// The sweep database failed (I/O, a constraint, a lock held past the busy timeout). Kept
    /// as text: the storage engine's types stay inside `storage`.
    #[error("database: {0}")]
    Db(String),
    /// The file system refused a database write for now (full, read-only, an I/O error): the
    /// store's writer retries it until it passes.
    #[error("database unavailable: {0}")]
    DbUnavailable(String),
    /// The database cannot be used as asked: another schema version, not an lrsweep database,
    /// or a sweep or attempt it does not hold.
    #[error("storage: {0}")]
    Storage(String),
    /// A plot could not be drawn or encoded (view/).
    #[error("plot {plot}: {reason}")]
    Plot { plot: &'static str, reason: String },
}

impl From<rusqlite::Error> for CoordinatorError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match e.sqlite_error_code() {
            // What the disk or another process does to the file, not what the sweep wrote: it
            // may pass once space is freed, the file made writable, the lock released.
            Some(
                DiskFull | ReadOnly | SystemIoFailure | CannotOpen | DatabaseBusy | DatabaseLocked,
            ) => CoordinatorError::DbUnavailable(e.to_string()),
            _ => CoordinatorError::Db(e.to_string()),
        }
    }
}

impl CoordinatorError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        CoordinatorError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<CoordinatorError> for tonic::Status {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::InvalidRequest(_) | CoordinatorError::Spec(_) => {
                tonic::Status::invalid_argument(e.to_string())
            }
            CoordinatorError::Convert(c) => c.into(),
            CoordinatorError::UnknownWorker(_) => tonic::Status::not_found(e.to_string()),
            CoordinatorError::ShuttingDown => tonic::Status::unavailable(e.to_string()),
            other => tonic::Status::internal(other.to_string()),
        }
    }
}
