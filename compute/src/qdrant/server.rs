//! The HTTP routes of Qdrant's REST API and serving them on a listener (with TCP_NODELAY,
//! like every server of Grape's).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};
use grape_proto::auth::{Access, AuthError, Keys};
use std::sync::Arc;
use tokio::net::TcpListener;

use super::batch::UpdateOp;
use super::given::UpsertBody;
use super::groups::Grouped;
use super::points::{PayloadBody, PayloadEdit, PayloadSelector, Selection};
use super::reply::{parse_body, respond, QdrantError};
use super::{QdrantApi, QDRANT_VERSION};

/// Largest request body, in bytes: Qdrant's default `max_request_size_mb` (a larger one is
/// answered 413).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// The routes of the API over `api`.
pub fn router(api: QdrantApi) -> Router {
    Router::new()
        .route("/", get(|| async { axum::Json(json!({ "title": "grape (Qdrant-compatible API)", "version": QDRANT_VERSION })) }))
        .route("/healthz", get(|| async { "healthz check passed" }))
        .route("/livez", get(|| async { "healthz check passed" }))
        .route("/readyz", get(readyz))
        .route("/cluster", get(cluster))
        .route("/collections", get(list_collections))
        .route("/aliases", get(all_aliases))
        .route("/collections/aliases", post(update_aliases))
        .route("/collections/{name}", get(get_collection).put(create_collection).patch(update_collection).delete(delete_collection))
        .route("/collections/{name}/exists", get(collection_exists))
        .route("/collections/{name}/aliases", get(collection_aliases))
        .route("/collections/{name}/index", put(create_index))
        .route("/collections/{name}/index/{field}", axum::routing::delete(delete_index))
        .route("/collections/{name}/facet", post(facet))
        .route("/collections/{name}/points", put(upsert).post(retrieve))
        .route("/collections/{name}/points/{id}", get(get_point))
        .route("/collections/{name}/points/delete", post(delete_points))
        .route("/collections/{name}/points/batch", post(update_batch))
        .route("/collections/{name}/points/payload", post(set_payload).put(overwrite_payload))
        .route("/collections/{name}/points/payload/delete", post(delete_payload))
        .route("/collections/{name}/points/payload/clear", post(clear_payload))
        .route("/collections/{name}/points/scroll", post(scroll))
        .route("/collections/{name}/points/count", post(count))
        .route("/collections/{name}/points/query", post(query))
        .route("/collections/{name}/points/query/batch", post(query_batch))
        .route("/collections/{name}/points/search", post(search))
        .route("/collections/{name}/points/search/batch", post(search_batch))
        .route("/collections/{name}/points/recommend", post(recommend))
        .route("/collections/{name}/points/recommend/batch", post(recommend_batch))
        .route("/collections/{name}/points/query/groups", post(|s: Api, p: Path<String>, b: Bytes| grouped(s, p, b, Grouped::Query)))
        .route("/collections/{name}/points/search/groups", post(|s: Api, p: Path<String>, b: Bytes| grouped(s, p, b, Grouped::Search)))
        .route("/collections/{name}/points/recommend/groups", post(|s: Api, p: Path<String>, b: Bytes| grouped(s, p, b, Grouped::Recommend)))
        .fallback(|| async { respond(Instant::now(), Err(QdrantError::NotFound("Not found: no such endpoint".into()))) })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Serves the API of `api` on `listener` until `shutdown` resolves, to callers `keys` admit,
/// on `threads` serving threads (0: on this runtime; see [`grape_proto::serving`]).
pub async fn serve(
    listener: TcpListener,
    api: QdrantApi,
    keys: Keys,
    threads: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), grape_proto::serving::ServeError> {
    let app = router(api).layer(axum::middleware::from_fn_with_state(Arc::new(keys), check_key));
    if threads == 0 || grape_proto::tls::http_acceptor().is_some() {
        let listener = crate::http_listener::HttpListener::new(listener)?;
        return Ok(axum::serve(listener, app).with_graceful_shutdown(shutdown).await?);
    }
    let addr = listener.local_addr()?;
    grape_proto::serving::serve_on_threads(listener, threads, shutdown, move |incoming, stop| {
        std::future::IntoFuture::into_future(axum::serve(crate::http_listener::HttpListener::on_lane(incoming, addr), app.clone()).with_graceful_shutdown(stop))
    })
    .await
}

/// Refuses a request whose API key does not allow it (401 without a valid key, 403 for a
/// change with the read-only key), as Qdrant does. Every request passes here, so this is
/// also where it is counted in its serving thread's requests in flight, as the gRPC servers'
/// layer does ([`grape_proto::serving::InFlight`]).
async fn check_key(State(keys): State<Arc<Keys>>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let _in_flight = grape_proto::serving::InFlight::enter();
    let needed = rest_access(request.method(), request.uri().path());
    match keys.check(needed, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => {
            let code = match refused {
                AuthError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                AuthError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            };
            respond(Instant::now(), Err(QdrantError::Other(code, refused.to_string())))
        }
    }
}

/// What a REST request needs: health probes are open, reads (GET, and the POST endpoints
/// that only read: retrieve, search, query, scroll, count, recommend, facet…) need a key, and
/// everything else needs the read-write key.
pub fn rest_access(method: &axum::http::Method, path: &str) -> Access {
    const READS: [&str; 6] = ["points/search", "points/query", "points/recommend", "points/discover", "points/scroll", "points/count"];
    if ["/healthz", "/livez", "/readyz"].contains(&path) {
        return Access::Open;
    }
    if method == axum::http::Method::GET {
        return Access::Read;
    }
    // What follows `/collections/NAME/`: `points` alone is a retrieve when POSTed.
    let within = path.strip_prefix("/collections/").and_then(|p| p.split_once('/')).map_or("", |(_, rest)| rest);
    let reads = within == "points" || within == "facet" || READS.iter().any(|r| within.starts_with(r));
    if method == axum::http::Method::POST && reads {
        Access::Read
    } else {
        Access::Write
    }
}

type Api = State<QdrantApi>;

/// Times a handler and wraps its outcome in Qdrant's envelope.
async fn timed(work: impl std::future::Future<Output = Result<Value, QdrantError>>) -> Response {
    let started = Instant::now();
    respond(started, work.await)
}

async fn readyz(State(api): Api) -> Response {
    match api.gateway.meta.catalog().await {
        Ok(_) => (StatusCode::OK, "all shards are ready").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "some shards are not ready").into_response(),
    }
}

