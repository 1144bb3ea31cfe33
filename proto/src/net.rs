//! How every Grape server accepts connections.
//!
//! Grape's servers serve a listener they bound themselves (tests bind port 0 and read the
//! port back), so tonic's `Server::tcp_nodelay` never applies to them: it only configures
//! listeners tonic binds. Without `TCP_NODELAY`, Nagle's algorithm holds a response's last
//! small write until the client acknowledges the previous one, and the client delays that
//! acknowledgement: every RPC then waits 30–40 ms whatever it does. [`incoming`] is the one
//! way our servers turn a listener into connections, with the option set, and with TLS when
//! the process has a certificate ([`crate::tls::use_server_tls`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tower_layer::{Identity, Stack};
use tracing::Instrument;

use crate::tls::{TlsConn, TlsIncoming};

/// The connections of a listener: plain TCP, or TLS.
pub enum Incoming {
    /// Plain TCP with `TCP_NODELAY`.
    Plain(TcpIncoming),
    /// TLS over TCP with `TCP_NODELAY`.
    Tls(TlsIncoming),
}

/// One accepted connection of an [`Incoming`] or of a serving thread ([`crate::serving`]).
pub enum Conn {
    /// Plain TCP; on a serving thread, counted in its open connections while it lives.
    Plain(TcpStream, Option<OpenConn>),
    /// TLS over TCP.
    Tls(TlsConn),
}

impl Conn {
    /// A plain TCP connection that `open` counts while it lives.
    pub(crate) fn served(tcp: TcpStream, open: OpenConn) -> Conn {
        Conn::Plain(tcp, Some(open))
    }
}

/// One connection counted in a serving thread's open connections while it lives.
pub struct OpenConn(Arc<AtomicUsize>);

impl OpenConn {
    /// Counts one more open connection in `open`.
    pub(crate) fn new(open: Arc<AtomicUsize>) -> OpenConn {
        open.fetch_add(1, Ordering::Relaxed);
        OpenConn(open)
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections accepted on `listener` for a gRPC server (TLS with ALPN `h2` when the
/// process has a certificate): pass it to `Server::serve_with_incoming[_shutdown]`.
pub fn incoming(listener: TcpListener) -> Incoming {
    match crate::tls::grpc_acceptor() {
        Some(acceptor) => Incoming::Tls(crate::tls::tls_incoming(listener, acceptor)),
        None => Incoming::Plain(TcpIncoming::from(listener).with_nodelay(Some(true))),
    }
}

/// The connections accepted on `listener` for an HTTP/1.1 server (TLS with ALPN `http/1.1`
/// when the process has a certificate).
pub fn http_incoming(listener: TcpListener) -> Incoming {
    match crate::tls::http_acceptor() {
        Some(acceptor) => Incoming::Tls(crate::tls::tls_incoming(listener, acceptor)),
        None => Incoming::Plain(TcpIncoming::from(listener).with_nodelay(Some(true))),
    }
}

impl Stream for Incoming {
    type Item = Result<Conn, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut() {
            Incoming::Plain(tcp) => Pin::new(tcp).poll_next(cx).map(|next| next.map(|conn| conn.map(|tcp| Conn::Plain(tcp, None)))),
            Incoming::Tls(tls) => Pin::new(tls).poll_next(cx).map(|next| next.map(|conn| Ok(Conn::Tls(conn.unwrap_or_else(|e| match e {})))))
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(tcp, _) => tcp.connect_info(),
            Conn::Tls(tls) => tls.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp, _) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp, _) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp, _) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(tcp, _) => tcp.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp, _) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp, _) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }
}

/// The layers every Grape gRPC server has: [`ServerLayer`].
pub type Layers = Stack<ServerLayer, Identity>;

/// A tonic server builder with Grape's layer: every request is traced ([`crate::trace`]),
/// checked against `keys` ([`crate::auth`]), and counted and timed ([`crate::rpc_metrics`]),
/// refusals included.
pub fn server(keys: crate::auth::Keys) -> tonic::transport::Server<Layers> {
    tonic::transport::Server::builder().layer(ServerLayer { keys: Arc::new(keys) })
}

/// The one tower layer of Grape's gRPC servers (see [`server`]): one boxed future per request
/// for the trace span, the key check and the metrics together.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    keys: Arc<crate::auth::Keys>,
}

impl<S> tower_layer::Layer<S> for ServerLayer {
    type Service = Served<S>;

    fn layer(&self, inner: S) -> Served<S> {
        Served { inner, keys: self.keys.clone() }
    }
}

/// A service whose requests [`ServerLayer`] traces, checks and counts.
#[derive(Debug, Clone)]
pub struct Served<S> {
    inner: S,
    keys: Arc<crate::auth::Keys>,
}

impl<S, B> tower_service::Service<http::Request<B>> for Served<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let in_flight = crate::serving::InFlight::enter();
        let path = request.uri().path();
        let (service, method) = crate::rpc_metrics::service_and_method(path);
        let id = crate::trace::sent_request_id(request.headers()).unwrap_or_else(crate::trace::new_request_id);
        let span = tracing::info_span!("rpc", method = %path, request_id = %id);
        let answer = match self.keys.check(crate::auth::method_access(path), request.headers()) {
            Ok(()) => Ok(span.in_scope(|| self.inner.call(request))),
            Err(refused) => Err(refused.status().into_http()),
        };
        Box::pin(
            crate::trace::REQUEST_ID
                .scope(id, async move {
                    let answer = match answer {
                        Ok(call) => call.await,
                        Err(refusal) => Ok(refusal),
                    };
                    let code = answer.as_ref().map_or("UNAVAILABLE", crate::rpc_metrics::code_of);
                    crate::rpc_metrics::record(&service, &method, code, started);
                    tracing::debug!(code, micros = started.elapsed().as_micros() as u64, "answered");
                    drop(in_flight);
                    answer
                })
                .instrument(span),
        )
    }
}
