//! A run's per-second time series: for each wall-clock second and operation, the successes,
//! the failures and a small latency histogram (for p50 and p99 over time).
//!
//! Seconds are **Unix seconds** (UTC, from the run's start time plus the monotonic time since
//! then), so shards that ran on different machines line up by the wall-clock second they
//! measured, and merging two series adds counts and histograms second by second: nothing is
//! averaged. A row lands in the second in which it *finished*. The first and the last second
//! of a run are partial (a run seldom starts or ends on a second's edge), and machines whose
//! clocks are skewed put simultaneous work into different seconds (NTP keeps that well under
//! a second).
//!
//! Per-second histograms keep [`SERIES_SIGNIFICANT_DIGITS`] significant digit (values within
//! 6.25%): 704 bytes of counts per operation and second for latencies up to 10 ms (tested
//! below), so about 25 MB for an hour of a ten-operation mix; the run's totals keep their own
//! 3-digit histograms.
//!
//! While a run goes on, each recorder stripe (or worker) fills a [`SecondBuffer`] for the
//! second it is in, without any lock of its own; when it sees a later second it moves the
//! finished one into the shared [`Series`] (one short lock per stripe and second, not per
//! request).

use super::Op;
use super::report::{decode_histogram_u32, encode_histogram, same_values};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Significant digits of the per-second latency histograms (see the module documentation).
pub const SERIES_SIGNIFICANT_DIGITS: u8 = 1;

/// Latencies above this are clamped in per-second histograms (as in the run's, one hour).
const MAX_US: u64 = super::MAX_LATENCY_US;

fn new_second_histogram() -> Histogram<u32> {
    // 1 significant digit is a constant the library always accepts.
    let mut h = Histogram::new(SERIES_SIGNIFICANT_DIGITS).expect("1 significant digit is valid");
    h.auto(true);
    h
}

/// One operation within one second.
#[derive(Debug, Clone)]
pub struct SecondOp {
    /// Successes that finished in this second.
    pub ok: u64,
    /// Failures that happened in this second.
    pub failed: u64,
    /// Latencies of the successes, microseconds, 1 significant digit.
    pub latency_us: Histogram<u32>,
}

impl Default for SecondOp {
    fn default() -> Self {
        SecondOp {
            ok: 0,
            failed: 0,
            latency_us: new_second_histogram(),
        }
    }
}

impl PartialEq for SecondOp {
    fn eq(&self, other: &Self) -> bool {
        self.ok == other.ok
            && self.failed == other.failed
            && same_values(&self.latency_us, &other.latency_us)
    }
}

impl SecondOp {
    /// Records one success that took `us` microseconds.
    pub fn record_ok(&mut self, us: u64) {
        self.ok += 1;
        let us = us.clamp(1, MAX_US);
        if self.latency_us.record(us).is_err() {
            // Only a failed resize (out of memory for the counts) lands here.
            self.latency_us.saturating_record(us);
        }
    }

    /// Adds another second's counts and latencies to these.
    pub fn merge(&mut self, other: &SecondOp) -> Result<(), String> {
        // Saturating: counts read from a file may be anything.
        self.ok = self.ok.saturating_add(other.ok);
        self.failed = self.failed.saturating_add(other.failed);
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| format!("{e:?}"))
    }

    /// The latency at quantile `q` (0..=1), microseconds; none when no success was recorded.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.latency_us.is_empty()).then(|| self.latency_us.value_at_quantile(q))
    }
}

/// The per-second series of a run (or of several merged shards).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// By Unix second, then by operation name.
    pub seconds: BTreeMap<u64, BTreeMap<String, SecondOp>>,
}

impl Series {
    /// Adds another series second by second (see the module documentation).
    pub fn merge(&mut self, other: &Series) -> Result<(), String> {
        for (second, ops) in &other.seconds {
            let mine = self.seconds.entry(*second).or_default();
            for (name, op) in ops {
                mine.entry(name.clone()).or_default().merge(op)?;
            }
        }
        Ok(())
    }

