//! [`WatchedMeta`]: the meta service of a separate meta group, as a compute node uses it.
//!
//! Writes and linearizable reads go to the group through [`RemoteMeta`] (any member; the
//! member forwards to the leader). The applied catalog is a local copy kept current by the
//! group's `Watch` stream: the node applies each change with the same [`apply`] the members
//! run, and after a broken stream it resumes from its last index on whichever member answers.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use grape_meta::apply::apply;
use grape_meta::catalog::Catalog;
use grape_meta::service::remote::Retry;
use grape_meta::service::RemoteMeta;
use grape_meta::{Command, CommandResult, MemberStatus, MetaError, MetaStatus};
use grape_proto::meta::v1 as pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::meta_client::MetaClient;

/// Pause between attempts to reach the meta group at start.
const CONNECT_RETRY: Duration = Duration::from_secs(1);

/// Pause before reopening a broken watch stream.
const RECONNECT_DELAY: Duration = Duration::from_millis(200);

/// The local copy of the catalog (shared with readers; applying a change copies it only
/// while a reader holds the previous version) and the log index it is at.
type Copy = Arc<RwLock<(Arc<Catalog>, u64)>>;

/// Why the copy cannot follow the group: the last change it failed to apply, until one applies.
type FollowError = Arc<Mutex<Option<String>>>;

/// A meta client for a node of a cluster: remote writes and reads, a watched local catalog.
pub struct WatchedMeta {
    remote: Arc<RemoteMeta>,
    copy: Copy,
    /// See [`MetaClient::follow_error`].
    failure: FollowError,
    changes: watch::Sender<u64>,
    /// The task following the watch stream; stopped when this is dropped.
    follower: JoinHandle<()>,
}

impl WatchedMeta {
    /// Connects to the meta members at `addrs`, reads the catalog and starts following it.
    ///
    /// Waits as long as it takes for the group to answer (a node started together with its
    /// meta group waits for the group's first leader), logging each failed attempt. The local
    /// copy starts as the catalog of a linearizable read and the watch stream resumes after
    /// that read's index: the stream only carries commands, so a copy that waited for the
    /// stream to reach the read's index would wait forever when the last entries before it
    /// are not commands (the group's initialisation and membership).
    pub async fn connect(addrs: &[String]) -> Result<Arc<WatchedMeta>, MetaError> {
        let remote = Arc::new(RemoteMeta::new(addrs).map_err(meta_error)?);
        let mut attempt = 0u32;
        let (catalog, index) = loop {
            match read_catalog_at(&remote).await {
                Ok(read) => break read,
                Err(e @ MetaError::Corrupt(_)) => return Err(e),
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, members = ?addrs, "the meta group does not answer yet; waiting for it");
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
            }
        };
        let copy: Copy = Arc::new(RwLock::new((Arc::new(catalog), index)));
        let (changes, _) = watch::channel(index);
        let failure = FollowError::default();
        let follower = tokio::spawn(follow(remote.clone(), copy.clone(), changes.clone(), failure.clone()));
        Ok(Arc::new(WatchedMeta { remote, copy, failure, changes, follower }))
    }

    /// Sends this node's heartbeat to the leader (which registers the node if needed).
    pub async fn heartbeat(&self, beat: pb::HeartbeatRequest) -> Result<(), MetaError> {
        self.remote
            .call(Retry::Always, |mut c| {
                let b = beat.clone();
                async move { c.heartbeat(b).await }
            })
            .await
            .map_err(meta_error)?;
        Ok(())
    }
}

