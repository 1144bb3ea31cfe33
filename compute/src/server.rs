//! Serving the public API on a TCP listener until a shutdown signal.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::gateway::{Gateway, GrapeService};

/// Serves `gateway` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests finish. Tests bind `127.0.0.1:0` and own the shutdown future.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(GrapeService(gateway).into_server())
        .serve_with_incoming_shutdown(grape_proto::net::incoming(listener), shutdown)
        .await
}
