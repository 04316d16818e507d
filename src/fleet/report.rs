//! A run's report: per-operation latency histograms, counts, errors, memory; its JSON form
//! with the histograms serialized (HdrHistogram V2 + DEFLATE, base64), and a lossless merge.

use super::FleetError;
use super::series::Series;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::{Counter, Histogram};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Latencies are recorded in microseconds; values above one hour are clamped to it.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The report format's version, written into every report file.
pub const REPORT_VERSION: u32 = 1;

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

/// A fresh latency histogram: microseconds, 3 significant digits, growing as values need.
pub fn new_histogram() -> Histogram<u64> {
    // 3 significant digits is a constant the library always accepts.
    let mut h = Histogram::new(3).expect("3 significant digits is valid");
    h.auto(true);
    h
}

/// Records `us` microseconds, clamped to 1..=[`MAX_LATENCY_US`], growing the histogram.
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    let us = us.clamp(1, MAX_LATENCY_US);
    if h.record(us).is_err() {
        // Only a failed resize (out of memory for the counts) lands here.
        h.saturating_record(us);
    }
}

/// Encodes a histogram as base64 of its V2 + DEFLATE serialization.
pub fn encode_histogram<T: Counter>(h: &Histogram<T>) -> Result<String, String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| format!("{e:?}"))?;
    Ok(B64.encode(buf))
}

/// Decodes what [`encode_histogram`] wrote.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, String> {
    decode_any(text)
}

/// Decodes a per-second histogram (32-bit counts) that [`encode_histogram`] wrote.
pub(super) fn decode_histogram_u32(text: &str) -> Result<Histogram<u32>, String> {
    decode_any(text)
}

fn decode_any<T: Counter>(text: &str) -> Result<Histogram<T>, String> {
    let bytes = B64.decode(text).map_err(|e| e.to_string())?;
    let mut h: Histogram<T> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{e:?}"))?;
    h.auto(true);
    Ok(h)
}

/// Whether two histograms hold exactly the same recorded values (whatever their sizes).
pub fn same_values<T: Counter>(a: &Histogram<T>, b: &Histogram<T>) -> bool {
    a.len() == b.len()
        && a.iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .eq(b
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value())))
}

/// `a + b`, or why not: counts past u64 come only from a corrupt or forged report.
fn add_counts(a: u64, b: u64, what: &str) -> Result<u64, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("the {what} counts add up past {}", u64::MAX))
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

    /// The latency at quantile `q` (0..=1), in microseconds; 0 when nothing was recorded.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.value_at_quantile(q)
        }
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
    /// A merge adds the shards' readings, so shards that shared one sandbox count its faults
    /// once per shard.
    pub faults: Option<BTreeMap<String, u64>>,
    /// The sandbox's fault rules were replaced or cleared during the run (by a shard, for a
    /// merge): `faults` still counts per rule text over the whole run, but the rules in force
    /// changed.
    pub faults_replaced: bool,
    /// Per-second counts and latencies, aligned by Unix second (see [`Series`]).
    pub series: Series,
}

#[derive(Serialize, Deserialize)]
struct OpFile {
    ok: u64,
    failed: u64,
    #[serde(default)]
    retries: u64,
    rate_per_sec: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
    mean_us: f64,
    /// base64 of the HdrHistogram V2 + DEFLATE serialization, microseconds.
    histogram: String,
}

