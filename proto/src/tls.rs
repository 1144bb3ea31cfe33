//! TLS (rustls) on every gRPC server and client of Grape.
//!
//! tonic's own TLS (`tls-aws-lc`, `tls-ring`, …) is deliberately not enabled: those features
//! turn on `tokio-rustls/logging`, hence `rustls/logging`, a feature change of a crate the
//! object store's HTTP client shares, and with it a rebuild of DataFusion and Lance (half an
//! hour). This module drives `tokio-rustls` with the features the tree already has instead,
//! and hands tonic plain byte streams, which it serves and speaks HTTP/2 over unchanged.
//!
//! - Servers: build a config with [`server_config`] (mutual TLS when [`TlsFiles::ca`] is set),
//!   wrap it in a `tokio_rustls::TlsAcceptor` and serve [`tls_incoming`] instead of
//!   [`crate::net::incoming`]. Handshakes run concurrently in tasks of their own: a slow or
//!   failed one never holds up the next connection and is logged at debug and dropped.
//! - Clients: call [`use_client_tls`] once at start with [`client_config`], and build every
//!   channel with [`connect_lazy`] or [`connect`] instead of `Endpoint::connect_lazy` /
//!   `connect`. The URI's scheme does not matter (without tonic's TLS features an `https://`
//!   URI is accepted and not treated specially): whether a connection uses TLS is decided by
//!   [`use_client_tls`] alone. The certificate is checked against the URI's host, a DNS name
//!   or an IP address.
//!
//! All configs use the aws-lc-rs provider explicitly, so nothing depends on a process-wide
//! default provider (two providers, aws-lc-rs and ring, are compiled into the tree).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_stream::Stream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint};

/// The one application protocol Grape speaks over TLS (gRPC is HTTP/2 only).
const H2: &[u8] = b"h2";
/// How long a client may take to complete its handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long accepting pauses after an error such as running out of file descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Connections accepted in one poll before in-progress handshakes get a turn.
const ACCEPTS_PER_POLL: usize = 64;

/// Why a TLS configuration could not be built; names the file and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    /// The file is not valid PEM.
    #[error("{} is not a valid PEM file: {source}", .path.display())]
    Pem { path: PathBuf, source: rustls::pki_types::pem::Error },
    /// The file holds no `BEGIN CERTIFICATE` block.
    #[error("{} holds no certificate (no PEM `BEGIN CERTIFICATE` block)", .path.display())]
    NoCertificate { path: PathBuf },
    /// The file holds no private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{} holds no private key (no PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block)", .path.display())]
    NoPrivateKey { path: PathBuf },
    /// rustls refused a certificate, key or CA (`what` says which files).
    #[error("{what}: rejected by rustls: {source}")]
    Rejected { what: String, source: rustls::Error },
    /// The CA file cannot verify client certificates (it has no usable CA certificate).
    #[error("{}: cannot verify client certificates with it: {source}", .path.display())]
    ClientVerifier { path: PathBuf, source: rustls::server::VerifierBuilderError },
    /// A client was given no CA to trust: it would trust nothing and reach no server.
    #[error("TLS client without a CA certificate: give the PEM file of the CA that signed the servers' certificates")]
    NoCa,
}

/// The PEM files of a server: its certificate chain and key, and optionally the CA whose
/// certificates clients must present (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub ca: Option<PathBuf>,
}

/// The crypto provider of every config: aws-lc-rs, never the process-wide default.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in the PEM file at `path` (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem { path: path.to_path_buf(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey { path: path.to_path_buf() },
        source => TlsError::Pem { path: path.to_path_buf(), source },
    })
}

/// The CA certificates in the PEM file at `path`, as trust anchors.
fn roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::Rejected { what: format!("CA {}", path.display()), source })?;
    }
    Ok(Arc::new(roots))
}

fn rejected(cert: &Path, key: &Path) -> impl FnOnce(rustls::Error) -> TlsError {
    let what = format!("certificate {} with key {}", cert.display(), key.display());
    move |source| TlsError::Rejected { what, source }
}

