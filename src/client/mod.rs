//! The typed HTTP client of the device-management API: OAuth2 client credentials with a
//! cached token (refreshed on expiry and once on 401), both error shapes read into one
//! [`ClientError`], request timeouts, and one shared connection pool.
//!
//! [`ApiClient`] is cheap to clone (an `Arc` inside); a fleet of phones shares one.

mod calls;
mod credentials;
mod error;
pub(crate) mod lean;
pub mod retry;
mod token;
pub mod transcript;

pub use credentials::{
    CLIENT_ID_ENV, CLIENT_SECRET_ENV, CREDENTIALS_FILE_ENV, Credentials, CredentialsError,
    SANDBOX_CLIENT_ID,
};
pub use error::{ClientError, Hint, NotFound, hint};
use retry::{Failure, Verdict};
pub use retry::{RetryPolicy, Sleeper, counting_retries, retries_in, retry_scope};
pub use transcript::{Exchange, Transcript};

use crate::api::RemoteError;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use token::{Token, TokenCache, TokenFailure};
use url::Url;

/// The `service` a vphone sandbox names in `GET /sandbox/health` (kept equal to the
/// sandbox's own constant by a test).
pub const VPHONE_SANDBOX_SERVICE: &str = "vphone-sandbox";

/// The default time one request may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A well-known server to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A vphone sandbox (or any server) serving the token route and `/v1` on one address.
    Local(Url),
    /// Solaris' public sandbox.
    SolarisSandbox,
    /// Solaris' production API.
    SolarisProduction,
}

impl Target {
    /// The API base URL.
    pub fn base_url(&self) -> Url {
        match self {
            Target::Local(url) => url.clone(),
            Target::SolarisSandbox => fixed_url("https://api.solaris-sandbox.de"),
            Target::SolarisProduction => fixed_url("https://api.solarisbank.de"),
        }
    }

    /// The OAuth2 token URL.
    pub fn token_url(&self) -> Url {
        match self {
            Target::Local(url) => join(url, "/oauth2/token"),
            Target::SolarisSandbox => fixed_url("https://auth.solaris-sandbox.de/oauth2/token"),
            Target::SolarisProduction => fixed_url("https://auth.solarisbank.de/oauth2/token"),
        }
    }

    /// The target whose API base URL is `base` (a well-known host, else a local server), e.g.
    /// to reconnect a saved phone to the server it was set up against.
    pub fn from_base_url(base: &str) -> Result<Target, url::ParseError> {
        let url = Url::parse(base)?;
        for known in [Target::SolarisSandbox, Target::SolarisProduction] {
            if known.base_url() == url {
                return Ok(known);
            }
        }
        Ok(Target::Local(url))
    }

    /// Whether this is a local server (which may use the sandbox's default credentials).
    pub fn is_local(&self) -> bool {
        matches!(self, Target::Local(_))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Local(url) => write!(f, "{}", url.as_str().trim_end_matches('/')),
            Target::SolarisSandbox => f.write_str("solaris-sandbox"),
            Target::SolarisProduction => f.write_str("solaris-production"),
        }
    }
}

fn fixed_url(s: &str) -> Url {
    // The literals above are valid URLs; a failure here is a typo caught by the unit tests.
    Url::parse(s).unwrap_or_else(|_| unreachable!("constant URL {s} parses"))
}

fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url
}

/// Everything an [`ApiClient`] needs.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Where `/v1/...` lives, e.g. `http://127.0.0.1:8080`.
    pub base_url: Url,
    /// The OAuth2 token endpoint.
    pub token_url: Url,
    /// The partner's client id and secret.
    pub credentials: Credentials,
    /// How long one request may take.
    pub timeout: Duration,
    /// Where exchanges are recorded, if anywhere.
    pub transcript: Option<Arc<Transcript>>,
    /// Which failed requests are sent again ([`RetryPolicy::default`] unless changed).
    pub retry: RetryPolicy,
    /// API calls to a plain `http://` base go over the lean HTTP/1.1 transport (see
    /// [`ClientConfig::with_lean_http`]).
    pub lean_http: bool,
}

