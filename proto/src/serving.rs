//! Serving threads: a gRPC server whose connections are spread over single-threaded runtimes,
//! one per core, instead of served on the process's shared work-stealing runtime.
//!
//! On the shared runtime a request wakes more threads than it uses: the worker that reads a
//! request spawns its stream's task, an idle worker is woken to steal it, and the one that
//! finishes it goes back to sleep. Measured through `grape-bench ann` on a 2-core machine, a
//! small search's request cost about 150 µs of CPU around the search on the shared runtime and
//! about 60 µs on one thread that reads, searches and answers by itself. Here each
//! connection belongs to one serving thread for its life (the one with the fewest open
//! connections when it was accepted), and everything of its requests runs on that thread
//! unless it hands work off: one request costs one wake-up.
//!
//! A connection's requests share its thread, so a busy connection (one gateway asking a leaf
//! many searches at once) must not be held to one core: [`others_in_flight`] tells request
//! handlers when their thread has other requests waiting, and a handler with work to do
//! then hands it to the blocking pool instead of running it inline.
//!
//! TLS connections are served on the shared runtime: their handshake runs where they are
//! accepted, and the encrypted stream cannot move to another runtime.

use std::cell::RefCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::Stream;
use tonic::transport::server::Router;

use crate::net::{Conn, Layers, OpenConn};

/// Why a server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reading the listener's address, or starting a serving thread or its runtime, failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The server failed.
    #[error(transparent)]
    Server(Box<dyn std::error::Error + Send + Sync>),
}

/// Stack of serving threads and of their blocking pools, as for the shared runtime's threads.
pub const STACK_BYTES: usize = 8 << 20;

thread_local! {
    /// On a serving thread, the number of requests it has in flight.
    static IN_FLIGHT: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
    /// On a serving thread, the runtime its acceptor runs on: the process's shared runtime.
    static SHARED: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Runs `f` in the context of the process's shared runtime when called on a serving thread
/// (else as it is), so that the tasks it spawns, such as a channel's connection to another
/// node, live there: they outlive the serving thread and never wait for its requests.
pub fn on_shared_runtime<T>(f: impl FnOnce() -> T) -> T {
    match SHARED.with(|shared| shared.borrow().clone()) {
        Some(handle) => {
            let _entered = handle.enter();
            f()
        }
        None => f(),
    }
}

/// Whether the serving thread this runs on has requests in flight besides the caller's. Off
/// serving threads (the shared runtime, the blocking pool) always false.
pub fn others_in_flight() -> bool {
    IN_FLIGHT.with(|count| count.borrow().as_ref().is_some_and(|n| n.load(Ordering::Relaxed) > 1))
}

/// One request counted in its serving thread's [`others_in_flight`] while it lives. Made by
/// every Grape gRPC server's layer ([`crate::net::server`]) and by the Qdrant REST API's key
/// check when a request arrives; off serving threads it counts nothing.
#[derive(Debug)]
pub struct InFlight(Option<Arc<AtomicUsize>>);

impl InFlight {
    /// Counts a request arriving on the current thread.
    pub fn enter() -> InFlight {
        InFlight(IN_FLIGHT.with(|count| {
            count.borrow().clone().inspect(|n| {
                n.fetch_add(1, Ordering::Relaxed);
            })
        }))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A serving thread as the acceptor sees it.
struct Lane {
    conns: mpsc::UnboundedSender<(std::net::TcpStream, OpenConn)>,
    open: Arc<AtomicUsize>,
    done: oneshot::Receiver<Result<(), ServeError>>,
}

/// The connections the acceptor gives one serving thread, registered with its runtime: what
/// its server serves in place of a listener.
pub struct LaneIncoming(mpsc::UnboundedReceiver<(std::net::TcpStream, OpenConn)>);

impl Stream for LaneIncoming {
    type Item = std::io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|next| next.map(|(tcp, open)| TcpStream::from_std(tcp).map(|tcp| Conn::served(tcp, open))))
    }
}

/// Resolves when the serving threads are to stop taking requests: their graceful shutdown.
pub type Stop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves gRPC `router` on `listener` until `shutdown` resolves, then waits for open requests
/// to be answered: on `threads` serving threads ([`serve_on_threads`]), or on the runtime this
/// runs on with `threads` = 0 or TLS.
pub async fn serve(router: Router<Layers>, listener: TcpListener, threads: usize, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    if threads == 0 || crate::tls::grpc_acceptor().is_some() {
        return router.serve_with_incoming_shutdown(crate::net::incoming(listener), shutdown).await.map_err(|e| ServeError::Server(e.into()));
    }
    serve_on_threads(listener, threads, shutdown, move |incoming, stop| {
        let router = router.clone();
        async move { router.serve_with_incoming_shutdown(incoming, stop).await }
    })
    .await
}

/// Accepts connections on `listener` until `shutdown` resolves, handing each to the one of
/// `threads` serving threads with the fewest open connections; each thread runs
/// `serve_lane(its connections, stop)` on its own current-thread runtime, a server that ends
/// when `stop` resolves (then, as here, once its open requests are answered).
pub async fn serve_on_threads<F, Fut, E>(listener: TcpListener, threads: usize, shutdown: impl Future<Output = ()>, serve_lane: F) -> Result<(), ServeError>
where
    F: Fn(LaneIncoming, Stop) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (drain, draining) = watch::channel(false);
    let lane = |i| start_lane(i, serve_lane.clone(), draining.clone());
    let lanes = (0..threads.max(1)).map(lane).collect::<Result<Vec<_>, _>>()?;
    let mut shutdown = pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if crate::tls::is_transient(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; pausing accepts for 100 ms");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        if let Err(e) = hand_over(&lanes, tcp) {
            tracing::debug!(%peer, error = %e, "cannot hand a connection to a serving thread");
        }
    }
    drop(listener);
    let _ = drain.send(true);
    for lane in lanes {
        drop(lane.conns);
        if let Ok(Err(e)) = lane.done.await {
            return Err(e);
        }
    }
    Ok(())
}