    /// The stats of `op` in `second`, created when missing.
    pub fn at(&mut self, second: u64, op: &str) -> &mut SecondOp {
        self.seconds
            .entry(second)
            .or_default()
            .entry(op.to_owned())
            .or_default()
    }

    /// The sums of successes and failures of `op` over every second.
    pub fn totals(&self, op: &str) -> (u64, u64) {
        self.seconds.values().filter_map(|ops| ops.get(op)).fold(
            (0, 0),
            |(ok, failed): (u64, u64), s| {
                (ok.saturating_add(s.ok), failed.saturating_add(s.failed))
            },
        )
    }

    /// The first and last second with anything recorded.
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((
            *self.seconds.keys().next()?,
            *self.seconds.keys().next_back()?,
        ))
    }

    pub(super) fn to_file(&self) -> Result<Vec<SecondFile>, (String, String)> {
        self.seconds
            .iter()
            .map(|(second, ops)| {
                let ops = ops
                    .iter()
                    .map(|(name, s)| {
                        let histogram = encode_histogram(&s.latency_us)
                            .map_err(|detail| (name.clone(), detail))?;
                        Ok((
                            name.clone(),
                            SecondOpFile {
                                ok: s.ok,
                                failed: s.failed,
                                p50_us: s.quantile_us(0.5),
                                p99_us: s.quantile_us(0.99),
                                histogram,
                            },
                        ))
                    })
                    .collect::<Result<_, (String, String)>>()?;
                Ok(SecondFile {
                    unix_sec: *second,
                    ops,
                })
            })
            .collect()
    }

    pub(super) fn from_file(file: Vec<SecondFile>) -> Result<Series, (String, String)> {
        let mut series = Series::default();
        for second in file {
            let ops = series.seconds.entry(second.unix_sec).or_default();
            for (name, op) in second.ops {
                let latency_us =
                    decode_histogram_u32(&op.histogram).map_err(|d| (name.clone(), d))?;
                ops.insert(
                    name,
                    SecondOp {
                        ok: op.ok,
                        failed: op.failed,
                        latency_us,
                    },
                );
            }
        }
        Ok(series)
    }
}

/// One second in the report file. `p50_us` and `p99_us` are for readers of the file; vphone
/// recomputes them from `histogram`.
#[derive(Serialize, Deserialize)]
pub(super) struct SecondFile {
    unix_sec: u64,
    ops: BTreeMap<String, SecondOpFile>,
}

#[derive(Serialize, Deserialize)]
struct SecondOpFile {
    ok: u64,
    failed: u64,
    /// `null` in a second with no success: no latency was measured.
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    /// base64 of the HdrHistogram V2 + DEFLATE serialization, microseconds.
    histogram: String,
}

/// Where a run's seconds begin: an `Instant` and the Unix time it stands for.
#[derive(Debug, Clone, Copy)]
pub struct SecondClock {
    origin: Instant,
    origin_unix_us: u64,
}

impl SecondClock {
    /// `origin` stands for `origin_unix_us` microseconds after the Unix epoch.
    pub fn new(origin: Instant, origin_unix_us: u64) -> SecondClock {
        SecondClock {
            origin,
            origin_unix_us,
        }
    }

    /// Now, on the system clock.
    pub fn now() -> SecondClock {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        SecondClock::new(
            Instant::now(),
            u64::try_from(unix.as_micros()).unwrap_or(u64::MAX),
        )
    }

    /// The origin in milliseconds since the Unix epoch.
    pub fn origin_unix_ms(&self) -> u64 {
        self.origin_unix_us / 1000
    }

    /// The Unix second `at` falls in (instants before the origin count as the origin's).
    pub fn second(&self, at: Instant) -> u64 {
        let since = u64::try_from(at.saturating_duration_since(self.origin).as_micros())
            .unwrap_or(u64::MAX);
        self.origin_unix_us.saturating_add(since) / 1_000_000
    }
}

/// One stripe's (or worker's) current second, filled without a lock of its own.
#[derive(Debug, Default)]
pub struct SecondBuffer {
    second: u64,
    ops: [Option<SecondOp>; Op::ALL.len()],
}