impl ClientConfig {
    /// A config for a target with the default timeout.
    pub fn new(target: &Target, credentials: Credentials) -> ClientConfig {
        ClientConfig {
            base_url: target.base_url(),
            token_url: target.token_url(),
            credentials,
            timeout: DEFAULT_TIMEOUT,
            transcript: None,
            retry: RetryPolicy::default(),
            lean_http: false,
        }
    }

    /// A config for a local server at `base_url` (token at `base_url/oauth2/token`).
    pub fn local(base_url: Url, credentials: Credentials) -> ClientConfig {
        ClientConfig::new(&Target::Local(base_url), credentials)
    }

    /// The same config with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> ClientConfig {
        self.timeout = timeout;
        self
    }

    /// The same config, sending API calls to a plain `http://` base over the lean
    /// transport when `lean` is true: a few HTTP/1.1 connections, each driven by the task
    /// that uses it, with prebuilt headers (what fleets use: about a third less client CPU
    /// per request than reqwest). HTTPS bases, the token request and the sandbox's SMS
    /// outbox keep reqwest either way; answers, errors, retries and transcripts are the same.
    pub fn with_lean_http(mut self, lean: bool) -> ClientConfig {
        self.lean_http = lean;
        self
    }

    /// The same config with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> ClientConfig {
        self.retry = retry;
        self
    }

    /// The same config, recording every exchange in `transcript`.
    pub fn with_transcript(mut self, transcript: Option<Arc<Transcript>>) -> ClientConfig {
        self.transcript = transcript;
        self
    }
}

/// The typed client. Clone it freely: clones share the connection pool and the token.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// The base URL without a trailing slash, so `base + "/v1/..."` is the request URL.
    base: String,
    token: Arc<TokenCache>,
    timeout: Duration,
    transcript: Option<Arc<Transcript>>,
    retry: RetryPolicy,
    /// The lean transport, when asked for and the base is plain HTTP.
    lean: Option<lean::LeanPool>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("base", &self.inner.base)
            .field("token_url", &strip_query(self.inner.token.url()))
            .finish_non_exhaustive()
    }
}

/// How a call wants the success body.
enum Want {
    /// Any 2xx, body ignored.
    Nothing,
    /// A JSON body is required.
    Json,
}

impl ApiClient {
    /// Builds a client with its own connection pool.
    pub fn new(config: ClientConfig) -> Result<ApiClient, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!("vphone/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        ApiClient::with_http(config, http)
    }

