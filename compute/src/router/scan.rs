//! [`SegmentScanExec`]: the DataFusion leaf of a collection scan, one partition per segment.
//! A local segment is read from memory; a remote one is asked of its replicas in turn, with
//! the projection and the pushed-down filter applied on the node that holds it, and its rows
//! streamed back as Arrow batches. A segment is emitted only once one replica answered it
//! whole, so a retry never repeats rows. A segment that lost every replica is waited for, as
//! in a search, until the query's deadline.

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream};
use futures::StreamExt;
use grape_proto::compute::v1 as pb;

use grape_meta::catalog::Collection;

use super::{Replica, Router, SegmentRoute};
use crate::derived::DerivedColumn;
use crate::liveness::VersionSources;

/// Segments a partial query left out (`allow_partial`), shared by the scans of one query.
pub type MissedSegments = Arc<std::sync::Mutex<Vec<String>>>;
use crate::error::ComputeError;

/// The collection at the version a scan reads, and what decides which rows are live at it.
struct ReadAt {
    collection: Collection,
    sources: VersionSources,
}

/// Scans segments of one collection, each from one of its replicas.
pub struct SegmentScanExec {
    router: Arc<Router>,
    /// The collection at the version the query reads: only rows live at it are returned.
    at: Arc<ReadAt>,
    /// One partition per segment.
    routes: Vec<SegmentRoute>,
    /// Columns of the collection schema to return; `None`: all.
    projection: Option<Vec<usize>>,
    /// The pushed-down filter as SQL (may be empty); rows that do not match may be left out.
    filter: String,
    /// The derived payload columns the table schema appends to the collection's (see
    /// [`crate::derived`]), in order: each node computes them beside its segment's rows.
    derived: Arc<[DerivedColumn]>,
    /// Until when a segment that lost every replica is waited for.
    deadline: tokio::time::Instant,
    /// For a partial query: where segments that could not be read are recorded (instead of
    /// failing the query).
    missed: Option<MissedSegments>,
    /// The projected schema.
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl SegmentScanExec {
    /// A scan of `routes` (segments of `collection` with schema `table_schema`), returning the
    /// rows live at `collection`'s version. Fields of `table_schema` past the collection's
    /// columns are derived payload columns.
    pub fn new(
        router: Arc<Router>,
        collection: &Collection,
        table_schema: &SchemaRef,
        routes: Vec<SegmentRoute>,
        projection: Option<Vec<usize>>,
        filter: String,
        deadline: tokio::time::Instant,
        missed: Option<MissedSegments>,
    ) -> Result<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(table_schema.project(p)?),
            None => table_schema.clone(),
        };
        let base = collection.spec.schema.as_ref().map_or(0, |s| s.fields().len());
        let derived = table_schema
            .fields()
            .iter()
            .skip(base)
            .map(|f| {
                DerivedColumn::parse(f.name())
                    .unwrap_or_else(|| Err(format!("column \"{}\" is not derived", f.name())))
                    .map_err(DataFusionError::Plan)
            })
            .collect::<Result<Vec<_>>>()?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(routes.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(SegmentScanExec {
            router,
            at: Arc::new(ReadAt { collection: collection.clone(), sources: VersionSources::new(collection, collection.version) }),
            routes,
            projection,
            filter,
            derived: derived.into(),
            deadline,
            missed,
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl SegmentScanExec {
    /// The rows of the segments this scan reads (before its filter): the most it can return.
    pub fn rows_bound(&self) -> u64 {
        self.routes.iter().map(|r| r.meta.rows).sum()
    }
}

impl fmt::Debug for SegmentScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentScanExec({}, {} segments)", self.at.collection.spec.name, self.routes.len())
    }
}

impl DisplayAs for SegmentScanExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SegmentScanExec: collection={}, segments={}, filter=[{}]", self.at.collection.spec.name, self.routes.len(), self.filter)
    }
}

