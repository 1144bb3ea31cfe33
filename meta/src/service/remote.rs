//! [`RemoteMeta`]: the client side of the meta service, given the addresses of any members.
//!
//! A request goes to the member that answered last; if that member cannot be reached, the next
//! one is tried, round the list, until a deadline. Members forward writes and linearizable
//! reads to their leader themselves, so the client never needs to know which one leads.
//!
//! Retrying is safe for reads. A write is retried on another member only when it certainly
//! was not applied (the member could not be reached, or answered with the not-applied mark);
//! any other failure is returned as it is, because the write may have been committed.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use grape_proto::meta::v1 as pb;
use grape_proto::meta::v1::meta_client::MetaClient;
use grape_proto::auth::{authed, AuthedChannel};
use tonic::transport::Endpoint;
use tonic::{Code, Response, Status};

use super::forward::NOT_APPLIED_HEADER;
use super::MAX_MESSAGE_BYTES;

/// How long a request keeps trying members before giving up.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(15);

/// Deadline of one attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a request may be sent again after an ambiguous failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A read: send it again anywhere.
    Always,
    /// A write: send it again only where it certainly was not applied.
    IfNotApplied,
}

/// A client of the meta group.
#[derive(Debug)]
pub struct RemoteMeta {
    clients: Vec<(String, MetaClient<AuthedChannel>)>,
    /// Index of the member to try first: the last one that answered.
    preferred: AtomicUsize,
    deadline: Duration,
}

impl RemoteMeta {
    /// A client of the members at `addrs` (`host:port` or URLs). Connections are made lazily,
    /// on the Tokio runtime this is called in (which must exist).
    pub fn new(addrs: &[String]) -> Result<RemoteMeta, Status> {
        if addrs.is_empty() {
            return Err(Status::invalid_argument("no meta address given"));
        }
        let clients = addrs
            .iter()
            .map(|addr| {
                let url = if addr.contains("://") { addr.clone() } else { format!("http://{addr}") };
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| Status::invalid_argument(format!("meta address {addr:?}: {e}")))?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(ATTEMPT_TIMEOUT);
                let channel = grape_proto::tls::connect_lazy(endpoint);
                let client =
                    MetaClient::new(authed(channel)).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
                Ok((url, client))
            })
            .collect::<Result<Vec<_>, Status>>()?;
        Ok(RemoteMeta { clients, preferred: AtomicUsize::new(0), deadline: DEFAULT_DEADLINE })
    }

    /// This client with another overall deadline per request.
    pub fn with_deadline(mut self, deadline: Duration) -> RemoteMeta {
        self.deadline = deadline;
        self
    }

    /// Sends a request built by `call`, trying members in turn as `retry` allows.
    pub async fn call<T, F, Fut>(&self, retry: Retry, call: F) -> Result<T, Status>
    where
        F: Fn(MetaClient<AuthedChannel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut attempt = 0usize;
        loop {
            let i = (self.preferred.load(Ordering::Relaxed) + attempt) % self.clients.len();
            let (url, client) = &self.clients[i];
            // Every attempt ends by the overall deadline: a member that accepted the connection
            // but does not answer (it is starting, or stuck) must not hold the caller longer.
            let limit = self.deadline.saturating_sub(started.elapsed()).clamp(Duration::from_millis(100), ATTEMPT_TIMEOUT);
            let outcome = match tokio::time::timeout(limit, call(client.clone())).await {
                Ok(outcome) => outcome,
                Err(_) => Err(no_answer(url, limit)),
            };
            match outcome {
                Ok(response) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Err(status) if may_retry(&status, retry) && started.elapsed() < self.deadline => {
                    tracing::debug!(member = %url, error = %status, "meta member did not answer; trying the next");
                    attempt += 1;
                    if attempt % self.clients.len() == 0 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(status) if status.code() == Code::Cancelled && status.message().contains("Timeout expired") => {
                    return Err(no_answer(url, ATTEMPT_TIMEOUT));
                }
                Err(status) => return Err(status),
            }
        }
    }
}

