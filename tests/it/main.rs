//! End-to-end tests of the `grape` binary: real processes on 127.0.0.1, real files, real
//! kills. One test binary, one module per scenario.

mod ann;
mod auth;
mod bad_input;
mod compute_cluster;
mod embedded;
mod failover;
mod fuzz;
mod gc;
mod harness;
mod hostile_input;
mod jobs;
mod meta_cluster;
mod named_vectors;
mod observe;
mod qdrant;
mod s3_storage;
mod upsert_delete;
