//! Search fan-out: one request per chosen replica (carrying all the segments routed to it),
//! top-k merged on the root. A replica that fails, times out or no longer holds a segment is
//! left out and the affected segments are asked of their next replica, within the same
//! request. When a segment has run out of replicas (its only node died), the request waits
//! until the deadline for the routing table to change (the node declared dead, the segment
//! loaded elsewhere) and asks the new replicas.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::future::join_all;
use grape_meta::catalog::{Collection, Metric};
use grape_proto::compute::v1 as pb;
use grape_storage::format::SegmentMeta;

use super::{Replica, Router, SegmentRoute};
use crate::error::ComputeError;
use crate::ingest::decode_ipc;
use crate::liveness::live_segments;
use crate::search::{merge_hits, search_segments, search_segments_async, SearchQuery};

/// The merged answer of a fan-out.
#[derive(Debug)]
pub struct SearchOutcome {
    /// The best hits over every searched segment.
    pub hits: RecordBatch,
    /// Rows compared with the query.
    pub rows_scanned: u64,
    /// Segments that no replica could answer for, with the last error.
    pub missing: Vec<(SegmentMeta, String)>,
}

/// One segment still to be searched.
struct Pending {
    route: SegmentRoute,
    tried: BTreeSet<Replica>,
    last_error: String,
}

/// What one replica answered for the segments sent to it.
type GroupAnswer = Result<(RecordBatch, u64, Vec<String>), ComputeError>;

impl Router {
    /// Searches the routed segments of `collection` and merges the top k. `filter` is the
    /// filter's text (sent to remote nodes); `query.filter` its compiled form (used here).
    /// Segments that lose every replica are waited for until `deadline`.
    pub async fn search(
        &self,
        collection: &Collection,
        schema: Option<&SchemaRef>,
        query: &SearchQuery,
        filter: &str,
        routes: Vec<SegmentRoute>,
        deadline: tokio::time::Instant,
    ) -> Result<SearchOutcome, ComputeError> {
        let mut changes = self.changes();
        let mut pending: Vec<Pending> =
            routes.into_iter().map(|route| Pending { route, tried: BTreeSet::new(), last_error: String::new() }).collect();
        let mut batches = Vec::new();
        let mut rows_scanned = 0;
        let mut missing = Vec::new();
        while !pending.is_empty() {
            let (ready, exhausted): (Vec<Pending>, Vec<Pending>) =
                pending.into_iter().partition(|p| p.route.replicas.iter().any(|r| !p.tried.contains(r)));
            if ready.is_empty() {
                // Every remaining segment has tried all its replicas. If a compaction replaced
                // segments since the plan, they will not come back: the caller plans again.
                if tokio::time::Instant::now() >= deadline || self.rewritten_since(collection) {
                    missing.extend(exhausted.into_iter().map(|p| {
                        let why = if p.last_error.is_empty() { "no ready replica".to_string() } else { p.last_error };
                        (p.route.meta, why)
                    }));
                    break;
                }
                changes.changed_until(deadline).await;
                let catalog = self.meta.applied_catalog();
                pending = exhausted
                    .into_iter()
                    .map(|mut p| {
                        p.route.replicas = self.replicas(&catalog, &p.route.meta.id, &BTreeSet::new());
                        p.tried.clear();
                        p
                    })
                    .collect();
                continue;
            }
            let mut groups: BTreeMap<Replica, Vec<Pending>> = BTreeMap::new();
            for mut p in ready {
                let Some(next) = p.route.replicas.iter().find(|r| !p.tried.contains(r)).cloned() else { continue };
                p.tried.insert(next.clone());
                groups.entry(next).or_default().push(p);
            }
            let answers = join_all(groups.iter().map(|(replica, group)| {
                let ids: Vec<String> = group.iter().map(|p| p.route.meta.id.clone()).collect();
                self.search_on(replica, collection, schema, query, filter, ids)
            }))
            .await;
            pending = exhausted;
            for ((replica, group), answer) in groups.into_iter().zip(answers) {
                match answer {
                    Ok((hits, scanned, not_held)) => {
                        // An empty answer carries no hits (and perhaps not the payload columns).
                        if hits.num_rows() > 0 {
                            batches.push(hits);
                        }
                        rows_scanned += scanned;
                        for mut p in group.into_iter().filter(|p| not_held.contains(&p.route.meta.id)) {
                            p.last_error = format!("{replica} no longer holds it");
                            pending.push(p);
                        }
                    }
                    // The request's own fault: no other replica would answer it.
                    Err(e @ ComputeError::InvalidArgument(_)) => return Err(e),
                    Err(e) => {
                        tracing::debug!(%replica, error = %e, "replica failed; trying another");
                        pending.extend(group.into_iter().map(|mut p| {
                            p.last_error = e.to_string();
                            p
                        }));
                    }
                }
            }
        }
        if batches.is_empty() {
            // Nothing searched: an empty answer with the collection's hit columns.
            batches.push(search_segments(metric_of(collection, query), schema, &[], query)?.hits);
        }
        Ok(SearchOutcome { hits: merge_hits(batches, query.k)?, rows_scanned, missing })
    }

    /// Searches the segments `ids` on one replica; returns hits, rows scanned and the ids the
    /// replica does not hold.
    async fn search_on(
        &self,
        replica: &Replica,
        collection: &Collection,
        schema: Option<&SchemaRef>,
        query: &SearchQuery,
        filter: &str,
        ids: Vec<String>,
    ) -> GroupAnswer {
        match replica {
            Replica::Local => {
                let (segments, not_held) = self.engine.lookup(&ids);
                let segments = live_segments(segments, collection, collection.version, self.engine.keys()).await?;
                let result = search_segments_async(metric_of(collection, query), schema.cloned(), segments, query.clone()).await?;
                Ok((result.hits, result.rows_scanned, not_held))
            }
            Replica::Remote { addr, .. } => {
                let req = pb::SearchSegmentsRequest {
                    collection: collection.spec.name.clone(),
                    segment_ids: ids,
                    vector: query.vector.clone(),
                    k: query.k as u32,
                    filter: filter.to_string(),
                    include_vectors: query.include_vectors,
                    metric: metric_of(collection, query).as_str().to_string(),
                    version: collection.version,
                    ef: query.params.ef.unwrap_or(0) as u32,
                    exact: query.params.exact,
                    oversampling: query.params.oversampling.unwrap_or(0.0),
                    vector_name: query.using.clone(),
                };
                let reply = self.leaves.search(addr, req).await?;
                let (hit_schema, batches) = decode_ipc(&reply.arrow_ipc)?;
                let hits = arrow::compute::concat_batches(&hit_schema, &batches)?;
                Ok((hits, reply.rows_scanned, reply.missing_segments))
            }
        }
    }
}

/// The metric of the vector field `query` searches (the gateway checked that it exists).
fn metric_of(collection: &Collection, query: &SearchQuery) -> Metric {
    collection.spec.vector_field(&query.using).map_or(collection.spec.metric, |f| f.metric)
}
