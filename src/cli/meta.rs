//! Client commands that talk to the meta group: `grape status`, `grape config …` and
//! `grape cluster …`. `--endpoint` may name any meta member, several separated by commas, or a
//! gateway (`grape dev` serves the meta service too).

use grape_meta::service::remote::Retry;
use grape_meta::service::RemoteMeta;
use grape_meta::CommandResult;
use grape_proto::meta::v1 as pb;
use grape_proto::v1;
use serde_json::{json, Map, Value};
use tonic::Code;

use super::client::connect;
use super::output::print_object;
use super::{ClusterCommand, ConfigCommand, OutputFormat};
use crate::error::CliError;

/// The meta client for `--endpoint`.
fn remote(endpoint: &str) -> Result<RemoteMeta, CliError> {
    let addrs: Vec<String> = endpoint.split(',').map(str::trim).filter(|a| !a.is_empty()).map(String::from).collect();
    Ok(RemoteMeta::new(&addrs)?)
}

/// Prints the state of the meta group and, if the endpoint is a gateway, of its node.
pub async fn status(endpoint: &str, format: OutputFormat) -> Result<(), CliError> {
    let mut value = Map::new();
    let first = endpoint.split(',').next().unwrap_or(endpoint);
    match connect(first).await?.status(v1::StatusRequest {}).await {
        Ok(s) => {
            let s = s.into_inner();
            let node = json!({
                "node_id": s.node_id,
                "meta_leader_id": s.meta_leader_id,
                "meta_term": s.meta_term,
                "meta_last_log_index": s.meta_last_log_index,
                "meta_applied_index": s.meta_applied_index,
                "storage": s.storage_url,
                "collections": s.collections,
                "segments_loaded": s.segments_loaded,
                "rows_loaded": s.rows_loaded,
                "memory_bytes": s.memory_bytes,
                "version": s.version,
                "requests_running": s.requests_running,
                "requests_queued": s.requests_queued,
                "requests_rejected": s.requests_rejected,
                "requests_cancelled": s.requests_cancelled,
                "requests_timed_out": s.requests_timed_out,
                "sql_memory_used": s.sql_memory_used,
                "sql_memory_limit": s.sql_memory_limit,
                "jobs": s.jobs_by_state,
                "catalog_error": s.catalog_error,
                "indexes_loaded": s.indexes_loaded,
                "index_load_failures": s.index_load_failures,
                "indexed_rows_loaded": s.indexed_rows_loaded,
                "index_memory_bytes": s.index_memory_bytes,
                "vector_bytes_on_disk": s.vector_bytes_on_disk,
                "index_bytes_per_vector": if s.indexed_rows_loaded == 0 { 0.0 } else { s.index_memory_bytes as f64 / s.indexed_rows_loaded as f64 },
            });
            if !s.catalog_error.is_empty() {
                eprintln!("warning: this node's catalog has stopped following the meta group: {}", s.catalog_error);
            }
            value.extend(node.as_object().cloned().unwrap_or_default());
        }
        Err(e) if e.code() == Code::Unimplemented => {}
        Err(e) => return Err(e.into()),
    }
    match remote(endpoint)?.status().await {
        Ok(mut m) => {
            // Only the leader knows how far behind each member is: take the member list from it.
            if m.leader_id != m.id && !m.leader_addr.is_empty() {
                if let Ok(l) = remote(&m.leader_addr)?.status().await {
                    m.members = l.members;
                    m.compute_nodes = l.compute_nodes;
                }
            }
            value.entry("node_id").or_insert(json!(m.id));
            value.insert("meta_id".into(), json!(m.id));
            value.insert("meta_leader_id".into(), json!(m.leader_id));
            value.insert("meta_leader_addr".into(), json!(m.leader_addr));
            value.insert("meta_state".into(), json!(m.state));
            value.insert("meta_term".into(), json!(m.term));
            value.insert("meta_last_log_index".into(), json!(m.last_log_index));
            value.insert("meta_committed_index".into(), json!(m.committed_index));
            value.insert("meta_applied_index".into(), json!(m.applied_index));
            value.insert("meta_snapshot_index".into(), json!(m.snapshot_index));
            let members: Vec<Value> =
                m.members.iter().map(|n| json!({"id": n.id, "addr": n.addr, "voter": n.voter, "lag": n.lag})).collect();
            value.insert("meta_members".into(), Value::Array(members));
            if !m.compute_nodes.is_empty() {
                let nodes: Vec<Value> = m
                    .compute_nodes
                    .iter()
                    .map(|n| {
                        json!({"id": n.id, "addr": n.addr, "state": n.state, "segments": n.segments_loaded,
                               "segments_loading": n.segments_loading, "segments_failed": n.segments_failed, "rows": n.rows_loaded,
                               "memory_used": n.memory_used, "last_heartbeat_ms": n.last_heartbeat_ms,
                               "assigned_segments": n.assigned_segments})
                    })
                    .collect();
                value.insert("compute_nodes".into(), Value::Array(nodes));
                value.insert("compute_balance".into(), json!(balance(&m.compute_nodes)));
            }
        }
        Err(e) if e.code() == Code::Unimplemented && !value.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    print_object(format, &Value::Object(value));
    Ok(())
}

/// Runs `grape config …`.
pub async fn config(endpoint: &str, format: OutputFormat, cmd: ConfigCommand) -> Result<(), CliError> {
    let meta = remote(endpoint)?;
    let value = match cmd {
        ConfigCommand::Get { key, stale } => match meta.config_get(&key, !stale).await? {
            Some(v) => json!({"key": v.key, "value": v.value, "version": v.version}),
            None => json!({"key": key, "value": null, "version": 0}),
        },
        ConfigCommand::Set { key, value, expect_version } => {
            let reply = meta.config_put(&key, &value, expect_version).await?;
            if !reply.applied {
                return Err(CliError::Server(format!(
                    "FAILED_PRECONDITION: config key \"{key}\" is at version {}, not {}; nothing was changed",
                    reply.version,
                    expect_version.unwrap_or_default()
                )));
            }
            json!({"key": key, "version": reply.version})
        }
        ConfigCommand::List { prefix } => values_json(&meta.config_list(&prefix, true).await?),
        ConfigCommand::History { key } => {
            let req = pb::ConfigGetRequest { key, linearizable: true };
            let reply = meta
                .call(Retry::Always, |mut c| {
                    let r = req.clone();
                    async move { c.config_history(r).await }
                })
                .await?;
            values_json(&reply.values)
        }
    };
    print_object(format, &value);
    Ok(())
}

/// Standard deviation of rows per live compute node over their mean (0 = perfectly even);
/// `None` without rows.
fn balance(nodes: &[pb::ComputeNodeStatus]) -> Option<f64> {
    let rows: Vec<f64> = nodes.iter().filter(|n| n.state == "live").map(|n| n.rows_loaded as f64).collect();
    let mean = rows.iter().sum::<f64>() / rows.len().max(1) as f64;
    if mean == 0.0 {
        return None;
    }
    let variance = rows.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / rows.len() as f64;
    Some((variance.sqrt() / mean * 1000.0).round() / 1000.0)
}

fn values_json(values: &[pb::ConfigValue]) -> Value {
    Value::Array(values.iter().map(|v| json!({"key": v.key, "value": v.value, "version": v.version})).collect())
}

/// Runs `grape cluster …` and prints the membership after the change.
pub async fn cluster(endpoint: &str, format: OutputFormat, cmd: ClusterCommand) -> Result<(), CliError> {
    let meta = remote(endpoint)?.with_deadline(std::time::Duration::from_secs(90));
    let reply = match cmd {
        ClusterCommand::AddMeta { id, addr } => {
            let req = pb::AddMemberRequest { id, addr };
            meta.call(Retry::IfNotApplied, |mut c| {
                let r = req.clone();
                async move { c.add_member(r).await }
            })
            .await?
        }
        ClusterCommand::Drain { node, timeout_secs } => return drain(&meta, format, node, timeout_secs).await,
        ClusterCommand::RemoveMeta { id } => {
            let req = pb::RemoveMemberRequest { id };
            meta.call(Retry::IfNotApplied, |mut c| {
                let r = req.clone();
                async move { c.remove_member(r).await }
            })
            .await?
        }
    };
    let members: Vec<Value> = reply.members.iter().map(|n| json!({"id": n.id, "addr": n.addr, "voter": n.voter})).collect();
    print_object(format, &json!({"meta_leader_id": reply.leader_id, "meta_members": members}));
    Ok(())
}

/// The leader's status (with the compute nodes' load), asked through any member.
async fn leader_status(meta: &RemoteMeta) -> Result<pb::StatusResponse, CliError> {
    let status = meta.status().await?;
    if status.leader_id != status.id && !status.leader_addr.is_empty() {
        return Ok(remote(&status.leader_addr)?.status().await?);
    }
    Ok(status)
}

/// Starts draining compute node `id` and waits until no segment is placed on it.
async fn drain(meta: &RemoteMeta, format: OutputFormat, id: u64, timeout_secs: u64) -> Result<(), CliError> {
    let nodes = leader_status(meta).await?.compute_nodes;
    if !nodes.iter().any(|n| n.id != id && n.state == "live") {
        return Err(CliError::Usage(format!("no other live compute node could take the segments of node {id}; start one first")));
    }
    match meta.drain_node(id).await? {
        CommandResult::Applied { .. } => {}
        CommandResult::NotFound(_) => {
            return Err(CliError::Usage(format!("compute node {id} is not live; `grape status` lists the nodes")))
        }
        other => return Err(CliError::Server(format!("unexpected result of a drain: {other:?}"))),
    }
    let started = std::time::Instant::now();
    loop {
        let leader = leader_status(meta).await?;
        let node = leader.compute_nodes.iter().find(|n| n.id == id);
        let assigned = node.map_or(0, |n| n.assigned_segments);
        if assigned == 0 {
            print_object(format, &json!({"node": id, "state": node.map(|n| n.state.clone()), "assigned_segments": 0, "drained": true}));
            return Ok(());
        }
        if started.elapsed().as_secs() >= timeout_secs {
            return Err(CliError::Server(format!(
                "compute node {id} still holds {assigned} segments after {timeout_secs} s; the drain goes on"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