#[derive(Serialize, Deserialize)]
struct ErrorFile {
    #[serde(flatten)]
    key: ErrorKey,
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct ReportFile {
    vphone_load_report: u32,
    scenario: String,
    pacing: String,
    seed: String,
    #[serde(default)]
    devices: u64,
    started_unix_ms: u64,
    elapsed_secs: f64,
    iterations: u64,
    #[serde(default)]
    failed_iterations: u64,
    #[serde(default)]
    missed: u64,
    #[serde(default)]
    unfinished: u64,
    #[serde(default)]
    skipped: u64,
    peak_memory_bytes: u64,
    ops: BTreeMap<String, OpFile>,
    errors: Vec<ErrorFile>,
    shards: Vec<ShardRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    injected_faults: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fault_rules_replaced: bool,
    /// Absent in reports of vphone versions before the time series: read as empty.
    #[serde(default)]
    series: Vec<super::series::SecondFile>,
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
            faults_replaced: false,
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

    /// One line naming the top errors (`top errors: 12x bind 409 device_limit_reached; ...`),
    /// or `None` when nothing failed.
    pub fn render_top_errors(&self, n: usize) -> Option<String> {
        let top = self.top_errors(n);
        if top.is_empty() {
            return None;
        }
        let items: Vec<String> = top
            .iter()
            .map(|(k, count)| {
                let status = if k.status == 0 {
                    "-".to_owned()
                } else {
                    k.status.to_string()
                };
                format!("{count}x {} {status} {}", k.op, k.code)
            })
            .collect();
        Some(format!("top errors: {}", items.join("; ")))
    }

    /// Whether `other` measured another part of the same run: the same scenario, pacing,
    /// seed and fleet size, cut into the same number of shards, none of them run twice.
    /// Anything else would not be one fleet's report, so it is refused with the reason.
    pub fn check_mergeable(&self, other: &Report) -> Result<(), FleetError> {
        for (what, mine, theirs) in [
            ("scenario", &self.scenario, &other.scenario),
            ("pacing", &self.pacing, &other.pacing),
            ("seed", &self.seed, &other.seed),
        ] {
            if mine != theirs {
                return Err(FleetError::Mismatch(format!(
                    "cannot merge reports of different runs: {what} {mine:?} vs {theirs:?} \
                     (merge only the shards of one run: same --scenario, pacing flags, fleet seed \
                     and --devices)"
                )));
            }
        }
        if self.devices != other.devices {
            return Err(FleetError::Mismatch(format!(
                "cannot merge reports of different runs: a fleet of {} phones vs one of {}",
                self.devices, other.devices
            )));
        }
        let count = |s: &ShardRun| s.shard.split_once('/').map(|(_, n)| n.to_owned());
        for mine in &self.shards {
            for theirs in &other.shards {
                if count(mine) != count(theirs) {
                    return Err(FleetError::Mismatch(format!(
                        "cannot merge shard {} with shard {}: the fleet was cut into a \
                         different number of shards",
                        mine.shard, theirs.shard
                    )));
                }
                let overlap = mine.first_device.max(theirs.first_device)
                    < mine.end_device.min(theirs.end_device);
                if mine.shard == theirs.shard || overlap {
                    return Err(FleetError::Mismatch(format!(
                        "shard {} (phones {}..{}) and shard {} (phones {}..{}) overlap: a \
                         report was given twice, or two runs drove the same phones",
                        mine.shard,
                        mine.first_device,
                        mine.end_device,
                        theirs.shard,
                        theirs.first_device,
                        theirs.end_device
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds another shard's report of the same run (see [`Report::check_mergeable`]; a
    /// mismatch is refused and leaves `self` untouched): counts add, histograms merge
    /// exactly, the time series add second by second (aligned by Unix second), the wall time
    /// becomes the span from the earliest start to the latest end. Nothing is averaged.
    pub fn merge(&mut self, other: &Report) -> Result<(), FleetError> {
        self.check_mergeable(other)?;
        // Merge into a copy, so any failure (a histogram, a count past u64) leaves `self` as
        // it was.
        let mut merged = self.clone();
        merged.add(other)?;
        *self = merged;
        Ok(())
    }

    /// The work of [`Report::merge`] once the reports are known to be mergeable.
    fn add(&mut self, other: &Report) -> Result<(), FleetError> {
        let count = |what: &str| {
            let what = what.to_owned();
            move |detail: String| FleetError::Mismatch(format!("cannot merge {what}: {detail}"))
        };
        for (name, stats) in &other.ops {
            self.ops
                .entry(name.clone())
                .or_default()
                .merge(stats)
                .map_err(|detail| FleetError::Histogram {
                    op: name.clone(),
                    detail,
                })?;
        }
        self.series
            .merge(&other.series)
            .map_err(|detail| FleetError::Histogram {
                op: "time series".into(),
                detail,
            })?;
        for (key, n) in &other.errors {
            let mine = self.errors.entry(key.clone()).or_default();
            *mine = add_counts(*mine, *n, "errors").map_err(count("error counts"))?;
        }
        // In whole microseconds, so the merged time is as exact as the parts' (see [`secs`]).
        let end_us = |r: &Report| {
            r.started_unix_ms
                .saturating_mul(1000)
                .saturating_add(secs_to_micros(r.elapsed_secs))
        };
        let end = end_us(self).max(end_us(other));
        self.started_unix_ms = self.started_unix_ms.min(other.started_unix_ms);
        self.elapsed_secs =
            micros_to_secs(end.saturating_sub(self.started_unix_ms.saturating_mul(1000)));
        let counts = count("run counts");
        self.iterations =
            add_counts(self.iterations, other.iterations, "iterations").map_err(&counts)?;
        self.failed_iterations = add_counts(
            self.failed_iterations,
            other.failed_iterations,
            "failed_iterations",
        )
        .map_err(&counts)?;
        self.missed = add_counts(self.missed, other.missed, "missed").map_err(&counts)?;
        self.unfinished =
            add_counts(self.unfinished, other.unfinished, "unfinished").map_err(&counts)?;
        self.skipped = add_counts(self.skipped, other.skipped, "skipped").map_err(&counts)?;
        self.shards.extend(other.shards.iter().cloned());
        self.faults_replaced |= other.faults_replaced;
        if let Some(theirs) = &other.faults {
            let ours = self.faults.get_or_insert_with(BTreeMap::new);
            for (rule, n) in theirs {
                let mine = ours.entry(rule.clone()).or_default();
                *mine = add_counts(*mine, *n, "faults").map_err(count("fault counts"))?;
            }
        }
        Ok(())
    }

    /// The report as pretty JSON, histograms included.
    pub fn to_json(&self) -> Result<String, FleetError> {
        let mut ops = BTreeMap::new();
        for (name, s) in &self.ops {
            let histogram =
                encode_histogram(&s.latency_us).map_err(|detail| FleetError::Histogram {
                    op: name.clone(),
                    detail,
                })?;
            let mean = if s.latency_us.is_empty() {
                0.0
            } else {
                s.latency_us.mean()
            };
            ops.insert(
                name.clone(),
                OpFile {
                    ok: s.ok,
                    failed: s.failed,
                    retries: s.retries,
                    rate_per_sec: self.rate(name),
                    p50_us: s.quantile_us(0.5),
                    p90_us: s.quantile_us(0.9),
                    p99_us: s.quantile_us(0.99),
                    p999_us: s.quantile_us(0.999),
                    max_us: s.latency_us.max(),
                    mean_us: mean,
                    histogram,
                },
            );
        }
        let file = ReportFile {
            vphone_load_report: REPORT_VERSION,
            scenario: self.scenario.clone(),
            pacing: self.pacing.clone(),
            seed: self.seed.clone(),
            devices: self.devices,
            started_unix_ms: self.started_unix_ms,
            elapsed_secs: self.elapsed_secs,
            iterations: self.iterations,
            failed_iterations: self.failed_iterations,
            missed: self.missed,
            unfinished: self.unfinished,
            skipped: self.skipped,
            peak_memory_bytes: self.peak_memory_bytes(),
            ops,
            errors: self
                .errors
                .iter()
                .map(|(key, &count)| ErrorFile {
                    key: key.clone(),
                    count,
                })
                .collect(),
            shards: self.shards.clone(),
            injected_faults: self.faults.clone(),
            fault_rules_replaced: self.faults_replaced,
            series: self
                .series
                .to_file()
                .map_err(|(op, detail)| FleetError::Histogram { op, detail })?,
        };
        serde_json::to_string_pretty(&file).map_err(|e| FleetError::Format {
            path: "-".into(),
            what: "report",
            detail: e.to_string(),
        })
    }

    /// Reads a report written by [`Report::to_json`]; percentiles are recomputed from the
    /// histograms, never taken from the file.
    pub fn from_json(text: &str, path: &Path) -> Result<Report, FleetError> {
        let file: ReportFile = serde_json::from_str(text).map_err(|e| FleetError::Format {
            path: path.to_owned(),
            what: "report",
            detail: e.to_string(),
        })?;
        if file.vphone_load_report != REPORT_VERSION {
            return Err(FleetError::Format {
                path: path.to_owned(),
                what: "report",
                detail: format!(
                    "report version {} (this vphone reads {REPORT_VERSION})",
                    file.vphone_load_report
                ),
            });
        }
        let mut ops = BTreeMap::new();
        for (name, op) in file.ops {
            let latency_us =
                decode_histogram(&op.histogram).map_err(|detail| FleetError::Histogram {
                    op: name.clone(),
                    detail,
                })?;
            ops.insert(
                name,
                OpStats {
                    ok: op.ok,
                    failed: op.failed,
                    retries: op.retries,
                    latency_us,
                },
            );
        }
        Ok(Report {
            scenario: file.scenario,
            pacing: file.pacing,
            seed: file.seed,
            devices: file.devices,
            started_unix_ms: file.started_unix_ms,
            elapsed_secs: file.elapsed_secs,
            iterations: file.iterations,
            failed_iterations: file.failed_iterations,
            missed: file.missed,
            unfinished: file.unfinished,
            skipped: file.skipped,
            ops,
            errors: file.errors.into_iter().map(|e| (e.key, e.count)).collect(),
            shards: file.shards,
            faults: file.injected_faults,
            faults_replaced: file.fault_rules_replaced,
            series: Series::from_file(file.series)
                .map_err(|(op, detail)| FleetError::Histogram { op, detail })?,
        })
    }

    /// Writes the JSON report to `path`.
    pub fn write_file(&self, path: &Path) -> Result<(), FleetError> {
        let json = self.to_json()?;
        std::fs::write(path, json + "\n").map_err(|e| FleetError::io(path, e))
    }

    /// Reads a JSON report from `path`.
    pub fn read_file(path: &Path) -> Result<Report, FleetError> {
        let text = std::fs::read_to_string(path).map_err(|e| FleetError::io(path, e))?;
        Report::from_json(&text, path)
    }

    /// The final table: one row per operation (steps first), then errors, then memory.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "scenario {}  ({}), {} iterations in {:.2}s, seed fingerprint {}",
            self.scenario, self.pacing, self.iterations, self.elapsed_secs, self.seed
        );
        let missing = self.missing_shards();
        if !missing.is_empty() {
            let list: Vec<String> = missing
                .iter()
                .map(|(name, phones)| format!("{name} (phones {}..{})", phones.start, phones.end))
                .collect();
            let _ = writeln!(
                out,
                "PARTIAL: {} shard(s) missing: {}; their phones were not measured, and rates \
                 count only the shards present",
                missing.len(),
                list.join(", ")
            );
        }
        if self.shards.len() > 1 {
            let each: Vec<String> = self
                .shards
                .iter()
                .map(|s| format!("{} {:.2}s", s.shard, s.elapsed_secs))
                .collect();
            let _ = writeln!(
                out,
                "wall time per shard: {}; the merged {:.2}s spans the earliest start to the \
                 latest end, read from each machine's clock (skew between machines adds in)",
                each.join(", "),
                self.elapsed_secs
            );
        }
        let _ = writeln!(
            out,
            "{:<28} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "operation", "ok", "failed", "ok/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        let order = |name: &str| {
            super::Op::ALL
                .iter()
                .position(|op| op.name() == name)
                .unwrap_or(usize::MAX)
        };
        let mut names: Vec<&String> = self.ops.keys().collect();
        names.sort_by_key(|n| (order(n), (*n).clone()));
        let ms = |us: u64| us as f64 / 1e3;
        for name in names {
            let s = &self.ops[name];
            let _ = writeln!(
                out,
                "{:<28} {:>9} {:>7} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name,
                s.ok,
                s.failed,
                self.rate(name),
                ms(s.quantile_us(0.5)),
                ms(s.quantile_us(0.9)),
                ms(s.quantile_us(0.99)),
                ms(s.quantile_us(0.999)),
                ms(s.latency_us.max()),
            );
        }
        if self.missed > 0 {
            let _ = writeln!(
                out,
                "missed: {} iterations were due before the end but no worker was free to start \
                 them; they are not in the latencies above (each would have waited at least \
                 until the end): raise --concurrency or lower --rate",
                self.missed
            );
        }
        if self.skipped > 0 {
            let _ = writeln!(
                out,
                "skipped: {} one-time steps were drawn for phones that had already taken them \
                 (nothing sent, not counted as iterations)",
                self.skipped
            );
        }
        if self.unfinished > 0 {
            let _ = writeln!(
                out,
                "unfinished: {} iterations were still running when the duration and its drain \
                 time ended, and were cancelled",
                self.unfinished
            );
        }
        self.render_retries_and_faults(&mut out);
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let steps: u64 = self
                .errors
                .iter()
                .filter(|(k, _)| {
                    super::Op::ALL
                        .iter()
                        .any(|op| op.is_step() && op.name() == k.op)
                })
                .map(|(_, n)| n)
                .sum();
            let _ = writeln!(
                out,
                "errors ({} failed requests; {steps} failed scenario steps, which repeat them):",
                self.total_errors() - steps
            );
            for (k, n) in &self.errors {
                let status = if k.status == 0 {
                    "-".to_owned()
                } else {
                    k.status.to_string()
                };
                let _ = writeln!(out, "  {:<28} {:>4} {:<28} {:>9}", k.op, status, k.code, n);
            }
        }
        let _ = writeln!(
            out,
            "peak memory (VmHWM): {:.1} MiB{}",
            self.peak_memory_bytes() as f64 / (1024.0 * 1024.0),
            if self.shards.len() > 1 {
                format!(" (largest of {} shards)", self.shards.len())
            } else {
                String::new()
            }
        );
        out
    }
}

impl Report {
    /// The retries per operation and the faults the sandbox injected, apart from the
    /// failures (which are what remained after the retries).
    fn render_retries_and_faults(&self, out: &mut String) {
        // In the order of the table's rows.
        let retried: Vec<String> = super::Op::ALL
            .iter()
            .filter_map(|op| {
                let s = self.ops.get(op.name())?;
                (s.retries > 0).then(|| format!("{} {}", s.retries, op.name()))
            })
            .collect();
        if retried.is_empty() {
            let _ = writeln!(out, "retries: none");
        } else {
            let _ = writeln!(
                out,
                "retries: {} ({})",
                self.total_retries(),
                retried.join(", ")
            );
        }
        match &self.faults {
            None => {}
            Some(faults) if faults.values().all(|n| *n == 0) => {
                let _ = writeln!(out, "injected faults (the sandbox's /sandbox/stats): none");
            }
            Some(faults) => {
                let _ = writeln!(
                    out,
                    "injected faults (the sandbox's /sandbox/stats): {}, apart from the errors below",
                    faults.values().sum::<u64>()
                );
                for (rule, n) in faults.iter().filter(|(_, n)| **n > 0) {
                    let _ = writeln!(out, "  {rule:<58} {n:>9}");
                }
            }
        }
        if self.faults.is_some() && self.faults_replaced {
            let _ = writeln!(
                out,
                "  the sandbox's fault rules were replaced during the run; counted per rule text over the whole run"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

#[cfg(test)]
mod round_trip {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_field_of_a_report_survives_json_exactly() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..2_000 {
            let started = rng.gen_range(1_600_000_000_000..2_000_000_000_000);
            let mut r = Report::new("sign", "closed concurrency=2", "9", started);
            r.devices = rng.gen_range(1..1 << 40);
            // As a run sets it: a Duration at microsecond resolution.
            r.elapsed_secs = secs(std::time::Duration::from_nanos(rng.gen_range(0..1 << 47)));
            r.iterations = rng.gen_range(0..1 << 40);
            r.shards.push(ShardRun {
                shard: "1/1".into(),
                first_device: 0,
                end_device: r.devices,
                peak_memory_bytes: rng.gen_range(0..1 << 40),
                elapsed_secs: secs(std::time::Duration::from_micros(rng.gen_range(0..1 << 40))),
            });
            let back = Report::from_json(&r.to_json().unwrap(), Path::new("-")).unwrap();
            assert_eq!(back, r);
            // A merged report's span is as exact.
            let mut other = r.clone();
            other.started_unix_ms = r.started_unix_ms.saturating_sub(rng.gen_range(0..10_000));
            other.shards[0].shard = "2/2".into();
            other.shards[0].first_device = r.devices;
            let mut merged = r.clone();
            merged.shards[0].shard = "1/2".into();
            merged.merge(&other).unwrap();
            let back = Report::from_json(&merged.to_json().unwrap(), Path::new("-")).unwrap();
            assert_eq!(back, merged);
        }
    }
}
