//! The sandbox's HTTP server: its own accept loop around hyper, so that every connection has
//! deadlines and the number of connections is bounded. `axum::serve` sets no timer at all, so
//! a client that never finished its request held its connection (and a file descriptor) for
//! ever, and enough of them starved everyone else.
//!
//! - Each connection is in one [phase](Phase): *head* (accepted, or bytes of a request arrived,
//!   and the request head is not complete yet), *busy* (a request is being answered, until its
//!   answer's body has been handed to the socket whole: its request body is read under the
//!   body-read timeout, a long-poll waits at most its `wait_ms`, a `slow_body` answer trickles
//!   at the sandbox's pace), or *idle* (keep-alive, between requests). A head older than
//!   [`header_read_timeout`](super::SandboxConfig::header_read_timeout) or an idle phase older
//!   than [`idle_timeout`](super::SandboxConfig::idle_timeout) closes the connection. Time the
//!   sandbox spends producing an answer is never idle time. Hyper takes an ordinary body
//!   whole, so the wait for a client that does not read it is idle time; a trickled body is
//!   handed over whole after at most [`MAX_TRICKLE`](super::faults::MAX_TRICKLE).
//! - At most [`connection_cap`] connections are open. A new connection beyond the cap first
//!   closes the connection that has been waiting longest without a request in progress (head
//!   or idle), then waits for its slot; busy connections are never closed to make room, so
//!   established clients keep being answered. Until a slot frees, further connections wait
//!   in the listen backlog.
//! - Accept errors (`EMFILE` and friends) back off from 10 ms up to 1 s instead of spinning,
//!   and are counted in `/sandbox/stats` ([`ConnectionStats`]).
//!
//! Hyper parses the request line and headers itself and answers a few malformed requests
//! before any route sees them; those answers carry no body (see the README, section Sandbox).
//! [`check_head`] refuses the merely large ones below hyper's own limits, in the errors shape.

use super::error::ApiError;
use super::state::SandboxState;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dashmap::DashMap;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;
use tower::ServiceExt;

/// Longest request target (path and query) answered in the errors shape: 8 KiB.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most request headers answered in the errors shape: 100.
pub const MAX_HEADERS: usize = 100;
/// Largest total of header names and values answered in the errors shape: 16 KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Hyper's own limit on the header count, above which it answers a bare 431.
const HYPER_MAX_HEADERS: usize = 4 * MAX_HEADERS;
/// Hyper's read buffer limit: a request head larger than this gets hyper's bare 431. Also
/// bounds what one hostile connection can make the sandbox hold (hyper's default is ~400 KiB).
const HYPER_MAX_BUF: usize = 64 * 1024;
/// File descriptors kept for everything but connections: the listener, the runtime, log and
/// config files, plus one sixteenth of the limit.
const FD_RESERVE: u64 = 64;

/// What `/sandbox/stats` reports about connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionStats {
    /// Connections accepted so far.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// The cap on open connections (0 until the server runs).
    pub cap: u64,
    /// `accept` calls that failed (e.g. `EMFILE`); the loop backs off after each.
    pub accept_errors: u64,
    /// Connections closed because their request head did not arrive in time.
    pub header_timeouts: u64,
    /// Keep-alive connections closed after being idle too long.
    pub idle_timeouts: u64,
    /// Requests answered 408 because their body stalled.
    pub body_timeouts: u64,
    /// Waiting connections closed to make room for a new one at the cap.
    pub evicted: u64,
    /// Times a new connection found the cap reached.
    pub cap_reached: u64,
}

/// What every listener of one sandbox shares: the connection cap, and the registry the
/// connection to close at the cap is chosen from. So the cap holds for the sandbox however
/// many listeners serve it, and the connection made to give way is the sandbox's
/// longest-idle one, whichever listener accepted it.
pub(crate) struct ConnPool {
    cap: usize,
    permits: Arc<Semaphore>,
    /// Every open connection by id, with the id of the listener that accepted it.
    registry: DashMap<u64, (u64, Arc<Conn>)>,
    /// Ids of connections and listeners, one sequence for both.
    next_id: AtomicU64,
    /// The one clock every listener's connections note their times on, so the longest idle
    /// of them all can be told (set by the first listener to start).
    epoch: std::sync::OnceLock<Instant>,
}

