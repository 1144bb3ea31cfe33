//! Qdrant's gRPC API (the `Qdrant`, `Collections` and `Points` services of package `qdrant`,
//! from Qdrant's published `.proto` files in `grape_proto::qdrant`), so that Qdrant's clients
//! work with `prefer_grpc` too.
//!
//! Every RPC converts its request into the JSON body of the matching REST endpoint, calls the
//! same [`QdrantApi`] method, and converts the JSON result back: both APIs check, answer and
//! fail the same way. Errors map onto gRPC codes as Qdrant's do (400 and 422 →
//! `InvalidArgument`, 404 → `NotFound`, 409 → `AlreadyExists`, 429 → `ResourceExhausted`,
//! 503 → `Unavailable`, others `Internal`); RPCs Grape has no counterpart for answer
//! `Unimplemented`.
//!
//! # Layout
//! - this module: the service, serving it, the health check and the error codes.
//! - [`collections`], [`points`]: the `Collections` and `Points` RPCs.
//! - [`search`]: search, query, recommend, scroll and count requests as REST bodies.
//! - [`filter`]: filters as REST's JSON filters.
//! - [`convert`]: payload values, ids, vectors, selectors and result points, both ways.

pub mod collections;
pub mod convert;
pub mod filter;
pub mod points;
pub mod search;

use std::future::Future;
use std::time::Instant;

use axum::http::StatusCode;
use grape_proto::qdrant as pb;
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

use super::reply::QdrantError;
use super::{QdrantApi, QDRANT_VERSION};
use crate::gateway::MAX_MESSAGE_BYTES;

/// Qdrant's gRPC services over one [`QdrantApi`].
#[derive(Clone)]
pub struct QdrantGrpc(pub QdrantApi);

/// Serves Qdrant's gRPC API of `api` on `listener` (with `TCP_NODELAY`) until `shutdown`
/// resolves, on `threads` serving threads (0: on this runtime; see [`grape_proto::serving`]).
pub async fn serve(
    listener: TcpListener,
    api: QdrantApi,
    keys: grape_proto::auth::Keys,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), grape_proto::serving::ServeError> {
    let service = QdrantGrpc(api);
    let collections = pb::collections_server::CollectionsServer::new(service.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let points = pb::points_server::PointsServer::new(service.clone())
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let router = grape_proto::net::server(keys)
        .add_service(tonic_health::server::health_reporter().1)
        .add_service(pb::qdrant_server::QdrantServer::new(service))
        .add_service(collections)
        .add_service(points);
    grape_proto::serving::serve(router, listener, threads, shutdown).await
}

/// What an RPC answers.
type Reply<T> = Result<Response<T>, Status>;

impl From<QdrantError> for Status {
    /// Qdrant's gRPC code for the HTTP status of the error.
    fn from(e: QdrantError) -> Status {
        let code = match e.status() {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => Code::InvalidArgument,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::CONFLICT => Code::AlreadyExists,
            StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// Runs `work`: its value and the seconds it took (the `time` of every response), or its
/// error as a gRPC status.
async fn timed<T>(work: impl Future<Output = Result<T, QdrantError>>) -> Result<(T, f64), Status> {
    let started = Instant::now();
    let value = work.await?;
    Ok((value, started.elapsed().as_secs_f64()))
}

/// The answer of an RPC Grape has no counterpart for.
fn unimplemented<T>(rpc: &str) -> Reply<T> {
    Err(Status::unimplemented(format!("{rpc} is not supported by Grape yet")))
}

#[tonic::async_trait]
impl pb::qdrant_server::Qdrant for QdrantGrpc {
    async fn health_check(&self, _: Request<pb::HealthCheckRequest>) -> Reply<pb::HealthCheckReply> {
        let title = "grape (Qdrant-compatible API)".to_string();
        Ok(Response::new(pb::HealthCheckReply { title, version: QDRANT_VERSION.to_string(), commit: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_qdrant_codes() {
        let code = |e: QdrantError| Status::from(e).code();
        assert_eq!(code(QdrantError::BadRequest("x".into())), Code::InvalidArgument);
        assert_eq!(code(QdrantError::Unprocessable("x".into())), Code::InvalidArgument);
        assert_eq!(code(QdrantError::NotFound("x".into())), Code::NotFound);
        assert_eq!(code(QdrantError::Conflict("x".into())), Code::AlreadyExists);
        assert_eq!(code(QdrantError::Other(StatusCode::TOO_MANY_REQUESTS, "x".into())), Code::ResourceExhausted);
        assert_eq!(code(QdrantError::Other(StatusCode::SERVICE_UNAVAILABLE, "x".into())), Code::Unavailable);
        assert_eq!(code(QdrantError::Other(StatusCode::GATEWAY_TIMEOUT, "x".into())), Code::Internal);
    }
}
