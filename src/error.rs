//! Errors of the `grape` binary: what a command can fail with, printed for a person.

/// Why a `grape` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] tonic::Status),
    /// The endpoint could not be reached.
    #[error("cannot reach {endpoint}: {source}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// Why it failed.
        source: tonic::transport::Error,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A Parquet file could not be decoded.
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// Why it failed.
        source: parquet::errors::ParquetError,
    },
    /// Arrow encoding or decoding failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// The command line is wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),
    /// A server started by this process failed.
    #[error("{0}")]
    Server(String),
}

/// The gRPC code as its canonical upper-case name, e.g. `INVALID_ARGUMENT`.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
