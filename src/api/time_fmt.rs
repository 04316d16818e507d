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

/// `YYYY-MM-DDTHH:MM:SSZ` for a UTC time with whole seconds and a four-digit year, written
/// without allocating: what RFC 3339 formatting gives for every [`Timestamp`] of those years.
fn rfc3339_utc_seconds(at: OffsetDateTime) -> Option<arrayvec::ArrayString<20>> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    if at.offset() != time::UtcOffset::UTC || at.nanosecond() != 0 {
        return None;
    }
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut two = |at: usize, n: u8| {
        out[at] = b'0' + n / 10;
        out[at + 1] = b'0' + n % 10;
    };
    two(0, (year / 100) as u8);
    two(2, (year % 100) as u8);
    two(5, u8::from(at.month()));
    two(8, at.day());
    two(11, at.hour());
    two(14, at.minute());
    two(17, at.second());
    // Only ASCII digits and separators were written.
    arrayvec::ArrayString::from_byte_string(&out).ok()
}

/// The instant `YYYY-MM-DDTHH:MM:SSZ` names, if `text` is exactly that (the form this API
/// writes); anything else is left to the tolerant RFC 3339 parser.
fn parse_rfc3339_utc_seconds(text: &str) -> Option<OffsetDateTime> {
    let b: &[u8; 20] = text.as_bytes().try_into().ok()?;
    let shape = b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z';
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !shape || !digits.iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let year = i32::from(n(0)) * 100 + i32::from(n(2));
    let month = time::Month::try_from(n(5)).ok()?;
    let date = time::Date::from_calendar_date(year, month, n(8)).ok()?;
    // RFC 3339 allows a leap second (60); the full parser decides what to make of it.
    let clock = time::Time::from_hms(n(11), n(14), n(17)).ok()?;
    Some(date.with_time(clock).assume_utc())
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(text) = rfc3339_utc_seconds(self.0) {
            return f.write_str(&text);
        }
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
        // The API's own shape from a buffer on the stack; any other through `Display`.
        match rfc3339_utc_seconds(self.0) {
            Some(text) => serializer.serialize_str(&text),
            None => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Read where the deserializer has the text (no `String`).
        super::ids::read_text(deserializer, |text| {
            if let Some(at) = parse_rfc3339_utc_seconds(text) {
                return Ok(Timestamp(at));
            }
            // Tolerant: servers in the wild send fractions and offsets; keep the instant.
            OffsetDateTime::parse(text, &Rfc3339)
                .map(Timestamp::new)
                .map_err(|e| format!("invalid timestamp {text:?}: {e}"))
        })
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

    proptest::proptest! {
        /// The allocation-free writer and reader agree with the `time` crate's RFC 3339
        /// over years 0000-9999 (the reader then takes only the fast path's shape).
        #[test]
        fn the_fast_rfc3339_writer_and_reader_agree_with_the_time_crate(
            seconds in -62_167_219_200i64..253_402_300_800i64,
        ) {
            let t = Timestamp::from_unix(seconds).unwrap();
            let slow = t.get().format(&Rfc3339).unwrap();
            proptest::prop_assert_eq!(t.to_string(), slow.clone());
            proptest::prop_assert_eq!(serde_json::to_string(&t).unwrap(), format!("{slow:?}"));
            let fast = parse_rfc3339_utc_seconds(&slow);
            proptest::prop_assert_eq!(fast, Some(t.get()));
            let parsed: Timestamp = serde_json::from_str(&format!("{slow:?}")).unwrap();
            proptest::prop_assert_eq!(parsed, t);
        }
    }

    #[test]
    fn other_shapes_go_to_the_tolerant_parser_and_impossible_dates_are_refused() {
        let fifteen_56 = Some("2026-11-28T15:56:19Z");
        for (text, expect) in [
            ("2026-11-28T16:56:19+01:00", fifteen_56),
            ("2026-11-28T15:56:19.5Z", fifteen_56),
            ("2026-11-28t15:56:19z", fifteen_56),
            ("2026-11-28 15:56:19Z", fifteen_56),
            ("2026-02-30T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-28T24:00:00Z", None),
            ("20x6-11-28T15:56:19Z", None),
        ] {
            let parsed = serde_json::from_str::<Timestamp>(&format!("{text:?}"));
            assert_eq!(
                parsed.as_ref().ok().map(|t| t.to_string()).as_deref(),
                expect,
                "{text}: {parsed:?}"
            );
            // The fast path takes none of these: each is another shape or no date at all.
            assert_eq!(parse_rfc3339_utc_seconds(text), None, "{text}");
        }
        // Years past 9999 are not written by the fast path (RFC 3339 has four digits).
        assert!(rfc3339_utc_seconds(OffsetDateTime::UNIX_EPOCH).is_some());
    }

    #[test]
    fn a_refused_timestamp_reads_as_it_did_when_a_string_was_read_first() {
        // The old way, as a reference: a `String`, then the tolerant parser.
        #[derive(Debug)]
        struct Old;
        impl<'de> Deserialize<'de> for Old {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                OffsetDateTime::parse(&text, &Rfc3339)
                    .map(|_| Old)
                    .map_err(|e| {
                        serde::de::Error::custom(format!("invalid timestamp {text:?}: {e}"))
                    })
            }
        }
        #[derive(Debug, Deserialize)]
        struct New {
            #[allow(dead_code)]
            at: Timestamp,
        }
        #[derive(Debug, Deserialize)]
        struct OldBody {
            #[allow(dead_code)]
            at: Old,
        }
        for input in [
            r#"{"at":"2026-02-30T00:00:00Z"}"#,
            "{\n  \"at\": \"yesterday\"\n}",
            r#"{"at":"2026-11-28" , "x":1}"#,
            r#"{"at":5}"#,
        ] {
            assert_eq!(
                serde_json::from_str::<New>(input).unwrap_err().to_string(),
                serde_json::from_str::<OldBody>(input)
                    .unwrap_err()
                    .to_string(),
                "{input}"
            );
        }
        for top in ["\"soon\"", "[1]"] {
            assert_eq!(
                serde_json::from_str::<Timestamp>(top)
                    .unwrap_err()
                    .to_string(),
                serde_json::from_str::<Old>(top).unwrap_err().to_string(),
                "{top}"
            );
        }
    }

    #[test]
    fn a_timestamp_is_read_from_a_string_or_utf8_bytes_and_nothing_else() {
        use serde::de::IntoDeserializer;
        use serde::de::value::{BytesDeserializer, Error};
        let text = "2026-11-28T15:56:19Z";
        let from_str: Result<Timestamp, Error> = Timestamp::deserialize(text.into_deserializer());
        assert_eq!(from_str.unwrap().to_string(), text);
        let from_bytes: Result<Timestamp, Error> =
            Timestamp::deserialize(BytesDeserializer::new(text.as_bytes()));
        assert_eq!(from_bytes.unwrap().to_string(), text);
        let not_utf8: Result<Timestamp, Error> =
            Timestamp::deserialize(BytesDeserializer::new(&[0xff, 0xfe]));
        assert!(not_utf8.is_err());
        let e = serde_json::from_str::<Timestamp>("5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a string"), "{e}");
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
