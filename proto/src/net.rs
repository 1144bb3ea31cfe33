//! How every Grape server accepts connections.
//!
//! Grape's servers serve a listener they bound themselves (tests bind port 0 and read the
//! port back), so tonic's `Server::tcp_nodelay` never applies to them: it only configures
//! listeners tonic binds. Without `TCP_NODELAY`, Nagle's algorithm holds a response's last
//! small write until the client acknowledges the previous one, and the client delays that
//! acknowledgement: every RPC then waits 30–40 ms whatever it does. [`incoming`] is the one
//! way our servers turn a listener into connections, with the option set, and with TLS when
//! the process has a certificate ([`crate::tls::use_server_tls`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tower_layer::{Identity, Stack};

use crate::tls::{TlsConn, TlsIncoming};

/// The connections of a listener: plain TCP, or TLS.
pub enum Incoming {
    /// Plain TCP with `TCP_NODELAY`.
    Plain(TcpIncoming),
    /// TLS over TCP with `TCP_NODELAY`.
    Tls(TlsIncoming),
}

/// One accepted connection of an [`Incoming`].
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(TlsConn),
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
            Incoming::Plain(tcp) => Pin::new(tcp).poll_next(cx).map(|next| next.map(|conn| conn.map(Conn::Plain))),
            Incoming::Tls(tls) => Pin::new(tls).poll_next(cx).map(|next| next.map(|conn| Ok(Conn::Tls(conn.unwrap_or_else(|e| match e {})))))
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(tcp) => tcp.connect_info(),
            Conn::Tls(tls) => tls.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Conn::Tls(tls) => Pin::new(tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(tcp) => tcp.is_write_vectored(),
            Conn::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls).poll_shutdown(cx),
        }
    }
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
