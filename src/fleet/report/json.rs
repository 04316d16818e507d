//! The report file: JSON with every histogram serialized, so nothing is lost; percentiles are
//! written for people and recomputed from the histograms when read.

use super::{ErrorKey, OpStats, Report, ShardRun, decode_histogram, encode_histogram};
use crate::fleet::FleetError;
use crate::fleet::faults::FaultWindow;
use crate::fleet::series::Series;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The report format's version, written into every report file. Version 2 keeps the
/// sandbox readings behind the injected faults (`fault_readings`), so a merge counts a shared
/// sandbox's faults once; an older vphone refuses it rather than add the shards' counts.
pub const REPORT_VERSION: u32 = 2;

/// The oldest report version this vphone still reads (version 1: faults without readings,
/// which a merge adds as they are).
const OLDEST_READ_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct OpFile {
    ok: u64,
    failed: u64,
    #[serde(default)]
    retries: u64,
    rate_per_sec: f64,
    // `null` for an operation with no success: no latency was measured.
    p50_us: Option<u64>,
    p90_us: Option<u64>,
    p99_us: Option<u64>,
    p999_us: Option<u64>,
    max_us: Option<u64>,
    mean_us: Option<f64>,
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
    /// What the report shows; read back, it is counted again from the two fields below
    /// (in a version 1 report, it is all there is: taken as counts without readings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    injected_faults: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    fault_readings: Vec<FaultWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    injected_faults_unread: Option<BTreeMap<String, u64>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fault_rules_replaced: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    fault_sandbox_restarted: bool,
    /// Absent in reports of vphone versions before the time series: read as empty.
    #[serde(default)]
    series: Vec<crate::fleet::series::SecondFile>,
}

impl Report {
    /// The report as pretty JSON, histograms included.
    pub fn to_json(&self) -> Result<String, FleetError> {
        let mut ops = BTreeMap::new();
        for (name, s) in &self.ops {
            let histogram =
                encode_histogram(&s.latency_us).map_err(|detail| FleetError::Histogram {
                    op: name.clone(),
                    detail,
                })?;
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
                    max_us: s.max_us(),
                    mean_us: s.mean_us(),
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
            fault_readings: self.fault_windows.clone(),
            injected_faults_unread: self.faults_unread.clone(),
            fault_rules_replaced: self.faults_replaced,
            fault_sandbox_restarted: self.faults_restarted,
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
        if !(OLDEST_READ_VERSION..=REPORT_VERSION).contains(&file.vphone_load_report) {
            return Err(FleetError::Format {
                path: path.to_owned(),
                what: "report",
                detail: format!(
                    "report version {} (this vphone reads {OLDEST_READ_VERSION} to \
                     {REPORT_VERSION})",
                    file.vphone_load_report
                ),
            });
        }
        // Counts with no readings behind them (all a version 1 report has) are kept as they
        // are; readings are counted again, never taken from the file's total.
        let faults_unread = match file.injected_faults_unread {
            Some(unread) => Some(unread),
            None if file.fault_readings.is_empty() => file.injected_faults,
            None => None,
        };
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
        let mut report = Report {
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
            faults: None,
            fault_windows: file.fault_readings,
            faults_unread,
            faults_replaced: file.fault_rules_replaced,
            faults_restarted: file.fault_sandbox_restarted,
            series: Series::from_file(file.series)
                .map_err(|(op, detail)| FleetError::Histogram { op, detail })?,
        };
        report
            .recount_faults()
            .map_err(|detail| FleetError::Format {
                path: path.to_owned(),
                what: "report",
                detail,
            })?;
        Ok(report)
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
}

#[cfg(test)]
mod round_trip {
    use super::*;
    use crate::fleet::faults::FaultReading;
    use crate::fleet::report::secs;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fault_readings_survive_json_and_the_count_is_made_again_from_them() {
        let reading = |a: u64, retired: u64| FaultReading {
            instance: Some("0123456789abcdef0123456789abcdef".into()),
            counts: [("* /v1/*: status=503".to_owned(), a)].into(),
            generation: Some(2),
            retired,
        };
        let mut r = Report::new("bind", "closed concurrency=2", "9", 1_000);
        r.fault_windows
            .push(FaultWindow::new(reading(3, 1), reading(10, 1)).unwrap());
        r.faults_unread = Some([("(old)".to_owned(), 4)].into());
        r.recount_faults().unwrap();
        assert_eq!(r.total_faults(), Some(11));
        let json = r.to_json().unwrap();
        assert_eq!(Report::from_json(&json, Path::new("-")).unwrap(), r);
        // The total written for people is not what is read back.
        let forged = json.replacen(
            "\"* /v1/*: status=503\": 7",
            "\"* /v1/*: status=503\": 70",
            1,
        );
        assert_ne!(forged, json);
        assert_eq!(Report::from_json(&forged, Path::new("-")).unwrap(), r);
    }

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
                threads: rng.gen_range(1..64),
                signer: "rustcrypto".into(),
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
