//! The cached OAuth2 token. Reads take a short synchronous lock and clone an `Arc`; one
//! refresh runs at a time, so a thousand phones whose token expired fetch one new token.

use super::transcript::{self, Exchange, Transcript};
use super::{ClientError, Credentials, Marks, transport_error};
use crate::api::{RemoteError, TokenResponse};
use http::HeaderValue;
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use url::Url;

/// Refresh this long before the server says the token expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Assumed lifetime when the server does not say.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(300);

/// One fetched token, ready to put in a header.
pub(crate) struct Token {
    header: HeaderValue,
    generation: u64,
    refresh_at: Instant,
    /// The lifetime the server stated (`expires_in`), `None` when it did not say.
    stated: Option<Duration>,
}

impl Token {
    pub(crate) fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// The lifetime the server stated, `None` when it did not say.
    pub(crate) fn stated_lifetime(&self) -> Option<Duration> {
        self.stated
    }
}

/// Why a token answer did not parse, without quoting it: serde's "invalid type: integer
/// `123`" or "unknown variant" messages repeat the offending value, which may be the token.
fn token_decode_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") {
        return text;
    }
    format!(
        "not the documented token JSON {{\"access_token\": \"...\", \"token_type\": \"bearer\", \"expires_in\": N}} (line {}, column {})",
        e.line(),
        e.column()
    )
}

/// A token request that failed, with the server's `Retry-After` when it refused.
pub(crate) struct TokenFailure {
    /// What went wrong, as the caller reports it.
    pub(crate) error: ClientError,
    /// The refusal's `Retry-After`, as sent.
    pub(crate) retry_after: Option<String>,
}

impl From<ClientError> for TokenFailure {
    fn from(error: ClientError) -> TokenFailure {
        TokenFailure {
            error,
            retry_after: None,
        }
    }
}

pub(crate) struct TokenCache {
    url: Url,
    credentials: Credentials,
    current: RwLock<Option<Arc<Token>>>,
    refresh: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl TokenCache {
    pub(crate) fn new(url: Url, credentials: Credentials) -> TokenCache {
        TokenCache {
            url,
            credentials,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// A cache of its own for the same token URL and credentials, starting with the token
    /// this one holds: a client on another thread reads it without touching this one's lock
    /// (whose cache line would otherwise pass between cores on every request), and fetches
    /// the next one itself.
    pub(crate) fn seeded_copy(&self) -> TokenCache {
        let copy = TokenCache::new(self.url.clone(), self.credentials.clone());
        *copy.current.write() = self.current.read().clone();
        copy
    }

    pub(crate) fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The cached token if it is still good to use.
    pub(crate) fn fresh(&self) -> Option<Arc<Token>> {
        let guard = self.current.read();
        guard
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .cloned()
    }

    /// A valid token, fetched if none is cached or the cached one is about to expire;
    /// `retry` is which retry of the token request this is (for the transcript).
    pub(crate) async fn get(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        transcript: Option<&Transcript>,
        retry: u32,
    ) -> Result<Arc<Token>, TokenFailure> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let token = Arc::new(self.fetch(http, timeout, transcript, retry).await?);
        *self.current.write() = Some(token.clone());
        Ok(token)
    }

    /// Drops `used` if it is still the cached token (the server refused it).
    pub(crate) fn invalidate(&self, used: &Token) {
        let mut guard = self.current.write();
        if guard
            .as_ref()
            .is_some_and(|t| t.generation == used.generation)
        {
            *guard = None;
        }
    }

    pub(crate) fn clear(&self) {
        *self.current.write() = None;
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        transcript: Option<&Transcript>,
        retry: u32,
    ) -> Result<Token, TokenFailure> {
        let started = Instant::now();
        let url = self.url.as_str();
        let record = transcript.and_then(|t| t.claim().map(|seq| (t, seq)));
        let sent = http
            .post(url)
            .basic_auth(
                self.credentials.client_id(),
                Some(self.credentials.expose_secret()),
            )
            .header(http::header::ACCEPT, "application/json")
            .form(&[("grant_type", "client_credentials"), ("scope", "partners")])
            .send()
            .await;
        let answer = match sent {
            Ok(resp) => {
                let status = resp.status();
                let id = transcript::request_id(resp.headers());
                let marks = (!status.is_success()).then(|| Marks::of(resp.headers()));
                resp.bytes().await.map(|b| (status, id, marks, b))
            }
            Err(e) => Err(e),
        };
        if let Some((t, seq)) = record {
            let (status, request_id, response) = match &answer {
                Ok((s, id, _, b)) => (Some(s.as_u16()), id.clone(), transcript::redacted_body(b)),
                Err(_) => (None, None, None),
            };
            t.record(Exchange {
                seq,
                method: "POST".to_owned(),
                path: self.url.path().to_owned(),
                status,
                ms: started.elapsed().as_secs_f64() * 1e3,
                retry,
                request_id,
                // The form holds no secret (they travel in the Authorization header).
                request: None,
                response,
            });
        }
        let (status, _, marks, bytes) = answer.map_err(|e| transport_error(e, url, timeout))?;
        // A token URL may carry a query (some gateways take keys there): never show it.
        let request = || format!("POST {} (token)", super::strip_query(url));
        if let Some(marks) = marks {
            let mut remote = RemoteError::from_body(status.as_u16(), &bytes);
            remote.injected = marks.injected;
            return Err(TokenFailure {
                error: ClientError::Api {
                    request: request(),
                    remote: Box::new(remote),
                    retries: 0,
                },
                retry_after: marks.retry_after,
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
                request: request(),
                status: status.as_u16(),
                reason: token_decode_reason(&e),
            })?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(ClientError::Decode {
                request: request(),
                status: status.as_u16(),
                reason: format!("token_type is {:?}, expected bearer", parsed.token_type),
            }
            .into());
        }
        let mut header = HeaderValue::try_from(format!("Bearer {}", parsed.access_token.expose()))
            .map_err(|_| ClientError::Decode {
                request: request(),
                status: status.as_u16(),
                reason: "the access token holds characters not allowed in a header".into(),
            })?;
        header.set_sensitive(true);
        let stated = parsed.expires_in.map(Duration::from_secs);
        let lifetime = match stated {
            None | Some(Duration::ZERO) => UNKNOWN_LIFETIME,
            Some(s) => s,
        };
        let usable = lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 2));
        Ok(Token {
            header,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            refresh_at: started + usable,
            stated,
        })
    }
}
