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
    Timestamp::new(OffsetDateTime::now_utc())
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
    fn timestamps_print_whole_seconds_in_utc() {
        let t: Timestamp = serde_json::from_str("\"2026-11-28T16:56:19.123+01:00\"").unwrap();
        assert_eq!(t.to_string(), "2026-11-28T15:56:19Z");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-11-28T15:56:19Z\""
        );
    }
}
