//! The lean transport for plain `http://` targets (fleets): a few HTTP/1.1 connections kept
//! by the client, each used by one request at a time in the task that sends it.
//!
//! reqwest hands each request to a connection task through a channel and back through
//! another, so one request wakes three tasks (often on other threads) and pays reqwest's
//! own layers (URL parsing and conversion, default-header merging, a boxed future, a timer).
//! hyper's own connection, driven in the request's task, still passes each request through
//! a channel to its dispatcher, builds a header map for every request and answer, and
//! collects the body through a buffer list. Here the task that sends a request checks a
//! connection out of a small idle list, writes the request head and body from one reused
//! buffer in one write, reads the answer into another reused buffer and parses it with
//! `httparse` (the parser hyper uses), then puts the connection back: no channel, no task
//! hop, no header map unless the caller reads the headers. Answers are framed as
//! RFC 9112 says (`Content-Length`, chunked, or until the server closes); interim `1xx`
//! answers are skipped. Connections the server closed while idle are noticed at checkout
//! (the socket reads as ended) and replaced.
//!
//! HTTPS targets keep reqwest (TLS, HTTP/2); so does everything that is not an API call.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use parking_lot::Mutex;
use std::future::{Future as _, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use url::Url;

/// Most idle connections kept per shard; more are closed when put back.
const MAX_IDLE: usize = 512;

/// Idle connections are kept apart by thread (see [`shard`]).
const SHARDS: usize = 16;

/// This thread's shard of the idle lists. A connection is registered with the I/O driver
/// of the runtime that opened it; fleets run one single-threaded runtime per thread, so a
/// thread taking back its own connections keeps each request's wake-ups on its own core.
fn shard() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// How long connecting may take at most (as with the reqwest transport).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest answer head (status line and headers) read before giving up on it.
const MAX_HEAD: usize = 64 * 1024;

/// Most header lines in an answer head.
const MAX_HEADERS: usize = 64;

/// Free room each read offers at least: more than a whole small answer, so one read takes
/// it and a read shorter than the room tells the runtime the socket is drained (no second
/// read that fails with `EAGAIN`).
const READ_ROOM: usize = 16 * 1024;

/// Buffers grown beyond this by an unusually large request or answer are not kept.
const KEEP_BUFFER: usize = 64 * 1024;

/// One HTTP/1.1 connection, its reused buffers and its timer.
struct Link {
    stream: TcpStream,
    /// The request being written.
    out: Vec<u8>,
    /// The answer being read.
    input: Vec<u8>,
    /// The deadline of the request using the connection. Kept from request to request: a
    /// registered timer moved later is only marked (the runtime files it anew when its
    /// old time comes), where a timer per request took the timer wheel's lock to register
    /// and again to remove it.
    timer: Pin<Box<Sleep>>,
}

impl Link {
    /// Whether an idle connection can take a request: the server has neither closed it
    /// nor sent anything unasked. Costs no system call unless the runtime saw the socket
    /// become readable.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        // Unconstrained: with the task's budget spent, the readiness check would say
        // `Pending` whatever the socket's state, and a closed connection would pass.
        let readiness = tokio::task::unconstrained(poll_fn(|cx| self.stream.poll_read_ready(cx)));
        match pin!(readiness).poll(&mut cx) {
            Poll::Pending => true,
            // Also when the runtime that opened it is gone.
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }
}

/// Why a lean exchange failed.
#[derive(Debug)]
pub(crate) enum LeanError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The whole exchange took longer than the timeout.
    Timeout,
    /// The connection failed or closed mid-exchange, or the answer was not HTTP/1.1.
    Transport {
        /// Whether no byte of an answer arrived before the connection closed (so an
        /// idempotent request may be sent again).
        before_answer: bool,
        /// What failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl std::fmt::Display for LeanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeanError::Connect(e) => write!(f, "cannot connect: {e}"),
            LeanError::Timeout => f.write_str("timed out"),
            LeanError::Transport { source, .. } => write!(f, "{source}"),
        }
    }
}

