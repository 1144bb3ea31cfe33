//! The meta service (`grape.meta.v1.Meta`) on a compute node's port, forwarded to the meta
//! group: DESIGN.md promises that `grape status`, `grape config …` and `grape cluster …` work
//! against any gateway, and only `grape dev` serves the meta service itself.
//!
//! Only the operator's methods are forwarded ([`FORWARDED`]: status, config, membership).
//! `Write`, `ReadCatalog`, `Watch` and `Heartbeat` are for compute nodes, which talk to the
//! members directly; a node's public port must not widen who can reach them, so they are
//! refused with `PERMISSION_DENIED`.
//!
//! The forwarder does not decode anything: each HTTP/2 request is passed as it is to a channel
//! balanced over the meta members, and the answer is passed back. The members forward writes
//! to their leader themselves. If no member can be reached, the client gets `UNAVAILABLE`
//! naming the members tried.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::{Channel, Endpoint};
use tower_service::Service;

use crate::error::CliError;

/// The methods of `grape.meta.v1.Meta` a compute node forwards.
pub const FORWARDED: [&str; 8] =
    ["Status", "ConfigGet", "ConfigPut", "ConfigList", "ConfigHistory", "AddMember", "RemoveMember", "DrainNode"];

/// Forwards the meta service's requests to the meta group (see the module doc).
#[derive(Clone)]
pub struct MetaForwarder {
    /// The channels requests go through.
    channels: Channels,
    /// The members, as given (for error messages).
    members: String,
}

/// Where a forwarded request goes.
#[derive(Clone)]
enum Channels {
    /// One channel balanced over the members (plain connections).
    Balanced(Channel),
    /// A channel per member, used in turn: the current one until a request through it fails
    /// to reach its member, then the next. tonic balances only connections it makes itself,
    /// so TLS connections cannot be balanced.
    InTurn(Arc<(Vec<Channel>, AtomicUsize)>),
}

impl Channels {
    /// The channel for the next request, and its index for [`Channels::failed`].
    fn pick(&self) -> (Channel, usize) {
        match self {
            Channels::Balanced(channel) => (channel.clone(), 0),
            Channels::InTurn(members) => {
                let i = members.1.load(Ordering::Relaxed) % members.0.len();
                (members.0[i].clone(), i)
            }
        }
    }

    /// Moves on from channel `i` after a request through it could not reach its member.
    fn failed(&self, i: usize) {
        if let Channels::InTurn(members) = self {
            let _ = members.1.compare_exchange(i, (i + 1) % members.0.len(), Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

impl MetaForwarder {
    /// A forwarder to the members at `addrs` (`host:port` or URLs). Connections are made when
    /// the first request arrives.
    pub fn new(addrs: &[String]) -> Result<MetaForwarder, CliError> {
        let endpoints = addrs
            .iter()
            .map(|addr| {
                let url = if addr.contains("://") { addr.clone() } else { format!("http://{addr}") };
                Endpoint::from_shared(url)
                    .map(|e| e.connect_timeout(Duration::from_secs(1)).tcp_nodelay(true))
                    .map_err(|e| CliError::Usage(format!("meta address {addr:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let channels = if grape_proto::tls::client_tls_enabled() {
            Channels::InTurn(Arc::new((endpoints.into_iter().map(grape_proto::tls::connect_lazy).collect(), AtomicUsize::new(0))))
        } else {
            Channels::Balanced(Channel::balance_list(endpoints.into_iter()))
        };
        Ok(MetaForwarder { channels, members: addrs.join(",") })
    }
}

impl NamedService for MetaForwarder {
    const NAME: &'static str = "grape.meta.v1.Meta";
}

impl Service<http::Request<Body>> for MetaForwarder {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Readiness of the members is awaited per request below, so a slow member never
        // stops the node's server from accepting other requests.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let method = path.strip_prefix('/').and_then(|p| p.strip_prefix(Self::NAME)).and_then(|p| p.strip_prefix('/')).unwrap_or(path);
        if !FORWARDED.contains(&method) {
            let refused = tonic::Status::permission_denied(format!(
                "{method} of the meta service is answered by meta members only, not through a compute node"
            ));
            return Box::pin(std::future::ready(Ok(refused.into_http())));
        }
        // This node's auth layer has checked the caller; the members trust the node.
        grape_proto::auth::add_credentials(request.headers_mut());
        let (mut channel, picked) = self.channels.pick();
        let channels = self.channels.clone();
        let members = self.members.clone();
        Box::pin(async move {
            let answer = async {
                std::future::poll_fn(|cx| Service::poll_ready(&mut channel, cx)).await?;
                channel.call(request).await
            };
            Ok(answer.await.unwrap_or_else(|e| {
                channels.failed(picked);
                tonic::Status::unavailable(format!("the meta group ({members}) cannot be reached from this node: {e}")).into_http()
            }))
        })
    }
}
