//! The life of anything answerable (a challenge, a mobile-number OTP, a change request's
//! confirmation): open until completed, spent by failed answers, or expired. Plain data and
//! functions; the caller passes the time in.
//!
//! Once finished (completed, spent or expired) it keeps answering as it did for the
//! configured retention window; after that the sandbox forgets it (see
//! `SandboxState::sweep`) and its id answers 404.

use super::retention::finished_longer_than;
use super::{Reason, Refusal};
use crate::api::Timestamp;
use std::time::Duration;

/// Where an answerable thing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Status {
    /// Waiting for an answer.
    Open,
    /// Answered correctly; never answerable again.
    Completed,
    /// Spent by failed answers; never answerable again.
    Failed,
}

/// Lifetime and attempt accounting.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Attempts {
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being answerable.
    pub expires_at: Timestamp,
    /// Failed answers so far.
    pub failed: u32,
    /// Where it stands.
    pub status: Status,
    /// When it was completed or spent (`None` while open).
    pub finished_at: Option<Timestamp>,
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
            finished_at: None,
        }
    }

    /// Refuses unless it can be answered at `now`.
    pub fn check_open(&self, now: Timestamp, what: &str) -> Result<(), Refusal> {
        match self.status {
            Status::Completed => Err(Refusal::new(
                Reason::ChallengeAlreadyUsed,
                format!(
                    "this {what} was already completed and cannot be answered again; start a new one"
                ),
            )),
            Status::Failed => Err(Refusal::new(
                Reason::ChallengeFailed,
                format!(
                    "this {what} is spent after {} failed answers; start a new one",
                    self.failed
                ),
            )),
            Status::Open if now >= self.expires_at => Err(Refusal::new(
                Reason::ChallengeExpired,
                format!(
                    "this {what} expired at {}; start a new one",
                    self.expires_at
                ),
            )),
            Status::Open => Ok(()),
        }
    }

    /// Counts a wrong answer at `now`; returns a sentence on how many answers remain.
    pub fn record_failure(&mut self, max_failed: u32, now: Timestamp) -> String {
        self.failed += 1;
        if self.failed >= max_failed {
            self.status = Status::Failed;
            self.finished_at = Some(now);
            "no attempts are left: it is now spent, start a new one".to_owned()
        } else {
            let left = max_failed - self.failed;
            format!(
                "{left} attempt{} left",
                if left == 1 { " is" } else { "s are" }
            )
        }
    }

    /// Marks it answered at `now`.
    pub fn complete(&mut self, now: Timestamp) {
        self.status = Status::Completed;
        self.finished_at = Some(now);
    }

    /// When it finished (was completed, was spent, or expired), if it has by `now`.
    pub fn finished_by(&self, now: Timestamp) -> Option<Timestamp> {
        match self.status {
            Status::Completed | Status::Failed => self.finished_at,
            Status::Open => (now >= self.expires_at).then_some(self.expires_at),
        }
    }

    /// Whether it has been finished for longer than `retention` at `now`, so it may be
    /// forgotten.
    pub fn forgettable(&self, now: Timestamp, retention: Duration) -> bool {
        self.finished_by(now)
            .is_some_and(|at| finished_longer_than(at, now, retention))
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
                .reason,
            Reason::ChallengeExpired
        );
        a.record_failure(3, t0);
        a.record_failure(3, t0);
        assert!(a.check_open(t0, "challenge").is_ok());
        assert!(a.record_failure(3, t0).contains("spent"));
        assert_eq!(
            a.check_open(t0, "challenge").unwrap_err().reason,
            Reason::ChallengeFailed
        );
    }

    #[test]
    fn it_is_forgettable_only_after_finishing_plus_retention() {
        let t0 = crate::api::now_utc();
        let lifetime = Duration::from_secs(300);
        let retention = Duration::from_secs(900);
        // Open: finished when it expires.
        let open = Attempts::new(t0, lifetime);
        assert_eq!(open.finished_by(t0.plus_seconds(299)), None);
        assert_eq!(
            open.finished_by(t0.plus_seconds(300)),
            Some(t0.plus_seconds(300))
        );
        assert!(!open.forgettable(t0.plus_seconds(1200), retention));
        assert!(open.forgettable(t0.plus_seconds(1201), retention));
        // Completed early: the window starts when it was completed.
        let mut done = Attempts::new(t0, lifetime);
        done.complete(t0.plus_seconds(10));
        assert!(!done.forgettable(t0.plus_seconds(910), retention));
        assert!(done.forgettable(t0.plus_seconds(911), retention));
        // Spent: the window starts at the last failed answer.
        let mut spent = Attempts::new(t0, lifetime);
        spent.record_failure(1, t0.plus_seconds(20));
        assert!(!spent.forgettable(t0.plus_seconds(920), retention));
        assert!(spent.forgettable(t0.plus_seconds(921), retention));
    }
}