    /// Builds a client on an existing `reqwest::Client` (to share its pool).
    pub fn with_http(
        config: ClientConfig,
        http: reqwest::Client,
    ) -> Result<ApiClient, ClientError> {
        for (what, url) in [("base", &config.base_url), ("token", &config.token_url)] {
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ClientError::Config(format!(
                    "the {what} URL {url} must start with http:// or https://"
                )));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(ClientError::Config(format!(
                    "the {what} URL must not carry credentials; use {CLIENT_ID_ENV}/{CLIENT_SECRET_ENV}"
                )));
            }
        }
        let mut base = config.base_url.clone();
        base.set_query(None);
        base.set_fragment(None);
        let lean = if config.lean_http {
            lean::LeanPool::for_base(&base)
        } else {
            None
        };
        let base = base.as_str().trim_end_matches('/').to_owned();
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                base,
                token: Arc::new(TokenCache::new(config.token_url, config.credentials)),
                timeout: config.timeout,
                transcript: config.transcript,
                retry: config.retry,
                lean,
            }),
        })
    }

    /// A client like this one whose lean transport connects to `addr` instead of the base
    /// URL's host and port: the same base URL and `Host` header, retry policy and
    /// transcript, the token this one holds (in a cache of its own, which fetches the next
    /// token itself), and a connection pool of its own. For one API served on several
    /// listeners: the fleet gives each of its threads the in-process sandbox on a listener
    /// of its own, and each thread's client then shares nothing it writes per request with
    /// the others. `None` without the lean transport, where reqwest connects to where the
    /// URL says.
    pub fn connecting_to(&self, addr: std::net::SocketAddr) -> Option<ApiClient> {
        let inner = &self.inner;
        let lean = inner.lean.as_ref()?.connecting_to(addr);
        Some(ApiClient {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                base: inner.base.clone(),
                token: Arc::new(inner.token.seeded_copy()),
                timeout: inner.timeout,
                transcript: inner.transcript.clone(),
                retry: inner.retry.clone(),
                lean: Some(lean),
            }),
        })
    }

    /// The API base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The retry policy every call follows.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    /// The underlying HTTP client (its pool is shared).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// Fetches a token now if none is cached; returns how long the server said the token
    /// lives (`expires_in`), `None` when it did not say.
    /// A refused or failed token request is retried under the client's retry policy, as
    /// any token fetch is.
    pub async fn authenticate(&self) -> Result<Option<Duration>, ClientError> {
        Ok(self.token().await?.stated_lifetime())
    }

    /// The cached token, or a new one fetched under the retry policy. A token grant changes
    /// nothing at the bank, so its failures are judged as an idempotent call's, under the
    /// same rules as any other (a `Retry-After` included); its retries are its own, not
    /// those of the request that needed it.
    async fn token(&self) -> Result<Arc<Token>, ClientError> {
        let inner = &*self.inner;
        let transcript = inner.transcript.as_deref();
        let mut retries = 0;
        loop {
            let failed = match inner
                .token
                .get(&inner.http, inner.timeout, transcript, retries)
                .await
            {
                Ok(token) => return Ok(token),
                Err(failed) => failed,
            };
            let TokenFailure {
                mut error,
                retry_after,
            } = failed;
            let failure = match &error {
                ClientError::Api { remote, .. } => Failure::Status {
                    status: remote.status,
                    retry_after: retry_after.as_deref(),
                },
                ClientError::Unreachable { .. } => Failure::NotSent,
                ClientError::Transport { .. } => Failure::Unanswered,
                _ => return Err(error),
            };
            if self.wait_to_retry(&Method::GET, failure, retries).await {
                retries += 1;
                continue;
            }
            if let ClientError::Api { retries: made, .. } = &mut error {
                *made = retries;
            }
            return Err(error);
        }
    }

    /// Whether the server answers `GET /sandbox/health` as a vphone sandbox (`service:
    /// "vphone-sandbox"`), i.e. whether its SMS outbox can be read. Any failure is "no".
    pub async fn is_vphone_sandbox(&self) -> bool {
        let answer = self
            .inner
            .http
            .get(self.url("/sandbox/health"))
            .timeout(self.inner.timeout.min(Duration::from_secs(5)))
            .send()
            .await;
        let Ok(resp) = answer else { return false };
        if !resp.status().is_success() {
            return false;
        }
        resp.json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["service"] == VPHONE_SANDBOX_SERVICE)
    }

    /// An authenticated `GET path` whose success body is read and dropped: one request on
    /// this client's transport, token look-up included (what benchmarks time as the bare
    /// cost of a request, e.g. on `/sandbox/health`).
    pub async fn get_discard(&self, path: &str) -> Result<(), ClientError> {
        self.call_unit(Method::GET, path, None::<&()>).await
    }

    /// Forgets the cached token, so the next call fetches a new one.
    pub fn forget_token(&self) {
        self.inner.token.clear();
    }

    pub(crate) fn url(&self, path: &str) -> String {
        let mut url = String::with_capacity(self.inner.base.len() + path.len());
        url.push_str(&self.inner.base);
        url.push_str(path);
        url
    }

    /// Sends an authenticated request and decodes a JSON success body.
    pub(crate) async fn call<B, R>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R, ClientError>
    where
        B: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (status, bytes) = self
            .exchange(method.clone(), path, body, Want::Json)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            request: format!("{method} {}", strip_query(path)),
            status: status.as_u16(),
            reason: e.to_string(),
        })
    }

    /// Sends an authenticated request whose success body does not matter.
    pub(crate) async fn call_unit<B>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<(), ClientError>
    where
        B: Serialize + ?Sized,
    {
        self.exchange(method, path, body, Want::Nothing).await?;
        Ok(())
    }

    async fn exchange<B>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        want: Want,
    ) -> Result<(StatusCode, Bytes), ClientError>
    where
        B: Serialize + ?Sized,
    {
        // Serialized once so a retry after a token refresh sends the same bytes.
        let body = match body {
            Some(b) => Some(Bytes::from(serde_json::to_vec(b).map_err(|e| {
                ClientError::Config(format!("cannot encode the request body: {e}"))
            })?)),
            None => None,
        };
        let inner = &*self.inner;
        let transcript = inner.transcript.as_deref();
        let mut refreshed = false;
        let mut retries = 0;
        loop {
            // The cached token without awaiting; fetching one is boxed, so its future is
            // not part of every request's state machine (copied at each await).
            let token = match inner.token.fresh() {
                Some(token) => token,
                None => Box::pin(self.token()).await?,
            };
            let record = transcript.and_then(|t| t.claim().map(|seq| (t, seq, Instant::now())));
            // Boxed: the exchange's state machine (hyper's request and answer, the timer)
            // is a few KiB; inline, every caller's future would hold it and copy it whole
            // at each await up the chain (a fleet step nests about ten).
            let answer = Box::pin(self.send_once(
                &method,
                path,
                token.header(),
                body.as_ref(),
                record.is_some(),
            ))
            .await;
            if let Some((t, seq, started)) = record {
                let (status, request_id, response) = match &answer {
                    Ok((status, id, _, bytes)) => (
                        Some(status.as_u16()),
                        id.clone(),
                        transcript::redacted_body(bytes),
                    ),
                    Err(_) => (None, None, None),
                };
                t.record(Exchange {
                    seq,
                    method: method.as_str().to_owned(),
                    path: strip_query(path).to_owned(),
                    status,
                    ms: started.elapsed().as_secs_f64() * 1e3,
                    retry: retries,
                    request_id,
                    request: body.as_deref().and_then(transcript::redacted_body),
                    response,
                });
            }
            let (status, marks, bytes) = match answer {
                Ok((status, _, marks, bytes)) => (status, marks.unwrap_or_default(), bytes),
                Err(failed) => {
                    let Some(failure) = failed.failure else {
                        return Err(failed.error);
                    };
                    if self.wait_to_retry(&method, failure, retries).await {
                        retries += 1;
                        continue;
                    }
                    return Err(failed.error);
                }
            };
            if status.is_success() {
                if matches!(want, Want::Json) && bytes.iter().all(u8::is_ascii_whitespace) {
                    return Err(ClientError::Decode {
                        request: format!("{method} {}", strip_query(path)),
                        status: status.as_u16(),
                        reason: "the body is empty, but this call needs one".to_owned(),
                    });
                }
                return Ok((status, bytes));
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // The token may have been revoked or the server restarted: refresh once.
                inner.token.invalidate(&token);
                refreshed = true;
                continue;
            }
            let failure = Failure::Status {
                status: status.as_u16(),
                retry_after: marks.retry_after.as_deref(),
            };
            if self.wait_to_retry(&method, failure, retries).await {
                retries += 1;
                continue;
            }
            let mut remote = RemoteError::from_body(status.as_u16(), &bytes);
            remote.injected = marks.injected;
            return Err(ClientError::Api {
                request: format!("{method} {}", strip_query(path)),
                remote: Box::new(remote),
                retries,
            });
        }
    }

    /// Whether the policy retries `failure` after `done` retries; if so, waits first and
    /// counts the retry (see [`counting_retries`]).
    async fn wait_to_retry(&self, method: &Method, failure: Failure<'_>, done: u32) -> bool {
        let policy = &self.inner.retry;
        let sleeper = policy.sleeper();
        match policy.verdict(method, failure, done, sleeper.now(), rand::random()) {
            Verdict::Retry(wait) => {
                if !wait.is_zero() {
                    sleeper.sleep(wait).await;
                }
                retry::note_retry();
                true
            }
            Verdict::GiveUp => false,
        }
    }
}

