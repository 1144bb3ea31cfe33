//! The `Watch` stream: the commands applied on this member, in log order, after the index the
//! client has seen.
//!
//! The stream starts with the whole catalog when the client has seen nothing (index 0) or when
//! the member no longer holds every command after the client's index in memory; after that it
//! sends each applied command once, with its log index. A client that applies the commands to
//! its copy with [`crate::apply::apply`] holds exactly the catalog of the member at that index,
//! and after a reconnect (to any member) it resumes from its last index without missing or
//! repeating a change.

use std::sync::Arc;

use grape_proto::meta::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::convert::to_json;
use super::WatchStream;
use crate::node::MetaNode;

/// Events buffered per watcher before the member waits for the client to read.
const BUFFERED_EVENTS: usize = 256;

/// Starts the stream for a client that has seen everything up to `after`.
pub fn stream(node: Arc<MetaNode>, after: u64) -> WatchStream {
    let (tx, rx) = mpsc::channel(BUFFERED_EVENTS);
    tokio::spawn(async move {
        if let Err(e) = run(&node, after, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Sends events until the client goes away or the member shuts down.
async fn run(node: &MetaNode, mut sent: u64, tx: &mpsc::Sender<Result<pb::WatchEvent, Status>>) -> Result<(), Status> {
    let mut applied = node.watch();
    let mut first = sent == 0;
    loop {
        let changes = if first { None } else { node.changes_since(sent) };
        first = false;
        let events = match changes {
            Some(changes) => changes
                .iter()
                .map(|(index, cmd)| Ok(pb::WatchEvent { index: *index, catalog_json: String::new(), command_json: to_json(cmd)? }))
                .collect::<Result<Vec<_>, Status>>()?,
            None => {
                let (catalog, index) = node.local_catalog_at();
                vec![pb::WatchEvent { index, catalog_json: to_json(&catalog)?, command_json: String::new() }]
            }
        };
        for event in events {
            sent = event.index;
            if tx.send(Ok(event)).await.is_err() {
                return Ok(());
            }
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return Ok(()) },
            _ = tx.closed() => return Ok(()),
        }
    }
}
