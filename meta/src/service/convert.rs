//! Conversions between the meta crate's types and their `grape.meta.v1` forms.

use grape_proto::meta::v1 as pb;
use serde::Serialize;
use tonic::Status;

use crate::catalog::Catalog;
use crate::config::ConfigVersion;
use crate::node::MetaStatus;

/// A value as JSON, or INTERNAL.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, Status> {
    serde_json::to_string(value).map_err(|e| Status::internal(format!("encode JSON: {e}")))
}

/// A catalog from its JSON form, or INTERNAL.
pub fn catalog_from_json(json: &str) -> Result<Catalog, Status> {
    serde_json::from_str(json).map_err(|e| Status::internal(format!("decode catalog JSON: {e}")))
}

/// A config value as the API shows it.
pub fn config_value(key: &str, v: &ConfigVersion) -> pb::ConfigValue {
    pb::ConfigValue { key: key.to_string(), value: v.value.clone(), version: v.version }
}

/// A member's status as the API shows it.
pub fn status(s: &MetaStatus) -> pb::StatusResponse {
    let leader_addr = s.leader_id.and_then(|l| s.nodes.iter().find(|n| n.id == l)).map(|n| n.addr.clone()).unwrap_or_default();
    pb::StatusResponse {
        id: s.id,
        leader_id: s.leader_id.unwrap_or(0),
        leader_addr,
        state: s.server_state.clone(),
        term: s.term,
        last_log_index: s.last_log_index,
        committed_index: s.committed,
        applied_index: s.last_applied,
        snapshot_index: s.snapshot,
        members: s.nodes.iter().map(|n| pb::MemberStatus { id: n.id, addr: n.addr.clone(), voter: n.voter, lag: n.lag }).collect(),
        compute_nodes: Vec::new(),
    }
}
