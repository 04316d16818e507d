//! A run's report: per-operation latency histograms, counts, errors, memory; its JSON form
//! with the histograms serialized (HdrHistogram V2 + DEFLATE, base64), and a lossless merge.
//!
//! - `histogram`: the latency histograms and their text form;
//! - `json`: the report file;
//! - `merge`: adding the reports of a run's shards;
//! - `table`: the report as text.

mod histogram;
mod json;
mod merge;
mod table;

pub(super) use histogram::decode_histogram_u32;
pub use histogram::{
    MAX_LATENCY_US, decode_histogram, encode_histogram, new_histogram, record_us, same_values,
};
pub use json::REPORT_VERSION;

use super::series::Series;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether `op` names a scenario step (one per failed iteration), not a request.
fn is_step(op: &str) -> bool {
    super::Op::ALL.iter().any(|o| o.is_step() && o.name() == op)
}

/// `d` in seconds at microsecond resolution. Such a value is a whole number of
/// microseconds divided by 10^6, which JSON writes as a short decimal that every parser,
/// serde_json's fast default one included, reads back as exactly the same `f64`: report
/// times round-trip exactly (an arbitrary `f64` may come back one unit in the last place
/// off).
pub fn secs(d: std::time::Duration) -> f64 {
    micros_to_secs(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A latency in milliseconds with two decimals, or `-` where no success was timed (the
/// tables' cells).
pub(super) fn ms_text(us: Option<u64>) -> String {
    us.map_or_else(|| "-".to_owned(), |us| format!("{:.2}", us as f64 / 1e3))
}

/// `ms` milliseconds after the Unix epoch as RFC 3339 UTC (`2026-11-29T10:00:00.250Z`).
pub(super) fn unix_ms_text(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the Unix epoch"))
}

fn micros_to_secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn secs_to_micros(secs: f64) -> u64 {
    // Saturating float-to-int conversion; report times are never negative.
    (secs * 1e6).round() as u64
}

/// `a + b`, or why not: counts past u64 come only from a corrupt or forged report.
fn add_counts(a: u64, b: u64, what: &str) -> Result<u64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("the {what} counts add up past {}", u64::MAX))
}

/// Adds each count of `from` to the same key's count in `into` (see [`add_counts`]).
fn add_each<K: Ord + Clone>(
    into: &mut BTreeMap<K, u64>,
    from: &BTreeMap<K, u64>,
    what: &str,
) -> Result<(), String> {
    for (key, n) in from {
        let mine = into.entry(key.clone()).or_default();
        *mine = add_counts(*mine, *n, what)?;
    }
    Ok(())
}

/// Counts and latencies of one operation.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Successful completions; each has its latency in `latency_us`.
    pub ok: u64,
    /// Failed attempts (see the report's errors for why).
    pub failed: u64,
    /// Requests the client sent again under its retry policy (requests only; a step's row
    /// has none of its own).
    pub retries: u64,
    /// Latencies of the successful completions, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        OpStats {
            ok: 0,
            failed: 0,
            retries: 0,
            latency_us: new_histogram(),
        }
    }
}

impl PartialEq for OpStats {
    fn eq(&self, other: &Self) -> bool {
        self.ok == other.ok
            && self.failed == other.failed
            && self.retries == other.retries
            && same_values(&self.latency_us, &other.latency_us)
    }
}

impl OpStats {
    /// Adds another run's counts and latencies to these.
    pub fn merge(&mut self, other: &OpStats) -> Result<(), String> {
        self.ok = add_counts(self.ok, other.ok, "ok")?;
        self.failed = add_counts(self.failed, other.failed, "failed")?;
        self.retries = add_counts(self.retries, other.retries, "retries")?;
        self.latency_us
            .add(&other.latency_us)
            .map_err(|e| format!("{e:?}"))
    }

    /// The latency at quantile `q` (0..=1), in microseconds; none when no success was
    /// recorded (failures have no latency here), so that no table shows a time not measured.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        (!self.latency_us.is_empty()).then(|| self.latency_us.value_at_quantile(q))
    }

    /// The longest success, in microseconds; none when no success was recorded.
    pub fn max_us(&self) -> Option<u64> {
        (!self.latency_us.is_empty()).then(|| self.latency_us.max())
    }

    /// The mean success, in microseconds; none when no success was recorded.
    pub fn mean_us(&self) -> Option<f64> {
        (!self.latency_us.is_empty()).then(|| self.latency_us.mean())
    }
}

/// Errors are grouped by operation, HTTP status (0: no answer) and the API's error code.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ErrorKey {
    /// The operation that failed.
    pub op: String,
    /// The HTTP status, or 0 when no answer came (connection error, timeout).
    pub status: u16,
    /// The API's error code, or a word for transport failures (`timeout`, `connect`); an
    /// answer a vphone sandbox's fault rule made up has ` (injected)` after its code.
    pub code: String,
}

