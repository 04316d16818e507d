//! The client's retry policy: which failed requests are sent again, how often, and after how
//! long. The decision ([`RetryPolicy::verdict`]) is a plain function of the method, what went
//! wrong, how many retries were already made, the time and a jitter draw, so it is tested
//! without a server; the waiting goes through a [`Sleeper`], which tests replace.
//!
//! The rules (README, "Retries"):
//! - A request is retried only when sending it again cannot make the bank act twice:
//!   - `429` and `503` are refusals made before the bank acted: every method is retried;
//!   - the connection could not be opened (nothing was sent): every method is retried;
//!   - `502`, `504` and a connection closed before any answer may follow a bank that acted:
//!     only idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS) are retried; a POST or PATCH
//!     is returned to its caller, which reconciles by reading the bank's state (the phone's
//!     flows do: binding reads the device, `create` reads the person's number);
//!   - `500`, a timeout and every other answer are never retried.
//! - The wait before retry *n* (from 0) is the server's `Retry-After` (seconds or an HTTP
//!   date) when it sent one, else "full jitter": uniform in `[0, min(max_backoff, base·2ⁿ))`.
//!   A `Retry-After` longer than `max_retry_after` ends the retries: the server asked for
//!   more patience than the policy has, and the refusal is returned as it came.
//! - The first resend of an idempotent request whose connection closed unanswered is
//!   immediate: a pooled keep-alive connection the server closed is its usual cause. It is
//!   made even under [`RetryPolicy::none`], as the client always did.

use reqwest::Method;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::futures::TaskLocalFuture;

/// Retries made by default after the first attempt.
pub const DEFAULT_RETRIES: u32 = 3;
/// The default first backoff step.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);
/// The default longest backoff between two attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The default longest `Retry-After` the client waits for.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Where the client waits between attempts: real time by default, a recorder in tests.
pub trait Sleeper: Send + Sync {
    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// The wall-clock time, to read a `Retry-After` given as an HTTP date.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Waits in real time (tokio's timer).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// What went wrong with one attempt, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure<'a> {
    /// The server answered this status; `retry_after` is its `Retry-After` header, if any.
    Status {
        /// The HTTP status.
        status: u16,
        /// The raw `Retry-After` value.
        retry_after: Option<&'a str>,
    },
    /// The connection could not be opened: nothing was sent.
    NotSent,
    /// The connection closed (or was reset) before any answer: the server may have acted.
    Unanswered,
    /// No answer within the timeout: the server may have acted, and waiting again would
    /// multiply the time the caller allowed.
    TimedOut,
}

/// How a [`Failure`] is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the request again after this wait.
    Retry(Duration),
    /// Return the failure to the caller.
    GiveUp,
}

/// The client's retry policy (see the module documentation for the rules). Cheap to clone.
#[derive(Clone)]
pub struct RetryPolicy {
    retries: u32,
    base: Duration,
    max_backoff: Duration,
    max_retry_after: Duration,
    sleeper: Arc<dyn Sleeper>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("retries", &self.retries)
            .field("base", &self.base)
            .field("max_backoff", &self.max_backoff)
            .field("max_retry_after", &self.max_retry_after)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    /// [`DEFAULT_RETRIES`] retries, backoff from [`DEFAULT_BASE_DELAY`] up to
    /// [`DEFAULT_MAX_BACKOFF`], `Retry-After` honoured up to [`DEFAULT_MAX_RETRY_AFTER`].
    fn default() -> Self {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
            base: DEFAULT_BASE_DELAY,
            max_backoff: DEFAULT_MAX_BACKOFF,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            sleeper: Arc::new(TokioSleeper),
        }
    }
}

impl RetryPolicy {
    /// No retries (`--no-retry`): every request is sent once, but for the immediate resend
    /// of an idempotent request whose pooled connection closed unanswered.
    pub fn none() -> RetryPolicy {
        RetryPolicy::default().with_retries(0)
    }

    /// The same policy with at most `retries` retries after the first attempt.
    pub fn with_retries(mut self, retries: u32) -> RetryPolicy {
        self.retries = retries;
        self
    }

