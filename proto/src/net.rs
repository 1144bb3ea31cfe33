//! How every Grape gRPC server accepts connections.
//!
//! Grape's servers serve a listener they bound themselves (tests bind port 0 and read the
//! port back), so tonic's `Server::tcp_nodelay` never applies to them: it only configures
//! listeners tonic binds. Without `TCP_NODELAY`, Nagle's algorithm holds a response's last
//! small write until the client acknowledges the previous one, and the client delays that
//! acknowledgement: every RPC then waits 30–40 ms whatever it does. [`incoming`] is the one
//! way our servers turn a listener into connections, with the option set.

use tonic::transport::server::TcpIncoming;
use tower_layer::{Identity, Stack};

/// The connections accepted on `listener` (a `tokio::net::TcpListener`), each with
/// `TCP_NODELAY` set: pass it to `Server::serve_with_incoming[_shutdown]`.
pub fn incoming(listener: impl Into<TcpIncoming>) -> TcpIncoming {
    listener.into().with_nodelay(Some(true))
}

/// The layers every Grape gRPC server has: metrics outermost (so refusals are counted), then
/// the request's span, then the key check.
pub type Layers = Stack<crate::auth::AuthLayer, Stack<crate::trace::TraceLayer, Stack<crate::rpc_metrics::RpcMetricsLayer, Identity>>>;

/// A tonic server builder with Grape's layers: every request is counted and timed
/// ([`crate::rpc_metrics`]), traced ([`crate::trace`]) and checked against `keys`
/// ([`crate::auth`]).
pub fn server(keys: crate::auth::Keys) -> tonic::transport::Server<Layers> {
    tonic::transport::Server::builder()
        .layer(crate::rpc_metrics::RpcMetricsLayer)
        .layer(crate::trace::TraceLayer)
        .layer(crate::auth::AuthLayer::new(keys))
}
