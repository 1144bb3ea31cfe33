//! Connecting to a gateway.

use grape_compute::gateway::MAX_MESSAGE_BYTES;
use grape_proto::v1::grape_client::GrapeClient;
use grape_proto::auth::{authed, AuthedChannel};
use tonic::transport::Endpoint;

use crate::error::CliError;

/// A client of the public API.
pub type Client = GrapeClient<AuthedChannel>;

/// Connects to `endpoint` (`http://host:port`; a bare `host:port` is accepted too). Calls
/// carry the API key given with `--api-key` or `GRAPE_API_KEY`.
pub async fn connect(endpoint: &str) -> Result<Client, CliError> {
    let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
    let target = Endpoint::from_shared(url.clone()).map_err(|e| CliError::Usage(format!("invalid endpoint \"{endpoint}\": {e}")))?;
    let channel = grape_proto::tls::connect(target).await.map_err(|source| CliError::Connect { endpoint: url, source })?;
    Ok(GrapeClient::new(authed(channel)).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES))
}
