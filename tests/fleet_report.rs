//! Reports, seeds and shards without a server: merging is lossless, seeds reproduce fleets.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use assert_cmd::Command;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};
use vphone::api::KeyPurpose;
use vphone::fleet::{Failure, Fleet, Op, Recorder, Report, SecondClock, Shard};

/// Where the recorded rows' seconds count from: Unix second 1,800,000,000 at `origin()`.
fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Records a deterministic stream of outcomes, row `i` ending `i` ms after [`origin`] (so
/// they spread over five seconds); `keep(i)` picks which of them go here.
fn record(keep: impl Fn(usize) -> bool) -> Report {
    let recorder = Recorder::new(SecondClock::new(origin(), 1_800_000_000_000_000));
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for i in 0..5_000 {
        let op = Op::ALL[rng.gen_range(0..Op::ALL.len())];
        // Latencies over six orders of magnitude, as a real run sees them.
        let us = 10f64.powf(rng.gen_range(1.0..7.0)) as u64;
        let fails = rng.gen_bool(0.05);
        let status = [403u16, 409, 0][rng.gen_range(0..3)];
        if !keep(i) {
            continue;
        }
        let end = origin() + Duration::from_millis(i as u64);
        if fails {
            let code = if status == 0 { "timeout" } else { "conflict" };
            let failure = Failure {
                status,
                code: code.into(),
            };
            recorder.failed(i, op, &failure, end);
        } else {
            recorder.ok(i, op, end - Duration::from_micros(us), end);
        }
        recorder.iteration_done();
    }
    let mut report = Report::new("mix:bind=1,sign=8", "closed concurrency=8", "1", 1_000);
    recorder.fill(&mut report).unwrap();
    report.elapsed_secs = 1.0;
    report
}

#[test]
fn merging_two_reports_equals_the_report_of_the_whole() {
    let whole = record(|_| true);
    let first = record(|i| i % 3 == 0);
    let second = record(|i| i % 3 != 0);
    // Through their JSON files, as shards hand them over.
    let read = |r: &Report| Report::from_json(&r.to_json().unwrap(), Path::new("-")).unwrap();
    let mut merged = read(&first);
    merged.merge(&read(&second)).unwrap();
    assert_eq!(merged.ops, whole.ops);
    assert_eq!(merged.errors, whole.errors);
    assert_eq!(merged.iterations, whole.iterations);
    for (name, stats) in &whole.ops {
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.ops[name].quantile_us(q),
                stats.quantile_us(q),
                "{name} {q}"
            );
        }
    }
}

#[test]
fn the_time_series_adds_up_to_the_totals_and_merges_second_by_second() {
    let whole = record(|_| true);
    // 5,000 rows one millisecond apart from the start of a second: five full seconds.
    let seconds: Vec<u64> = whole.series.seconds.keys().copied().collect();
    assert_eq!(seconds, (1_800_000_000..1_800_000_005).collect::<Vec<_>>());
    for (name, stats) in &whole.ops {
        assert_eq!(
            whole.series.totals(name),
            (stats.ok, stats.failed),
            "{name}"
        );
        for ops in whole.series.seconds.values() {
            if let Some(s) = ops.get(name) {
                assert_eq!(s.latency_us.len(), s.ok, "{name}");
                assert!(s.quantile_us(0.5) <= s.quantile_us(0.99), "{name}");
            }
        }
    }

    // Two shards, through their JSON files: every second's counts are the sum of theirs.
    let read = |r: &Report| Report::from_json(&r.to_json().unwrap(), Path::new("-")).unwrap();
    let first = read(&record(|i| i % 2 == 0));
    let second = read(&record(|i| i % 2 == 1));
    let mut merged = first.clone();
    merged.merge(&second).unwrap();
    assert_eq!(merged.series, whole.series);
    let count = |r: &Report, sec: u64, op: &str| {
        r.series
            .seconds
            .get(&sec)
            .and_then(|ops| ops.get(op))
            .map_or((0, 0), |s| (s.ok, s.failed))
    };
    for (&sec, ops) in &merged.series.seconds {
        for name in ops.keys() {
            let (a, b) = (count(&first, sec, name), count(&second, sec, name));
            assert_eq!(
                count(&merged, sec, name),
                (a.0 + b.0, a.1 + b.1),
                "{sec} {name}"
            );
        }
    }
}

#[test]
fn vphone_load_merge_merges_report_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    let out = dir.path().join("merged.json");
    let html = dir.path().join("merged.html");
    record(|i| i % 2 == 0).write_file(&a).unwrap();
    record(|i| i % 2 == 1).write_file(&b).unwrap();
    let assert = Command::cargo_bin("vphone")
        .unwrap()
        .args(["load", "merge"])
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .arg(&out)
        .arg("--html")
        .arg(&html)
        .assert()
        .success();
    let table = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(
        table.contains("create_device") && table.contains("p99.9"),
        "{table}"
    );
    let merged = Report::read_file(&out).unwrap();
    let whole = record(|_| true);
    // The page is the merged report's.
    assert_eq!(std::fs::read_to_string(&html).unwrap(), merged.to_html());
    assert_eq!(
        (merged.ops, merged.errors, merged.series),
        (whole.ops, whole.errors, whole.series)
    );
}