/// One process's part of a (possibly merged) report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRun {
    /// `K/N` as given (1-based K).
    pub shard: String,
    /// First device index of the slice.
    pub first_device: u64,
    /// One past the last device index of the slice.
    pub end_device: u64,
    /// Peak resident memory of the process, bytes (0 when unknown).
    pub peak_memory_bytes: u64,
    /// Wall time of the process's run, seconds at microsecond resolution (see [`secs`]).
    pub elapsed_secs: f64,
    /// Threads that ran the process's workers (see [`Threads`](crate::fleet::Threads)); 0
    /// in a report that does not say.
    #[serde(default)]
    pub threads: u64,
    /// The signing backend its phones derived and signed with (`aws-lc`, `rustcrypto`);
    /// empty in a report that does not say.
    #[serde(default)]
    pub signer: String,
}

/// How many shard numbers [`Report::missing_shards`] checks (a bound on work for a report
/// that claims absurdly many shards).
pub const MAX_LISTED_SHARDS: u64 = 100_000;

/// A run's (or several merged runs') measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The scenario, as given (`bind`, `mix:bind=1,sign=8`).
    pub scenario: String,
    /// The pacing, e.g. `closed concurrency=64` or `open rate=500/s`.
    pub pacing: String,
    /// The fleet seed's fingerprint (never the seed, which derives every key), so a report
    /// names the phones it measured and merge can tell runs apart.
    pub seed: String,
    /// Phones in the whole fleet (every shard's slice is part of it); 0 when unknown.
    pub devices: u64,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Wall time from the first start to the last end, seconds at microsecond resolution
    /// (see [`secs`]).
    pub elapsed_secs: f64,
    /// Iterations (scenario runs) completed, successful or not.
    pub iterations: u64,
    /// Of `iterations`, those that failed.
    pub failed_iterations: u64,
    /// Open model: iterations due before the end that no worker could start in time (not
    /// run; a sign that `--concurrency` bounds in-flight work below what the rate needs).
    pub missed: u64,
    /// Iterations still running when the duration and its drain time were over: cancelled,
    /// their unanswered requests counted nowhere else.
    pub unfinished: u64,
    /// One-time steps drawn for phones that had already taken them: nothing was sent or
    /// recorded, and they are not counted in `iterations`.
    pub skipped: u64,
    /// Per-operation stats by operation name.
    pub ops: BTreeMap<String, OpStats>,
    /// Failure counts.
    pub errors: BTreeMap<ErrorKey, u64>,
    /// The processes that contributed.
    pub shards: Vec<ShardRun>,
    /// Faults the target (a vphone sandbox) injected during the run, per rule, read from its
    /// `/sandbox/stats` before and after; `None` when the target is not a vphone sandbox.
    /// Counted by [`Report::recount_faults`] from `fault_windows` (each sandbox instance's
    /// faults once, however many shards watched it) plus `faults_unread`.
    pub faults: Option<BTreeMap<String, u64>>,
    /// The readings before and after of each shard that read a sandbox with an instance id.
    pub fault_windows: Vec<crate::fleet::faults::FaultWindow>,
    /// Faults counted without readings to keep (from an older vphone's report, or a sandbox
    /// that gives no instance id), added as they are: shards that shared such a sandbox
    /// count its faults once each.
    pub faults_unread: Option<BTreeMap<String, u64>>,
    /// The sandbox's fault rules were replaced or cleared during the run (by a shard, for a
    /// merge): `faults` still counts per rule text over the whole run, but the rules in force
    /// changed.
    pub faults_replaced: bool,
    /// The sandbox restarted during the run (by a shard, for a merge): `faults` counts what
    /// the new sandbox injected since it started; what the old one injected between the
    /// reading before the run and its end was never read and is not counted.
    pub faults_restarted: bool,
    /// Per-second counts and latencies, aligned by Unix second (see [`Series`]).
    pub series: Series,
}

impl Report {
    /// An empty report for a run about to start.
    pub fn new(scenario: &str, pacing: &str, seed: &str, started_unix_ms: u64) -> Report {
        Report {
            scenario: scenario.to_owned(),
            pacing: pacing.to_owned(),
            seed: seed.to_owned(),
            devices: 0,
            started_unix_ms,
            elapsed_secs: 0.0,
            iterations: 0,
            failed_iterations: 0,
            missed: 0,
            unfinished: 0,
            skipped: 0,
            ops: BTreeMap::new(),
            errors: BTreeMap::new(),
            shards: Vec::new(),
            faults: None,
            fault_windows: Vec::new(),
            faults_unread: None,
            faults_replaced: false,
            faults_restarted: false,
            series: Series::default(),
        }
    }

    /// The shards of this run that no contributing report covers, by name (`K/N`) with their
    /// phones: empty for a whole run and for a merge of every shard. Only the first
    /// [`MAX_LISTED_SHARDS`] shard numbers are looked at.
    pub fn missing_shards(&self) -> Vec<(String, std::ops::Range<u64>)> {
        let Some(count) = self.shards.iter().find_map(|s| {
            s.shard
                .split_once('/')
                .and_then(|(_, n)| n.parse::<u64>().ok())
        }) else {
            return Vec::new();
        };
        (1..=count.min(MAX_LISTED_SHARDS))
            .filter(|k| {
                let name = format!("{k}/{count}");
                !self.shards.iter().any(|s| s.shard == name)
            })
            .filter_map(|k| super::Shard::new(k, count).ok())
            .map(|shard| (shard.to_string(), shard.slice(self.devices)))
            .collect()
    }

