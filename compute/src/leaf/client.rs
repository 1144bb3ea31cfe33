//! The gateway's connections to other nodes' leaf services: one lazily connected channel per
//! address, reused by every request, and every call bounded by [`LEAF_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use grape_proto::auth::{authed, AuthedChannel};
use grape_proto::compute::v1::{self as pb, leaf_client::LeafClient};
use tonic::transport::{Channel, Endpoint};

use crate::error::ComputeError;
use crate::gateway::MAX_MESSAGE_BYTES;
use crate::ingest::decode_ipc;

/// Longest a leaf call may take before the root gives up on that replica.
pub const LEAF_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for a TCP connection to another node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Leaf clients by node address.
#[derive(Debug, Default)]
pub struct LeafClients {
    channels: Mutex<HashMap<String, Channel>>,
}

impl LeafClients {
    /// A client for the node at `addr` (`host:port`).
    fn client(&self, addr: &str) -> Result<LeafClient<AuthedChannel>, ComputeError> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| ComputeError::Internal(format!("node address {addr}: {e}")))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(LEAF_TIMEOUT)
                    .tcp_nodelay(true);
                let c = grape_proto::tls::connect_lazy(endpoint);
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(LeafClient::new(authed(channel)).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Searches segments on the node at `addr`.
    pub async fn search(&self, addr: &str, req: pb::SearchSegmentsRequest) -> Result<pb::SearchSegmentsResponse, ComputeError> {
        let work = async {
            let reply = self.client(addr)?.search_segments(req).await.map_err(|s| unreachable(addr, &s))?;
            Ok(reply.into_inner())
        };
        within_leaf_timeout(addr, work).await
    }

    /// Scans one segment on the node at `addr`: all its matching rows, projected.
    pub async fn scan(&self, addr: &str, req: pb::ScanSegmentRequest) -> Result<Vec<arrow::array::RecordBatch>, ComputeError> {
        let work = async {
            let mut stream = self.client(addr)?.scan_segment(req).await.map_err(|s| unreachable(addr, &s))?.into_inner();
            let mut batches = Vec::new();
            while let Some(message) = stream.next().await {
                let message = message.map_err(|s| unreachable(addr, &s))?;
                batches.extend(decode_ipc(&message.arrow_ipc)?.1);
            }
            Ok(batches)
        };
        within_leaf_timeout(addr, work).await
    }
}

/// Runs one whole leaf call, its response body included, within [`LEAF_TIMEOUT`]. The
/// channel's own timeout covers only the wait for the response headers: a node stopped
/// (SIGSTOP, a stalled VM) after sending them would otherwise hold the root's request until
/// the request deadline, where the other replica could have answered.
async fn within_leaf_timeout<T>(addr: &str, work: impl std::future::Future<Output = Result<T, ComputeError>>) -> Result<T, ComputeError> {
    tokio::time::timeout(LEAF_TIMEOUT, work)
        .await
        .map_err(|_| ComputeError::Unavailable(format!("node {addr} did not answer within {} s", LEAF_TIMEOUT.as_secs())))?
}

/// A failed leaf call as an error of the replica (the root tries another), unless the leaf
/// refused the request itself (a filter that fails on the data): every replica would.
fn unreachable(addr: &str, status: &tonic::Status) -> ComputeError {
    match status.code() {
        tonic::Code::InvalidArgument => ComputeError::InvalidArgument(status.message().to_string()),
        _ => ComputeError::Unavailable(format!("node {addr}: {}", status.message())),
    }
}
