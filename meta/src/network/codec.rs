//! The wire format of the Raft service, in one place for the client and the server.
//!
//! openraft's request, response and error types travel as JSON inside the protobuf messages of
//! `grape.raft.v1` (JSON because log entries carry Arrow schemas, which have serde support but
//! no protobuf mapping). The one exception is snapshot data: a chunk's bytes go in their own
//! `bytes` field, so a 1 MiB chunk is 1 MiB on the wire and not a 3.5 MiB JSON array.

use grape_proto::raft::v1::{raft_reply, JsonRequest, RaftReply, SnapshotChunk};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{InstallSnapshotRequest, RaftError};

/// A Raft message that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A JSON payload did not (de)serialise; `what` names the message.
    #[error("malformed {what}: {source}")]
    Json {
        /// The message, e.g. "append-entries request".
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A reply carried neither a response nor an error.
    #[error("raft reply carries neither a response nor an error")]
    EmptyReply,
}

fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(|source| CodecError::Json { what, source })
}

fn from_json<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(|source| CodecError::Json { what, source })
}

/// Encodes an append-entries or vote request.
pub(crate) fn encode_request<T: Serialize>(what: &'static str, req: &T) -> Result<JsonRequest, CodecError> {
    Ok(JsonRequest { json: to_json(what, req)? })
}

/// Decodes an append-entries or vote request.
pub(crate) fn decode_request<T: DeserializeOwned>(what: &'static str, req: &JsonRequest) -> Result<T, CodecError> {
    from_json(what, &req.json)
}

/// Encodes a snapshot chunk: the request without its data as JSON, the data as raw bytes.
pub(crate) fn encode_snapshot_chunk(mut req: InstallSnapshotRequest) -> Result<SnapshotChunk, CodecError> {
    let data = std::mem::take(&mut req.data);
    Ok(SnapshotChunk { header_json: to_json("install-snapshot header", &req)?, data })
}

/// Decodes a snapshot chunk encoded by [`encode_snapshot_chunk`].
pub(crate) fn decode_snapshot_chunk(chunk: SnapshotChunk) -> Result<InstallSnapshotRequest, CodecError> {
    let mut req: InstallSnapshotRequest = from_json("install-snapshot header", &chunk.header_json)?;
    req.data = chunk.data;
    Ok(req)
}

/// Encodes what the local Raft answered: a response, or the error it refused with.
pub(crate) fn encode_reply<T: Serialize, E: Serialize>(res: &Result<T, RaftError<E>>) -> Result<RaftReply, CodecError> {
    let result = match res {
        Ok(resp) => raft_reply::Result::ResponseJson(to_json("raft response", resp)?),
        Err(e) => raft_reply::Result::RaftErrorJson(to_json("raft error", e)?),
    };
    Ok(RaftReply { result: Some(result) })
}

/// Decodes a reply encoded by [`encode_reply`]: `Ok(Err(_))` is the remote Raft's refusal.
pub(crate) fn decode_reply<T: DeserializeOwned, E: DeserializeOwned>(reply: &RaftReply) -> Result<Result<T, RaftError<E>>, CodecError> {
    match &reply.result {
        Some(raft_reply::Result::ResponseJson(b)) => Ok(Ok(from_json("raft response", b)?)),
        Some(raft_reply::Result::RaftErrorJson(b)) => Ok(Err(from_json("raft error", b)?)),
        None => Err(CodecError::EmptyReply),
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::{Fatal, Infallible};

    use super::*;
    use crate::types::{LogId, SnapshotMeta, Vote, VoteRequest, VoteResponse};

    #[test]
    fn snapshot_chunk_keeps_data_out_of_json() {
        let req = InstallSnapshotRequest {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta { last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)), ..Default::default() },
            offset: 1024,
            data: vec![7; 4096],
            done: false,
        };
        let chunk = encode_snapshot_chunk(req.clone()).unwrap();
        assert_eq!(chunk.data.len(), 4096);
        assert!(chunk.header_json.len() < 1024, "header is small: {} bytes", chunk.header_json.len());
        assert_eq!(decode_snapshot_chunk(chunk).unwrap(), req);
    }

    #[test]
    fn reply_round_trips_responses_and_remote_errors() {
        let ok: Result<VoteResponse, RaftError> = Ok(VoteResponse::new(Vote::new(2, 5), None, true));
        let decoded: Result<VoteResponse, RaftError<Infallible>> = decode_reply(&encode_reply(&ok).unwrap()).unwrap();
        assert_eq!(decoded, ok);

        let refused: Result<VoteResponse, RaftError> = Err(RaftError::Fatal(Fatal::Stopped));
        let decoded: Result<VoteResponse, RaftError<Infallible>> = decode_reply(&encode_reply(&refused).unwrap()).unwrap();
        assert_eq!(decoded, refused);

        let empty = RaftReply { result: None };
        assert!(matches!(decode_reply::<VoteResponse, Infallible>(&empty), Err(CodecError::EmptyReply)));
        let garbage = JsonRequest { json: b"{".to_vec() };
        assert!(matches!(decode_request::<VoteRequest>("vote request", &garbage), Err(CodecError::Json { .. })));
    }
}