impl ConnPool {
    /// A pool of `max_connections`, or of the default from the open-files limit.
    pub(crate) fn new(max_connections: Option<usize>) -> ConnPool {
        let cap = max_connections.unwrap_or_else(|| connection_cap(nofile_limit()));
        ConnPool {
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            registry: DashMap::new(),
            next_id: AtomicU64::new(0),
            epoch: std::sync::OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool")
            .field("cap", &self.cap)
            .field("open", &self.registry.len())
            .finish_non_exhaustive()
    }
}

/// The live counters behind [`ConnectionStats`].
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    accepted: AtomicU64,
    open: AtomicU64,
    accept_errors: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    evicted: AtomicU64,
    cap_reached: AtomicU64,
}

impl ConnCounters {
    /// A snapshot, with the cap of `pool` once a listener of it runs.
    pub(crate) fn snapshot(&self, pool: &ConnPool) -> ConnectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnectionStats {
            accepted: get(&self.accepted),
            open: get(&self.open),
            cap: pool.epoch.get().map_or(0, |_| pool.cap as u64),
            accept_errors: get(&self.accept_errors),
            header_timeouts: get(&self.header_timeouts),
            idle_timeouts: get(&self.idle_timeouts),
            body_timeouts: get(&self.body_timeouts),
            evicted: get(&self.evicted),
            cap_reached: get(&self.cap_reached),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force
/// (`None`: unlimited). Failing to raise it is not fatal: the old limit stays and is returned.
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return limit.maximum,
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
        }
    }
    limit.current
}

/// The soft `RLIMIT_NOFILE` in force now (`None`: unlimited).
pub fn nofile_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// The largest connection cap, derived or configured.
pub const MAX_CONNECTION_CAP: usize = 1_000_000;

/// The connection cap derived from an open-files limit: the limit minus 64 minus a sixteenth
/// of it, at least 1; an unlimited one gives [`MAX_CONNECTION_CAP`].
pub fn connection_cap(nofile: Option<u64>) -> usize {
    let max = MAX_CONNECTION_CAP as u64;
    let cap = match nofile {
        None => max,
        Some(n) => n.saturating_sub(FD_RESERVE + n / 16).clamp(1, max),
    };
    usize::try_from(cap).unwrap_or(MAX_CONNECTION_CAP)
}

/// Where a connection is in its life; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    Head = 0,
    Busy = 1,
    Idle = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Head,
            1 => Phase::Busy,
            _ => Phase::Idle,
        }
    }
}

/// Why a connection was closed by its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Header,
    Idle,
}

/// What the connection's timer should do: close it now, or look again at `recheck_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Close(Expired),
    RecheckAt(u64),
}

/// The deadline rule, as a plain function of times in microseconds since the server started.
/// A busy connection has no deadline; it is looked at again after the shorter timeout, the
/// earliest a deadline could fall once its request ends.
fn verdict(phase: Phase, since_us: u64, now_us: u64, header_us: u64, idle_us: u64) -> Verdict {
    let (deadline, why) = match phase {
        Phase::Head => (since_us.saturating_add(header_us), Expired::Header),
        Phase::Idle => (since_us.saturating_add(idle_us), Expired::Idle),
        Phase::Busy => return Verdict::RecheckAt(now_us.saturating_add(header_us.min(idle_us))),
    };
    if now_us >= deadline {
        Verdict::Close(why)
    } else {
        Verdict::RecheckAt(deadline)
    }
}

/// One open connection, shared by its task, its I/O wrapper, its service and the registry.
struct Conn {
    phase: AtomicU8,
    since_us: AtomicU64,
    close: Notify,
}

impl Conn {
    fn new(now_us: u64) -> Conn {
        Conn {
            phase: AtomicU8::new(Phase::Head as u8),
            since_us: AtomicU64::new(now_us),
            close: Notify::new(),
        }
    }

    fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    fn enter(&self, phase: Phase, now_us: u64) {
        self.since_us.store(now_us, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }
}

/// The body of an answer being written: once it has been handed over whole (or dropped
/// unwritten, with its connection), the connection turns idle, so the time the sandbox
/// takes to produce the body (a `slow_body` fault trickling it) is busy, not idle, time.
struct Answer {
    body: axum::body::Body,
    _idle_when_done: IdleWhenDone,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request body that fails with [`BodyTimedOut`] once no frame has come for `timeout`.
/// tower-http's `TimeoutBody` started a timer at the first poll after every frame; this one
/// starts it only when the body has to be waited for, which a small body sent with its head
/// never has to be, and reuses it for the next wait. Generic over the body it wraps only so
/// that a test can drive it with frames of its own.
struct BodyDeadline<B = hyper::body::Incoming> {
    body: B,
    timeout: Duration,
    /// Made at the first wait and kept for the next ones.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `sleep` runs for the current wait (a frame ends a wait).
    waiting: bool,
}

/// The body-read timeout ended a request body.
#[derive(Debug)]
pub(crate) struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body stopped arriving before the body-read timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

impl<B> BodyDeadline<B> {
    fn new(body: B, timeout: Duration) -> BodyDeadline<B> {
        BodyDeadline {
            body,
            timeout,
            sleep: None,
            waiting: false,
        }
    }
}

impl<B> hyper::body::Body for BodyDeadline<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        // The body first: what has arrived is taken even if its task ran late.
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let deadline = || tokio::time::Instant::now() + this.timeout;
        let sleep = match &mut this.sleep {
            Some(sleep) if this.waiting => sleep,
            Some(sleep) => {
                sleep.as_mut().reset(deadline());
                sleep
            }
            None => this
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline()))),
        };
        this.waiting = true;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Turns its connection idle when dropped, unless a later request has begun meanwhile.
struct IdleWhenDone {
    conn: Arc<Conn>,
    epoch: Instant,
    /// When this request made the connection busy.
    busy_since_us: u64,
}

impl Drop for IdleWhenDone {
    fn drop(&mut self) {
        let conn = &self.conn;
        if conn.phase() == Phase::Busy
            && conn.since_us.load(Ordering::Acquire) == self.busy_since_us
        {
            conn.enter(Phase::Idle, us_since(self.epoch));
        }
    }
}

/// Microseconds since `epoch` (fine enough to order connections that went idle in the same
/// millisecond).
fn us_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The TCP stream, noting when the first bytes of a request arrive on an idle connection.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.phase() == Phase::Idle {
            self.conn.enter(Phase::Head, us_since(self.epoch));
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// What every connection task shares.
struct Shared {
    app: Router,
    state: SandboxState,
    http: hyper::server::conn::http1::Builder,
    /// This listener's id in its [`ConnPool`]'s registry.
    listener: u64,
    epoch: Instant,
    header_us: u64,
    idle_us: u64,
    body_timeout: Duration,
    /// Set when the server stops: the connections it then asks to close are not evictions.
    stopping: AtomicBool,
}

/// A connection's place in the counts and the pool's registry, given back when its task ends,
/// finished or dropped (a runtime that ends drops its tasks unfinished).
struct Accepted {
    shared: Arc<Shared>,
    id: u64,
    /// Its place under the sandbox's cap.
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// Its place among this listener's connections, which the listener waits for to stop.
    _own: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Accepted {
    fn drop(&mut self) {
        let inner = &self.shared.state.0;
        inner.conn_pool.registry.remove(&self.id);
        inner.conn_counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `app` on `listener` until `stop` fires, then closes idle connections, lets busy ones
/// finish their request, and returns once every connection is gone.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    state: SandboxState,
    mut stop: oneshot::Receiver<()>,
) -> io::Result<()> {
    let config = state.config();
    let pool = &state.0.conn_pool;
    let cap = pool.cap;
    let counters = &state.0.conn_counters;
    // The first listener to start sets the pool's clock (from then on `/sandbox/stats` shows
    // the cap), and says the cap once for them all.
    let epoch = *pool.epoch.get_or_init(|| {
        tracing::info!(cap, "sandbox connection cap");
        Instant::now()
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF);
    let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let shared = Arc::new(Shared {
        app,
        http,
        listener: pool.next_id.fetch_add(1, Ordering::Relaxed) + 1,
        epoch,
        header_us: us(config.header_read_timeout),
        idle_us: us(config.idle_timeout),
        body_timeout: config.body_read_timeout,
        state: state.clone(),
        stopping: AtomicBool::new(false),
    });
    // This listener's connections, never more than the sandbox's: all of them back means
    // every connection it accepted has ended.
    let own = Arc::new(Semaphore::new(cap));
    let mut backoff = Duration::ZERO;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    backoff = Duration::ZERO;
                    stream
                }
                Err(e) => {
                    bump(&counters.accept_errors);
                    if is_per_connection(&e) {
                        continue;
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        _ = &mut stop => break,
                    }
                }
            },
            _ = &mut stop => break,
        };
        let permit = match pool.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                bump(&counters.cap_reached);
                evict_one(&pool.registry);
                tokio::select! {
                    permit = pool.permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        // The semaphore is never closed; stop serving rather than panic.
                        Err(_) => break,
                    },
                    _ = &mut stop => break,
                }
            }
        };
        let own_permit = own
            .clone()
            .try_acquire_owned()
            .expect("a listener holds fewer places than the sandbox gave out");
        let id = pool.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let conn = Arc::new(Conn::new(us_since(shared.epoch)));
        pool.registry.insert(id, (shared.listener, conn.clone()));
        bump(&counters.accepted);
        bump(&counters.open);
        let accepted = Accepted {
            shared: shared.clone(),
            id,
            _permit: permit,
            _own: own_permit,
        };
        tokio::spawn(async move {
            serve_connection(stream, conn, &accepted.shared).await;
            drop(accepted);
        });
    }
    drop(listener);
    shared.stopping.store(true, Ordering::Relaxed);
    for entry in pool.registry.iter() {
        let (listener, conn) = entry.value();
        if *listener == shared.listener {
            conn.close.notify_one();
        }
    }
    // Every place back means every connection task of this listener has ended.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = own.acquire_many(all).await;
    Ok(())
}