/// The command result a write answered.
fn command_result(reply: &pb::WriteResponse) -> Result<crate::CommandResult, Status> {
    serde_json::from_str(&reply.result_json).map_err(|e| Status::data_loss(format!("command result from meta: {e}")))
}

/// DEADLINE_EXCEEDED for a member that did not answer in time.
fn no_answer(url: &str, waited: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "meta member {url} did not answer within {} ms; a write may or may not have been applied",
        waited.as_millis()
    ))
}

/// Whether `status` allows sending the request again.
fn may_retry(status: &Status, retry: Retry) -> bool {
    let not_applied = status.metadata().contains_key(NOT_APPLIED_HEADER) || never_connected(status);
    match retry {
        Retry::Always => {
            matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown) || not_applied
        }
        Retry::IfNotApplied => not_applied,
    }
}

/// Whether the request failed before it could reach the member (no connection was made).
fn never_connected(status: &Status) -> bool {
    use std::error::Error;
    if status.code() == Code::Unavailable && status.message().contains("tcp connect error") {
        return true;
    }
    let mut source: Option<&(dyn Error + 'static)> = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound);
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// Typed calls for the requests several callers make, each with the retry rule it needs.
impl RemoteMeta {
    /// The answering member's status.
    pub async fn status(&self) -> Result<pb::StatusResponse, Status> {
        self.call(Retry::Always, |mut c| async move { c.status(pb::StatusRequest {}).await }).await
    }

    /// A config key's value and version, linearizable or as the answering member has it.
    pub async fn config_get(&self, key: &str, linearizable: bool) -> Result<Option<pb::ConfigValue>, Status> {
        let req = pb::ConfigGetRequest { key: key.to_string(), linearizable };
        let reply = self
            .call(Retry::Always, |mut c| {
                let r = req.clone();
                async move { c.config_get(r).await }
            })
            .await?;
        Ok(reply.value)
    }

    /// Sets a config key, only if it is at `expected` when given; sent again only where it
    /// certainly was not applied.
    pub async fn config_put(&self, key: &str, value: &str, expected: Option<u64>) -> Result<pb::ConfigPutResponse, Status> {
        let req = pb::ConfigPutRequest { key: key.to_string(), value: value.to_string(), expected_version: expected };
        self.call(Retry::IfNotApplied, |mut c| {
            let r = req.clone();
            async move { c.config_put(r).await }
        })
        .await
    }

    /// Commits a command and returns its result; sent again only where it certainly was not
    /// applied.
    pub async fn write(&self, cmd: &crate::Command) -> Result<crate::CommandResult, Status> {
        let command_json = serde_json::to_string(cmd).map_err(|e| Status::internal(format!("encode command: {e}")))?;
        let reply = self
            .call(Retry::IfNotApplied, |mut c| {
                let req = pb::WriteRequest { command_json: command_json.clone() };
                async move { c.write(req).await }
            })
            .await?;
        command_result(&reply)
    }

    /// Drains compute node `id` (see `Command::DrainNode`) through the typed operator method.
    pub async fn drain_node(&self, id: u64) -> Result<crate::CommandResult, Status> {
        let reply = self
            .call(Retry::IfNotApplied, |mut c| async move { c.drain_node(pb::DrainNodeRequest { node_id: id }).await })
            .await?;
        command_result(&reply)
    }

    /// The config keys starting with `prefix`, linearizable or as the answering member has them.
    pub async fn config_list(&self, prefix: &str, linearizable: bool) -> Result<Vec<pb::ConfigValue>, Status> {
        let req = pb::ConfigListRequest { prefix: prefix.to_string(), linearizable };
        let reply = self
            .call(Retry::Always, |mut c| {
                let r = req.clone();
                async move { c.config_list(r).await }
            })
            .await?;
        Ok(reply.values)
    }
}