/// The rustls config of a server from its PEM files: TLS 1.2 and 1.3, ALPN `h2`, and client
/// certificates signed by `files.ca` required when it is set (mutual TLS).
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected { what: "aws-lc-rs provider".into(), source })?;
    let builder = match &files.ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider)
                .build()
                .map_err(|source| TlsError::ClientVerifier { path: ca.clone(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certificates(&files.cert)?, private_key(&files.key)?).map_err(rejected(&files.cert, &files.key))?;
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

/// The rustls config of a client: trusts the CA in the PEM file `ca` (required: a client
/// trusting nothing could reach no server, so `None` is [`TlsError::NoCa`]), presents the
/// certificate and key of `identity` (`(cert, key)`) for mutual TLS, and offers ALPN `h2`.
pub fn client_config(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Arc<ClientConfig>, TlsError> {
    let ca = ca.ok_or(TlsError::NoCa)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected { what: "aws-lc-rs provider".into(), source })?
        .with_root_certificates(roots(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(certificates(cert)?, private_key(key)?).map_err(rejected(cert, key))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![H2.to_vec()];
    Ok(Arc::new(config))
}

/// A server's TLS connection, as tonic serves it: a `tokio_rustls` stream over TCP whose
/// connect info is the TCP one, so `Request::remote_addr` works as without TLS.
#[derive(Debug)]
pub struct TlsConn(pub tokio_rustls::server::TlsStream<TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The TLS connections accepted on a listener (see [`tls_incoming`]). Dropping it closes the
/// listener and abandons the handshakes in progress.
pub struct TlsIncoming {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<TlsConn>>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The connections accepted on `listener`, each with `TCP_NODELAY` set and its TLS handshake
/// done by `acceptor` (built from [`server_config`]): pass it to
/// `Server::serve_with_incoming[_shutdown]` where a plain server passes [`crate::net::incoming`].
/// Handshakes run concurrently; one failing or taking over 10 s is logged at debug and dropped.
/// Accept errors are logged, never end the stream, and pause accepting for 100 ms when not
/// transient (e.g. out of file descriptors), so the stream never yields an error.
pub fn tls_incoming(listener: TcpListener, acceptor: TlsAcceptor) -> TlsIncoming {
    TlsIncoming { listener, acceptor, handshakes: JoinSet::new(), pause: None }
}

impl TlsIncoming {
    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return Some(TlsConn(tls)),
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            None
        });
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsConn, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Accept first, so that handshakes started here are in the set polled below.
        let mut accepted = 0;
        loop {
            if let Some(pause) = this.pause.as_mut() {
                if pause.as_mut().poll(cx).is_pending() {
                    break;
                }
                this.pause = None;
            }
            if accepted == ACCEPTS_PER_POLL {
                cx.waker().wake_by_ref();
                break;
            }
            match this.listener.poll_accept(cx) {
                Poll::Ready(Ok((tcp, peer))) => {
                    this.start_handshake(tcp, peer);
                    accepted += 1;
                }
                Poll::Ready(Err(e)) if is_transient(&e) => tracing::debug!(error = %e, "accepting a connection failed"),
                Poll::Ready(Err(e)) => {
                    tracing::warn!(error = %e, "accepting a connection failed; pausing accepts for 100 ms");
                    this.pause = Some(Box::pin(tokio::time::sleep(ACCEPT_ERROR_PAUSE)));
                }
                Poll::Pending => break,
            }
        }
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(conn)))) => return Poll::Ready(Some(Ok(conn))),
                Poll::Ready(Some(Ok(None))) => {}
                Poll::Ready(Some(Err(e))) => tracing::debug!(error = %e, "TLS handshake task failed"),
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Accept errors about one connection only, after which the next accept may well succeed.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(e.kind(), K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock | K::TimedOut)
}

/// A tonic connector (`Endpoint::connect_with_connector[_lazy]`) that opens TCP to the URI's
/// host and port with `TCP_NODELAY` and speaks TLS over it, checking the server's certificate
/// against the host (a DNS name or an IP address). The port defaults to 80 for `http://`, 443
/// otherwise. The endpoint's connect timeout covers the handshake too; its TCP keepalive and
/// local address settings are not applied.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    /// A connector with `config` (from [`client_config`]); ALPN `h2` is added if it offers none.
    pub fn new(config: Arc<ClientConfig>) -> TlsConnector {
        if !config.alpn_protocols.is_empty() {
            return TlsConnector { config };
        }
        let mut config = (*config).clone();
        config.alpn_protocols = vec![H2.to_vec()];
        TlsConnector { config: Arc::new(config) }
    }
}