/// Gives an accepted connection to the serving thread with the fewest open connections.
fn hand_over(lanes: &[Lane], tcp: TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    // Unregistered from this runtime's reactor: the serving thread registers it with its own.
    let tcp = tcp.into_std()?;
    let Some(lane) = lanes.iter().min_by_key(|l| l.open.load(Ordering::Relaxed)) else { return Ok(()) };
    let open = OpenConn::new(lane.open.clone());
    lane.conns.send((tcp, open)).map_err(|_| std::io::Error::other("the serving thread has stopped"))
}

/// Starts serving thread `index`: a current-thread runtime running `serve_lane` over the
/// connections sent to it, told to stop when `draining` is set.
fn start_lane<F, Fut, E>(index: usize, serve_lane: F, mut draining: watch::Receiver<bool>) -> std::io::Result<Lane>
where
    F: FnOnce(LaneIncoming, Stop) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (conns, arrived) = mpsc::unbounded_channel();
    let (finished, done) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().thread_stack_size(STACK_BYTES).build()?;
    let (in_flight, shared) = (Arc::new(AtomicUsize::new(0)), Handle::current());
    std::thread::Builder::new().name(format!("grape-serve-{index}")).stack_size(STACK_BYTES).spawn(move || {
        IN_FLIGHT.with(|count| *count.borrow_mut() = Some(in_flight));
        SHARED.with(|handle| *handle.borrow_mut() = Some(shared));
        let stop: Stop = Box::pin(async move {
            let _ = draining.wait_for(|d| *d).await;
        });
        let served = runtime.block_on(serve_lane(LaneIncoming(arrived), stop));
        let _ = finished.send(served.map_err(|e| ServeError::Server(e.into())));
    })?;
    Ok(Lane { conns, open: Arc::new(AtomicUsize::new(0)), done })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tonic::transport::Endpoint;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::*;

    fn router() -> Router<Layers> {
        crate::net::server(crate::auth::Keys::default()).add_service(tonic_health::server::health_reporter().1)
    }

    async fn check(addr: std::net::SocketAddr) -> Result<(), String> {
        let channel = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| e.to_string())?.connect().await.map_err(|e| e.to_string())?;
        let mut client = HealthClient::new(channel);
        for _ in 0..20 {
            client.check(HealthCheckRequest { service: String::new() }).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Waits until `f` holds, for at most 10 s.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "{what}: not after 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serving_threads_answer_many_connections_and_drain_on_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(router(), listener, 2, async move {
            let _ = stopped.await;
        }));
        let clients: Vec<_> = (0..5).map(|_| tokio::spawn(check(addr))).collect();
        for client in clients {
            client.await.unwrap().unwrap();
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server drains").unwrap().unwrap();
        assert!(check(addr).await.is_err(), "a stopped server accepts no connection");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_go_to_the_least_busy_thread_and_are_counted_until_closed() {
        let (_drain, draining) = watch::channel(false);
        let serve_lane = |incoming, stop| router().serve_with_incoming_shutdown(incoming, stop);
        let lanes: Vec<Lane> = (0..2).map(|i| start_lane(i, serve_lane, draining.clone()).unwrap()).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
            hand_over(&lanes, listener.accept().await.unwrap().0).unwrap();
        }
        let open = || lanes.iter().map(|l| l.open.load(Ordering::Relaxed)).collect::<Vec<_>>();
        let mut counts = open();
        counts.sort();
        assert_eq!(counts, [1, 2], "three connections over two threads");
        drop(clients);
        eventually("closed connections are no longer counted", || open() == [0, 0]).await;
    }

    #[test]
    fn requests_in_flight_are_counted_on_serving_threads_only() {
        assert!(!others_in_flight(), "not a serving thread");
        let outside = InFlight::enter();
        assert!(outside.0.is_none(), "nothing is counted off serving threads");
        std::thread::spawn(|| {
            IN_FLIGHT.with(|count| *count.borrow_mut() = Some(Arc::new(AtomicUsize::new(0))));
            let first = InFlight::enter();
            assert!(!others_in_flight(), "one request alone");
            let second = InFlight::enter();
            assert!(others_in_flight(), "two requests");
            drop(first);
            assert!(!others_in_flight(), "the other answered");
            drop(second);
        })
        .join()
        .unwrap();
    }
}