impl ExecutionPlan for SegmentScanExec {
    fn name(&self) -> &'static str {
        "SegmentScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(self: Arc<Self>, _: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let Some(route) = self.routes.get(partition).cloned() else {
            // No segments: the single partition is empty.
            return Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::empty())));
        };
        let (router, at, deadline, missed) = (self.router.clone(), self.at.clone(), self.deadline, self.missed.clone());
        let read = ReadSpec { projection: self.projection.clone(), filter: self.filter.clone(), derived: self.derived.clone() };
        let rows = async move {
            let id = route.meta.id.clone();
            let batches = match (read_segment(&router, &at, route, &read, deadline).await, missed) {
                (Ok(batches), _) => batches,
                (Err(_), Some(missed)) => {
                    missed.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                    Vec::new()
                }
                (Err(e), None) => return Err(DataFusionError::External(Box::new(e))),
            };
            Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
        };
        let stream = futures::stream::once(rows).map(|r| match r {
            Ok(s) => s.boxed(),
            Err(e) => futures::stream::iter([Err(e)]).boxed(),
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream.flatten())))
    }
}

/// What a scan reads of each segment.
struct ReadSpec {
    /// Columns to return (of the collection's columns followed by `derived`); `None`: all.
    projection: Option<Vec<usize>>,
    /// The pushed-down filter as SQL (may be empty).
    filter: String,
    /// Derived payload columns appended to the segment's columns.
    derived: Arc<[DerivedColumn]>,
}

/// The rows of one segment from the first replica that answers; when every replica failed,
/// waits for the routing table to change and tries the new ones, until `deadline`.
async fn read_segment(
    router: &Router,
    at: &ReadAt,
    route: SegmentRoute,
    read: &ReadSpec,
    deadline: tokio::time::Instant,
) -> Result<Vec<RecordBatch>, ComputeError> {
    let mut changes = router.changes();
    let mut replicas = route.replicas.clone();
    loop {
        match read_from_replicas(router, at, &route, &replicas, read).await {
            Ok(batches) => return Ok(batches),
            // Past the deadline, or the segment was compacted away (the query is planned again).
            Err(e) if tokio::time::Instant::now() >= deadline || router.rewritten_since(&at.collection) => return Err(e),
            Err(_) => {
                changes.changed_until(deadline).await;
                replicas = router.replicas(&router.meta.applied_catalog(), &route.meta.id, &std::collections::BTreeSet::new());
            }
        }
    }
}

/// The rows of one segment from the first of `replicas` that answers.
async fn read_from_replicas(
    router: &Router,
    at: &ReadAt,
    route: &SegmentRoute,
    replicas: &[Replica],
    read: &ReadSpec,
) -> Result<Vec<RecordBatch>, ComputeError> {
    let projection = read.projection.as_deref();
    let mut last_error = String::from("no ready replica");
    for replica in replicas {
        let result = match replica {
            Replica::Local => match router.engine.segment(&route.meta.id) {
                Some(segment) => local_rows(router, at, segment, projection, &read.derived).await,
                None => Err(ComputeError::Unavailable("this node no longer holds it".into())),
            },
            Replica::Remote { addr, .. } => {
                let req = pb::ScanSegmentRequest {
                    collection: at.collection.spec.name.clone(),
                    version: at.collection.version,
                    segment_id: route.meta.id.clone(),
                    projection: projection.unwrap_or_default().iter().map(|i| *i as u32).collect(),
                    all_columns: projection.is_none(),
                    filter: read.filter.clone(),
                    derived_columns: read.derived.iter().map(DerivedColumn::name).collect(),
                };
                router.leaves.scan(addr, req).await
            }
        };
        match result {
            Ok(batches) => return Ok(batches),
            Err(e @ ComputeError::InvalidArgument(_)) => return Err(e),
            Err(e) => {
                tracing::debug!(%replica, segment = %route.meta.id, error = %e, "scan failed; trying another replica");
                last_error = format!("{replica}: {e}");
            }
        }
    }
    Err(ComputeError::Unavailable(format!(
        "collection \"{}\": segment {} could not be read from any replica (last: {last_error})",
        at.collection.spec.name, route.meta.id
    )))
}

/// The rows of a segment this node holds that are live at the scan's version, with the
/// `derived` columns appended, projected.
async fn local_rows(
    router: &Router,
    at: &ReadAt,
    segment: crate::segment::SegmentRef,
    projection: Option<&[usize]>,
    derived: &[DerivedColumn],
) -> Result<Vec<RecordBatch>, ComputeError> {
    let live = at.sources.live_rows(&segment, &at.collection, router.engine.keys()).await?;
    let all = segment.batch_with(derived)?;
    // Projected first, so that only the returned columns are copied.
    let batch = match projection {
        Some(p) => all.project(p)?,
        None => all,
    };
    Ok(vec![match live {
        Some(live) => arrow::compute::filter_record_batch(&batch, &live)?,
        None => batch,
    }])
}
