//! Grape's own settings in the meta group's versioned config (`grape config set KEY VALUE`).
//!
//! A setting in the config overrides the node's command-line flag for every node at once, and
//! takes effect without a restart: nodes read it from their copy of the catalog each time they
//! need it. A value that does not parse is ignored with a warning.

use std::time::Duration;

use grape_meta::Catalog;

/// Seconds an unreferenced object must be old before garbage collection deletes it
/// (`--gc-grace-secs`). An ingest job must commit within half of it.
pub const GC_GRACE_SECS: &str = "gc/grace_secs";

/// Seconds between garbage-collection passes of each node (`--gc-interval-secs`; 0 pauses).
pub const GC_INTERVAL_SECS: &str = "gc/interval_secs";

/// Seconds a job attempt's lease lasts unless renewed (default 10); a worker renews it every
/// third of that. A worker that stops for longer loses the job to another node.
pub const JOBS_LEASE_SECS: &str = "jobs/lease_secs";

/// Milliseconds a job worker pauses between units of work (files of an ingest, segments of a
/// compaction): a throttle on background work (default 0).
pub const JOBS_PAUSE_MS: &str = "jobs/pause_ms";

/// The duration in whole milliseconds set for `key`, if any.
pub fn millis(catalog: &Catalog, key: &str) -> Option<Duration> {
    number(catalog, key).map(Duration::from_millis)
}

/// The duration in whole seconds set for `key`, if any.
pub fn seconds(catalog: &Catalog, key: &str) -> Option<Duration> {
    number(catalog, key).map(Duration::from_secs)
}

/// The whole number set for `key`, if any.
fn number(catalog: &Catalog, key: &str) -> Option<u64> {
    let value = catalog.config.get(key)?;
    match value.value.trim().parse::<u64>() {
        Ok(n) => Some(n),
        Err(_) => {
            tracing::warn!(key, value = %value.value, "config setting is not a whole number; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_parse_and_bad_ones_are_ignored() {
        let mut catalog = Catalog::default();
        assert_eq!(seconds(&catalog, GC_GRACE_SECS), None);
        catalog.config.put(GC_GRACE_SECS, "120", None);
        assert_eq!(seconds(&catalog, GC_GRACE_SECS), Some(Duration::from_secs(120)));
        catalog.config.put(GC_GRACE_SECS, "soon", None);
        assert_eq!(seconds(&catalog, GC_GRACE_SECS), None);
    }
}
