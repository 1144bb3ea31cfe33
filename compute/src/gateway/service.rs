//! The tonic service of the public API: one line per RPC into [`Gateway`], searches, SQL
//! and writes through [`Gateway::guarded`] (slots, queue, deadline); status, listing and
//! describing are never queued, so a busy node still says how it is.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use grape_proto::v1::{self, grape_server::Grape};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Gateway;
use crate::limits::RequestClass::{Search, Sql, Write};

/// Largest request or response message, in bytes (inserts carry rows).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The `grape.v1.Grape` service over a shared [`Gateway`].
#[derive(Clone)]
pub struct GrapeService(pub Arc<Gateway>);

impl GrapeService {
    /// The tonic server for this service, with message limits set.
    pub fn into_server(self) -> v1::grape_server::GrapeServer<Self> {
        v1::grape_server::GrapeServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The progress messages of one `Ingest` stream.
type ProgressStream = Pin<Box<dyn Stream<Item = Result<v1::IngestProgress, Status>> + Send>>;

#[tonic::async_trait]
impl Grape for GrapeService {
    async fn create_collection(&self, r: Request<v1::CreateCollectionRequest>) -> Reply<v1::CollectionInfo> {
        Ok(Response::new(self.0.guarded(Write, self.0.create_collection(r.into_inner())).await?))
    }

    async fn list_collections(&self, _: Request<v1::ListCollectionsRequest>) -> Reply<v1::ListCollectionsResponse> {
        Ok(Response::new(v1::ListCollectionsResponse { collections: self.0.list_collections().await? }))
    }

    async fn describe_collection(&self, r: Request<v1::DescribeCollectionRequest>) -> Reply<v1::CollectionInfo> {
        Ok(Response::new(self.0.describe_collection(&r.into_inner().name).await?))
    }

    async fn drop_collection(&self, r: Request<v1::DropCollectionRequest>) -> Reply<v1::DropCollectionResponse> {
        self.0.guarded(Write, self.0.drop_collection(&r.into_inner().name)).await?;
        Ok(Response::new(v1::DropCollectionResponse {}))
    }

    async fn set_replicas(&self, r: Request<v1::SetReplicasRequest>) -> Reply<v1::CollectionInfo> {
        let r = r.into_inner();
        Ok(Response::new(self.0.guarded(Write, self.0.set_replicas(&r.name, r.replicas)).await?))
    }

    async fn set_quantization(&self, r: Request<v1::SetQuantizationRequest>) -> Reply<v1::CollectionInfo> {
        let r = r.into_inner();
        Ok(Response::new(self.0.guarded(Write, self.0.set_quantization(&r.name, &r.quantization, &r.vector_name)).await?))
    }

    async fn insert(&self, r: Request<v1::InsertRequest>) -> Reply<v1::InsertResponse> {
        let r = r.into_inner();
        let done = self.0.guarded(Write, self.0.insert(&r.collection, &r.arrow_ipc)).await?;
        Ok(Response::new(v1::InsertResponse { rows: done.rows, version: done.version }))
    }

    type IngestStream = ProgressStream;

    async fn ingest(&self, r: Request<Streaming<v1::IngestRequest>>) -> Reply<Self::IngestStream> {
        let (tx, rx) = mpsc::channel(4);
        let gateway = self.0.clone();
        tokio::spawn(async move { gateway.run_ingest_stream(r.into_inner(), tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn search(&self, r: Request<v1::SearchRequest>) -> Reply<v1::SearchResponse> {
        Ok(Response::new(self.0.guarded(Search, self.0.search(r.into_inner())).await?))
    }

    async fn sql(&self, r: Request<v1::SqlRequest>) -> Reply<v1::SqlResponse> {
        let r = r.into_inner();
        Ok(Response::new(self.0.guarded(Sql, self.0.sql(&r.query, r.allow_partial, &r.min_versions)).await?))
    }

    async fn delete(&self, r: Request<v1::DeleteRequest>) -> Reply<v1::DeleteResponse> {
        Ok(Response::new(self.0.guarded(Write, self.0.delete(r.into_inner())).await?))
    }

    async fn get(&self, r: Request<v1::GetRequest>) -> Reply<v1::GetResponse> {
        Ok(Response::new(self.0.guarded(Search, self.0.get(r.into_inner())).await?))
    }

    async fn status(&self, _: Request<v1::StatusRequest>) -> Reply<v1::StatusResponse> {
        Ok(Response::new(self.0.status().await?))
    }

    async fn collect_garbage(&self, r: Request<v1::CollectGarbageRequest>) -> Reply<v1::CollectGarbageResponse> {
        let grace = r.into_inner().grace_seconds.map_or_else(|| self.0.gc_grace(), Duration::from_secs);
        let report = self.0.collect_garbage(grace).await?;
        Ok(Response::new(v1::CollectGarbageResponse {
            scanned: report.scanned,
            referenced: report.referenced,
            too_young: report.too_young,
            bytes_freed: report.bytes_freed,
            deleted: report.deleted,
        }))
    }

    async fn compact(&self, r: Request<v1::CompactRequest>) -> Reply<v1::JobsResponse> {
        Ok(Response::new(self.0.guarded(Write, self.0.compact(r.into_inner())).await?))
    }

    async fn submit_ingest(&self, r: Request<v1::SubmitIngestRequest>) -> Reply<v1::Job> {
        Ok(Response::new(self.0.guarded(Write, self.0.submit_ingest(r.into_inner())).await?))
    }

    async fn list_jobs(&self, r: Request<v1::ListJobsRequest>) -> Reply<v1::JobsResponse> {
        Ok(Response::new(self.0.list_jobs(r.into_inner()).await?))
    }

    async fn get_job(&self, r: Request<v1::GetJobRequest>) -> Reply<v1::Job> {
        Ok(Response::new(self.0.get_job(r.into_inner().id).await?))
    }

    async fn retry_job(&self, r: Request<v1::GetJobRequest>) -> Reply<v1::Job> {
        Ok(Response::new(self.0.guarded(Write, self.0.retry_job(r.into_inner().id)).await?))
    }

    async fn cancel_job(&self, r: Request<v1::GetJobRequest>) -> Reply<v1::Job> {
        Ok(Response::new(self.0.guarded(Write, self.0.cancel_job(r.into_inner().id)).await?))
    }
}
