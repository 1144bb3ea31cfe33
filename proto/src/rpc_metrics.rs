//! Prometheus metrics of every gRPC server: requests by service, method and status code, and
//! their latency, recorded by `crate::net::server`'s layer (refused calls included).
//!
//! The code of a call is its `grpc-status` when the answer carries it in its headers (every
//! error tonic answers, and every refusal), else `OK`: a successful unary answer has its status
//! in the trailers, which the layer does not wait for. The latency is the time to the answer's
//! headers (for a stream: to its start).

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{register_histogram_vec, register_int_counter_vec, HistogramVec, IntCounterVec};

/// `grape_rpc_requests_total{service, method, code}`.
pub static RPC_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_rpc_requests_total", "gRPC requests answered, by service, method and status code", &[
        "service", "method", "code"
    ])
    .expect("a new metric name")
});

/// `grape_rpc_request_duration_seconds{service, method}`.
pub static RPC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
    register_histogram_vec!("grape_rpc_request_duration_seconds", "Time from a gRPC request to its answer's headers", &["service", "method"], buckets)
        .expect("a new metric name")
});

/// The name of a gRPC status code as Prometheus labels show it (`OK`, `INVALID_ARGUMENT`…).
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The (service, method) of a gRPC path `/package.Service/Method`; unknown shapes become
/// `("unknown", "unknown")` so a client cannot grow the label set without bound.
pub(crate) fn service_and_method(path: &str) -> (String, String) {
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method))
            if service.len() <= 64 && method.len() <= 64 && !method.contains('/') && is_name(service) && is_name(method) =>
        {
            (service.to_string(), method.to_string())
        }
        _ => ("unknown".into(), "unknown".into()),
    }
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
}

/// The code of an answer: its `grpc-status` header when it has one (errors), else `OK`.
pub(crate) fn code_of<R>(answer: &http::Response<R>) -> &'static str {
    answer
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or("OK", |c| code_name(tonic::Code::from_i32(c)))
}

/// Counts one answered request and its latency.
pub(crate) fn record(service: &str, method: &str, code: &str, started: Instant) {
    RPC_SECONDS.with_label_values(&[service, method]).observe(started.elapsed().as_secs_f64());
    RPC_REQUESTS.with_label_values(&[service, method, code]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_bounded_labels() {
        assert_eq!(service_and_method("/grape.v1.Grape/Search"), ("grape.v1.Grape".into(), "Search".into()));
        assert_eq!(service_and_method("/x"), ("unknown".into(), "unknown".into()));
        assert_eq!(service_and_method("/a/b/c"), ("unknown".into(), "unknown".into()));
        assert_eq!(service_and_method(&format!("/{}/m", "s".repeat(100))), ("unknown".into(), "unknown".into()));
    }
}
