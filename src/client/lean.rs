//! The lean transport for plain `http://` targets (fleets): a few HTTP/1.1 connections kept
//! by the client, each driven by the task that is using it.
//!
//! reqwest hands each request to a connection task through a channel and back through
//! another, so one request wakes three tasks (often on other threads) and pays reqwest's
//! own layers (URL parsing and conversion, default-header merging, a boxed future, a timer).
//! Here the task that sends a request checks a connection out of a small idle list, polls
//! hyper's HTTP/1 connection itself until the whole answer is read, and puts it back: one
//! task, no channel hop to another thread, headers prebuilt. Connections the server closed
//! while idle are noticed at checkout (hyper reads the end of stream) and replaced.
//!
//! HTTPS targets keep reqwest (TLS, HTTP/2); so does everything that is not an API call.

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;
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

/// hyper's HTTP/1 connection state machine, and whether it has ended (it must not be
/// polled again then).
struct Conn {
    inner: http1::Connection<TokioIo<TcpStream>, Full<Bytes>>,
    ended: bool,
}

/// One HTTP/1.1 connection: the handle requests go through and the connection state
/// machine the using task polls.
struct Link {
    sender: http1::SendRequest<Full<Bytes>>,
    conn: Conn,
}

/// Why a lean exchange failed.
#[derive(Debug)]
pub(crate) enum LeanError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The whole exchange took longer than the timeout.
    Timeout,
    /// The connection failed or closed mid-exchange.
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

/// An answer: status, headers and the whole body.
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

static ACCEPT_JSON: HeaderValue = HeaderValue::from_static("application/json");
static AGENT: HeaderValue = HeaderValue::from_static(concat!("vphone/", env!("CARGO_PKG_VERSION")));

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
        Some(LeanPool {
            addr: format!("{host}:{port}"),
            prefix: base.path().trim_end_matches('/').to_owned(),
            host: HeaderValue::try_from(authority).ok()?,
            idle: std::array::from_fn(|_| Mutex::new(Vec::new())),
        })
    }

    /// Sends one request (`path` may carry a query) and reads the whole answer, within
    /// `timeout`.
    pub(crate) async fn send(
        &self,
        method: &Method,
        path: &str,
        authorization: &HeaderValue,
        body: Option<&Bytes>,
        timeout: Duration,
    ) -> Result<Answer, LeanError> {
        let uri = if self.prefix.is_empty() {
            Uri::try_from(path)
        } else {
            Uri::try_from(format!("{}{path}", self.prefix))
        }
        .map_err(|e| LeanError::Transport {
            before_answer: true,
            source: Box::new(e),
        })?;
        let mut req = Request::new(Full::new(body.cloned().unwrap_or_default()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.reserve(5);
        headers.insert(HOST, self.host.clone());
        headers.insert(USER_AGENT, AGENT.clone());
        headers.insert(AUTHORIZATION, authorization.clone());
        headers.insert(ACCEPT, ACCEPT_JSON.clone());
        if body.is_some() {
            headers.insert(CONTENT_TYPE, ACCEPT_JSON.clone());
        }
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(answer) => answer,
            // The link in use is dropped with the exchange: it is mid-request.
            Err(_) => Err(LeanError::Timeout),
        }
    }

    async fn exchange(&self, req: Request<Full<Bytes>>) -> Result<Answer, LeanError> {
        let mut link = self.checkout().await?;
        let sent = link.sender.send_request(req);
        let response = match drive(&mut link.conn, sent).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(LeanError::Transport {
                    // Not even the request was taken, or the server closed without a word.
                    before_answer: e.is_incomplete_message() || e.is_canceled(),
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(e.into_error(true)),
        };
        let (parts, incoming) = response.into_parts();
        let body = match drive(&mut link.conn, incoming.collect()).await {
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e)) => {
                return Err(LeanError::Transport {
                    before_answer: false,
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(e.into_error(false)),
        };
        self.checkin(link);
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// An idle connection of this thread that is still open and ready for a request, else
    /// a new one.
    async fn checkout(&self) -> Result<Link, LeanError> {
        let idle = &self.idle[shard()];
        loop {
            let Some(mut link) = idle.lock().pop() else {
                break;
            };
            // Polling an idle connection reads whether the server closed it meanwhile (or
            // the runtime that opened it is gone).
            let sender = &mut link.sender;
            if let Ok(Ok(())) = drive(&mut link.conn, poll_fn(|cx| sender.poll_ready(cx))).await {
                return Ok(link);
            }
        }
        // Boxed: connecting is rare, and its future (resolution, connect, handshake) would
        // otherwise be part of every request's state machine, copied at every await.
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
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| LeanError::Connect(std::io::Error::other(e)))?;
        Ok(Link {
            sender,
            conn: Conn {
                inner: conn,
                ended: false,
            },
        })
    }

    fn checkin(&self, link: Link) {
        if link.conn.ended || link.sender.is_closed() {
            return;
        }
        let mut idle = self.idle[shard()].lock();
        if idle.len() < MAX_IDLE {
            idle.push(link);
        }
    }
}

/// The connection failed or ended while a request was using it.
enum Ended {
    Failed(hyper::Error),
    Closed,
}

impl Ended {
    fn into_error(self, before_answer: bool) -> LeanError {
        let source: Box<dyn std::error::Error + Send + Sync> = match self {
            Ended::Failed(e) => {
                let before = before_answer && e.is_incomplete_message();
                return LeanError::Transport {
                    before_answer: before,
                    source: Box::new(e),
                };
            }
            Ended::Closed => "the server closed the connection".into(),
        };
        LeanError::Transport {
            before_answer,
            source,
        }
    }
}

/// Runs `work` to completion while polling the connection `conn` (which does the reading
/// and writing `work` waits for), all in the calling task.
async fn drive<T>(conn: &mut Conn, work: impl Future<Output = T>) -> Result<T, Ended> {
    let mut work = pin!(work);
    poll_fn(|cx| {
        // Twice round: the connection's progress (request written, answer read) readies
        // `work`, and `work` asking for the body readies the connection.
        for _ in 0..2 {
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
            if conn.ended {
                return Poll::Ready(Err(Ended::Closed));
            }
            match conn.inner.poll_without_shutdown(cx) {
                Poll::Ready(Ok(())) => {
                    conn.ended = true;
                    return match work.as_mut().poll(cx) {
                        Poll::Ready(out) => Poll::Ready(Ok(out)),
                        Poll::Pending => Poll::Ready(Err(Ended::Closed)),
                    };
                }
                Poll::Ready(Err(e)) => {
                    conn.ended = true;
                    return Poll::Ready(Err(Ended::Failed(e)));
                }
                Poll::Pending => {}
            }
        }
        match work.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Ok(out)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
