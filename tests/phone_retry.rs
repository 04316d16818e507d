//! The retry policy on the command line: `--retries N` and `--no-retry` on `vphone phone`,
//! against a sandbox with fault rules, counting the attempts the sandbox saw in
//! `/sandbox/stats`; and the lost binding answer as the CLI tells it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Rig, phone_cli};
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::{SandboxConfig, SandboxState};

async fn rig_with(rules: &[&str]) -> Rig {
    let config = SandboxConfig {
        faults: rules.iter().map(|r| FaultRule::parse(r).unwrap()).collect(),
        faults_seed: Some(1),
        ..SandboxConfig::default()
    };
    Rig::with_state(SandboxState::new(config)).await
}

/// Creates and binds phone `name` in `home`.
fn bound(home: &std::path::Path, api: &str, name: &str) {
    phone_cli(home, api)
        .args(["create", name, "--number", "+15550101"])
        .assert()
        .success();
    phone_cli(home, api).args(["bind", name]).assert().success();
}

/// Runs a phone command; returns its exit code and stderr.
fn run(home: &std::path::Path, api: &str, args: &[&str]) -> (Option<i32>, String) {
    let out = phone_cli(home, api).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_503_is_retried_by_default_and_reported_with_no_retry() {
    let rig = rig_with(&["GET /v1/mfa/devices/*: status=503 next=3"]).await;
    let dir = tempfile::tempdir().unwrap();
    let api = rig.base_url();
    bound(dir.path(), &api, "flaky");
    // --no-retry: one attempt, refused, exit code 1 (the server answered).
    let (code, stderr) = run(dir.path(), &api, &["--no-retry", "show", "flaky"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    assert_eq!(rig.injected().await, [1]);
    // The default policy: the two refusals left are retried, and the command succeeds.
    let (code, stderr) = run(dir.path(), &api, &["show", "flaky"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rig.injected().await, [3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_stop_at_the_number_given() {
    let rig = rig_with(&["GET /v1/mfa/devices/*: status=503 next=10"]).await;
    let dir = tempfile::tempdir().unwrap();
    let api = rig.base_url();
    bound(dir.path(), &api, "stubborn");
    let (code, stderr) = run(dir.path(), &api, &["--retries", "2", "show", "stubborn"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("service_unavailable"), "{stderr}");
    assert!(stderr.contains("(after 2 retries)"), "{stderr}");
    assert_eq!(rig.injected().await, [3], "one attempt and two retries");
    let (code, stderr) = run(
        dir.path(),
        &api,
        &["--retries", "1", "--no-retry", "show", "stubborn"],
    );
    assert_eq!(
        code,
        Some(2),
        "the two flags contradict each other: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_dropped_before_the_bank_acts_is_retried_or_reported_unreachable() {
    let rig = rig_with(&["GET /v1/mfa/devices/*: drop_before next=4"]).await;
    let dir = tempfile::tempdir().unwrap();
    let api = rig.base_url();
    bound(dir.path(), &api, "dropped");
    // Without retries only the immediate resend of a closed connection is made: the second
    // drop is reported as the server being unreachable.
    let (code, stderr) = run(dir.path(), &api, &["--no-retry", "show", "dropped"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert_eq!(rig.injected().await, [2]);
    // With the default policy the two drops left are retried.
    let (code, stderr) = run(dir.path(), &api, &["show", "dropped"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(rig.injected().await, [4]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bind_says_when_the_answer_was_lost_and_the_device_was_read_back() {
    let rig = rig_with(&["PUT /v1/mfa/challenges/signatures/*: drop_after next=1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let api = rig.base_url();
    phone_cli(dir.path(), &api)
        .args(["create", "lost", "--number", "+15550101"])
        .assert()
        .success();
    let out = phone_cli(dir.path(), &api)
        .args(["bind", "lost"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("answer to the binding was lost")
            && stdout.contains("read the device back: it is bound"),
        "{stdout}"
    );
    assert_eq!(rig.injected().await, [1]);
    assert_eq!(rig.sandbox.state().stats().bindings, 1);

    // The same in JSON, on a second phone.
    let rig = rig_with(&["PUT /v1/mfa/challenges/signatures/*: drop_after next=1"]).await;
    let api = rig.base_url();
    phone_cli(dir.path(), &api)
        .args(["create", "lost2", "--number", "+15550101"])
        .assert()
        .success();
    let out = phone_cli(dir.path(), &api)
        .args(["--json", "bind", "lost2"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["answer_lost"], true, "{json}");
}