impl Drop for WatchedMeta {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// The catalog as of a linearizable read of the group, and the log index it is at.
async fn read_catalog_at(remote: &RemoteMeta) -> Result<(Catalog, u64), MetaError> {
    let reply = remote
        .call(Retry::Always, |mut c| async move { c.read_catalog(pb::ReadCatalogRequest { linearizable: true }).await })
        .await
        .map_err(meta_error)?;
    let catalog = serde_json::from_str(&reply.catalog_json).map_err(|e| MetaError::Corrupt(format!("catalog from meta: {e}")))?;
    Ok((catalog, reply.applied_index))
}

/// Follows the watch stream forever, reconnecting from the last index after any failure. A
/// change that cannot be applied is recorded in `failure` (and logged as an error) until a
/// later one applies: the node keeps serving its last catalog meanwhile, and says so.
async fn follow(remote: Arc<RemoteMeta>, copy: Copy, changes: watch::Sender<u64>, failure: FollowError) {
    loop {
        let after = read(&copy).1;
        let opened = remote.call(Retry::Always, |mut c| async move { c.watch(pb::WatchRequest { after_index: after }).await }).await;
        match opened {
            Ok(mut stream) => {
                while let Some(event) = stream.next().await {
                    let applied = event.map_err(meta_error).and_then(|e| apply_event(&copy, e));
                    record_follow(&failure, &applied, read(&copy).1);
                    match applied {
                        Ok(index) => {
                            changes.send_replace(index);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "meta watch stream failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the meta watch stream; retrying"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Records the outcome of applying one watch event: a change that cannot be applied is
/// remembered (and logged as an error the first time); one that applies clears it. A broken
/// connection is neither.
fn record_follow(failure: &FollowError, applied: &Result<u64, MetaError>, at: u64) {
    let mut failure = failure.lock().unwrap_or_else(|e| e.into_inner());
    match applied {
        Ok(_) => *failure = None,
        Err(e @ MetaError::Corrupt(_)) => {
            let why = format!("the catalog is frozen at log index {at}: {e}");
            if failure.as_deref() != Some(why.as_str()) {
                tracing::error!(
                    error = %e,
                    index = at,
                    "cannot apply a catalog change from meta; serving the catalog as of the last change applied (is this node of another Grape version than the meta group?)"
                );
            }
            *failure = Some(why);
        }
        Err(_) => {}
    }
}

/// Applies one watch event to the copy; returns the copy's new index.
fn apply_event(copy: &Copy, event: pb::WatchEvent) -> Result<u64, MetaError> {
    let corrupt = |e: serde_json::Error| MetaError::Corrupt(format!("watch event {}: {e}", event.index));
    let mut guard = copy.write().unwrap_or_else(|e| e.into_inner());
    if event.index <= guard.1 {
        return Ok(guard.1);
    }
    if event.catalog_json.is_empty() {
        let cmd: Command = serde_json::from_str(&event.command_json).map_err(corrupt)?;
        apply(Arc::make_mut(&mut guard.0), &cmd);
    } else {
        guard.0 = Arc::new(serde_json::from_str(&event.catalog_json).map_err(corrupt)?);
    }
    guard.1 = event.index;
    Ok(event.index)
}

fn read(copy: &Copy) -> std::sync::RwLockReadGuard<'_, (Arc<Catalog>, u64)> {
    copy.read().unwrap_or_else(|e| e.into_inner())
}

/// A meta error for a failed call to the group.
fn meta_error(status: Status) -> MetaError {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => MetaError::Timeout(status.message().to_string()),
        _ => MetaError::Raft(status.message().to_string()),
    }
}

#[async_trait]
impl MetaClient for WatchedMeta {
    async fn write(&self, cmd: Command) -> Result<CommandResult, MetaError> {
        self.remote.write(&cmd).await.map_err(meta_error)
    }

    async fn catalog(&self) -> Result<Catalog, MetaError> {
        Ok(read_catalog_at(&self.remote).await?.0)
    }

    fn applied_catalog(&self) -> Arc<Catalog> {
        read(&self.copy).0.clone()
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn follow_error(&self) -> Option<String> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn status(&self) -> Result<MetaStatus, MetaError> {
        let s = self.remote.status().await.map_err(meta_error)?;
        Ok(MetaStatus {
            id: s.id,
            leader_id: (s.leader_id != 0).then_some(s.leader_id),
            server_state: s.state,
            term: s.term,
            last_log_index: s.last_log_index,
            last_applied: s.applied_index,
            committed: s.committed_index,
            snapshot: s.snapshot_index,
            purged: None,
            members: s.members.iter().filter(|m| m.voter).map(|m| m.id).collect(),
            nodes: s
                .members
                .iter()
                .map(|m| MemberStatus { id: m.id, addr: m.addr.clone(), voter: m.voter, matched: None, lag: m.lag })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(index: u64, command_json: &str) -> pb::WatchEvent {
        pb::WatchEvent { index, catalog_json: String::new(), command_json: command_json.into() }
    }

    #[test]
    fn a_change_that_cannot_be_applied_is_reported_until_one_applies() {
        let copy: Copy = Arc::new(RwLock::new((Arc::new(Catalog::default()), 4)));
        let failure = FollowError::default();
        let bad = apply_event(&copy, event(5, r#"{"NoSuchCommand":{}}"#));
        record_follow(&failure, &bad, read(&copy).1);
        let why = failure.lock().unwrap().clone().expect("the failure is recorded");
        assert!(why.contains("frozen at log index 4") && why.contains("watch event 5"), "{why}");
        // A dropped connection says nothing about the catalog.
        record_follow(&failure, &Err(MetaError::Timeout("gone".into())), 4);
        assert!(failure.lock().unwrap().is_some());
        let catalog =
            pb::WatchEvent { index: 6, catalog_json: serde_json::to_string(&Catalog::default()).unwrap(), command_json: String::new() };
        let good = apply_event(&copy, catalog);
        record_follow(&failure, &good, read(&copy).1);
        assert_eq!(*failure.lock().unwrap(), None, "following again clears it");
        assert_eq!(read(&copy).1, 6);
    }
}
