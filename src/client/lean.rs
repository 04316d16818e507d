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
use std::io;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
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

/// One HTTP/1.1 connection and its reused buffers.
struct Link {
    stream: TcpStream,
    /// The request being written.
    out: Vec<u8>,
    /// The answer being read.
    input: Vec<u8>,
}

impl Link {
    /// Whether an idle connection can take a request: the server has neither closed it
    /// nor sent anything unasked. Costs no system call unless the runtime saw the socket
    /// become readable.
    fn still_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
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
fn broken(before_answer: bool, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> LeanError {
    LeanError::Transport {
        before_answer,
        source: source.into(),
    }
}

/// An answer that is not valid HTTP/1.1.
fn malformed(what: &str) -> LeanError {
    broken(
        false,
        io::Error::new(io::ErrorKind::InvalidData, format!("invalid HTTP answer: {what}")),
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
        match tokio::time::timeout(timeout, self.exchange(&request, all_headers)).await {
            Ok(answer) => answer,
            // The link in use is dropped with the exchange: it is mid-request.
            Err(_) => Err(LeanError::Timeout),
        }
    }

    async fn exchange(&self, request: &Request<'_>, all_headers: bool) -> Result<Answer, LeanError> {
        let mut link = self.checkout().await?;
        link.out.clear();
        self.encode(request, &mut link.out);
        if let Err(e) = link.stream.write_all(&link.out).await {
            // Not a byte of an answer can have come.
            return Err(broken(true, e));
        }
        let head_only = *request.method == Method::HEAD;
        let (answer, reusable) = read_answer(&mut link, head_only, all_headers).await?;
        if reusable {
            self.checkin(link);
        }
        Ok(answer)
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

    /// An idle connection of this thread that is still open, else a new one.
    async fn checkout(&self) -> Result<Link, LeanError> {
        let idle = &self.idle[shard()];
        loop {
            let Some(link) = idle.lock().pop() else {
                break;
            };
            if link.still_open() {
                return Ok(link);
            }
        }
        // Boxed: connecting is rare, and its future (resolution, connect) would otherwise
        // be part of every request's state machine, copied at every await.
        Box::pin(self.connect()).await
    }

    /// A new connection to the pool's address.
    async fn connect(&self) -> Result<Link, LeanError> {
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
            && h
                .value
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
async fn fill(stream: &mut TcpStream, input: &mut Vec<u8>) -> io::Result<bool> {
    input.reserve(READ_ROOM);
    Ok(stream.read_buf(input).await? > 0)
}

/// Reads one whole answer from `link` (skipping interim `1xx` answers); returns it and
/// whether the connection can take another request.
async fn read_answer(
    link: &mut Link,
    head_only: bool,
    all_headers: bool,
) -> Result<(Answer, bool), LeanError> {
    let Link { stream, input, .. } = link;
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
            let end = start.checked_add(n).ok_or_else(|| malformed("content-length too large"))?;
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
async fn read_chunked(
    stream: &mut TcpStream,
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
                    Some(line) => pos += line + 2,
                    None if input.len() - pos > MAX_HEAD => return Err(malformed("trailers too long")),
                    None => more(stream, input).await?,
                }
            }
        }
        let size = usize::try_from(size).map_err(|_| malformed("chunk too large"))?;
        let data = pos + size_len;
        let end = data.checked_add(size).and_then(|e| e.checked_add(2)).ok_or_else(|| malformed("chunk too large"))?;
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
async fn more(stream: &mut TcpStream, input: &mut Vec<u8>) -> Result<(), LeanError> {
    match fill(stream, input).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(malformed("the connection closed mid-body")),
        Err(e) => Err(broken(false, e)),
    }
}
