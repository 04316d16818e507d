//! Time as the sandbox and the phone see it, injectable so tests can expire challenges
//! without waiting and without skewing a server's clock.

use crate::api::Timestamp;
use parking_lot::Mutex;
use std::time::Duration;
use time::OffsetDateTime;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now, in whole seconds UTC.
    fn now(&self) -> Timestamp;
}

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        crate::api::now_utc()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock stopped at the current wall-clock time.
    pub fn new() -> Self {
        ManualClock(Mutex::new(OffsetDateTime::now_utc()))
    }

    /// A clock stopped at `at`.
    pub fn at(at: Timestamp) -> Self {
        ManualClock(Mutex::new(at.get()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock();
        *now += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::new(*self.0.lock())
    }
}