#[test]
fn the_same_seed_gives_the_same_public_keys() {
    let keys = |seed: &str, range: std::ops::Range<u64>| -> Vec<String> {
        let fleet = Fleet::new(seed, 1_000, range).unwrap();
        (0..fleet.len())
            .map(|i| fleet.key(i, KeyPurpose::Unrestricted).public_key_hex())
            .collect()
    };
    assert_eq!(keys("2026", 0..20), keys("2026", 0..20));
    // A shard derives exactly the whole fleet's keys for its slice.
    assert_eq!(keys("2026", 0..20)[10..], keys("2026", 10..20)[..]);
    assert_ne!(keys("2026", 0..20), keys("2027", 0..20));
    let hex = "00".repeat(31) + "07";
    assert_eq!(keys(&hex, 0..3), keys(&hex, 0..3));
    assert!(Fleet::new("not a seed", 10, 0..10).is_err());
    let all: HashSet<String> = keys("2026", 0..200).into_iter().collect();
    assert_eq!(all.len(), 200, "every phone has its own key");
}

#[test]
fn shards_are_disjoint_and_cover_the_fleet() {
    for devices in [1u64, 10, 999, 100_000] {
        for n in [1u64, 2, 3, 7, 16] {
            let mut covered = 0;
            let mut next = 0;
            for k in 1..=n {
                let slice = format!("{k}/{n}").parse::<Shard>().unwrap().slice(devices);
                assert_eq!(slice.start, next, "{k}/{n} of {devices}");
                covered += slice.end - slice.start;
                next = slice.end;
            }
            assert_eq!((covered, next), (devices, devices));
        }
    }
}

fn shard_report(seed: &str, shard: &str, first: u64, end: u64) -> Report {
    let mut r = record(|i| i % 2 == 0);
    r.seed = seed.into();
    r.devices = 100;
    r.shards.push(vphone::fleet::ShardRun {
        shard: shard.into(),
        first_device: first,
        end_device: end,
        peak_memory_bytes: 1,
        elapsed_secs: 1.0,
        threads: 1,
        signer: "aws-lc".into(),
    });
    r
}

#[test]
fn merge_refuses_reports_of_other_runs_and_overlapping_shards() {
    let first = shard_report("1", "1/2", 0, 50);
    let second = shard_report("1", "2/2", 50, 100);
    let mut ok = first.clone();
    ok.merge(&second).unwrap();
    assert_eq!(ok.shards.len(), 2);
    assert_eq!(ok.seed, "1");

    let refused = |other: &Report, needle: &str| {
        let mut m = first.clone();
        let err = m.merge(other).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
        assert_eq!(m, first, "a refused merge leaves the report as it was");
    };
    refused(&shard_report("2", "2/2", 50, 100), "seed");
    let mut scenario = second.clone();
    scenario.scenario = "sign".into();
    refused(&scenario, "scenario");
    let mut pacing = second.clone();
    pacing.pacing = "open rate=10/s".into();
    refused(&pacing, "pacing");
    let mut size = second.clone();
    size.devices = 200;
    refused(&size, "fleet of");
    refused(&first, "overlap");
    refused(&shard_report("1", "2/3", 33, 66), "number of shards");
    refused(&shard_report("1", "2/2", 40, 100), "overlap");
}

#[test]
fn vphone_load_merge_refuses_the_same_shard_twice() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    shard_report("1", "1/2", 0, 50).write_file(&a).unwrap();
    let out = Command::cargo_bin("vphone")
        .unwrap()
        .args(["load", "merge"])
        .arg(&a)
        .arg(&a)
        .assert()
        .failure()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("overlap"), "{stderr}");
}

#[test]
fn a_report_without_a_time_series_reads_with_an_empty_one_and_merges() {
    let with = record(|i| i % 2 == 0);
    let mut json: serde_json::Value = serde_json::from_str(&with.to_json().unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("series").unwrap();
    let mut older = Report::from_json(&json.to_string(), Path::new("old.json")).unwrap();
    assert!(older.series.seconds.is_empty());
    assert_eq!(older.ops, with.ops);
    // Another shard's series is kept as it is: the older one adds nothing to it.
    older.shards.push(vphone::fleet::ShardRun {
        shard: "1/2".into(),
        first_device: 0,
        end_device: 1,
        peak_memory_bytes: 0,
        elapsed_secs: 1.0,
        // An older report does not say.
        threads: 0,
        signer: String::new(),
    });
    let mut newer = record(|i| i % 2 == 1);
    newer.shards.push(vphone::fleet::ShardRun {
        shard: "2/2".into(),
        first_device: 1,
        end_device: 2,
        peak_memory_bytes: 0,
        elapsed_secs: 1.0,
        threads: 2,
        signer: "aws-lc".into(),
    });
    older.merge(&newer).unwrap();
    assert_eq!(older.series, newer.series);
}
