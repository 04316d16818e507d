//! Rate limits as plain rules over a sliding window, with time passed in: at most `max`
//! events in any `window`. Used per person for every SMS that carries a one-time code (SMS
//! challenges, mobile-number authorizations, change-request TANs) and per partner for
//! access tokens.

use super::error::ApiError;
use crate::api::Timestamp;
use std::collections::VecDeque;
use std::time::Duration;

/// At most `max` events in any `window`; `max = 0` switches the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Events allowed per window (0: unlimited).
    pub max: u32,
    /// The window's length.
    pub window: Duration,
}

impl RateLimit {
    /// The per-person SMS default: 5 per 10 minutes.
    pub const SMS_DEFAULT: RateLimit = RateLimit {
        max: 5,
        window: Duration::from_secs(600),
    };

    /// The per-partner token default: 1,000 per minute, far above what a client that caches
    /// its hour-long token needs, and far below what a loop that fetches one per call makes.
    pub const TOKEN_DEFAULT: RateLimit = RateLimit {
        max: 1000,
        window: Duration::from_secs(60),
    };

    /// Whether the limit is on.
    pub fn is_on(&self) -> bool {
        self.max > 0
    }
}

/// The times of the latest admitted events (at most `max` of them), oldest first.
#[derive(Debug, Clone, Default)]
pub struct Window(VecDeque<i64>);

/// A refused event: how many whole seconds until one more would be admitted (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl Window {
    /// Admits an event at `now` and records it, or says when to retry. Only the latest `max`
    /// events are kept, so a window costs at most `max` integers.
    pub fn admit(&mut self, limit: RateLimit, now: Timestamp) -> Result<(), RetryAfter> {
        if !limit.is_on() {
            return Ok(());
        }
        let now = now.unix();
        let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
        let max = usize::try_from(limit.max).unwrap_or(usize::MAX);
        while self.0.len() > max {
            self.0.pop_front();
        }
        if self.0.len() == max {
            let oldest = self.0.front().copied().unwrap_or(now);
            let free_at = oldest.saturating_add(window);
            if now < free_at {
                return Err(RetryAfter(u64::try_from(free_at - now).unwrap_or(1).max(1)));
            }
            self.0.pop_front();
        }
        self.0.push_back(now);
        Ok(())
    }
}

impl RetryAfter {
    /// The 429 `too_many_requests` refusal for `what`, with the wait in its detail; the
    /// `Retry-After` header is added when it is rendered.
    pub fn refusal(self, what: &str, limit: RateLimit) -> ApiError {
        ApiError::too_many_requests(
            format!(
                "too many {what}: at most {} per {}; retry in {} s",
                limit.max,
                humantime::format_duration(limit.window),
                self.0
            ),
            self.0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn the_sixth_event_in_the_window_waits_for_the_first_to_leave_it() {
        let limit = RateLimit::SMS_DEFAULT;
        let mut w = Window::default();
        for s in 0..5 {
            assert_eq!(w.admit(limit, at(s * 10)), Ok(()));
        }
        assert_eq!(w.admit(limit, at(50)), Err(RetryAfter(550)));
        assert_eq!(w.admit(limit, at(599)), Err(RetryAfter(1)));
        assert_eq!(w.admit(limit, at(600)), Ok(()));
        // The next slot frees when the second event (at 10 s) leaves the window.
        assert_eq!(w.admit(limit, at(600)), Err(RetryAfter(10)));
        assert_eq!(w.admit(limit, at(610)), Ok(()));
    }

    #[test]
    fn a_refused_event_is_not_counted() {
        let limit = RateLimit {
            max: 1,
            window: Duration::from_secs(60),
        };
        let mut w = Window::default();
        assert!(w.admit(limit, at(0)).is_ok());
        for s in 1..60 {
            assert!(w.admit(limit, at(s)).is_err());
        }
        assert!(w.admit(limit, at(60)).is_ok());
    }

    #[test]
    fn a_zero_limit_admits_everything() {
        let limit = RateLimit {
            max: 0,
            window: Duration::from_secs(60),
        };
        let mut w = Window::default();
        for _ in 0..100 {
            assert!(w.admit(limit, at(0)).is_ok());
        }
    }

    #[test]
    fn the_refusal_is_429_too_many_requests_with_the_wait() {
        let e = RetryAfter(42).refusal("SMS to this person", RateLimit::SMS_DEFAULT);
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (429, "too_many_requests")
        );
        assert_eq!(e.retry_after, Some(42));
        assert!(e.detail.contains("at most 5 per 10m"), "{}", e.detail);
    }
}
