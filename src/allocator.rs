//! The process's allocator: jemalloc, which returns freed memory to the system.
//!
//! Under the soak benchmark's mixed traffic a compute node on glibc malloc held 711 MiB
//! resident while its live heap was 97 MiB (peak 250 MiB, measured with heaptrack): the
//! memory freed after each SQL query and segment load stayed in glibc's per-thread arenas,
//! so resident memory climbed with every burst. jemalloc purges dirty pages after a decay
//! time (its background threads do it even when the node is idle), so resident memory
//! follows what the node holds.

/// Every allocation of the `grape` binary goes through jemalloc (unless it is built with the
/// `system-allocator` feature, for heap profilers that hook glibc's malloc).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