async fn cluster(State(api): Api) -> Response {
    timed(async move {
        let status = api.gateway.status().await?;
        Ok(json!({
            "status": "enabled",
            "peer_id": status.node_id,
            "peers": {},
            "raft_info": {
                "term": status.meta_term,
                "commit": status.meta_applied_index,
                "pending_operations": 0,
                "leader": status.meta_leader_id,
                "role": "Follower",
                "is_voter": false,
            },
            "consensus_thread_status": { "consensus_thread_status": "working", "last_update": "1970-01-01T00:00:00Z" },
            "message_send_failures": {},
        }))
    })
    .await
}

async fn all_aliases(State(api): Api) -> Response {
    timed(async move { api.list_aliases(None) }).await
}

async fn collection_aliases(State(api): Api, Path(name): Path<String>) -> Response {
    timed(async move { api.list_aliases(Some(&name)) }).await
}

async fn update_aliases(State(api): Api, body: Bytes) -> Response {
    timed(async move { api.update_aliases(&parse_body(&body)?).await }).await
}

async fn create_index(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.create_payload_index(&name, &parse_body(&body)?).await }).await
}

async fn delete_index(State(api): Api, Path((name, field)): Path<(String, String)>) -> Response {
    timed(async move { api.delete_payload_index(&name, &field).await }).await
}

async fn facet(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.facet(&name, &parse_body(&body)?).await }).await
}

async fn list_collections(State(api): Api) -> Response {
    timed(async move { api.list_collections().await }).await
}

async fn get_collection(State(api): Api, Path(name): Path<String>) -> Response {
    timed(async move { api.get_collection(&name).await }).await
}

async fn create_collection(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.create_collection(&name, parse_body(&body)?).await }).await
}

async fn update_collection(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.update_collection(&name, parse_body(&body)?).await }).await
}

async fn delete_collection(State(api): Api, Path(name): Path<String>) -> Response {
    timed(async move { api.delete_collection(&name).await }).await
}

async fn collection_exists(State(api): Api, Path(name): Path<String>) -> Response {
    timed(async move { api.collection_exists(&name).await }).await
}