    /// The same policy with another backoff: `base·2ⁿ` before retry `n`, at most `max`,
    /// of which a uniform random share is waited.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> RetryPolicy {
        self.base = base;
        self.max_backoff = max;
        self
    }

    /// The same policy, waiting for a `Retry-After` of at most `max` (a longer one ends
    /// the retries).
    pub fn with_max_retry_after(mut self, max: Duration) -> RetryPolicy {
        self.max_retry_after = max;
        self
    }

    /// The same policy, waiting through `sleeper` (tests pass one that records and returns).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> RetryPolicy {
        self.sleeper = sleeper;
        self
    }

    /// The most retries after the first attempt.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Where the client waits.
    pub fn sleeper(&self) -> &dyn Sleeper {
        &*self.sleeper
    }

    /// Whether `failure` of a `method` request, after `done` retries, is retried and after
    /// how long. `now` reads an HTTP-date `Retry-After`; `jitter` in `[0, 1)` picks the
    /// backoff's share.
    pub fn verdict(
        &self,
        method: &Method,
        failure: Failure<'_>,
        done: u32,
        now: SystemTime,
        jitter: f64,
    ) -> Verdict {
        let idempotent = is_idempotent(method);
        // The stale keep-alive case: resent at once, whatever the policy's count.
        if failure == Failure::Unanswered && idempotent && done == 0 {
            return Verdict::Retry(Duration::ZERO);
        }
        if done >= self.retries {
            return Verdict::GiveUp;
        }
        let retryable = match failure {
            Failure::Status {
                status: 429 | 503, ..
            }
            | Failure::NotSent => true,
            Failure::Status {
                status: 502 | 504, ..
            }
            | Failure::Unanswered => idempotent,
            Failure::Status { .. } | Failure::TimedOut => false,
        };
        if !retryable {
            return Verdict::GiveUp;
        }
        if let Failure::Status {
            retry_after: Some(value),
            ..
        } = failure
            && let Some(wait) = retry_after(value, now)
        {
            return if wait > self.max_retry_after {
                Verdict::GiveUp
            } else {
                Verdict::Retry(wait)
            };
        }
        Verdict::Retry(self.backoff(done, jitter))
    }

    /// Full jitter: a `jitter` share of `min(max_backoff, base·2^done)`.
    fn backoff(&self, done: u32, jitter: f64) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(done).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

/// Whether sending `method` twice does no more than sending it once (RFC 9110 §9.2.2). The
/// API's PUTs answer a challenge with a signature: a second identical answer changes nothing.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::PUT | Method::OPTIONS
    )
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay seconds or an HTTP date, read against
/// `now` (a date in the past is no wait). `None` when it is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

tokio::task_local! {
    static RETRIES: Cell<u32>;
}

/// Runs `call` and counts the retries the client made inside it (all requests of `call`,
/// token fetches included). Outside such a scope, retries are not counted anywhere.
pub async fn counting_retries<T>(call: impl Future<Output = T>) -> (T, u32) {
    let mut scope = std::pin::pin!(retry_scope(call));
    let out = scope.as_mut().await;
    (out, retries_in(scope))
}

/// `call` in a retry-counting scope: awaited, it gives `call`'s output, and [`retries_in`]
/// then tells the retries the client made inside it. [`counting_retries`] in two parts, for a
/// caller that keeps the scope pinned in its own future: `call` is then stored once, where
/// each layer of `async fn` it is passed through by value keeps (and copies) it again.
pub fn retry_scope<F: Future>(call: F) -> TaskLocalFuture<Cell<u32>, F> {
    RETRIES.scope(Cell::new(0), call)
}

/// The retries counted in a [`retry_scope`] so far (all of them once it has finished).
pub fn retries_in<F: Future>(scope: Pin<&mut TaskLocalFuture<Cell<u32>, F>>) -> u32 {
    scope.take_value().map_or(0, |n| n.get())
}

