//! The HTTP/1.1 server loop of `fairway serve`: a connection cap, a header-read timeout, an
//! idle timeout, and a graceful drain on shutdown.
//!
//! `axum::serve` has none of these knobs, and without them idle sockets take every file
//! descriptor until the store cannot open a journal file. Here:
//!
//! - **Cap.** At most `max_connections` connections are open per listener; the loop takes a
//!   permit *before* it accepts, so the process never holds more sockets than that. At the cap it
//!   makes room by closing one idle connection: first one that has not completed a request yet
//!   (the shape of an idle-socket flood), oldest first; else the keep-alive connection idle the
//!   longest. A connection busy with a request or a streaming response is never closed for room;
//!   when every connection is busy, new ones wait in the kernel's listen backlog.
//! - **Header timeout.** Once the first byte of a request has arrived, its head (request line
//!   and headers) must be complete within `header_timeout`, or the connection is dropped.
//! - **Idle timeout.** A connection with no request in progress and nothing received for
//!   `idle_timeout` is closed (gracefully: a request that just arrived still completes).
//! - **Drain.** When the stop signal fires the loop stops accepting, idle connections close, and
//!   requests in progress finish; [`serve`] returns when every connection is gone or the drain
//!   timeout has passed.
//!
//! Each request sees the peer address as `axum::extract::ConnectInfo<SocketAddr>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use fairway_runtime::Shutdown;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Default for `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// How long a connection closed for room or idleness may take to finish a request that arrived
/// just before, before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// From the first byte of a request to the end of its head.
    pub header_timeout: Duration,
    /// Longest quiet time of a connection with no request in progress.
    pub idle_timeout: Duration,
}

/// Milliseconds since `base`, for atomics.
fn millis_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What the loop knows about one open connection.
struct Conn {
    base: Instant,
    /// Requests in the handler or responses still streaming.
    busy: AtomicUsize,
    /// Requests started on this connection.
    served: AtomicU64,
    /// When it last became idle (ms since `base`).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived (ms since `base` + 1; 0 = none).
    head_started: AtomicU64,
    /// Chosen to be closed (for room or idleness).
    closing: AtomicBool,
    /// Dropped at once (header timeout).
    drop_now: AtomicBool,
    wake: Notify,
}

impl Conn {
    fn new(base: Instant) -> Conn {
        Conn {
            base,
            busy: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(millis_since(base)),
            head_started: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            drop_now: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        millis_since(self.base)
    }

    /// A request head is complete and goes to the handler.
    fn begin(self: &Arc<Conn>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(0, Ordering::SeqCst);
        BusyGuard(self.clone())
    }

    /// Bytes arrived from the client.
    fn received(&self) {
        if self.busy.load(Ordering::SeqCst) == 0 && self.head_started.load(Ordering::SeqCst) == 0 {
            self.head_started.store(self.now() + 1, Ordering::SeqCst);
        }
    }

    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::SeqCst) == 0
    }

    fn close(&self, now: bool) {
        if now {
            self.drop_now.store(true, Ordering::SeqCst);
        }
        self.closing.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// Marks its connection busy until the response body is finished (or dropped).
struct BusyGuard(Arc<Conn>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.idle_since.store(conn.now(), Ordering::SeqCst);
        conn.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection marked busy while it streams.
struct GuardedBody {
    inner: Body,
    _guard: BusyGuard,
}

impl http_body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when request bytes arrive.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.received();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The open connections of one listener.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn insert(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Closes the idle connection that is the best to lose; false when every one is busy.
    fn make_room(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // One already on its way out makes the room: do not close a second one for it.
        if open
            .values()
            .any(|c| c.closing.load(Ordering::SeqCst) && c.is_idle())
        {
            return true;
        }
        let victim = open
            .values()
            .filter(|c| c.is_idle() && !c.closing.load(Ordering::SeqCst))
            .min_by_key(|c| {
                (
                    c.served.load(Ordering::Relaxed) > 0,
                    c.idle_since.load(Ordering::SeqCst),
                )
            });
        match victim {
            Some(c) => {
                c.close(false);
                true
            }
            None => false,
        }
    }

    /// Closes the connections past their header or idle timeout.
    fn expire(&self, limits: &ConnLimits) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let header = u64::try_from(limits.header_timeout.as_millis()).unwrap_or(u64::MAX);
        let idle = u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        for c in open.values() {
            if !c.is_idle() || c.drop_now.load(Ordering::SeqCst) {
                continue;
            }
            let now = c.now();
            let started = c.head_started.load(Ordering::SeqCst);
            if started > 0 {
                if now.saturating_sub(started - 1) > header {
                    c.close(true);
                }
            } else if !c.closing.load(Ordering::SeqCst)
                && now.saturating_sub(c.idle_since.load(Ordering::SeqCst)) > idle
            {
                c.close(false);
            }
        }
    }

    fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Serves `app` on `listener` under `limits` until `stop` fires, then drains for at most
/// `drain`. `name` labels the log lines (`http`, `console`).
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    stop: Shutdown,
    drain: Duration,
) {
    let cap = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(cap));
    let registry = Arc::new(Registry::default());
    let base = Instant::now();
    let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let janitor = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                registry.expire(&limits);
            }
        })
    };
    loop {
        let permit = tokio::select! {
            biased;
            () = stop.wait() => break,
            p = acquire(&permits, &registry, tick) => p,
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: the permit goes back, try again shortly.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn::new(base));
        let id = registry.insert(conn.clone());
        let task_registry = registry.clone();
        let task_app = app.clone();
        let task_stop = stop.clone();
        tokio::spawn(async move {
            run_connection(stream, peer, conn, task_app, limits, task_stop).await;
            task_registry.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    janitor.abort();
    // Every connection holds a permit until it is gone.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            open = registry.len(),
            "connections still open after {drain:?}: stopping anyway"
        );
    }
}