/// Upsert bodies at least this large are read on the blocking pool: a batch of 1,000 × 128
/// vectors takes milliseconds to read, which would hold up every other task on the worker
/// thread; a small one costs less to read than to hand over.
const READ_OFF_RUNTIME_BYTES: usize = 64 * 1024;

async fn upsert(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move {
        let points = if body.len() < READ_OFF_RUNTIME_BYTES {
            UpsertBody::from_json(&body)?
        } else {
            tokio::task::spawn_blocking(move || UpsertBody::from_json(&body))
                .await
                .map_err(|e| QdrantError::Other(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the body failed: {e}")))??
        };
        api.upsert(&name, points).await
    })
    .await
}

async fn retrieve(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move {
        let body: Value = parse_body(&body)?;
        let ids = body.get("ids").and_then(Value::as_array).ok_or_else(|| QdrantError::BadRequest("Format error in JSON body: missing field `ids`".into()))?;
        let selector = PayloadSelector::parse(body.get("with_payload"), false)?;
        let with_vector = super::points::VectorSelector::parse(body.get("with_vector"));
        Ok(Value::Array(api.retrieve(&name, ids, &selector, &with_vector).await?))
    })
    .await
}

async fn get_point(State(api): Api, Path((name, id)): Path<(String, String)>) -> Response {
    timed(async move {
        let id_value = id.parse::<u64>().map(Value::from).unwrap_or(Value::from(id.clone()));
        let mut found = api.retrieve(&name, &[id_value], &PayloadSelector::All, &super::points::VectorSelector::All).await?;
        found.pop().ok_or_else(|| QdrantError::NotFound(format!("Not found: No point with id {id} found")))
    })
    .await
}

async fn delete_points(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.delete_points(&name, parse_body::<Selection>(&body)?).await }).await
}

async fn update_batch(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.update_batch(&name, UpdateOp::from_rest(&parse_body(&body)?)?).await }).await
}

/// A payload edit's handler.
async fn edit(api: QdrantApi, name: String, body: Bytes, edit: PayloadEdit) -> Response {
    timed(async move { api.edit_payload(&name, edit, parse_body::<PayloadBody>(&body)?).await }).await
}

async fn set_payload(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    edit(api, name, body, PayloadEdit::Set).await
}

async fn overwrite_payload(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    edit(api, name, body, PayloadEdit::Overwrite).await
}

async fn delete_payload(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    edit(api, name, body, PayloadEdit::DeleteKeys).await
}

async fn clear_payload(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    edit(api, name, body, PayloadEdit::Clear).await
}

async fn scroll(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.scroll(&name, &parse_body(&body)?).await }).await
}

async fn count(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.count(&name, &parse_body(&body)?).await }).await
}

async fn query(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.query(&name, &parse_body(&body)?).await }).await
}

async fn query_batch(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.query_batch(&name, &parse_body(&body)?).await }).await
}

async fn search(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.search(&name, &parse_body(&body)?).await }).await
}

async fn search_batch(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.search_batch(&name, &parse_body(&body)?, false).await }).await
}

async fn grouped(State(api): Api, Path(name): Path<String>, body: Bytes, kind: Grouped) -> Response {
    timed(async move { api.groups(&name, &parse_body(&body)?, kind).await }).await
}

async fn recommend(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.recommend(&name, &parse_body(&body)?).await }).await
}

async fn recommend_batch(State(api): Api, Path(name): Path<String>, body: Bytes) -> Response {
    timed(async move { api.search_batch(&name, &parse_body(&body)?, true).await }).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn rest_requests_that_only_read_need_only_the_read_only_key() {
        assert_eq!(rest_access(&Method::GET, "/healthz"), Access::Open);
        assert_eq!(rest_access(&Method::GET, "/collections/c"), Access::Read);
        for read in ["points", "points/search", "points/search/batch", "points/query", "points/scroll", "points/count", "facet"] {
            assert_eq!(rest_access(&Method::POST, &format!("/collections/c/{read}")), Access::Read, "{read}");
        }
        for (method, write) in [
            (Method::PUT, "/collections/c/points"),
            (Method::POST, "/collections/c/points/delete"),
            (Method::POST, "/collections/c/points/payload"),
            (Method::PUT, "/collections/c"),
            (Method::DELETE, "/collections/c"),
            (Method::POST, "/collections/aliases"),
            (Method::PUT, "/collections/c/index"),
        ] {
            assert_eq!(rest_access(&method, write), Access::Write, "{method} {write}");
        }
    }
}