/// What an error answer's headers say beyond its body.
#[derive(Default)]
struct Marks {
    /// `Retry-After`, as sent.
    retry_after: Option<String>,
    /// A vphone sandbox's fault rule made the answer up ([`crate::api::INJECTED_FAULT_HEADER`]).
    injected: bool,
}

impl Marks {
    fn of(headers: &http::HeaderMap) -> Marks {
        Marks {
            retry_after: headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            injected: headers.contains_key(crate::api::INJECTED_FAULT_HEADER),
        }
    }
}

/// A request that got no answer.
struct SendFailure {
    /// How the retry policy sees it; `None` for a failure no retry can help.
    failure: Option<Failure<'static>>,
    error: ClientError,
}

impl ApiClient {
    /// Sends one request over the lean transport when the client has one, else reqwest;
    /// the answer's status, request id (when `want_id`), marks (of a failure status) and
    /// body.
    async fn send_once(
        &self,
        method: &Method,
        path: &str,
        authorization: &http::HeaderValue,
        body: Option<&Bytes>,
        want_id: bool,
    ) -> Result<(StatusCode, Option<String>, Option<Marks>, Bytes), SendFailure> {
        let inner = &*self.inner;
        if let Some(lean) = &inner.lean {
            return match lean
                .send(method, path, authorization, body, inner.timeout, want_id)
                .await
            {
                Ok(a) => {
                    let id = if want_id {
                        transcript::request_id(&a.headers)
                    } else {
                        None
                    };
                    let marks = (!a.status.is_success()).then(|| Marks::of(&a.headers));
                    Ok((a.status, id, marks, a.body))
                }
                Err(e) => Err(SendFailure {
                    failure: match &e {
                        lean::LeanError::Timeout => Some(Failure::TimedOut),
                        lean::LeanError::Connect(_) => Some(Failure::NotSent),
                        lean::LeanError::Transport {
                            before_answer: true,
                            ..
                        } => Some(Failure::Unanswered),
                        lean::LeanError::Transport { .. } => None,
                    },
                    error: lean_error(e, &self.url(path), inner.timeout),
                }),
            };
        }
        // Boxed: fleets never take this path, and its futures are large.
        Box::pin(self.send_reqwest(method, path, authorization, body, want_id)).await
    }

