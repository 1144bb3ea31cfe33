//! The threads SQL queries run on: a tokio runtime of their own, apart from the one that
//! serves gRPC, searches, writes and `Status`.
//!
//! DataFusion's operators do their work inside `poll`, and some do unbounded work in one
//! call: a nested-loop join whose filter matches nothing loops over the whole build side
//! without returning (found by the soak benchmark: a `JOIN … ON a.price + b.price > 1000`
//! over 3 million rows held both runtime threads for minutes, and the node stopped
//! answering anything, its request deadlines included, since the timers ran on the same
//! threads). On their own runtime such a query holds only SQL threads: the node's deadline
//! still fires, the request is answered `DEADLINE_EXCEEDED` and its task aborted (effective
//! at the operator's next yield), and everything else keeps being served.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::error::ComputeError;

/// Stack of a SQL thread: planning walks expressions up to the hard depth limit.
const SQL_THREAD_STACK_BYTES: usize = 8 << 20;

/// The process's SQL runtime, one thread per core, built on first use and never dropped
/// (a runtime may not be dropped from async code, so it is built exactly once: callers
/// racing for the first use wait for the one building it, none builds a spare to drop).
fn sql_runtime() -> Result<&'static Runtime, ComputeError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    let built = RUNTIME.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("grape-sql")
            .thread_stack_size(SQL_THREAD_STACK_BYTES)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    built.as_ref().map_err(|e| ComputeError::Internal(format!("cannot start the SQL threads: {e}")))
}

/// Aborts the task when dropped: the caller's deadline passed or its client went away.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` on the SQL threads and waits for it. Dropping the returned future aborts it.
pub async fn on_sql_threads<T: Send + 'static>(
    work: impl Future<Output = Result<T, ComputeError>> + Send + 'static,
) -> Result<T, ComputeError> {
    // The request's id goes along: the scans this query asks of other nodes carry it.
    let work = grape_proto::trace::in_request(grape_proto::trace::current_request_id(), work);
    let mut task = AbortOnDrop(sql_runtime()?.spawn(work));
    match (&mut task.0).await {
        Ok(answer) => answer,
        Err(e) if e.is_panic() => Err(ComputeError::Internal("the query failed unexpectedly (a panic while running it)".into())),
        Err(_) => Err(ComputeError::Internal("the query was stopped".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn work_runs_elsewhere_and_a_dropped_call_aborts_it() {
        let here = std::thread::current().id();
        let there = on_sql_threads(async { Ok(std::thread::current().id()) }).await.unwrap();
        assert_ne!(here, there);
        // A task that never finishes is aborted when its caller gives up.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stuck = on_sql_threads(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
            Ok(())
        });
        assert!(tokio::time::timeout(Duration::from_millis(50), stuck).await.is_err());
        // The task's captured sender is dropped with it.
        assert!(tokio::time::timeout(Duration::from_secs(5), rx).await.expect("aborted").is_err());
    }
}