/// Errors that concern only the connection being accepted; the next accept can go ahead.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Asks the connection that has waited longest without a request in progress to close,
/// taking it out of `registry` first, so that another listener at the cap at the same time
/// picks another one (its place under the cap comes back when its task ends).
fn evict_one(registry: &DashMap<u64, (u64, Arc<Conn>)>) {
    let oldest = registry
        .iter()
        .filter(|c| c.value().1.phase() != Phase::Busy)
        .min_by_key(|c| (c.value().1.since_us.load(Ordering::Acquire), *c.key()))
        .map(|c| *c.key());
    if let Some((_, (_, conn))) = oldest.and_then(|id| registry.remove(&id)) {
        conn.close.notify_one();
    }
}

/// A fault rule's `drop_before` or `drop_after`: the connection closes without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by a fault rule")]
struct FaultDrop;

/// Serves one connection until the client closes it, it errs, a deadline passes, or it is
/// asked to close (eviction or shutdown).
async fn serve_connection(stream: TcpStream, conn: Arc<Conn>, shared: &Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(Tracked {
        io: stream,
        conn: conn.clone(),
        epoch: shared.epoch,
    });
    let service = {
        let shared = shared.clone();
        let conn = conn.clone();
        tower::service_fn(move |req: Request<hyper::body::Incoming>| {
            let shared = shared.clone();
            let conn = conn.clone();
            async move {
                let busy_since_us = us_since(shared.epoch);
                conn.enter(Phase::Busy, busy_since_us);
                let idle_when_done = IdleWhenDone {
                    conn,
                    epoch: shared.epoch,
                    busy_since_us,
                };
                let timeout = shared.body_timeout;
                let req = req.map(|body| axum::body::Body::new(BodyDeadline::new(body, timeout)));
                let mut response = match shared.app.clone().oneshot(req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                if response
                    .extensions()
                    .get::<super::faults::DropConnection>()
                    .is_some()
                {
                    // A fault rule asked for no answer: failing the service makes hyper
                    // close the connection without writing anything.
                    return Err(FaultDrop);
                }
                if response.status() == StatusCode::REQUEST_TIMEOUT {
                    // The rest of the body may still come; the connection cannot be reused.
                    bump(&shared.state.0.conn_counters.body_timeouts);
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, FaultDrop>(response.map(|body| Answer {
                    body,
                    _idle_when_done: idle_when_done,
                }))
            }
        })
    };
    let http = shared
        .http
        .serve_connection(io, hyper_util::service::TowerToHyperService::new(service));
    tokio::pin!(http);
    let counters = &shared.state.0.conn_counters;
    let mut closing = false;
    loop {
        let now = us_since(shared.epoch);
        let since = conn.since_us.load(Ordering::Acquire);
        let recheck = match verdict(conn.phase(), since, now, shared.header_us, shared.idle_us) {
            Verdict::Close(Expired::Header) => {
                bump(&counters.header_timeouts);
                return;
            }
            Verdict::Close(Expired::Idle) => {
                bump(&counters.idle_timeouts);
                return;
            }
            Verdict::RecheckAt(us) => shared.epoch + Duration::from_micros(us),
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(recheck) => {}
            () = conn.close.notified(), if !closing => {
                if conn.phase() != Phase::Busy {
                    if !shared.stopping.load(Ordering::Relaxed) {
                        bump(&counters.evicted);
                    }
                    return;
                }
                // Finish the request in progress, then close.
                http.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Refuses, in the errors shape, request targets and headers larger than the documented
/// limits (hyper's own, higher limits answer without a body).
pub(crate) async fn check_head<F, Fut>(req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            crate::api::ErrorCode::UriTooLong,
            "URI Too Long",
            format!("the request target has {uri_len} bytes; at most {MAX_URI_BYTES} are accepted"),
        )
        .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            crate::api::ErrorCode::RequestHeaderFieldsTooLarge,
            "Request Header Fields Too Large",
            format!(
                "the request has {} headers of {bytes} bytes; at most {MAX_HEADERS} headers of {MAX_HEADER_BYTES} bytes in all are accepted",
                headers.len()
            ),
        )
        .into_response();
    }
    next(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_or_an_idle_phase_closes_at_its_own_deadline() {
        assert_eq!(
            verdict(Phase::Head, 100, 150, 100, 1000),
            Verdict::RecheckAt(200)
        );
        assert_eq!(
            verdict(Phase::Head, 100, 200, 100, 1000),
            Verdict::Close(Expired::Header)
        );
        assert_eq!(
            verdict(Phase::Idle, 100, 200, 100, 1000),
            Verdict::RecheckAt(1100)
        );
        assert_eq!(
            verdict(Phase::Idle, 100, 1100, 100, 1000),
            Verdict::Close(Expired::Idle)
        );
    }

    #[test]
    fn a_busy_connection_has_no_deadline_and_is_looked_at_again_later() {
        assert_eq!(
            verdict(Phase::Busy, 0, 5000, 100, 1000),
            Verdict::RecheckAt(5100)
        );
    }

    /// A connection whose request `busy_since_us` is answered by a body guarded as the
    /// service guards it.
    fn busy(busy_since_us: u64) -> (Arc<Conn>, IdleWhenDone) {
        let conn = Arc::new(Conn::new(0));
        conn.enter(Phase::Busy, busy_since_us);
        let guard = IdleWhenDone {
            conn: conn.clone(),
            epoch: Instant::now(),
            busy_since_us,
        };
        (conn, guard)
    }

    #[test]
    fn the_connection_turns_idle_only_when_its_answer_is_done() {
        let (conn, guard) = busy(7);
        let answer = Answer {
            body: axum::body::Body::from("still being written"),
            _idle_when_done: guard,
        };
        assert_eq!(conn.phase(), Phase::Busy, "answered, body not yet written");
        drop(answer);
        assert_eq!(conn.phase(), Phase::Idle);
    }

    #[test]
    fn an_answer_done_after_the_next_request_began_leaves_that_request_busy() {
        let (conn, guard) = busy(7);
        conn.enter(Phase::Busy, 9);
        drop(guard);
        assert_eq!(conn.phase(), Phase::Busy);
    }

    type SentFrame = Result<Frame<Bytes>, std::convert::Infallible>;
    type SentBody =
        http_body_util::StreamBody<futures::channel::mpsc::UnboundedReceiver<SentFrame>>;

    /// A body whose frames the test sends, wrapped as the sandbox wraps request bodies.
    fn sent_body(
        timeout: Duration,
    ) -> (
        futures::channel::mpsc::UnboundedSender<SentFrame>,
        BodyDeadline<SentBody>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (
            tx,
            BodyDeadline::new(http_body_util::StreamBody::new(rx), timeout),
        )
    }

    fn frame(text: &'static str) -> SentFrame {
        Ok(Frame::data(Bytes::from_static(text.as_bytes())))
    }

    /// The data of the body's next frame, or its error.
    async fn next_data<B>(body: &mut B) -> Option<Result<Bytes, axum::BoxError>>
    where
        B: hyper::body::Body<Data = Bytes, Error = axum::BoxError> + Unpin,
    {
        use http_body_util::BodyExt as _;
        let frame = body.frame().await?;
        Some(frame.map(|f| f.into_data().unwrap_or_default()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_arrives_with_its_head_never_starts_a_timer() {
        let (tx, mut body) = sent_body(Duration::from_secs(10));
        tx.unbounded_send(frame("{\"a\":")).expect("open");
        tx.unbounded_send(frame("1}")).expect("open");
        drop(tx);
        assert_eq!(next_data(&mut body).await.unwrap().unwrap(), "{\"a\":");
        assert_eq!(next_data(&mut body).await.unwrap().unwrap(), "1}");
        assert!(next_data(&mut body).await.is_none(), "the body ends");
        assert!(body.sleep.is_none(), "no timer was made");
    }

    #[tokio::test(start_paused = true)]
    async fn each_frame_restarts_the_wait_so_a_slow_steady_body_is_read_whole() {
        let timeout = Duration::from_secs(10);
        let (tx, mut body) = sent_body(timeout);
        let started = Instant::now();
        let sender = tokio::spawn(async move {
            for piece in ["a", "b", "c", "d"] {
                // Each piece comes within the timeout of the one before; all four take longer
                // than one timeout.
                tokio::time::sleep(Duration::from_secs(6)).await;
                tx.unbounded_send(frame(piece)).expect("open");
            }
        });
        let mut got = Vec::new();
        while let Some(data) = next_data(&mut body).await {
            got.push(data.expect("no timeout between frames 6 s apart"));
            if got.len() == 4 {
                break;
            }
        }
        assert_eq!(got, ["a", "b", "c", "d"]);
        assert!(started.elapsed() >= Duration::from_secs(24));
        sender.await.expect("sender");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_fails_with_body_timed_out_after_the_timeout() {
        let timeout = Duration::from_secs(10);
        let (tx, mut body) = sent_body(timeout);
        tx.unbounded_send(frame("first")).expect("open");
        assert_eq!(next_data(&mut body).await.unwrap().unwrap(), "first");
        let waited_from = Instant::now();
        let failure = next_data(&mut body)
            .await
            .expect("an error, not the end")
            .expect_err("the stalled body fails");
        assert!(failure.is::<BodyTimedOut>(), "{failure}");
        assert!(waited_from.elapsed() >= timeout);
        // The sender is still open: the body stalled, it did not end.
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_that_arrived_is_taken_even_when_its_wait_ran_past_the_deadline() {
        let timeout = Duration::from_secs(10);
        let (tx, mut body) = sent_body(timeout);
        // The first poll finds nothing and starts the timer.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let first = hyper::body::Body::poll_frame(Pin::new(&mut body), &mut cx);
        assert!(first.is_pending(), "nothing has arrived yet");
        assert!(body.sleep.is_some(), "the wait started a timer");
        // The frame arrives, but the task is polled again only after the deadline.
        tx.unbounded_send(frame("late")).expect("open");
        tokio::time::advance(timeout * 2).await;
        assert_eq!(next_data(&mut body).await.unwrap().unwrap(), "late");
    }

    #[test]
    fn the_cap_leaves_room_for_other_files() {
        assert_eq!(connection_cap(Some(1024)), 1024 - 64 - 64);
        assert_eq!(connection_cap(Some(65536)), 65536 - 64 - 4096);
        assert_eq!(connection_cap(Some(10)), 1);
        assert_eq!(connection_cap(None), 1_000_000);
    }
}
