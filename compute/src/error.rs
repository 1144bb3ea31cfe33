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
    /// A limit of this node was reached (busy, SQL memory); retrying later may succeed.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The request took longer than its deadline and was stopped.
    #[error("{0}")]
    DeadlineExceeded(String),
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
                Some(ComputeError::ResourceExhausted(m)) => return ComputeError::ResourceExhausted(m.clone()),
                _ => {}
            }
        }
        use arrow::error::ArrowError as A;
        match e.find_root() {
            // Execution errors are what the query's expressions raise on its data or while
            // being coerced (`category['x']` on a number); Configuration ones what it asks of
            // DataFusion (`COPY` without a format).
            D::SQL(..) | D::Plan(..) | D::SchemaError(..) | D::NotImplemented(..) | D::Execution(..) | D::Configuration(..) => {
                ComputeError::InvalidArgument(e.to_string())
            }
            D::ResourcesExhausted(m) => ComputeError::ResourceExhausted(format!(
                "the query needs more memory than this node gives SQL (limits/sql_memory_bytes): {m}"
            )),
            // Errors the query's own arithmetic and casts raise on the data (1/0, overflow,
            // '1x'::int) are the query's fault, not the node's.
            D::ArrowError(a, _)
                if matches!(
                    a.as_ref(),
                    A::DivideByZero | A::ArithmeticOverflow(_) | A::CastError(_) | A::ParseError(_) | A::InvalidArgumentError(_) | A::ComputeError(_)
                ) =>
            {
                ComputeError::InvalidArgument(e.to_string())
            }
            _ => ComputeError::Query(e.to_string()),
        }
    }
}

/// Longest status message sent, in bytes: a message travels in an HTTP/2 header, and one
/// that quotes a 200 KB query broke the client's connection (found by the fuzz tests).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 4096;

/// `msg` cut to [`MAX_STATUS_MESSAGE_BYTES`] at a character boundary, saying so.
fn bounded_message(msg: String) -> String {
    if msg.len() <= MAX_STATUS_MESSAGE_BYTES {
        return msg;
    }
    let mut end = MAX_STATUS_MESSAGE_BYTES;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (message cut: {} bytes in all)", &msg[..end], msg.len())
}

impl From<ComputeError> for tonic::Status {
    fn from(e: ComputeError) -> Self {
        use grape_storage::error::StorageErrorKind as K;
        let msg = bounded_message(e.to_string());
        match &e {
            ComputeError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ComputeError::NotFound(_) => tonic::Status::not_found(msg),
            ComputeError::AlreadyExists(_) => tonic::Status::already_exists(msg),
            ComputeError::Conflict(_) => tonic::Status::failed_precondition(msg),
            ComputeError::Unavailable(_) => tonic::Status::unavailable(msg),
            ComputeError::ResourceExhausted(_) => tonic::Status::resource_exhausted(msg),
            ComputeError::DeadlineExceeded(_) => tonic::Status::deadline_exceeded(msg),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_bounded_at_a_character_boundary() {
        let long = ComputeError::InvalidArgument(format!("bad filter `{}`", "é".repeat(10_000)));
        let status = tonic::Status::from(long);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().len() < MAX_STATUS_MESSAGE_BYTES + 64, "{}", status.message().len());
        assert!(status.message().ends_with("(message cut: 20013 bytes in all)"), "{}", &status.message()[4000..]);
        assert_eq!(tonic::Status::from(ComputeError::NotFound("short".into())).message(), "short");
    }
}
