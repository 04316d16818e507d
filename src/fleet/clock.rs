//! Where fleet steps read the time: the system's monotonic clock, or, in tests, a clock that
//! moves one second per reading, so what a row's time spans can be checked exactly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of `Instant`s for timing steps and requests.
#[derive(Debug, Default)]
pub enum Clock {
    /// `Instant::now()`.
    #[default]
    System,
    /// Each reading is one second after the previous one (tests only: deterministic).
    Ticking {
        /// The first reading.
        base: Instant,
        /// Readings so far.
        ticks: AtomicU64,
    },
}

/// The system clock, for runs.
pub static SYSTEM_CLOCK: Clock = Clock::System;

impl Clock {
    /// A clock that advances one second per reading, starting now.
    pub fn ticking() -> Clock {
        Clock::Ticking {
            base: Instant::now(),
            ticks: AtomicU64::new(0),
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> Instant {
        match self {
            Clock::System => Instant::now(),
            Clock::Ticking { base, ticks } => {
                *base + Duration::from_secs(ticks.fetch_add(1, Ordering::Relaxed))
            }
        }
    }

    /// Time from `start` to now on this clock.
    pub fn since(&self, start: Instant) -> Duration {
        self.now().saturating_duration_since(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticking_clock_moves_one_second_per_reading() {
        let clock = Clock::ticking();
        let a = clock.now();
        assert_eq!(clock.since(a), Duration::from_secs(1));
        assert_eq!(clock.since(a), Duration::from_secs(2));
    }
}
