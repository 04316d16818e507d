//! The retry policy on the command line: `--retries N` and `--no-retry` on `vphone phone`,
//! against a sandbox with fault rules, counting the attempts the sandbox saw in
//! `/sandbox/stats`; the token request's retries (`ApiClient::authenticate`, `vphone demo`);
//! `vphone probe`, which sends every request once unless asked; and the lost binding answer
//! as the CLI tells it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Rig, bounded, phone_cli};
use serde_json::Value;
use std::time::Duration;
use vphone::client::{ApiClient, ClientConfig, ClientError, Credentials, RetryPolicy};
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

/// Runs `vphone ARGS` (no credentials from the caller's environment) off the runtime.
async fn vphone(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        assert_cmd::Command::cargo_bin("vphone")
            .unwrap()
            .env_remove("VPHONE_CREDENTIALS")
            .env_remove("VPHONE_CLIENT_ID")
            .env_remove("VPHONE_CLIENT_SECRET")
            .args(&args)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The JSON report of `vphone probe --json ARGS` against `api`, after checking it exited 0.
async fn probe_json(api: &str, extra: &[&str]) -> Value {
    let mut args = strings(&["probe", "--json", "--api", api]);
    args.extend(strings(extra));
    let out = vphone(args).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn row<'a>(report: &'a Value, call: &str) -> &'a Value {
    report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["call"] == call)
        .unwrap_or_else(|| panic!("no row {call} in {report:#}"))
}

fn flow<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["flows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flow"] == name)
        .unwrap_or_else(|| panic!("no flow {name} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_sends_every_request_once_unless_asked_and_says_what_passed_after_retries() {
    bounded(async {
        let rig = rig_with(&["POST /v1/persons: status=503 next=3"]).await;
        let api = rig.base_url();
        // By default the refusal is what the probe reports: one attempt, the create flow
        // fails on it.
        let report = probe_json(&api, &[]).await;
        let persons = row(&report, "POST /v1/persons");
        assert_eq!(
            (&persons["status"], &persons["outcome"]),
            (&Value::from(503), &Value::from("refused")),
            "{persons}"
        );
        assert!(persons.get("retried_after").is_none(), "{persons}");
        assert_eq!(flow(&report, "create")["works"], false, "{report:#}");
        assert_eq!(rig.injected().await, [1], "sent once");
        // With --retries the call passes, and its row says what the attempts before met (the
        // two refusals the rule has left).
        let report = probe_json(&api, &["--retries", "2"]).await;
        let persons = row(&report, "POST /v1/persons");
        assert_eq!(
            (&persons["status"], &persons["outcome"]),
            (&Value::from(201), &Value::from("ok")),
            "{persons}"
        );
        assert_eq!(persons["retried_after"], serde_json::json!([503, 503]));
        for other in report["calls"].as_array().unwrap() {
            if other["call"] != "POST /v1/persons" {
                assert!(other.get("retried_after").is_none(), "{other}");
            }
        }
        assert_eq!(flow(&report, "create")["works"], true, "{report:#}");
        assert_eq!(rig.injected().await, [3]);
    })
    .await;
}

/// A client of the rig with `retry`.
fn client_of(rig: &Rig, retry: RetryPolicy) -> ApiClient {
    let config = ClientConfig::local(
        rig.base_url().parse().unwrap(),
        Credentials::sandbox_default(),
    )
    .with_timeout(Duration::from_secs(10))
    .with_retry(retry);
    ApiClient::new(config).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticate_retries_a_refused_token_request_under_the_policy() {
    bounded(async {
        let rig = rig_with(&["POST /oauth2/token: status=503 next=3"]).await;
        // Sent once: the refusal comes back as the bank's, counted as no retry.
        let once = client_of(&rig, RetryPolicy::none());
        match once.authenticate().await {
            Err(ClientError::Api {
                remote, retries, ..
            }) => {
                assert_eq!((remote.status, retries), (503, 0));
            }
            other => panic!("expected the 503, got {other:?}"),
        }
        assert_eq!(rig.injected().await, [1]);
        // The default policy retries the two refusals left and gets a token.
        let retrying = client_of(&rig, RetryPolicy::default());
        let lifetime = retrying.authenticate().await.unwrap();
        assert!(lifetime.is_some_and(|l| l > Duration::ZERO));
        assert_eq!(rig.injected().await, [3]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_survives_a_refused_first_token_request() {
    bounded(async {
        let rig = rig_with(&["POST /oauth2/token: status=503 next=1"]).await;
        let out = vphone(strings(&["demo", "--json", "--api", &rig.base_url()])).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["failed"], 0, "{report:#}");
        assert_eq!(rig.injected().await, [1]);
    })
    .await;
}
