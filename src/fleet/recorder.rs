//! Concurrent recording of latencies and failures during a run.
//!
//! Workers record into one of a few stripes (chosen by worker number), each behind its own
//! short lock, so no single lock sits on the hot path; live totals are plain atomics that the
//! progress display reads without locking. Histograms are created lazily, only for the
//! operations a run actually performs. Each stripe also fills its current second of the
//! time series (see [`super::series`]) under the same lock, and hands a finished second to
//! the shared series once per second.
//!
//! Lock order: a stripe, then the shared series; nothing takes a stripe while holding the
//! series.

use super::Op;
use super::report::{ErrorKey, OpStats, Report};
use super::series::{SecondBuffer, SecondClock, Series};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const STRIPES: usize = 8;

#[derive(Default)]
struct Stripe {
    ops: [Option<OpStats>; Op::ALL.len()],
    errors: HashMap<(Op, u16, String), u64>,
    second: SecondBuffer,
}

/// Why an operation failed, as grouped in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status, or 0 when no answer came.
    pub status: u16,
    /// The API's error code, or a word for a transport failure.
    pub code: String,
}

/// Latency and failure recorder shared by all workers of a run.
pub struct Recorder {
    stripes: Vec<Mutex<Stripe>>,
    clock: SecondClock,
    series: Mutex<Series>,
    iterations: AtomicU64,
    failed_iterations: AtomicU64,
    steps_ok: AtomicU64,
    failures: AtomicU64,
}

impl Default for Recorder {
    /// A recorder whose seconds count from now on the system clock.
    fn default() -> Self {
        Recorder::new(SecondClock::now())
    }
}

impl Recorder {
    /// A recorder that files rows under the Unix seconds `clock` gives their instants.
    pub fn new(clock: SecondClock) -> Self {
        Recorder {
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            clock,
            series: Mutex::default(),
            iterations: AtomicU64::new(0),
            failed_iterations: AtomicU64::new(0),
            steps_ok: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// Records a success of `op` that ran from `started` to `ended`.
    pub fn ok(&self, worker: usize, op: Op, started: Instant, ended: Instant) {
        let latency = ended.saturating_duration_since(started);
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let second = self.clock.second(ended);
        if op.is_step() {
            self.steps_ok.fetch_add(1, Ordering::Relaxed);
        }
        let mut stripe = self.stripes[worker % STRIPES].lock();
        let stats = stripe.ops[op.index()].get_or_insert_with(OpStats::default);
        stats.ok += 1;
        super::report::record_us(&mut stats.latency_us, us);
        stripe
            .second
            .record(second, op, &self.series, |s| s.record_ok(us));
    }

    /// Records `n` retries the client made for `op` (called only when there were some, so
    /// the success path takes no lock for it).
    pub fn retried(&self, worker: usize, op: Op, n: u32) {
        let mut stripe = self.stripes[worker % STRIPES].lock();
        stripe.ops[op.index()]
            .get_or_insert_with(OpStats::default)
            .retries += u64::from(n);
    }

    /// Records a failure of `op` that happened `at`.
    pub fn failed(&self, worker: usize, op: Op, failure: &Failure, at: Instant) {
        let second = self.clock.second(at);
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut stripe = self.stripes[worker % STRIPES].lock();
        stripe.ops[op.index()]
            .get_or_insert_with(OpStats::default)
            .failed += 1;
        *stripe
            .errors
            .entry((op, failure.status, failure.code.clone()))
            .or_default() += 1;
        stripe
            .second
            .record(second, op, &self.series, |s| s.failed += 1);
    }

    /// Counts one finished iteration, successful or not.
    pub fn iteration_done(&self) {
        self.iterations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one finished iteration that failed (also counted by `iteration_done`).
    pub fn iteration_failed(&self) {
        self.failed_iterations.fetch_add(1, Ordering::Relaxed);
    }

    /// Iterations finished so far.
    pub fn iterations(&self) -> u64 {
        self.iterations.load(Ordering::Relaxed)
    }

    /// Successful scenario steps so far.
    pub fn steps_ok(&self) -> u64 {
        self.steps_ok.load(Ordering::Relaxed)
    }

    /// Failures so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Moves everything recorded into `report` (ops, errors, iteration count, time series).
    pub fn fill(&self, report: &mut Report) -> Result<(), super::FleetError> {
        for stripe in &self.stripes {
            let mut stripe = stripe.lock();
            stripe.second.flush(&self.series);
            for (op, stats) in Op::ALL.iter().zip(&stripe.ops) {
                if let Some(stats) = stats {
                    report
                        .ops
                        .entry(op.name().to_owned())
                        .or_default()
                        .merge(stats)
                        .map_err(|detail| super::FleetError::Histogram {
                            op: op.name().to_owned(),
                            detail,
                        })?;
                }
            }
            for ((op, status, code), n) in &stripe.errors {
                let key = ErrorKey {
                    op: op.name().to_owned(),
                    status: *status,
                    code: code.clone(),
                };
                *report.errors.entry(key).or_default() += n;
            }
        }
        let series = std::mem::take(&mut *self.series.lock());
        report
            .series
            .merge(&series)
            .map_err(|detail| super::FleetError::Histogram {
                op: "time series".into(),
                detail,
            })?;
        report.iterations += self.iterations();
        report.failed_iterations += self.failed_iterations.load(Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stripes_are_combined_into_one_report() {
        let t0 = Instant::now();
        let r = Recorder::new(SecondClock::new(t0, 1_000_000_000));
        for w in 0..20 {
            let end = t0 + Duration::from_millis(100 * w as u64 + 1);
            r.ok(w, Op::Bind, end - Duration::from_millis(w as u64 + 1), end);
        }
        r.failed(
            3,
            Op::CreateDevice,
            &Failure {
                status: 409,
                code: "conflict".into(),
            },
            t0,
        );
        r.iteration_done();
        let mut report = Report::new("bind", "p", "1", 0);
        r.fill(&mut report).unwrap();
        assert_eq!(report.ops["bind"].ok, 20);
        assert_eq!(report.ops["bind"].latency_us.max() / 1000, 20);
        assert_eq!(report.ops["create_device"].failed, 1);
        assert_eq!(report.total_errors(), 1);
        assert_eq!((report.iterations, r.steps_ok(), r.failures()), (1, 20, 1));
        // Rows finished 0.0 s to 1.9 s after second 1000's start: ten in each second.
        let seconds: Vec<(u64, u64)> = report
            .series
            .seconds
            .iter()
            .map(|(s, ops)| (*s, ops.get("bind").map_or(0, |b| b.ok)))
            .collect();
        assert_eq!(seconds, [(1000, 10), (1001, 10)]);
        assert_eq!(report.series.totals("create_device"), (0, 1));
    }
}
