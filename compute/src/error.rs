//! Errors of the compute layer, and the one place they become gRPC status codes.

use grape_meta::MetaError;
use grape_storage::error::StorageError;

/// What can go wrong while serving a request or loading a segment.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// The request is malformed (wrong dimension, NaN, bad filter, schema mismatch, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A named thing (collection) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A named thing already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The data needed is not available (yet): storage down, segment not loaded, timeout.
    #[error("{0}")]
    Unavailable(String),
    /// Stored data is unreadable.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Object storage failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The meta service failed.
    #[error("meta: {0}")]
    Meta(#[from] MetaError),
    /// DataFusion failed while planning or running a query.
    #[error("{0}")]
    Query(String),
    /// Arrow failed (encoding, casting).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A bug or an unexpected state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<datafusion::error::DataFusionError> for ComputeError {
    /// Errors in what the user wrote (SQL syntax, planning, unknown tables or columns) become
    /// `InvalidArgument`; failures while running become `Query`. Wrapped errors (context,
    /// diagnostics) are classified by their root cause.
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        if let D::External(inner) = e.find_root() {
            // Our own errors raised inside a plan (a segment with no ready replica) keep their kind.
            match inner.downcast_ref::<ComputeError>() {
                Some(ComputeError::Unavailable(m)) => return ComputeError::Unavailable(m.clone()),
                Some(ComputeError::InvalidArgument(m)) => return ComputeError::InvalidArgument(m.clone()),
                _ => {}
            }
        }
        match e.find_root() {
            D::SQL(..) | D::Plan(..) | D::SchemaError(..) | D::NotImplemented(..) => ComputeError::InvalidArgument(e.to_string()),
            _ => ComputeError::Query(e.to_string()),
        }
    }
}

impl From<ComputeError> for tonic::Status {
    fn from(e: ComputeError) -> Self {
        use grape_storage::error::StorageErrorKind as K;
        let msg = e.to_string();
        match &e {
            ComputeError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ComputeError::NotFound(_) => tonic::Status::not_found(msg),
            ComputeError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            ComputeError::Conflict(_) => tonic::Status::failed_precondition(msg),
            ComputeError::Unavailable(_) => tonic::Status::unavailable(msg),
            ComputeError::Corrupt(_) => tonic::Status::data_loss(msg),
            ComputeError::Storage(s) => match s.kind() {
                K::NotFound => tonic::Status::not_found(msg),
                K::AlreadyExists => tonic::Status::already_exists(msg),
                K::Unauthorized => tonic::Status::permission_denied(msg),
                K::Corrupt => tonic::Status::data_loss(msg),
                K::InvalidUrl | K::InvalidData => tonic::Status::invalid_argument(msg),
                _ => tonic::Status::unavailable(msg),
            },
            ComputeError::Meta(_) => tonic::Status::unavailable(msg),
            ComputeError::Query(_) => tonic::Status::internal(msg),
            ComputeError::Arrow(_) => tonic::Status::invalid_argument(msg),
            ComputeError::Internal(_) => tonic::Status::internal(msg),
        }
    }
}
