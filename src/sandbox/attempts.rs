//! The life of anything answerable (a challenge, a mobile-number OTP, a change request's
//! confirmation): open until completed, spent by failed answers, or expired. Plain data and
//! functions; the caller passes the time in.

use super::error::ApiError;
use crate::api::Timestamp;
use std::time::Duration;

/// Where an answerable thing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for an answer.
    Open,
    /// Answered correctly; never answerable again.
    Completed,
    /// Spent by failed answers; never answerable again.
    Failed,
}

/// Lifetime and attempt accounting.
#[derive(Debug, Clone)]
pub struct Attempts {
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being answerable.
    pub expires_at: Timestamp,
    /// Failed answers so far.
    pub failed: u32,
    /// Where it stands.
    pub status: Status,
}

impl Attempts {
    /// Opens at `now` for `lifetime`.
    pub fn new(now: Timestamp, lifetime: Duration) -> Self {
        let seconds = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        Attempts {
            created_at: now,
            expires_at: now.plus_seconds(seconds),
            failed: 0,
            status: Status::Open,
        }
    }

    /// Refuses unless it can be answered at `now`.
    pub fn check_open(&self, now: Timestamp, what: &str) -> Result<(), ApiError> {
        match self.status {
            Status::Completed => Err(ApiError::challenge_already_used(format!(
                "this {what} was already completed and cannot be answered again; start a new one"
            ))),
            Status::Failed => Err(ApiError::challenge_failed(format!(
                "this {what} is spent after {} failed answers; start a new one",
                self.failed
            ))),
            Status::Open if now >= self.expires_at => Err(ApiError::challenge_expired(format!(
                "this {what} expired at {}; start a new one",
                self.expires_at
            ))),
            Status::Open => Ok(()),
        }
    }

    /// Counts a wrong answer; returns a sentence on how many answers remain.
    pub fn record_failure(&mut self, max_failed: u32) -> String {
        self.failed += 1;
        if self.failed >= max_failed {
            self.status = Status::Failed;
            "no attempts are left: it is now spent, start a new one".to_owned()
        } else {
            let left = max_failed - self.failed;
            format!(
                "{left} attempt{} left",
                if left == 1 { " is" } else { "s are" }
            )
        }
    }

    /// Marks it answered.
    pub fn complete(&mut self) {
        self.status = Status::Completed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_spend_it_and_expiry_is_exclusive() {
        let t0 = crate::api::now_utc();
        let mut a = Attempts::new(t0, Duration::from_secs(300));
        assert!(a.check_open(t0.plus_seconds(299), "challenge").is_ok());
        assert_eq!(
            a.check_open(t0.plus_seconds(300), "challenge")
                .unwrap_err()
                .code,
            "challenge_expired"
        );
        a.record_failure(3);
        a.record_failure(3);
        assert!(a.check_open(t0, "challenge").is_ok());
        assert!(a.record_failure(3).contains("spent"));
        assert_eq!(
            a.check_open(t0, "challenge").unwrap_err().code,
            "challenge_failed"
        );
    }
}
