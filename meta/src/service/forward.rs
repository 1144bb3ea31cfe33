//! Forwarding to the leader: a member that is not the leader relays writes and linearizable
//! reads to the member it believes leads, over one cached connection per leader address.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grape_proto::meta::v1::meta_client::MetaClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::{status_of, MAX_MESSAGE_BYTES};
use crate::error::MetaError;

/// Request header marking a request forwarded by a member; such a request is not forwarded
/// again.
pub const FORWARDED_HEADER: &str = "x-grape-forwarded";

/// Status header saying the request was certainly not applied, so a client may retry it
/// elsewhere without risking a double write.
pub const NOT_APPLIED_HEADER: &str = "x-grape-not-applied";

/// Deadline of one forwarded request.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// A client whose every request carries [`FORWARDED_HEADER`].
pub(super) type ForwardingClient = MetaClient<InterceptedService<Channel, fn(Request<()>) -> Result<Request<()>, Status>>>;

/// Connections to leaders, by address.
#[derive(Clone, Default)]
pub(super) struct Leader {
    clients: Arc<Mutex<HashMap<String, ForwardingClient>>>,
}

impl Leader {
    /// Relays a request that failed here with `err` to the leader, if `err` says this member is
    /// not the leader and names one; otherwise returns `err` as a status.
    pub async fn forward<T, Q, F, Fut>(&self, request: &Request<Q>, err: MetaError, call: F) -> Result<T, Status>
    where
        F: FnOnce(ForwardingClient) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let MetaError::NotLeader { leader_addr, .. } = &err else { return Err(status_of(&err)) };
        if request.metadata().contains_key(FORWARDED_HEADER) {
            return Err(not_applied(format!("{err}, and this request was already forwarded once; retry")));
        }
        let Some(addr) = leader_addr.as_deref().filter(|a| !a.is_empty()) else {
            return Err(not_applied("no meta leader is known yet (an election may be under way); retry".to_string()));
        };
        let client = self.client(addr)?;
        call(client).await.map(Response::into_inner)
    }

    fn client(&self, addr: &str) -> Result<ForwardingClient, Status> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let url = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|e| Status::internal(format!("leader address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(FORWARD_TIMEOUT);
        let channel = grape_proto::tls::connect_lazy(endpoint);
        let mark: fn(Request<()>) -> Result<Request<()>, Status> = mark_forwarded;
        let client = MetaClient::with_interceptor(channel, mark)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }
}

fn mark_forwarded(mut request: Request<()>) -> Result<Request<()>, Status> {
    request.metadata_mut().insert(FORWARDED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    // The member checked the caller; the leader trusts the member.
    grape_proto::auth::add_credentials_to_metadata(request.metadata_mut());
    Ok(request)
}

/// UNAVAILABLE, marked as certainly not applied.
pub fn not_applied(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.metadata_mut().insert(NOT_APPLIED_HEADER, tonic::metadata::MetadataValue::from_static("1"));
    status
}
