//! The index-build job: builds the HNSW index of one vector field of one segment with the
//! field's quantization, uploads it beside the segment, and attaches it with
//! [`Command::AttachIndex`].
//!
//! The artifact's name carries the job id and attempt, so attempts never overwrite each
//! other's objects; an attempt whose commit is refused (lease lost, segment compacted away)
//! leaves an orphan that garbage collection deletes. The build runs on its own thread pool of
//! half the node's cores, so searches keep answering meanwhile.

use grape_meta::Command;
use grape_storage::format::IndexMeta;

use super::{Attempt, Done};
use crate::error::ComputeError;
use crate::gateway::collections::{not_found, outcome};
use crate::gateway::Gateway;
use crate::index::hnsw::build::BuildParams;
use crate::index::hnsw::{artifact, HnswIndex};

impl Gateway {
    /// Runs the index build of vector field `vector` (empty: `vector`, the one column of a
    /// collection without named fields) of `segment` in `shard` of `collection` for `attempt`.
    pub(super) async fn build_index(
        &self,
        collection: &str,
        shard: u32,
        segment: &str,
        vector: &str,
        attempt: &Attempt,
    ) -> Result<Done, ComputeError> {
        let catalog = self.meta.catalog().await?;
        let entry = catalog.collections.get(collection).ok_or_else(|| not_found(collection))?;
        let Some(meta) = entry.shards.get(shard as usize).and_then(|m| m.segments.iter().find(|s| s.id == segment)) else {
            return Ok(Done::Report(format!("segment {segment} is no longer in shard {shard}; nothing to build")));
        };
        let Some(field) = entry.spec.vector_field(vector) else {
            return Ok(Done::Report(format!("collection \"{collection}\" has no vector field \"{vector}\"; nothing to build")));
        };
        let quantization = field.quantization;
        if meta.index_of(&field.name).is_some_and(|i| i.quantization == quantization.as_str()) {
            return Ok(Done::Report(format!("segment {segment} already has a {} index of {}", quantization.as_str(), field.name)));
        }
        attempt.report(0, 3);
        let loaded = self.input_segment(meta, &entry.spec).await?;
        attempt.report(1, 3);
        attempt.pause().await;
        let metric = field.metric;
        let column = field.name.clone();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2));
        let (bytes, memory_per_row) = tokio::task::spawn_blocking(move || -> Result<_, ComputeError> {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("index-build-{i}"))
                .build()
                .map_err(|e| ComputeError::Internal(format!("index build threads: {e}")))?;
            let vectors = loaded.column(&column).ok_or_else(|| {
                ComputeError::Corrupt(format!("segment {} has no vector column `{column}`", loaded.meta.id))
            })?;
            let index = pool.install(|| HnswIndex::build(vectors, metric, quantization, BuildParams::default()));
            Ok((artifact::encode(&index), (index.memory_bytes() / index.rows().max(1)) as u64))
        })
        .await
        .map_err(|e| ComputeError::Internal(format!("index build task: {e}")))??;
        attempt.report(2, 3);
        attempt.pause().await;
        // A named field's artifacts carry its position (stable: fields never change), never
        // its name, which is the user's text.
        let position = entry.spec.vectors.iter().position(|f| f.name == field.name).map(|p| format!(".v{p}")).unwrap_or_default();
        let path = format!(
            "{}{position}.{}.job{}-{}.hnsw",
            meta.path.trim_end_matches(".lance"),
            quantization.as_str(),
            attempt.fence.id,
            attempt.fence.attempt
        );
        let size_bytes = bytes.len() as u64;
        self.storage.put_if_absent(&path, bytes.into()).await.map_err(|e| {
            e.add_context(format!("cannot write the index of segment {segment} to {}; nothing was attached", self.storage.url()))
        })?;
        attempt.report(3, 3);
        let index = IndexMeta { path, kind: "hnsw".into(), quantization: quantization.as_str().into(), size_bytes, memory_per_row };
        let cmd = Command::AttachIndex {
            collection: collection.to_string(),
            collection_id: entry.id,
            shard,
            segment: segment.to_string(),
            index,
            job: attempt.fence,
            // The field built, named as meta expects, even if the job named it otherwise
            // (`""` on a collection with named fields means its first).
            vector: entry.spec.request_name(&field).to_string(),
        };
        outcome(self.meta.write(cmd).await?)?;
        Ok(Done::Committed)
    }
}