/// A connection permit, closing an idle connection for room when there is none.
async fn acquire(
    permits: &Arc<Semaphore>,
    registry: &Registry,
    tick: Duration,
) -> OwnedSemaphorePermit {
    loop {
        if let Ok(p) = permits.clone().try_acquire_owned() {
            return p;
        }
        registry.make_room();
        // Wait for a connection to end; look again after a while in case every one was busy.
        if let Ok(Ok(p)) = tokio::time::timeout(tick, permits.clone().acquire_owned()).await {
            return p;
        }
    }
}

async fn run_connection(
    stream: TcpStream,
    peer: SocketAddr,
    conn: Arc<Conn>,
    app: Router,
    limits: ConnLimits,
    stop: Shutdown,
) {
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |mut request: axum::http::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let guard = service_conn.begin();
        let app = app.clone();
        async move {
            let response = tower::ServiceExt::oneshot(app, request.map(Body::new)).await;
            let response = match response {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|inner| GuardedBody {
                inner,
                _guard: guard,
            }))
        }
    });
    let io = TokioIo::new(Tracked {
        stream,
        conn: conn.clone(),
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A backstop only: the janitor applies the header and idle timeouts themselves.
        .header_read_timeout(limits.header_timeout + limits.idle_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        tokio::select! {
            biased;
            r = connection.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = conn.wake.notified(), if !graceful => {
                if conn.drop_now.load(Ordering::SeqCst) {
                    tracing::debug!(%peer, "request head not complete in time: dropped");
                    return;
                }
                connection.as_mut().graceful_shutdown();
                graceful = true;
            }
            () = stop.wait(), if !graceful => {
                connection.as_mut().graceful_shutdown();
                graceful = true;
            }
        }
        if graceful {
            // Finish what is in progress (an SSE stream ends on the same stop signal).
            match tokio::time::timeout(CLOSE_GRACE, connection.as_mut()).await {
                Ok(_) => return,
                Err(_) if stop.is_set() => {
                    // Draining: keep waiting; `serve` bounds the drain as a whole.
                    let _ = connection.as_mut().await;
                    return;
                }
                Err(_) if conn.is_idle() => return,
                Err(_) => {
                    let _ = connection.as_mut().await;
                    return;
                }
            }
        }
    }
}
