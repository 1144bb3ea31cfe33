//! One trace per request across processes: every gRPC server opens a span per request
//! (`rpc{method, request_id}`, in `crate::net::server`'s layer), and every call a process makes while serving that request
//! carries its request id (`x-request-id`), so the spans of the gateway, the leaves it asks and
//! the storage reads beneath them share one id in every process's log. `GRAPE_LOG` sets what
//! is logged (`GRAPE_LOG=debug` shows each request's answer and time).
//!
//! A caller may send its own `x-request-id` (up to 64 printable characters); otherwise the
//! server makes one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// Header carrying the request id between processes.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    pub(crate) static REQUEST_ID: String;
}

/// The id of the request the current task serves, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `work` as part of request `id` (for work moved to another task or runtime, which does
/// not inherit the id).
pub async fn in_request<F: Future>(id: Option<String>, work: F) -> F::Output {
    match id {
        Some(id) => REQUEST_ID.scope(id, work).await,
        None => work.await,
    }
}

/// A new request id: this process's start time and a counter, in hex.
pub(crate) fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static EPOCH: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
    });
    format!("{:x}-{:x}", *EPOCH & 0xffff_ffff, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The request id a caller sent, if it is a sane one.
pub(crate) fn sent_request_id(headers: &http::HeaderMap) -> Option<String> {
    let id = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    (!id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic())).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_made_unless_a_sane_one_is_sent() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(sent_request_id(&headers), None);
        headers.insert(REQUEST_ID_HEADER, http::HeaderValue::from_static("abc-1"));
        assert_eq!(sent_request_id(&headers).as_deref(), Some("abc-1"));
        headers.insert(REQUEST_ID_HEADER, http::HeaderValue::from_str(&"x".repeat(65)).expect("value"));
        assert_eq!(sent_request_id(&headers), None);
        assert_ne!(new_request_id(), new_request_id());
    }

    #[tokio::test]
    async fn work_in_a_request_sees_its_id() {
        assert_eq!(current_request_id(), None);
        let seen = in_request(Some("r1".into()), async { current_request_id() }).await;
        assert_eq!(seen.as_deref(), Some("r1"));
    }
}