impl std::error::Error for LeanError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LeanError::Connect(e) => Some(e),
            LeanError::Timeout => None,
            LeanError::Transport { source, .. } => Some(&**source),
        }
    }
}

/// A failure after the request went out, with whether any of the answer had arrived.
fn broken(
    before_answer: bool,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> LeanError {
    LeanError::Transport {
        before_answer,
        source: source.into(),
    }
}

/// An answer that is not valid HTTP/1.1.
fn malformed(what: &str) -> LeanError {
    broken(
        false,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("invalid HTTP answer: {what}"),
        ),
    )
}

/// An answer: status, headers (all of them when asked for or when the status is not a
/// success, else none) and the whole body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// The connections of one `http://host:port` target, and what every request to it carries.
pub(crate) struct LeanPool {
    /// `host:port` to connect to.
    addr: String,
    /// The base URL's path without its trailing slash (usually empty).
    prefix: String,
    host: HeaderValue,
    idle: [Mutex<Vec<Link>>; SHARDS],
}

const AGENT: &str = concat!("vphone/", env!("CARGO_PKG_VERSION"));

impl LeanPool {
    /// An empty pool for the same base URL whose connections go to `addr`.
    pub(crate) fn connecting_to(&self, addr: std::net::SocketAddr) -> LeanPool {
        LeanPool {
            addr: addr.to_string(),
            prefix: self.prefix.clone(),
            host: self.host.clone(),
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
        }
    }

    /// A pool for `base` when it is a plain `http://` URL with a host; `None` otherwise
    /// (HTTPS and anything unusual keep reqwest).
    pub(crate) fn for_base(base: &Url) -> Option<LeanPool> {
        if base.scheme() != "http" {
            return None;
        }
        let host = base.host_str()?;
        let port = base.port_or_known_default()?;
        // `host_str` keeps the brackets of an IPv6 literal, as both forms below need.
        let authority = match base.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let prefix = base.path().trim_end_matches('/').to_owned();
        if !valid_target(&prefix) {
            return None;
        }
        Some(LeanPool {
            addr: format!("{host}:{port}"),
            prefix,
            host: HeaderValue::try_from(authority).ok()?,
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
        })
    }