    /// [`ApiClient::send_once`] over reqwest.
    async fn send_reqwest(
        &self,
        method: &Method,
        path: &str,
        authorization: &http::HeaderValue,
        body: Option<&Bytes>,
        want_id: bool,
    ) -> Result<(StatusCode, Option<String>, Option<Marks>, Bytes), SendFailure> {
        let inner = &*self.inner;
        let url = self.url(path);
        let mut req = inner
            .http
            .request(method.clone(), &url)
            .header(http::header::AUTHORIZATION, authorization.clone())
            .header(http::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(b.clone());
        }
        let answer = match req.send().await {
            Ok(resp) => {
                let status = resp.status();
                let request_id = if want_id {
                    transcript::request_id(resp.headers())
                } else {
                    None
                };
                // Read only off the success path, where a retry or a report needs them.
                let marks = (!status.is_success()).then(|| Marks::of(resp.headers()));
                resp.bytes()
                    .await
                    .map(|bytes| (status, request_id, marks, bytes))
            }
            Err(e) => Err(e),
        };
        answer.map_err(|e| SendFailure {
            failure: if e.is_timeout() {
                Some(Failure::TimedOut)
            } else if e.is_connect() {
                Some(Failure::NotSent)
            } else if closed_before_answer(&e) {
                Some(Failure::Unanswered)
            } else {
                None
            },
            error: transport_error(e, &url, inner.timeout),
        })
    }
}

