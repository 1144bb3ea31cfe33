//! Prometheus metrics a compute node counts as work happens: segment loads and evictions,
//! job attempts, and payloads parsed by filters. Figures of the node's present state (rows, segments, memory) are read at
//! scrape time by whoever serves `/metrics`.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// `grape_segment_loads_total{outcome}`: `ok` or `failed`.
pub static SEGMENT_LOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_segment_loads_total", "Segment loads from object storage, by outcome", &["outcome"])
        .expect("a new metric name")
});

/// `grape_segment_load_duration_seconds`.
pub static SEGMENT_LOAD_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    let buckets = vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
    register_histogram!("grape_segment_load_duration_seconds", "Time to load one segment (and its index) into memory", buckets)
        .expect("a new metric name")
});

/// `grape_segment_load_bytes_total`.
pub static SEGMENT_LOAD_BYTES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_segment_load_bytes_total", "Bytes of segment objects loaded into memory").expect("a new metric name")
});

/// `grape_segment_evictions_total`: segments dropped from memory (no longer assigned here).
pub static SEGMENT_EVICTIONS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_segment_evictions_total", "Segments dropped from memory after their grace period")
        .expect("a new metric name")
});

/// `grape_job_attempts_total{kind, outcome}`: `committed`, `succeeded`, `failed` or `lost`
/// (the lease ran out).
pub static JOB_ATTEMPTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("grape_job_attempts_total", "Job attempts this node ran, by kind and outcome", &["kind", "outcome"])
        .expect("a new metric name")
});

/// `grape_job_duration_seconds{kind}`.
pub static JOB_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let buckets = vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];
    register_histogram_vec!("grape_job_duration_seconds", "Time of a job attempt on this node, by kind", &["kind"], buckets)
        .expect("a new metric name")
});

/// `grape_payload_match_rows_total`: payloads `payload_match` parsed to test a Qdrant
/// condition (one per row and condition: the cost a payload index saves).
pub static PAYLOAD_MATCH_ROWS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_payload_match_rows_total", "Payloads parsed by payload_match to test one filter condition")
        .expect("a new metric name")
});

/// `grape_payload_derived_rows_total`: rows × columns of derived payload columns computed
/// (see [`crate::derived`]).
pub static PAYLOAD_DERIVED_ROWS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("grape_payload_derived_rows_total", "Values of derived payload columns computed (rows times columns)")
        .expect("a new metric name")
});

/// Records `rows` payloads parsed by `payload_match`.
pub fn payload_rows_matched(rows: usize) {
    PAYLOAD_MATCH_ROWS.inc_by(rows as u64);
}

/// Records `cells` (rows × columns) of derived payload columns computed for a segment.
pub fn payload_rows_derived(cells: usize) {
    PAYLOAD_DERIVED_ROWS.inc_by(cells as u64);
}

/// Records a segment load that started at `started`, of `bytes`, and whether it worked.
pub fn segment_loaded(started: Instant, bytes: u64, ok: bool) {
    SEGMENT_LOAD_SECONDS.observe(started.elapsed().as_secs_f64());
    if ok {
        SEGMENT_LOADS.with_label_values(&["ok"]).inc();
        SEGMENT_LOAD_BYTES.inc_by(bytes);
    } else {
        SEGMENT_LOADS.with_label_values(&["failed"]).inc();
    }
}

/// Records a job attempt of `kind` that started at `started` and ended with `outcome`.
pub fn job_ended(kind: &str, started: Instant, outcome: &str) {
    JOB_SECONDS.with_label_values(&[kind]).observe(started.elapsed().as_secs_f64());
    JOB_ATTEMPTS.with_label_values(&[kind, outcome]).inc();
}

/// `grape_node_…` gauges of what a compute node holds, set at scrape time.
pub mod node {
    use std::sync::LazyLock;

    use prometheus::{register_int_gauge, IntGauge};

    fn gauge(name: &str, help: &str) -> IntGauge {
        register_int_gauge!(name, help).expect("a new metric name")
    }

    /// `grape_node_rows`.
    pub static ROWS: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_node_rows", "Rows in the segments this node serves"));
    /// `grape_node_segments`.
    pub static SEGMENTS: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_node_segments", "Segments this node serves"));
    /// `grape_node_memory_bytes`.
    pub static MEMORY: LazyLock<IntGauge> =
        LazyLock::new(|| gauge("grape_node_memory_bytes", "Bytes of segment data and indexes this node holds in memory"));
    /// `grape_node_segments_loading`.
    pub static LOADING: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_node_segments_loading", "Segments being loaded now"));
    /// `grape_node_segments_failed`.
    pub static FAILED: LazyLock<IntGauge> =
        LazyLock::new(|| gauge("grape_node_segments_failed", "Segments this node could not load"));
    /// `grape_node_requests_running`.
    pub static RUNNING: LazyLock<IntGauge> = LazyLock::new(|| gauge("grape_node_requests_running", "Requests running now"));
    /// `grape_node_requests_queued`.
    pub static QUEUED: LazyLock<IntGauge> =
        LazyLock::new(|| gauge("grape_node_requests_queued", "Requests waiting for a slot now"));
    /// `grape_node_sql_memory_bytes`.
    pub static SQL_MEMORY: LazyLock<IntGauge> =
        LazyLock::new(|| gauge("grape_node_sql_memory_bytes", "Bytes SQL queries hold in the node's pool now"));
    /// `grape_node_catalog_frozen`: 1 while the node's catalog has stopped following meta.
    pub static CATALOG_FROZEN: LazyLock<IntGauge> =
        LazyLock::new(|| gauge("grape_node_catalog_frozen", "1 while this node's catalog cannot follow the meta group"));
}

/// Sets the [`node`] gauges from `gateway`'s present state.
pub fn observe_node(gateway: &crate::Gateway) {
    let (segments, rows, bytes) = gateway.engine().stats();
    let states = gateway.engine().states();
    let (running, queued) = gateway.load();
    node::ROWS.set(rows as i64);
    node::SEGMENTS.set(segments as i64);
    node::MEMORY.set(bytes as i64);
    node::LOADING.set(states.loading as i64);
    node::FAILED.set(states.failed.len() as i64);
    node::RUNNING.set(running as i64);
    node::QUEUED.set(queued as i64);
    node::SQL_MEMORY.set(gateway.sql_memory_used() as i64);
    node::CATALOG_FROZEN.set(i64::from(gateway.meta.follow_error().is_some()));
}