    /// Sends one request (`path` may carry a query) and reads the whole answer, within
    /// `timeout`; with `all_headers`, the answer keeps its headers even on success.
    pub(crate) async fn send(
        &self,
        method: &Method,
        path: &str,
        authorization: &HeaderValue,
        body: Option<&Bytes>,
        timeout: Duration,
        all_headers: bool,
    ) -> Result<Answer, LeanError> {
        if !path.starts_with('/') || !valid_target(path) {
            return Err(broken(
                true,
                io::Error::new(io::ErrorKind::InvalidInput, "invalid request path"),
            ));
        }
        let request = Request {
            method,
            path,
            authorization,
            body,
        };
        let deadline = Instant::now() + timeout;
        let mut link = match self.checkout() {
            Some(link) => link,
            // Boxed: connecting is rare, and its future (resolution, connect) would
            // otherwise be part of every request's state machine, copied at every await.
            None => match tokio::time::timeout_at(deadline, Box::pin(self.connect(deadline))).await
            {
                Ok(link) => link?,
                Err(_) => return Err(LeanError::Timeout),
            },
        };
        link.timer.as_mut().reset(deadline);
        let done = {
            let Link {
                stream,
                out,
                input,
                timer,
            } = &mut link;
            out.clear();
            self.encode(&request, out);
            let head_only = *method == Method::HEAD;
            let mut exchange = pin!(async {
                if let Err(e) = stream.write_all(out).await {
                    // Not a byte of an answer can have come.
                    return Err(broken(true, e));
                }
                read_answer(stream, input, head_only, all_headers).await
            });
            // The exchange first, then the deadline (as `tokio::time::timeout` does).
            poll_fn(|cx| {
                if let Poll::Ready(done) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(Some(done));
                }
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        match done {
            Some(Ok((answer, reusable))) => {
                if reusable {
                    self.checkin(link);
                }
                Ok(answer)
            }
            Some(Err(e)) => Err(e),
            // The link is dropped: it is mid-request.
            None => Err(LeanError::Timeout),
        }
    }

    /// Writes the request head and body into `out`.
    fn encode(&self, r: &Request<'_>, out: &mut Vec<u8>) {
        let body = r.body.map_or(&[][..], |b| &b[..]);
        out.reserve(256 + r.path.len() + r.authorization.len() + body.len());
        out.extend_from_slice(r.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(r.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\nuser-agent: ");
        out.extend_from_slice(AGENT.as_bytes());
        out.extend_from_slice(b"\r\nauthorization: ");
        out.extend_from_slice(r.authorization.as_bytes());
        out.extend_from_slice(b"\r\naccept: application/json\r\n");
        if r.body.is_some() {
            out.extend_from_slice(b"content-type: application/json\r\n");
        }
        // A body's length; and an explicit zero where the method usually carries one.
        if r.body.is_some() || [Method::POST, Method::PUT, Method::PATCH].contains(r.method) {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }

    /// An idle connection of this thread that is still open, if there is one.
    fn checkout(&self) -> Option<Link> {
        let idle = &self.idle[shard()];
        loop {
            let link = idle.lock().pop()?;
            if link.still_open() {
                return Some(link);
            }
        }
    }

    /// A new connection to the pool's address, its timer set to `deadline`.
    async fn connect(&self, deadline: Instant) -> Result<Link, LeanError> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
            .await
            .map_err(|_| {
                LeanError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                ))
            })?
            .map_err(LeanError::Connect)?;
        // Requests are small and answered at once: do not wait to coalesce them.
        let _ = stream.set_nodelay(true);
        Ok(Link {
            stream,
            out: Vec::new(),
            input: Vec::new(),
            timer: Box::pin(tokio::time::sleep_until(deadline)),
        })
    }

    fn checkin(&self, mut link: Link) {
        if link.out.capacity() > KEEP_BUFFER {
            link.out = Vec::new();
        }
        if link.input.capacity() > KEEP_BUFFER {
            link.input = Vec::new();
        }
        let mut idle = self.idle[shard()].lock();
        if idle.len() < MAX_IDLE {
            idle.push(link);
        }
    }
}

/// What one request sends.
struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    authorization: &'a HeaderValue,
    body: Option<&'a Bytes>,
}

/// Whether `s` may stand in a request line's target: visible ASCII only (no space, no
/// control character that could end the line or start another header).
fn valid_target(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// How an answer's body ends (RFC 9112, section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (a `HEAD` request, or a 204 or 304 answer).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Whatever comes until the server closes the connection.
    UntilClose,
}

/// A parsed answer head.
struct Head {
    /// Its length in bytes.
    len: usize,
    status: StatusCode,
    framing: Framing,
    /// Whether the connection may take another request after this answer.
    keep_alive: bool,
    headers: HeaderMap,
}

/// Parses an answer head at the start of `input`; `None` while it is incomplete.
fn parse_head(input: &[u8], head_only: bool, all_headers: bool) -> Result<Option<Head>, LeanError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut lines);
    let len = match answer.parse(input) {
        // The same limit whether the head came in one read or in many.
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            return Err(malformed("head too long"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD => {
            return Err(malformed("head too long"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(malformed(&e.to_string())),
    };
    let status = answer
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| malformed("status code"))?;
    let mut keep_alive = answer.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in answer.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| malformed("content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(malformed("conflicting content-length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the last coding applied.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
        {
            keep_alive = false;
        }
    }
    let framing = if head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        // A transfer coding overrides any length; a message framed both ways is not
        // trusted to leave the connection usable.
        if length.is_some() {
            keep_alive = false;
        }
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    let mut headers = HeaderMap::new();
    if all_headers || !status.is_success() {
        headers.reserve(answer.headers.len());
        for h in answer.headers.iter() {
            // Tolerant: a header that is not a valid name or value is left out.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(h.name.as_bytes()),
                HeaderValue::from_bytes(h.value),
            ) {
                headers.append(name, value);
            }
        }
    }
    Ok(Some(Head {
        len,
        status,
        framing,
        keep_alive,
        headers,
    }))
}

/// Reads more of the answer into `input`; `Ok(false)` at the end of the stream.
async fn fill<S: AsyncRead + Unpin>(stream: &mut S, input: &mut Vec<u8>) -> io::Result<bool> {
    input.reserve(READ_ROOM);
    Ok(stream.read_buf(input).await? > 0)
}

/// Reads one whole answer from `link` (skipping interim `1xx` answers); returns it and
/// whether the connection can take another request.
async fn read_answer<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut Vec<u8>,
    head_only: bool,
    all_headers: bool,
) -> Result<(Answer, bool), LeanError> {
    input.clear();
    // Whether any byte of an answer (an interim one included) has arrived.
    let mut received = false;
    let head = loop {
        match parse_head(input, head_only, all_headers)? {
            Some(head) if head.status == StatusCode::SWITCHING_PROTOCOLS => {
                return Err(malformed("101 Switching Protocols"));
            }
            Some(head) if head.status.is_informational() => {
                input.drain(..head.len);
            }
            Some(head) => break head,
            None => match fill(stream, input).await {
                Ok(true) => received = true,
                Ok(false) if received => return Err(malformed("the connection closed mid-head")),
                Ok(false) => {
                    return Err(broken(
                        true,
                        "the server closed the connection without an answer",
                    ));
                }
                Err(e) => return Err(broken(!received, e)),
            },
        }
    };
    let mut keep_alive = head.keep_alive;
    let start = head.len;
    let body = match head.framing {
        Framing::Empty => {
            keep_alive &= input.len() == start;
            Bytes::new()
        }
        Framing::Length(n) => {
            let n = usize::try_from(n).map_err(|_| malformed("content-length too large"))?;
            let end = start
                .checked_add(n)
                .ok_or_else(|| malformed("content-length too large"))?;
            while input.len() < end {
                if !fill(stream, input).await.map_err(|e| broken(false, e))? {
                    return Err(malformed("the connection closed mid-body"));
                }
            }
            // Bytes past the answer were not asked for: the connection is out of step.
            keep_alive &= input.len() == end;
            Bytes::copy_from_slice(&input[start..end])
        }
        Framing::Chunked => {
            let (body, end) = read_chunked(stream, input, start).await?;
            keep_alive &= input.len() == end;
            body
        }
        Framing::UntilClose => {
            while fill(stream, input).await.map_err(|e| broken(false, e))? {}
            Bytes::copy_from_slice(&input[start..])
        }
    };
    Ok((
        Answer {
            status: head.status,
            headers: head.headers,
            body,
        },
        keep_alive,
    ))
}

/// Decodes a chunked body that starts at `input[pos..]`, reading more as needed; returns
/// the body and where the message ended in `input`.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut Vec<u8>,
    mut pos: usize,
) -> Result<(Bytes, usize), LeanError> {
    let mut body = Vec::new();
    loop {
        let (size_len, size) = match httparse::parse_chunk_size(&input[pos..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => {
                more(stream, input).await?;
                continue;
            }
            Err(_) => return Err(malformed("chunk size")),
        };
        if size == 0 {
            pos += size_len;
            // Trailer lines, if any, up to an empty line.
            loop {
                match input[pos..].windows(2).position(|w| w == b"\r\n") {
                    Some(0) => return Ok((Bytes::from(body), pos + 2)),
                    // The same limit whether the line came in one read or in many.
                    Some(line) if line > MAX_HEAD => {
                        return Err(malformed("trailers too long"));
                    }
                    Some(line) => pos += line + 2,
                    None if input.len() - pos > MAX_HEAD => {
                        return Err(malformed("trailers too long"));
                    }
                    None => more(stream, input).await?,
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| malformed("chunk too large"))?;
        let data = pos + size_len;
        let end = data
            .checked_add(size)
            .and_then(|e| e.checked_add(2))
            .ok_or_else(|| malformed("chunk too large"))?;
        while input.len() < end {
            more(stream, input).await?;
        }
        if &input[end - 2..end] != b"\r\n" {
            return Err(malformed("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&input[data..end - 2]);
        pos = end;
    }
}

/// Reads more of a body that must go on.
async fn more<S: AsyncRead + Unpin>(stream: &mut S, input: &mut Vec<u8>) -> Result<(), LeanError> {
    match fill(stream, input).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(malformed("the connection closed mid-body")),
        Err(e) => Err(broken(false, e)),
    }
}

/// Reads at most `step` bytes per read from `data`: an answer arriving in pieces.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.step.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

/// Runs a future whose reads are always ready (an in-memory input) to its end.
fn run_ready<T>(work: impl std::future::Future<Output = T>) -> T {
    let mut work = pin!(work);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = work.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// The `lean_answer` fuzz target's body (see [`crate::fuzzing`]): the first byte chooses how
/// many bytes each read gives (1-64) and the second whether the request was a `HEAD` and
/// whether all headers are kept; the rest is what the server sent. The answer read in
/// pieces must be the one read whole: the same success or failure, status and body, and a
/// connection reusable after the whole read is reusable after the pieces. Panics when not.
pub(crate) fn fuzz_answer(data: &[u8]) {
    let [step, flags, rest @ ..] = data else {
        return;
    };
    let (head_only, all_headers) = (flags & 1 == 1, flags & 2 == 2);
    let read = |step: usize| {
        let mut input = Vec::new();
        let mut stream = Trickle { data: rest, step };
        run_ready(read_answer(&mut stream, &mut input, head_only, all_headers))
            .map(|(answer, keep_alive)| (answer.status, answer.body, keep_alive))
    };
    let whole = read(usize::MAX);
    let pieces = read(usize::from(step % 64) + 1);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => {
            assert_eq!(
                (a.0, &a.1),
                (b.0, &b.1),
                "the same answer read whole and in pieces"
            );
            // Bytes after the answer retire the connection when they are in the same read;
            // read in pieces they may come later (the idle check at checkout sees them).
            assert!(
                !a.2 || b.2,
                "reusable when read whole, not when read in pieces"
            );
            assert!(a.1.len() <= rest.len(), "a body longer than what was sent");
        }
        (Err(_), Err(_)) => {}
        _ => panic!(
            "read whole: {:?}; in pieces: {:?}",
            whole.as_ref().map(|a| a.0).map_err(ToString::to_string),
            pieces.as_ref().map(|a| a.0).map_err(ToString::to_string)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// What a scripted server saw: each request as raw text, and how many connections.
    #[derive(Default)]
    struct Seen {
        requests: Vec<String>,
        connections: usize,
    }

    /// A server on 127.0.0.1 answering the n-th request (over all connections) with
    /// `answers[n]`, raw; after an answer whose text holds `connection: close` or has no
    /// length, it closes the connection.
    async fn scripted(answers: Vec<&'static str>) -> (LeanPool, Arc<Mutex<Seen>>) {
        scripted_with(answers.into_iter().map(|a| (0, Some(a))).collect()).await
    }

    /// [`scripted`] with each answer sent after a pause of so many milliseconds, or never
    /// (`None`: the server holds the connection without answering until the client goes).
    async fn scripted_with(
        answers: Vec<(u64, Option<&'static str>)>,
    ) -> (LeanPool, Arc<Mutex<Seen>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            // Bounded: each test makes a few connections.
            for _ in 0..8 {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                log.lock().connections += 1;
                loop {
                    let Some(request) = read_request(&mut sock).await else {
                        break;
                    };
                    log.lock().requests.push(request);
                    let Some((pause, answer)) = answers.next() else {
                        return;
                    };
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                    let Some(answer) = answer else {
                        let mut rest = [0u8; 64];
                        while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
                        break;
                    };
                    sock.write_all(answer.as_bytes()).await.unwrap();
                    let lower = answer.to_ascii_lowercase();
                    if lower.contains("connection: close")
                        || !(lower.contains("content-length") || lower.contains("chunked"))
                    {
                        break;
                    }
                }
            }
        });
        (LeanPool::for_base(&base).unwrap(), seen)
    }

    /// One request, head and body (by its `content-length`), as text.
    async fn read_request(sock: &mut TcpStream) -> Option<String> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if sock.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            got.push(byte[0]);
        }
        let text = String::from_utf8(got.clone()).ok()?;
        let length = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map_or(0, |n| n.trim().parse::<usize>().unwrap());
        let mut body = vec![0u8; length];
        sock.read_exact(&mut body).await.ok()?;
        got.extend_from_slice(&body);
        String::from_utf8(got).ok()
    }

    fn auth() -> HeaderValue {
        HeaderValue::from_static("Bearer t")
    }

    async fn get(pool: &LeanPool, path: &str) -> Result<Answer, LeanError> {
        pool.send(
            &Method::GET,
            path,
            &auth(),
            None,
            Duration::from_secs(10),
            true,
        )
        .await
    }

    #[test]
    fn a_head_or_a_trailer_over_the_limit_fails_whether_it_came_whole_or_in_pieces() {
        let mut big_head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big_head.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        big_head.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
        let mut big_trailer =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Big: ".to_vec();
        big_trailer.extend(std::iter::repeat_n(b'b', MAX_HEAD));
        big_trailer.extend_from_slice(b"\r\n\r\n");
        for answer in [big_head, big_trailer] {
            let mut input = Vec::new();
            let read = run_ready(read_answer(
                &mut Trickle {
                    data: &answer,
                    step: usize::MAX,
                },
                &mut input,
                false,
                false,
            ));
            assert!(read.is_err(), "over the limit in one read");
            // In pieces too (the fuzz body panics when the two reads disagree).
            fuzz_answer(&[[63, 0].as_slice(), &answer].concat());
        }
    }

    #[tokio::test]
    async fn requests_are_written_whole_and_a_length_framed_answer_keeps_the_connection() {
        let (pool, seen) = scripted(vec![
            "HTTP/1.1 201 Created\r\ncontent-length: 7\r\nx-request-id: r1\r\n\r\n{\"a\":1}",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        let body = Bytes::from_static(b"{\"x\":2}");
        let a = pool
            .send(
                &Method::POST,
                "/v1/things?q=1",
                &auth(),
                Some(&body),
                Duration::from_secs(10),
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            (a.status, &a.body[..]),
            (StatusCode::CREATED, &b"{\"a\":1}"[..])
        );
        // A success's headers only when asked for.
        assert!(a.headers.is_empty());
        let a = pool
            .send(
                &Method::POST,
                "/v1/empty",
                &auth(),
                None,
                Duration::from_secs(10),
                true,
            )
            .await
            .unwrap();
        assert_eq!((a.status, a.body.len()), (StatusCode::OK, 0));
        let seen = seen.lock();
        assert_eq!(seen.connections, 1);
        let host = pool.host.to_str().unwrap().to_owned();
        assert_eq!(
            seen.requests,
            vec![
                format!(
                    "POST /v1/things?q=1 HTTP/1.1\r\nhost: {host}\r\nuser-agent: {AGENT}\r\nauthorization: Bearer t\r\naccept: application/json\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{{\"x\":2}}"
                ),
                format!(
                    "POST /v1/empty HTTP/1.1\r\nhost: {host}\r\nuser-agent: {AGENT}\r\nauthorization: Bearer t\r\naccept: application/json\r\ncontent-length: 0\r\n\r\n"
                ),
            ]
        );
    }

    #[tokio::test]
    async fn chunked_answers_and_interim_answers_are_read_whole() {
        let (pool, seen) = scripted(vec![
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-request-id: r2\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\ntrailer: t\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nRetry-After: 3\r\n\r\n{}",
        ])
        .await;
        let a = get(&pool, "/one").await.unwrap();
        assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"abcde"[..]));
        assert_eq!(a.headers["x-request-id"], "r2");
        // A failure's headers are kept even when not asked for.
        let a = pool
            .send(
                &Method::GET,
                "/two",
                &auth(),
                None,
                Duration::from_secs(10),
                false,
            )
            .await
            .unwrap();
        assert_eq!((a.status, &a.body[..]), (StatusCode::NOT_FOUND, &b"{}"[..]));
        assert_eq!(a.headers["retry-after"], "3");
        assert_eq!(seen.lock().connections, 1);
    }

    #[tokio::test]
    async fn a_closing_or_unframed_answer_is_read_and_its_connection_not_reused() {
        let (pool, seen) = scripted(vec![
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\n\r\nuntil the end",
            "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        ])
        .await;
        assert_eq!(&get(&pool, "/a").await.unwrap().body[..], b"ok");
        assert_eq!(&get(&pool, "/b").await.unwrap().body[..], b"until the end");
        assert_eq!(
            get(&pool, "/c").await.unwrap().status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(seen.lock().connections, 3);
    }

    #[tokio::test]
    async fn malformed_answers_fail_after_the_answer_began() {
        for answer in [
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nshort",
            "NOT HTTP\r\n\r\n",
        ] {
            let (pool, _) = scripted(vec![answer]).await;
            match get(&pool, "/x").await {
                Err(LeanError::Transport {
                    before_answer: false,
                    ..
                }) => {}
                Err(e) => panic!("{answer:?}: {e:?}"),
                Ok(a) => panic!("{answer:?}: answered {}", a.status),
            }
        }
    }

    #[tokio::test]
    async fn a_server_closing_without_a_word_fails_before_the_answer() {
        // The script has no answer: the server reads the request and closes.
        let (pool, seen) = scripted(vec![]).await;
        match get(&pool, "/x").await {
            Err(LeanError::Transport {
                before_answer: true,
                ..
            }) => {}
            other => panic!("{:?}", other.map(|a| a.status)),
        }
        assert_eq!(seen.lock().requests.len(), 1);
    }

    #[tokio::test]
    async fn a_path_that_would_break_the_request_line_is_not_sent() {
        let (pool, seen) = scripted(vec!["HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]).await;
        for path in ["/a b", "/a\r\nx-injected: 1", "no-slash", "/ü"] {
            assert!(
                matches!(
                    get(&pool, path).await,
                    Err(LeanError::Transport {
                        before_answer: true,
                        ..
                    })
                ),
                "{path:?}"
            );
        }
        assert_eq!(seen.lock().connections, 0);
    }

    #[tokio::test]
    async fn a_connection_s_timer_moves_with_each_request() {
        const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let script = vec![(0, Some(OK)), (400, Some(OK)), (0, Some(OK)), (0, None)];
        let (pool, seen) = scripted_with(script).await;
        let token = auth();
        let send = |timeout| pool.send(&Method::GET, "/t", &token, None, timeout, false);
        let long = Duration::from_secs(10);
        assert_eq!(&send(Duration::from_secs(1)).await.unwrap().body[..], b"ok");
        // The first request's deadline passes while the connection is idle.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // A slow answer within the next request's own deadline is read, on the same
        // connection; so is the next (its deadline later than the timer's).
        assert_eq!(&send(long).await.unwrap().body[..], b"ok");
        assert_eq!(&send(long).await.unwrap().body[..], b"ok");
        assert_eq!(seen.lock().connections, 1);
        // A request that gets no answer times out at its own, earlier deadline.
        assert!(matches!(
            send(Duration::from_millis(300)).await,
            Err(LeanError::Timeout)
        ));
        assert_eq!(seen.lock().requests.len(), 4);
    }
}
