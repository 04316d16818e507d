//! `vphone load merge` counts a sandbox's injected faults once, however many shards ran
//! against it: each shard keeps its readings of the sandbox (named by its instance id), and
//! the merge combines the readings of one instance instead of adding the shards' counts.
//! Shards against different sandboxes add up; a report without readings (an older vphone's)
//! still merges, and the table says its counts may repeat.
#![allow(clippy::unwrap_used)]

mod common;

use assert_cmd::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vphone::fleet::Report;
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::{SandboxConfig, SandboxHandle};

const RULE: &str = "* /v1/*: status=503 p=0.1";

fn load(args: &[&str]) -> Command {
    let mut cmd = common::load::vphone_load(args);
    cmd.timeout(Duration::from_secs(180));
    cmd
}

async fn sandbox() -> SandboxHandle {
    vphone::sandbox::spawn(SandboxConfig {
        faults: vec![FaultRule::parse(RULE).unwrap()],
        faults_seed: Some(3),
        static_otp: true,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

/// The sandbox's own count of every fault it injected since it started, and its instance.
async fn sandbox_count(base: &str) -> (u64, String) {
    let stats: serde_json::Value = reqwest::get(format!("{base}/sandbox/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totals: u64 = stats["faults_total"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    let retired = stats["faults_total_retired"].as_u64().unwrap();
    (
        totals + retired,
        stats["instance"].as_str().unwrap().to_owned(),
    )
}

/// Runs shard `k` of 2 (a 40-phone bind fleet) against `base` with the OTP source `otp`,
/// writing its report to `json`; returns the exit code and stdout.
fn shard(base: &str, k: u64, otp: &str, json: &Path) -> (Option<i32>, String) {
    let out = load(&[
        "--api",
        base,
        "--devices",
        "40",
        "--shard",
        &format!("{k}/2"),
        "--scenario",
        "bind",
        "-c",
        "2",
        "--seed",
        "8",
        "--progress",
        "off",
        "--otp",
        otp,
    ])
    .arg("--json")
    .arg(json)
    .output()
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn merge(reports: &[&Path], json: &Path) -> String {
    let out = Command::cargo_bin("vphone")
        .unwrap()
        .args(["load", "merge"])
        .args(reports)
        .arg("--json")
        .arg(json)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Waits (bounded) until `path` exists, or `run` ended without making it.
async fn appears<T>(path: &Path, run: &tokio::task::JoinHandle<T>) {
    for _ in 0..1_200 {
        if path.exists() {
            return;
        }
        assert!(
            !run.is_finished(),
            "the run ended before {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} did not appear within two minutes", path.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_sharing_one_sandbox_count_its_faults_once() {
    let bank = sandbox().await;
    let base = bank.base_url();
    let dir = tempfile::tempdir().unwrap();
    let (started, go) = (dir.path().join("started"), dir.path().join("go"));
    let (a, b, merged) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("merged.json"),
    );
    let (before, instance) = sandbox_count(&base).await;
    // Shard 1 waits at each code until shard 2 has run from start to end: its readings
    // before and after enclose shard 2's, so both shards' readings see shard 2's faults.
    // (Each wait stays under the fleet's 30 s bound on an OTP command.)
    let otp = format!(
        "command:touch '{}'; i=0; while [ ! -e '{}' ] && [ $i -lt 250 ]; do sleep 0.1; \
         i=$((i+1)); done; echo 212212",
        started.display(),
        go.display()
    );
    let first = {
        let (base, a) = (base.clone(), a.clone());
        tokio::task::spawn_blocking(move || shard(&base, 1, &otp, &a))
    };
    appears(&started, &first).await;
    let second = {
        let (base, b) = (base.clone(), b.clone());
        tokio::task::spawn_blocking(move || shard(&base, 2, "static:212212", &b))
    };
    let (_, out2) = second.await.unwrap();
    std::fs::write(&go, "").unwrap();
    let (_, out1) = first.await.unwrap();
    let (after, _) = sandbox_count(&base).await;
    let injected = after - before;

    let (ra, rb) = (
        Report::read_file(&a).unwrap(),
        Report::read_file(&b).unwrap(),
    );
    let (fa, fb) = (ra.total_faults().unwrap(), rb.total_faults().unwrap());
    // Shard 2 met faults, and shard 1's readings saw them too: adding the shards' counts
    // would count them twice.
    assert!(fb > 0, "{out2}");
    assert_eq!(fa, injected, "shard 1's window holds every fault\n{out1}");
    assert!(fa + fb > injected);
    let table = merge(&[&a, &b], &merged);
    let report = Report::read_file(&merged).unwrap();
    assert_eq!(report.total_faults(), Some(injected), "{table}");
    assert!(
        table.contains(&format!(
            "injected faults (the sandbox's /sandbox/stats): {injected}"
        )),
        "{table}"
    );
    assert!(!table.contains("more than once"), "{table}");
    // The readings behind the count are kept, named by the sandbox's instance.
    assert_eq!(report.fault_windows.len(), 2);
    assert!(
        report
            .fault_windows
            .iter()
            .all(|w| w.instance() == instance)
    );
    // Merged the other way round, the count is the same.
    let again = dir.path().join("again.json");
    merge(&[&b, &a], &again);
    assert_eq!(
        Report::read_file(&again).unwrap().total_faults(),
        Some(injected)
    );
    bank.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shards_against_different_sandboxes_add_up() {
    // Two sandboxes started alike (same rules, same fault seed): only their instance ids
    // tell their readings apart.
    let (one, two) = (sandbox().await, sandbox().await);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, merged) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("merged.json"),
    );
    let mut expected = 0;
    let mut instances = Vec::new();
    for (k, bank, json) in [(1, &one, &a), (2, &two, &b)] {
        let base = bank.base_url();
        let (before, instance) = sandbox_count(&base).await;
        let run = {
            let (base, json) = (base.clone(), json.clone());
            tokio::task::spawn_blocking(move || shard(&base, k, "static:212212", &json))
        };
        let (_, out) = run.await.unwrap();
        let (after, _) = sandbox_count(&base).await;
        assert!(after > before, "{out}");
        expected += after - before;
        instances.push(instance);
    }
    assert_ne!(instances[0], instances[1]);
    let table = merge(&[&a, &b], &merged);
    let report = Report::read_file(&merged).unwrap();
    assert_eq!(report.total_faults(), Some(expected), "{table}");
    let mut seen: Vec<String> = report
        .fault_windows
        .iter()
        .map(|w| w.instance().to_owned())
        .collect();
    seen.sort();
    instances.sort();
    assert_eq!(seen, instances);
    one.shutdown().await;
    two.shutdown().await;
}

/// `report` as a version 1 file (before readings were kept): its faults are only counts.
fn as_version_1(report: &Report) -> String {
    let mut json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    let file = json.as_object_mut().unwrap();
    file.insert("vphone_load_report".into(), 1.into());
    assert!(file.remove("fault_readings").is_some());
    file.remove("injected_faults_unread");
    serde_json::to_string_pretty(&json).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_older_report_without_readings_still_merges_and_the_table_says_so() {
    let bank = sandbox().await;
    let base = bank.base_url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, old_b, merged) = (
        dir.path().join("a.json"),
        dir.path().join("b.json"),
        dir.path().join("old-b.json"),
        dir.path().join("merged.json"),
    );
    for (k, json) in [(1, &a), (2, &b)] {
        let (base, json): (String, PathBuf) = (base.clone(), json.clone());
        tokio::task::spawn_blocking(move || shard(&base, k, "static:212212", &json))
            .await
            .unwrap();
    }
    let (ra, rb) = (
        Report::read_file(&a).unwrap(),
        Report::read_file(&b).unwrap(),
    );
    let fb = rb.total_faults().unwrap();
    std::fs::write(&old_b, as_version_1(&rb)).unwrap();
    let old = Report::read_file(&old_b).unwrap();
    assert!(old.fault_windows.is_empty());
    assert_eq!(old.total_faults(), Some(fb), "its count is kept as it was");
    let table = merge(&[&a, &old_b], &merged);
    let report = Report::read_file(&merged).unwrap();
    // The runs did not overlap, so adding is right here; the table cannot know that.
    assert_eq!(
        report.total_faults(),
        Some(ra.total_faults().unwrap() + fb),
        "{table}"
    );
    assert!(
        table.contains("shards that shared a sandbox may be counted more than once"),
        "{table}"
    );
    // A report of a version this vphone does not know is refused with the reason.
    let text = std::fs::read_to_string(&a).unwrap().replacen(
        "\"vphone_load_report\": 2",
        "\"vphone_load_report\": 99",
        1,
    );
    let err = Report::from_json(&text, Path::new("future.json")).unwrap_err();
    assert!(err.to_string().contains("report version 99"), "{err}");
    bank.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_restarted_during_a_run_is_counted_from_its_restart() {
    let config = || SandboxConfig {
        faults: vec![FaultRule::parse(RULE).unwrap()],
        faults_seed: Some(3),
        static_otp: true,
        ..SandboxConfig::default()
    };
    let old = sandbox().await;
    let (addr, base) = (old.addr(), old.base_url());
    // The old sandbox injected faults before the run: none of them are the new one's.
    let http = reqwest::Client::new();
    for _ in 0..500 {
        if sandbox_count(&base).await.0 >= 2 {
            break;
        }
        let _ = http
            .get(format!("{base}/v1/persons/nobody"))
            .send()
            .await
            .unwrap();
    }
    assert!(sandbox_count(&base).await.0 >= 2);
    let dir = tempfile::tempdir().unwrap();
    let (started, go, json) = (
        dir.path().join("started"),
        dir.path().join("go"),
        dir.path().join("r.json"),
    );
    // The run waits at its first code while the sandbox is restarted on the same address.
    let otp = format!(
        "command:touch '{}'; i=0; while [ ! -e '{}' ] && [ $i -lt 250 ]; do sleep 0.1; \
         i=$((i+1)); done; echo 212212",
        started.display(),
        go.display()
    );
    let run = {
        let (base, json) = (base.clone(), json.clone());
        tokio::task::spawn_blocking(move || {
            let out = load(&[
                "--api",
                &base,
                "--devices",
                "20",
                "--scenario",
                "bind",
                "-c",
                "1",
                "--seed",
                "8",
                "--progress",
                "off",
                "--otp",
                &otp,
            ])
            .arg("--json")
            .arg(&json)
            .output()
            .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    appears(&started, &run).await;
    old.shutdown().await;
    let new = vphone::sandbox::spawn_with(vphone::sandbox::SandboxState::new(config()), addr)
        .await
        .unwrap();
    std::fs::write(&go, "").unwrap();
    let table = run.await.unwrap();
    let (injected, _) = sandbox_count(&base).await;
    assert!(injected > 0, "{table}");
    let report = Report::read_file(&json).unwrap();
    // Everything the new sandbox injected, and nothing taken off for the old one's counts.
    assert_eq!(report.total_faults(), Some(injected), "{table}");
    assert!(report.faults_restarted);
    assert!(
        table.contains("the sandbox restarted during the run"),
        "{table}"
    );
    new.shutdown().await;
}
