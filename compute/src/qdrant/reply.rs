//! Qdrant's response envelope (`{"result": …, "status": "ok", "time": seconds}`), its error
//! shape (`{"status": {"error": "…"}, "time": …}`) with Qdrant's HTTP codes, and reading a
//! request body with errors of that shape.

use std::time::Instant;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::ComputeError;

/// An error answered in Qdrant's shape.
#[derive(Debug, thiserror::Error)]
pub enum QdrantError {
    /// 400: the request is wrong (Qdrant's "Wrong input" and JSON errors).
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such collection or point.
    #[error("{0}")]
    NotFound(String),
    /// 409: a conflicting state (a collection that already exists).
    #[error("{0}")]
    Conflict(String),
    /// 422: a well-formed request that cannot be processed (an unknown vector name).
    #[error("{0}")]
    Unprocessable(String),
    /// Any other failure, with the HTTP code it maps to.
    #[error("{1}")]
    Other(StatusCode, String),
}

impl QdrantError {
    /// A 400 with Qdrant's "Wrong input" prefix.
    pub fn wrong_input(msg: impl std::fmt::Display) -> Self {
        QdrantError::BadRequest(format!("Wrong input: {msg}"))
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            QdrantError::BadRequest(_) => StatusCode::BAD_REQUEST,
            QdrantError::NotFound(_) => StatusCode::NOT_FOUND,
            QdrantError::Conflict(_) => StatusCode::CONFLICT,
            QdrantError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QdrantError::Other(code, _) => *code,
        }
    }
}

impl From<ComputeError> for QdrantError {
    /// Grape's errors by the gRPC code they map to.
    fn from(e: ComputeError) -> Self {
        let status = tonic::Status::from(e);
        let msg = status.message().to_string();
        match status.code() {
            tonic::Code::InvalidArgument => QdrantError::wrong_input(msg),
            tonic::Code::NotFound => QdrantError::NotFound(msg),
            tonic::Code::AlreadyExists => QdrantError::Conflict(msg),
            tonic::Code::ResourceExhausted => QdrantError::Other(StatusCode::TOO_MANY_REQUESTS, msg),
            tonic::Code::DeadlineExceeded => QdrantError::Other(StatusCode::GATEWAY_TIMEOUT, msg),
            tonic::Code::Unavailable => QdrantError::Other(StatusCode::SERVICE_UNAVAILABLE, msg),
            tonic::Code::FailedPrecondition => QdrantError::Conflict(msg),
            _ => QdrantError::Other(StatusCode::INTERNAL_SERVER_ERROR, msg),
        }
    }
}

/// What a handler returns: the `result` value, or an error.
pub type Outcome = Result<Value, QdrantError>;

/// The HTTP response of a handler's outcome, timed from `started`.
pub fn respond(started: Instant, outcome: Outcome) -> Response {
    let time = started.elapsed().as_secs_f64();
    let (status, body) = match outcome {
        Ok(result) => (StatusCode::OK, json!({ "result": result, "status": "ok", "time": time })),
        Err(e) => (e.status(), json!({ "status": { "error": e.to_string() }, "time": time })),
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Reads a JSON request body into `T` (an empty body reads as `{}`).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, QdrantError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| QdrantError::BadRequest(format!("Format error in JSON body: {e}")))
}
