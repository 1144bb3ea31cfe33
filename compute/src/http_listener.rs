//! The listener of Grape's HTTP/1.1 servers (the Qdrant REST API, the operators' port):
//! connections from [`grape_proto::net::http_incoming`], so with `TCP_NODELAY`, and TLS when
//! the process has a certificate.

use std::io;
use std::net::SocketAddr;

use std::pin::Pin;

use futures::{Stream, StreamExt};
use grape_proto::net::{http_incoming, Conn};
use grape_proto::serving::LaneIncoming;
use tokio::net::TcpListener;
use tonic::transport::server::Connected;

/// An axum listener (`axum::serve(HttpListener::new(listener)?, app)`).
pub struct HttpListener {
    incoming: Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send>>,
    addr: SocketAddr,
}

impl HttpListener {
    /// Accepts on `listener`.
    pub fn new(listener: TcpListener) -> io::Result<HttpListener> {
        let addr = listener.local_addr()?;
        Ok(HttpListener { incoming: Box::pin(http_incoming(listener)), addr })
    }

    /// The connections a serving thread is given (see [`grape_proto::serving`]) by the
    /// listener on `addr`.
    pub fn on_lane(incoming: LaneIncoming, addr: SocketAddr) -> HttpListener {
        HttpListener { incoming: Box::pin(incoming), addr }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(conn)) => {
                    let peer = conn.connect_info().remote_addr().unwrap_or(self.addr);
                    return (conn, peer);
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                // The listener is gone: nothing more will come.
                None => std::future::pending().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
