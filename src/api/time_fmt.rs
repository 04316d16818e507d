//! Timestamps on the wire: ISO-8601 UTC with whole seconds (`2026-11-28T15:56:19Z`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time as the API writes it: UTC, whole seconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// Wraps a time, dropping sub-second precision and converting to UTC.
    pub fn new(at: OffsetDateTime) -> Self {
        let utc = at.to_offset(time::UtcOffset::UTC);
        // replace_nanosecond(0) cannot fail: 0 is always in range.
        Timestamp(utc.replace_nanosecond(0).unwrap_or(utc))
    }

    /// Seconds since the Unix epoch.
    pub fn from_unix(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .map(Timestamp)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The underlying time.
    pub fn get(self) -> OffsetDateTime {
        self.0
    }

    /// This time plus a number of seconds.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0 + time::Duration::seconds(seconds))
    }
}

/// The current time, as a [`Timestamp`].
pub fn now_utc() -> Timestamp {
    // Most of the cost is turning seconds into a calendar date, which is the same all
    // through a second: each thread keeps the last one it made.
    thread_local! {
        static LAST: std::cell::Cell<Option<(u64, Timestamp)>> = const { std::cell::Cell::new(None) };
    }
    let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) else {
        return Timestamp::new(OffsetDateTime::now_utc());
    };
    let seconds = since_epoch.as_secs();
    LAST.with(|last| match last.get() {
        Some((at, made)) if at == seconds => made,
        _ => {
            let made = i64::try_from(seconds)
                .ok()
                .and_then(Timestamp::from_unix)
                .unwrap_or_else(|| Timestamp::new(OffsetDateTime::now_utc()));
            last.set(Some((seconds, made)));
            made
        }
    })
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.format(&Rfc3339) {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}", self.0.unix_timestamp()),
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // Tolerant: servers in the wild send fractions and offsets; keep the instant.
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(Timestamp::new)
            .map_err(|e| serde::de::Error::custom(format!("invalid timestamp {text:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_the_wall_clock_in_whole_utc_seconds_from_the_first_call_and_the_kept_one() {
        for _ in 0..3 {
            let before = Timestamp::new(OffsetDateTime::now_utc());
            let now = now_utc();
            let again = now_utc();
            let after = Timestamp::new(OffsetDateTime::now_utc());
            for t in [now, again] {
                assert!(before <= t && t <= after, "{before} {t} {after}");
                assert_eq!(t.get().nanosecond(), 0);
                assert_eq!(t.get().offset(), time::UtcOffset::UTC);
            }
            assert!(now <= again);
        }
        // The kept second is not served once the wall clock has moved on (waits at most
        // about a second for it to move).
        let kept = now_utc();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while Timestamp::new(OffsetDateTime::now_utc()) == kept
            && std::time::Instant::now() < give_up
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(now_utc() > kept);
    }

    #[test]
    fn timestamps_print_whole_seconds_in_utc() {
        let t: Timestamp = serde_json::from_str("\"2026-11-28T16:56:19.123+01:00\"").unwrap();
        assert_eq!(t.to_string(), "2026-11-28T15:56:19Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-28T15:56:19Z\""
        );
    }
}