/// Maps a lean-transport failure to the same variants as [`transport_error`].
fn lean_error(e: lean::LeanError, url: &str, timeout: Duration) -> ClientError {
    let url = strip_query(url).to_owned();
    match e {
        lean::LeanError::Timeout => ClientError::Timeout {
            url,
            after: timeout,
        },
        lean::LeanError::Connect(io) => ClientError::Unreachable {
            url,
            source: Box::new(io),
        },
        lean::LeanError::Transport { source, .. } => ClientError::Transport { url, source },
    }
}

/// Whether the connection closed (or was reset) before any answer arrived, as happens when
/// a server drops an idle keep-alive connection just as the client reuses it.
fn closed_before_answer(e: &reqwest::Error) -> bool {
    if e.is_timeout() || e.is_connect() || e.is_status() {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

pub(crate) fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// Maps a transport failure to a variant that says what to do; the URL has no secrets.
pub(crate) fn transport_error(e: reqwest::Error, url: &str, timeout: Duration) -> ClientError {
    let url = strip_query(url).to_owned();
    if e.is_timeout() {
        ClientError::Timeout {
            url,
            after: timeout,
        }
    } else if e.is_connect() {
        ClientError::Unreachable {
            url,
            source: Box::new(e.without_url()),
        }
    } else {
        ClientError::Transport {
            url,
            source: Box::new(e.without_url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_point_at_the_documented_hosts() {
        let t = Target::SolarisSandbox;
        assert_eq!(t.base_url().as_str(), "https://api.solaris-sandbox.de/");
        assert_eq!(
            t.token_url().as_str(),
            "https://auth.solaris-sandbox.de/oauth2/token"
        );
        assert_eq!(
            Target::SolarisProduction.token_url().as_str(),
            "https://auth.solarisbank.de/oauth2/token"
        );
        let local = Target::Local(Url::parse("http://127.0.0.1:9/prefix/").unwrap());
        assert_eq!(
            local.token_url().as_str(),
            "http://127.0.0.1:9/prefix/oauth2/token"
        );
    }

    #[test]
    fn a_saved_base_url_maps_back_to_its_target() {
        let t = Target::from_base_url("https://api.solaris-sandbox.de").unwrap();
        assert_eq!(t, Target::SolarisSandbox);
        assert_eq!(t.token_url().host_str(), Some("auth.solaris-sandbox.de"));
        assert_eq!(
            Target::from_base_url("http://127.0.0.1:18181").unwrap(),
            Target::Local(Url::parse("http://127.0.0.1:18181").unwrap())
        );
    }

    #[test]
    fn request_urls_are_the_base_plus_the_path() {
        let config = ClientConfig::local(
            Url::parse("http://127.0.0.1:9/").unwrap(),
            Credentials::sandbox_default(),
        );
        let client = ApiClient::new(config).unwrap();
        assert_eq!(client.url("/v1/persons"), "http://127.0.0.1:9/v1/persons");
    }

    #[test]
    fn urls_with_credentials_in_them_are_refused() {
        let config = ClientConfig::local(
            Url::parse("http://user:pw@127.0.0.1:9/").unwrap(),
            Credentials::sandbox_default(),
        );
        let err = ApiClient::new(config).unwrap_err().to_string();
        assert!(!err.contains("pw"), "{err}");
    }
}