/// Counts one retry in the enclosing [`counting_retries`] scope, if any.
pub(crate) fn note_retry() {
    let _ = RETRIES.try_with(|n| n.set(n.get() + 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn status(status: u16) -> Failure<'static> {
        Failure::Status {
            status,
            retry_after: None,
        }
    }

    #[test]
    fn refusals_made_before_the_bank_acted_are_retried_for_every_method() {
        let p = RetryPolicy::default();
        for m in [Method::GET, Method::PUT, Method::POST, Method::PATCH] {
            for f in [status(429), status(503), Failure::NotSent] {
                assert!(
                    matches!(p.verdict(&m, f, 0, NOW, 0.5), Verdict::Retry(_)),
                    "{m} {f:?}"
                );
            }
        }
    }

    #[test]
    fn answers_after_which_the_bank_may_have_acted_are_retried_only_when_idempotent() {
        let p = RetryPolicy::default();
        for f in [status(502), status(504), Failure::Unanswered] {
            assert!(matches!(
                p.verdict(&Method::PUT, f, 1, NOW, 0.5),
                Verdict::Retry(_)
            ));
            assert!(matches!(
                p.verdict(&Method::DELETE, f, 1, NOW, 0.5),
                Verdict::Retry(_)
            ));
            assert_eq!(p.verdict(&Method::POST, f, 0, NOW, 0.5), Verdict::GiveUp);
            assert_eq!(p.verdict(&Method::PATCH, f, 0, NOW, 0.5), Verdict::GiveUp);
        }
        for f in [status(500), status(400), status(409), Failure::TimedOut] {
            assert_eq!(p.verdict(&Method::GET, f, 0, NOW, 0.5), Verdict::GiveUp);
        }
    }

    #[test]
    fn backoff_is_a_jittered_share_of_a_doubling_capped_ceiling() {
        let p = RetryPolicy::default()
            .with_retries(100)
            .with_backoff(Duration::from_millis(100), Duration::from_millis(500));
        let wait = |done, jitter| match p.verdict(&Method::GET, status(503), done, NOW, jitter) {
            Verdict::Retry(d) => d,
            Verdict::GiveUp => panic!("gave up"),
        };
        assert_eq!(wait(0, 0.5), Duration::from_millis(50));
        assert_eq!(wait(1, 0.5), Duration::from_millis(100));
        assert_eq!(wait(2, 0.5), Duration::from_millis(200));
        assert_eq!(wait(3, 0.5), Duration::from_millis(250), "capped at 500");
        assert_eq!(wait(40, 0.998), Duration::from_millis(499));
        assert_eq!(wait(2, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_count_of_retries_is_a_limit_and_none_means_none() {
        let p = RetryPolicy::default().with_retries(2);
        assert!(matches!(
            p.verdict(&Method::GET, status(503), 1, NOW, 0.1),
            Verdict::Retry(_)
        ));
        assert_eq!(
            p.verdict(&Method::GET, status(503), 2, NOW, 0.1),
            Verdict::GiveUp
        );
        let none = RetryPolicy::none();
        assert_eq!(
            none.verdict(&Method::GET, status(503), 0, NOW, 0.1),
            Verdict::GiveUp
        );
        // ...but a stale pooled connection is still resent once, at once.
        assert_eq!(
            none.verdict(&Method::PUT, Failure::Unanswered, 0, NOW, 0.1),
            Verdict::Retry(Duration::ZERO)
        );
        assert_eq!(
            none.verdict(&Method::PUT, Failure::Unanswered, 1, NOW, 0.1),
            Verdict::GiveUp
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_honoured_up_to_the_cap() {
        let p = RetryPolicy::default().with_max_retry_after(Duration::from_secs(5));
        let after = |v: &'static str| {
            p.verdict(
                &Method::POST,
                Failure::Status {
                    status: 429,
                    retry_after: Some(v),
                },
                0,
                NOW,
                0.5,
            )
        };
        assert_eq!(after("2"), Verdict::Retry(Duration::from_secs(2)));
        assert_eq!(after(" 0 "), Verdict::Retry(Duration::ZERO));
        assert_eq!(after("6"), Verdict::GiveUp, "longer than the cap");
        assert_eq!(
            after("Thu, 01 Jan 1970 00:00:03 GMT"),
            Verdict::Retry(Duration::from_secs(3))
        );
        assert_eq!(after("Thu, 01 Jan 1970 00:01:00 GMT"), Verdict::GiveUp);
        // Unreadable: the backoff applies.
        assert_eq!(after("soon"), Verdict::Retry(Duration::from_millis(50)));
        let later = NOW + Duration::from_secs(10);
        assert_eq!(
            retry_after("Thu, 01 Jan 1970 00:00:03 GMT", later),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
    }

    #[tokio::test]
    async fn retries_are_counted_only_inside_a_counting_scope() {
        note_retry();
        let ((), n) = counting_retries(async {
            note_retry();
            note_retry();
        })
        .await;
        assert_eq!(n, 2);
    }

    #[tokio::test]
    async fn a_pinned_scope_counts_the_retries_inside_it_and_only_those() {
        let mut scope = std::pin::pin!(retry_scope(async {
            note_retry();
            tokio::task::yield_now().await;
            note_retry();
            note_retry();
            7
        }));
        assert_eq!(scope.as_mut().await, 7);
        note_retry();
        assert_eq!(retries_in(scope), 3);
    }
}