impl SecondBuffer {
    /// The stats of `op` in `second`: this buffer's, or, for a second it has already handed
    /// over (a row that finished just before another stripe's), the shared series'. A later
    /// second first moves the buffer's into `sink`.
    pub fn record(
        &mut self,
        second: u64,
        op: Op,
        sink: &Mutex<Series>,
        f: impl FnOnce(&mut SecondOp),
    ) {
        if second < self.second {
            f(sink.lock().at(second, op.name()));
            return;
        }
        if second > self.second {
            self.flush(sink);
            self.second = second;
        }
        f(self.ops[op.index()].get_or_insert_with(SecondOp::default));
    }

    /// Moves everything buffered into `sink`.
    pub fn flush(&mut self, sink: &Mutex<Series>) {
        if self.ops.iter().all(Option::is_none) {
            return;
        }
        let mut series = sink.lock();
        for (op, stats) in Op::ALL.iter().zip(self.ops.iter_mut()) {
            if let Some(stats) = stats.take() {
                // Same significant digits on both sides: adding cannot fail.
                let _ = series.at(self.second, op.name()).merge(&stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_clock_counts_unix_seconds_from_its_origin() {
        let origin = Instant::now();
        let clock = SecondClock::new(origin, 1_700_000_000_900_000);
        assert_eq!(clock.second(origin), 1_700_000_000);
        assert_eq!(
            clock.second(origin + Duration::from_millis(99)),
            1_700_000_000
        );
        assert_eq!(
            clock.second(origin + Duration::from_millis(100)),
            1_700_000_001
        );
        assert_eq!(clock.second(origin + Duration::from_secs(5)), 1_700_000_005);
    }

    #[test]
    fn buffers_hand_over_finished_seconds_and_late_rows_go_straight_to_the_series() {
        let sink = Mutex::new(Series::default());
        let mut buf = SecondBuffer::default();
        buf.record(10, Op::Sign, &sink, |s| s.record_ok(100));
        buf.record(10, Op::Sign, &sink, |s| s.failed += 1);
        assert!(sink.lock().seconds.is_empty(), "second 10 is still open");
        buf.record(11, Op::Sign, &sink, |s| s.record_ok(200));
        assert_eq!(sink.lock().totals("sign"), (1, 1));
        buf.record(10, Op::Bind, &sink, |s| s.record_ok(300));
        assert_eq!(sink.lock().seconds[&10]["bind"].ok, 1);
        buf.flush(&sink);
        let series = sink.lock();
        assert_eq!(series.totals("sign"), (2, 1));
        let eleven = &series.seconds[&11]["sign"];
        assert!(
            eleven
                .latency_us
                .equivalent(eleven.quantile_us(0.5).unwrap(), 200)
        );
        assert_eq!(series.span(), Some((10, 11)));
    }

    #[test]
    fn merging_adds_counts_and_histograms_second_by_second() {
        let mut a = Series::default();
        a.at(5, "sign").record_ok(100);
        a.at(6, "sign").record_ok(100);
        let mut b = Series::default();
        b.at(6, "sign").record_ok(1_000);
        b.at(6, "sign").failed += 2;
        b.at(7, "bind").record_ok(50);
        a.merge(&b).unwrap();
        assert_eq!(a.seconds[&5]["sign"].ok, 1);
        let six = &a.seconds[&6]["sign"];
        assert_eq!((six.ok, six.failed), (2, 2));
        assert_eq!(six.latency_us.len(), 2);
        assert!(six.quantile_us(0.99).unwrap() >= 1_000);
        assert_eq!(a.seconds[&7]["bind"].ok, 1);
    }
}

#[cfg(test)]
mod size {
    use super::*;

    #[test]
    fn a_second_of_one_operation_up_to_10_ms_keeps_under_800_bytes_of_counts() {
        let mut s = SecondOp::default();
        for us in [1, 50, 900, 4_000, 10_000] {
            s.record_ok(us);
        }
        let bytes = s.latency_us.distinct_values() * std::mem::size_of::<u32>();
        assert!(bytes < 800, "{bytes}");
    }
}