/// The host (IPv6 without brackets) and port a connection to `uri` goes to.
fn target(uri: &Uri) -> io::Result<(String, u16)> {
    let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host")))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
    Ok((host.to_string(), port))
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        Box::pin(async move {
            let (host, port) = target(&uri)?;
            let name = ServerName::try_from(host.clone())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?} is neither a DNS name nor an IP address")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, io::Error>(TokioIo::new(connector.connect(name, tcp).await?))
        })
    }
}

static CLIENT_TLS: OnceLock<TlsConnector> = OnceLock::new();

static SERVER_TLS: OnceLock<Arc<ServerConfig>> = OnceLock::new();

/// Makes every server of this process that accepts through [`crate::net::incoming`] or
/// [`crate::net::http_incoming`] speak TLS with `config`; set once at start.
pub fn use_server_tls(config: Arc<ServerConfig>) {
    let _ = SERVER_TLS.set(config);
}

/// The acceptor of this process's gRPC servers (ALPN `h2`), if [`use_server_tls`] was called.
pub fn grpc_acceptor() -> Option<TlsAcceptor> {
    SERVER_TLS.get().map(|config| TlsAcceptor::from(config.clone()))
}

/// The acceptor of this process's HTTP/1.1 servers (the Qdrant REST API, the metrics port),
/// if [`use_server_tls`] was called: the same certificate, ALPN `http/1.1`.
pub fn http_acceptor() -> Option<TlsAcceptor> {
    SERVER_TLS.get().map(|config| {
        let mut http = ServerConfig::clone(config);
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(http))
    })
}

/// Whether this process's clients speak TLS ([`use_client_tls`] was called).
pub fn client_tls_enabled() -> bool {
    CLIENT_TLS.get().is_some()
}

/// Makes every channel built with [`connect_lazy`] or [`connect`] use TLS with `config`; set
/// once at start, later calls are ignored (like [`crate::auth::present`]).
pub fn use_client_tls(config: Arc<ClientConfig>) {
    let _ = CLIENT_TLS.set(TlsConnector::new(config));
}

// No TLS variant of `Channel::balance_list` / `balance_channel` is possible: tonic 0.14 builds
// each balanced endpoint's connection with the endpoint's own HTTP connector
// (`DynamicServiceStream`, src/transport/channel/service/discover.rs), with no way to pass a
// connector. With TLS, keep one `connect_lazy` channel per endpoint and try them in turn.

/// A channel to `endpoint` connecting on first use: over TLS once [`use_client_tls`] was
/// called, else plain (`Endpoint::connect_lazy`). The replacement of `endpoint.connect_lazy()`.
/// The channel's tasks run on the shared runtime, also when made on a serving thread
/// ([`crate::serving::on_shared_runtime`]).
pub fn connect_lazy(endpoint: Endpoint) -> Channel {
    crate::serving::on_shared_runtime(|| match CLIENT_TLS.get() {
        Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
        None => endpoint.connect_lazy(),
    })
}

/// A channel to `endpoint`, connected now: over TLS once [`use_client_tls`] was called, else
/// plain (`Endpoint::connect`). The replacement of `endpoint.connect().await`.
pub async fn connect(endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
    match CLIENT_TLS.get() {
        Some(tls) => endpoint.connect_with_connector(tls.clone()).await,
        None => endpoint.connect().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_uris() {
        let t = |s: &str| target(&s.parse::<Uri>().unwrap()).unwrap();
        assert_eq!(t("http://127.0.0.1:7000"), ("127.0.0.1".to_string(), 7000));
        assert_eq!(t("https://[::1]:7001"), ("::1".to_string(), 7001));
        assert_eq!(t("https://meta-1.grape.internal"), ("meta-1.grape.internal".to_string(), 443));
        assert_eq!(t("http://meta-1"), ("meta-1".to_string(), 80));
        assert!(matches!(ServerName::try_from("::1".to_string()).unwrap(), ServerName::IpAddress(_)));
    }

    #[test]
    fn config_errors_name_the_problem() {
        assert!(matches!(client_config(None, None), Err(TlsError::NoCa)));
        let missing = Path::new("/nonexistent/grape-ca.pem");
        let err = client_config(Some(missing), None).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }) && err.to_string().contains("grape-ca.pem"), "{err}");
        let files = TlsFiles { cert: missing.into(), key: missing.into(), ca: None };
        assert!(matches!(server_config(&files), Err(TlsError::Read { .. })));
    }
}