    /// The largest peak memory of the contributing processes, bytes.
    pub fn peak_memory_bytes(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.peak_memory_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Completions of `op` per second of the report's wall time.
    pub fn rate(&self, op: &str) -> f64 {
        let ok = self.ops.get(op).map_or(0, |s| s.ok);
        if self.elapsed_secs > 0.0 {
            ok as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }

    /// Successful completions of `op`.
    pub fn ok(&self, op: &str) -> u64 {
        self.ops.get(op).map_or(0, |s| s.ok)
    }

    /// Retries over all operations.
    pub fn total_retries(&self) -> u64 {
        self.ops.values().map(|s| s.retries).sum()
    }

    /// Sets `faults` from `fault_windows` and `faults_unread` (`None` when there are
    /// neither), or says why not (counts past u64 come only from a corrupt or forged report).
    pub fn recount_faults(&mut self) -> Result<(), String> {
        if self.fault_windows.is_empty() && self.faults_unread.is_none() {
            self.faults = None;
            return Ok(());
        }
        let mut faults = crate::fleet::faults::injected_in(&self.fault_windows);
        if let Some(unread) = &self.faults_unread {
            add_each(&mut faults, unread, "faults")?;
        }
        self.faults = Some(faults);
        Ok(())
    }

    /// What the table and page say under the faults of a merge that had counts without
    /// readings: those may hold a shared sandbox's faults more than once.
    pub fn faults_caveat(&self) -> Option<&'static str> {
        (self.faults.is_some() && self.faults_unread.is_some() && self.shards.len() > 1).then_some(
            "some shards' reports kept no sandbox readings (an older vphone or sandbox): their \
             counts were added as they were, so shards that shared a sandbox may be counted \
             more than once",
        )
    }

    /// Faults the sandbox injected during the run, over all rules (`None`: not a vphone
    /// sandbox, nothing read).
    pub fn total_faults(&self) -> Option<u64> {
        self.faults.as_ref().map(|f| f.values().sum())
    }

    /// Retries of `op`.
    pub fn retries(&self, op: &str) -> u64 {
        self.ops.get(op).map_or(0, |s| s.retries)
    }

    /// All failures, over every operation.
    pub fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `n` most frequent request failures (scenario steps left out: they repeat them),
    /// most frequent first.
    pub fn top_errors(&self, n: usize) -> Vec<(&ErrorKey, u64)> {
        let mut all: Vec<(&ErrorKey, u64)> = self
            .errors
            .iter()
            .filter(|(k, _)| !is_step(&k.op))
            .map(|(k, n)| (k, *n))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stats(values: &[u64], failed: u64) -> OpStats {
        let mut s = OpStats::default();
        for &v in values {
            record_us(&mut s.latency_us, v);
            s.ok += 1;
        }
        s.failed = failed;
        s
    }

    #[test]
    fn histograms_survive_the_json_round_trip() {
        let mut r = Report::new("bind", "closed concurrency=4", "7", 1_000);
        r.elapsed_secs = 2.0;
        r.ops
            .insert("bind".into(), stats(&[100, 250, 90_000, 3_000_000], 1));
        r.errors.insert(
            ErrorKey {
                op: "bind".into(),
                status: 403,
                code: "invalid_signature".into(),
            },
            1,
        );
        let back = Report::from_json(&r.to_json().unwrap(), Path::new("-")).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            back.ops["bind"].latency_us.max(),
            r.ops["bind"].latency_us.max()
        );
        assert!((back.rate("bind") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn merging_adds_counts_and_histograms_and_spans_the_wall_time() {
        let mut a = Report::new("bind", "p", "7", 10_000);
        a.elapsed_secs = 5.0;
        a.ops.insert("bind".into(), stats(&[10, 20], 0));
        let mut b = Report::new("bind", "p", "7", 12_000);
        b.elapsed_secs = 5.0;
        b.ops.insert("bind".into(), stats(&[30], 2));
        b.ops.insert("sign".into(), stats(&[40], 0));
        a.merge(&b).unwrap();
        assert_eq!(a.ops["bind"], stats(&[10, 20, 30], 2));
        assert_eq!(a.ops["sign"], stats(&[40], 0));
        assert_eq!(a.started_unix_ms, 10_000);
        assert!((a.elapsed_secs - 7.0).abs() < 1e-9);
        assert_eq!(a.scenario, "bind");
    }

    #[test]
    fn a_foreign_or_newer_file_is_refused_with_the_reason() {
        let err = Report::from_json("{\"x\":1}", Path::new("a.json")).unwrap_err();
        assert!(err.to_string().contains("a.json"), "{err}");
    }
}
