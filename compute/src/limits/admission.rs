//! Bounded concurrency per request class, with a bounded queue: load beyond what a node can
//! run and hold is shed at once with `RESOURCE_EXHAUSTED`, not absorbed until memory runs out.
//! Searches, SQL queries and writes have separate slots, so a flood of heavy SQL never keeps
//! a light search from answering. Limits are read at each admission, so a change in the
//! versioned config applies to the next request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Limits;
use crate::error::ComputeError;

/// What kind of work a request is; each class has its own slots and queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestClass {
    /// k-NN searches.
    Search,
    /// SQL queries.
    Sql,
    /// Inserts, ingest streams and collection changes.
    Write,
}

impl RequestClass {
    /// Slots and queue length of this class in `limits`.
    fn bounds(self, limits: &Limits) -> (usize, usize) {
        match self {
            RequestClass::Search => (limits.search_concurrency, limits.search_queue),
            RequestClass::Sql => (limits.sql_concurrency, limits.sql_queue),
            RequestClass::Write => (limits.write_concurrency, limits.write_queue),
        }
    }

    /// The class's name in messages and settings.
    fn name(self) -> &'static str {
        match self {
            RequestClass::Search => "search",
            RequestClass::Sql => "sql",
            RequestClass::Write => "write",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Running and waiting requests of one class.
#[derive(Debug, Default)]
struct GateState {
    running: usize,
    queued: usize,
}

/// The slots of one class.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    /// Woken when a slot frees.
    freed: Notify,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters of what admission did, for `grape status`.
#[derive(Debug, Default)]
pub struct AdmissionCounters {
    /// Requests refused because their class's queue was full.
    pub rejected: AtomicU64,
    /// Requests whose client went away (or whose deadline passed on the client) before the
    /// answer: their work was dropped.
    pub cancelled: AtomicU64,
    /// Requests stopped by the node's request deadline.
    pub timed_out: AtomicU64,
}

/// The admission control of one node.
#[derive(Debug, Default)]
pub struct Admission {
    gates: [Arc<Gate>; 3],
    counters: Arc<AdmissionCounters>,
}

impl Admission {
    /// A node's admission control, nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for a slot of `class` under `limits`; fails at once with `ResourceExhausted`
    /// when the class's queue is full. Dropping the future while it waits leaves the queue.
    pub async fn admit(&self, class: RequestClass, limits: &Limits) -> Result<Permit, ComputeError> {
        let (slots, queue) = class.bounds(limits);
        let gate = self.gates[class.index()].clone();
        let mut waiting = Waiting { gate: &gate, queued: false };
        loop {
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = gate.lock();
                if state.running < slots.max(1) {
                    state.running += 1;
                    if waiting.queued {
                        state.queued -= 1;
                        waiting.queued = false;
                    }
                    return Ok(Permit { gate: gate.clone() });
                }
                if !waiting.queued {
                    if state.queued >= queue {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        return Err(ComputeError::ResourceExhausted(format!(
                            "this node is busy: {} {} requests running and {} waiting (limits/{}_concurrency, limits/{}_queue); retry later or on another node",
                            state.running,
                            class.name(),
                            state.queued,
                            class.name(),
                            class.name()
                        )));
                    }
                    state.queued += 1;
                    waiting.queued = true;
                }
            }
            freed.await;
        }
    }

    /// Requests running and waiting, over all classes.
    pub fn load(&self) -> (u64, u64) {
        self.gates.iter().fold((0, 0), |(r, q), g| {
            let s = g.lock();
            (r + s.running as u64, q + s.queued as u64)
        })
    }

    /// The counters.
    pub fn counters(&self) -> &AdmissionCounters {
        &self.counters
    }

    /// Marks a request as started: unless [`InFlight::settle`] is called, dropping the mark
    /// counts the request as cancelled (its client went away and its work was dropped).
    pub fn track(&self) -> InFlight {
        InFlight { counters: self.counters.clone(), settled: false }
    }
}

/// A request between its start and its answer; see [`Admission::track`].
#[derive(Debug)]
pub struct InFlight {
    counters: Arc<AdmissionCounters>,
    settled: bool,
}

impl InFlight {
    /// The request was answered (or failed, or timed out) rather than abandoned.
    pub fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.settled {
            self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A request waiting in a queue; leaves it (and passes its wake-up on) when dropped early.
struct Waiting<'a> {
    gate: &'a Gate,
    queued: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.queued {
            self.gate.lock().queued -= 1;
            // This waiter may have consumed the wake-up meant for a free slot.
            self.gate.freed.notify_one();
        }
    }
}

/// A running request's slot, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.lock().running -= 1;
        self.gate.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(slots: usize, queue: usize) -> Limits {
        Limits { sql_concurrency: slots, sql_queue: queue, ..Limits::default() }
    }

    #[tokio::test]
    async fn beyond_slots_and_queue_requests_are_refused_and_a_freed_slot_goes_to_the_queue() {
        let admission = Arc::new(Admission::new());
        let l = limits(2, 1);
        let a = admission.admit(RequestClass::Sql, &l).await.unwrap();
        let _b = admission.admit(RequestClass::Sql, &l).await.unwrap();
        let waiter = {
            let (admission, l) = (admission.clone(), l.clone());
            tokio::spawn(async move { admission.admit(RequestClass::Sql, &l).await.map(drop) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(admission.load(), (2, 1));
        let err = admission.admit(RequestClass::Sql, &l).await.unwrap_err();
        assert!(matches!(err, ComputeError::ResourceExhausted(_)), "{err}");
        assert!(err.to_string().contains("limits/sql_queue"), "{err}");
        // Other classes have their own slots.
        drop(admission.admit(RequestClass::Search, &l).await.unwrap());
        drop(a);
        waiter.await.unwrap().unwrap();
        assert_eq!(admission.counters().rejected.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_the_queue_and_abandoned_requests_are_counted() {
        let admission = Admission::new();
        let l = limits(1, 4);
        let held = admission.admit(RequestClass::Sql, &l).await.unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(20), admission.admit(RequestClass::Sql, &l)).await;
        assert!(gave_up.is_err());
        assert_eq!(admission.load(), (1, 0));
        drop(held);
        assert_eq!(admission.load(), (0, 0));
        drop(admission.admit(RequestClass::Sql, &l).await.unwrap());
        admission.track().settle();
        drop(admission.track());
        assert_eq!(admission.counters().cancelled.load(Ordering::Relaxed), 1);
    }
}
