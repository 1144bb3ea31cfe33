//! Starting a member whose data directory is empty: either part of a brand-new group, or
//! joining an existing one through `grape cluster add-meta` — never a lost member that
//! silently takes its old place.
//!
//! A member that lost its directory has lost its log and its vote; if it simply came back
//! under its old id it could vote twice in one term, and the lowest id would initialise a
//! second group. So a member with an empty directory first asks its peers: if the group
//! already exists beyond its first few entries, the member refuses to start and says how to
//! rejoin (remove it, start it with `--join`, add it).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::MetaError;
use crate::service::RemoteMeta;
use crate::types::NodeId;

/// How a member with an empty data directory starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// One of the members of a new group started together: the lowest id initialises it.
    /// Refused if the group already exists past [`NEW_GROUP_MAX_INDEX`].
    New,
    /// Joining an existing group: never initialises, waits until the leader adds it
    /// (`grape cluster add-meta`).
    Join,
}

/// The highest committed log index at which a group still counts as just started (its
/// first membership entry and the first leader's blank entry, with room to spare). A member of
/// the first start that comes up after the group committed more than this must `--join`.
pub const NEW_GROUP_MAX_INDEX: u64 = 4;

/// How long the peers get to answer the check. They are asked all at once; a peer that is
/// itself starting has bound its port but answers nothing yet, and must not hold up the start
/// of a new group for long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Refuses to start member `id` on an empty directory as part of a new group when its peers
/// say the group already exists. Peers that do not answer (not started yet) say nothing.
pub async fn check_new_member(id: NodeId, peers: &BTreeMap<NodeId, String>) -> Result<(), MetaError> {
    let probes = peers.iter().filter(|(p, _)| **p != id).map(|(peer, addr)| async move { (*peer, committed_index(addr).await) });
    for (peer, committed) in futures::future::join_all(probes).await {
        let Some(committed) = committed else { continue };
        if committed > NEW_GROUP_MAX_INDEX {
            return Err(MetaError::Config(format!(
                "meta member {id} has an empty data directory, but its group already exists (member {peer} is at log index \
                 {committed}); if this member's data was lost, remove it with `grape cluster remove-meta {id}`, start it with \
                 --join, then add it with `grape cluster add-meta {id} ADDR`"
            )));
        }
    }
    Ok(())
}

/// The committed log index a peer reports, if it answers within [`PROBE_TIMEOUT`].
async fn committed_index(addr: &str) -> Option<u64> {
    let client = RemoteMeta::new(&[addr.to_string()]).ok()?.with_deadline(PROBE_TIMEOUT);
    let status = tokio::time::timeout(PROBE_TIMEOUT, client.status()).await.ok()?.ok()?;
    Some(status.committed_index.unwrap_or(0))
}
