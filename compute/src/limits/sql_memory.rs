//! The memory pool every SQL query of a node runs in: sorts, joins and aggregates reserve
//! from it, and a query that would pass its bound fails with `RESOURCE_EXHAUSTED` while the
//! others keep running. Nothing spills to disk: a node's disk holds its segment cache, and a
//! query too big for memory is better refused than left to fill it.

use std::sync::{Arc, Mutex};

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::error::ComputeError;

/// A node's SQL runtime, rebuilt when the configured bound changes (queries already running
/// keep the pool they started with).
#[derive(Debug, Default)]
pub struct SqlMemory {
    current: Mutex<Option<(u64, Arc<RuntimeEnv>)>>,
}

impl SqlMemory {
    /// An empty holder; the runtime is built by the first query.
    pub fn new() -> Self {
        Self::default()
    }

    /// The runtime whose memory pool holds `bytes`.
    pub fn runtime(&self, bytes: u64) -> Result<Arc<RuntimeEnv>, ComputeError> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((b, env)) = current.as_ref() {
            if *b == bytes {
                return Ok(env.clone());
            }
        }
        let env = RuntimeEnvBuilder::new()
            .with_memory_limit(usize::try_from(bytes).unwrap_or(usize::MAX), 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()
            .map_err(|e| ComputeError::Internal(format!("SQL runtime: {e}")))?;
        *current = Some((bytes, env.clone()));
        Ok(env)
    }

    /// Bytes reserved by running queries now.
    pub fn used(&self) -> u64 {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.as_ref().map_or(0, |(_, env)| env.memory_pool.reserved() as u64)
    }
}
