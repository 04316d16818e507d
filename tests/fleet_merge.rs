//! `vphone load merge` checks that every shard of a run is there: a missing one is named
//! and refused, and `--allow-partial` merges anyway with the gap in the table.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use vphone::fleet::{Report, ShardRun};

fn shard(k: u64, n: u64, devices: u64, elapsed: f64) -> Report {
    let mut r = Report::new("bind", "closed concurrency=1", "f1", 1_000 + k);
    r.devices = devices;
    let phones = vphone::fleet::Shard::new(k, n).unwrap().slice(devices);
    r.iterations = phones.end - phones.start;
    r.elapsed_secs = elapsed;
    r.shards.push(ShardRun {
        shard: format!("{k}/{n}"),
        first_device: phones.start,
        end_device: phones.end,
        peak_memory_bytes: 1,
        elapsed_secs: elapsed,
        threads: 2,
        signer: "aws-lc".into(),
    });
    r
}

fn merge(dir: &std::path::Path, shards: &[Report], extra: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = Command::cargo_bin("vphone").unwrap();
    cmd.args(["load", "merge"]);
    for (i, r) in shards.iter().enumerate() {
        let path = dir.join(format!("shard-{i}.json"));
        r.write_file(&path).unwrap();
        cmd.arg(path);
    }
    cmd.args(extra).assert()
}

#[test]
fn merge_refuses_a_run_with_a_missing_shard_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = merge(
        dir.path(),
        &[shard(1, 3, 90, 2.0), shard(3, 3, 90, 2.5)],
        &[],
    )
    .code(2)
    .get_output()
    .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2/3") && stderr.contains("--allow-partial"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("1/3") && !stderr.contains("3/3,"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn allow_partial_merges_and_shows_the_gap_and_every_shards_wall_time() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("merged.json");
    let html = dir.path().join("merged.html");
    let out = merge(
        dir.path(),
        &[shard(1, 3, 90, 2.0), shard(3, 3, 90, 2.5)],
        &[
            "--allow-partial",
            "--json",
            json.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
        ],
    )
    .success()
    .get_output()
    .clone();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PARTIAL: 1 shard(s) missing: 2/3 (phones 30..60)"),
        "{table}"
    );
    assert!(
        table.contains("1/3 2.00s") && table.contains("3/3 2.50s"),
        "{table}"
    );
    // The merged report keeps the gap: read back, it still names it.
    let merged = Report::read_file(&json).unwrap();
    assert_eq!(merged.missing_shards(), vec![("2/3".to_owned(), 30..60)]);
    assert_eq!(merged.iterations, 60);
    // The page shows the gap too.
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("PARTIAL: 1 shard(s) missing: 2/3 (phones 30..60)"),
        "{page}"
    );
}

#[test]
fn every_shard_present_merges_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<Report> = (1..=3).map(|k| shard(k, 3, 90, 1.0)).collect();
    let out = merge(dir.path(), &all, &[]).success().get_output().clone();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("PARTIAL"), "{table}");
    assert!(shard(1, 1, 90, 1.0).missing_shards().is_empty());
}
