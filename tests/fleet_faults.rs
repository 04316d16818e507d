//! `vphone load` against a sandbox that injects faults: with retries every binding completes
//! and the report shows the injected faults (read from the sandbox) apart from the failures,
//! and the retries per operation; without retries the faults become failures.
#![allow(clippy::unwrap_used)]

mod common;

use assert_cmd::Command;
use vphone::fleet::Report;
use vphone::sandbox::SandboxConfig;
use vphone::sandbox::faults::FaultRule;

const FIVE_PERCENT_503: &str = "* /v1/*: status=503 p=0.05";

fn load(args: &[&str]) -> Command {
    let mut cmd = common::load::vphone_load(args);
    cmd.timeout(std::time::Duration::from_secs(120));
    cmd
}

/// Runs a 60-phone bind against the in-process sandbox with 5% 503s on every API route,
/// plus `extra` arguments; returns the exit code, stdout and the JSON report.
fn bind_with_faults(extra: &[&str]) -> (Option<i32>, String, Report) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = load(&[
        "--devices",
        "60",
        "--scenario",
        "bind",
        "-c",
        "4",
        "--seed",
        "5",
        "--progress",
        "off",
        "--sandbox-fault",
        FIVE_PERCENT_503,
        "--sandbox-faults-seed",
        "11",
    ])
    .args(extra)
    .arg("--json")
    .arg(&json)
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = Report::read_file(&json).unwrap();
    (out.status.code(), stdout, report)
}

#[test]
fn with_retries_every_binding_completes_and_the_report_shows_faults_and_retries() {
    let (code, stdout, report) = bind_with_faults(&[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(report.ok("bind"), 60, "{stdout}");
    assert_eq!(report.total_errors(), 0, "{stdout}");
    let injected = report.faults.as_ref().unwrap()[FIVE_PERCENT_503];
    // 60 phones make 300 API requests; 5% of them is 15 (sd 3.8).
    assert!((3..=40).contains(&injected), "{stdout}");
    // Every injected 503 was sent again (nothing failed), and retries are counted on the
    // request rows, never on the step rows.
    assert!(report.total_retries() >= injected, "{stdout}");
    assert_eq!(report.retries("bind") + report.retries("onboard"), 0);
    assert!(stdout.contains(&format!(
        "injected faults (the sandbox's /sandbox/stats): {injected}"
    )));
    assert!(
        stdout.contains(&format!("retries: {}", report.total_retries())),
        "{stdout}"
    );
}

#[test]
fn without_retries_the_injected_faults_are_the_failures() {
    let (code, stdout, report) = bind_with_faults(&["--no-retry"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(report.total_retries(), 0, "{stdout}");
    let injected = report.faults.as_ref().unwrap()[FIVE_PERCENT_503];
    assert!(injected > 0, "{stdout}");
    // Each injected 503 failed its request (and its iteration): the failed requests are
    // exactly the injected faults, each marked as injected.
    let failed_requests: u64 = report
        .errors
        .iter()
        .filter(|(k, _)| k.op != "bind" && k.op != "onboard")
        .map(|(k, n)| {
            assert_eq!(
                (k.status, k.code.as_str()),
                (503, "service_unavailable (injected)")
            );
            n
        })
        .sum();
    assert_eq!(failed_requests, injected, "{stdout}");
    assert!(stdout.contains("retries: none"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_at_api_is_asked_for_its_fault_counts() {
    let config = SandboxConfig {
        faults: vec![FaultRule::parse("POST /v1/mfa/devices: status=503 next=3").unwrap()],
        faults_seed: Some(1),
        ..SandboxConfig::default()
    };
    let bank = vphone::sandbox::spawn(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let base = bank.base_url();
    let out = tokio::task::spawn_blocking(move || {
        load(&[
            "--api",
            &base,
            "--devices",
            "5",
            "--scenario",
            "bind",
            "-c",
            "1",
            "--seed",
            "8",
            "--progress",
            "off",
            "--otp",
            "static:212212",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report = Report::read_file(&dir.path().join("r.json")).unwrap();
    assert_eq!(report.ok("bind"), 5);
    let faults = report.faults.clone().unwrap();
    assert_eq!(
        faults["POST /v1/mfa/devices: status=503 next=3"], 3,
        "{stdout}"
    );
    // One phone at a time: the first binding met all three refusals.
    assert_eq!(report.retries("create_device"), 3, "{stdout}");
    bank.shutdown().await;
}

const ADMIN: &str = "admin-token-for-tests-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn rules_replaced_during_a_run_lose_no_count_and_the_report_says_so() {
    use vphone::client::{ApiClient, ClientConfig, Credentials, RetryPolicy};
    use vphone::fleet::faults::{FaultSource, injected_between};
    use vphone::sandbox::faults::admin::AdminToken;
    const RULE: &str = "GET /v1/persons/*: status=503";
    let config = SandboxConfig {
        faults: vec![FaultRule::parse(RULE).unwrap()],
        faults_seed: Some(1),
        admin_token: Some(AdminToken::new(ADMIN).unwrap()),
        ..SandboxConfig::default()
    };
    let bank = vphone::sandbox::spawn(config).await.unwrap();
    let client = ApiClient::new(
        ClientConfig::local(
            bank.base_url().parse().unwrap(),
            Credentials::sandbox_default(),
        )
        .with_retry(RetryPolicy::none()),
    )
    .unwrap();
    let refused = || async {
        let err = client.get_discard("/v1/persons/nobody").await.unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
    };
    let source = FaultSource::probe(&client).await.expect("a vphone sandbox");
    let before = source.read().await.unwrap();
    refused().await;
    refused().await;
    // Mid-run, someone puts the same rule again: its own count starts over at the sandbox.
    let put = client
        .http()
        .put(format!("{}/sandbox/faults", bank.base_url()))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "rules": [RULE] }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    refused().await;
    let after = source.read().await.unwrap();
    let run = injected_between(&before, &after);
    assert_eq!(run.injected[RULE], 3, "the faults before the PUT count too");
    assert!(run.rules_replaced);
    assert_eq!(
        bank.state().fault_counts()[0].injected,
        1,
        "the rule's own count"
    );

    let mut report = Report::new("bind", "closed", "1", 0);
    report.faults = Some(run.injected);
    report.faults_replaced = run.rules_replaced;
    let table = report.render_table();
    assert!(
        table.contains("injected faults (the sandbox's /sandbox/stats): 3"),
        "{table}"
    );
    assert!(
        table.contains("fault rules were replaced during the run"),
        "{table}"
    );
    let back =
        Report::from_json(&report.to_json().unwrap(), std::path::Path::new("r.json")).unwrap();
    assert!(back.faults_replaced, "kept in the JSON");
    let mut merged = Report::new("bind", "closed", "1", 0);
    merged.merge(&back).unwrap();
    assert!(merged.faults_replaced, "a merge says it when a shard did");

    // With no replacement in between, nothing is said.
    refused().await;
    let later = source.read().await.unwrap();
    let quiet = injected_between(&after, &later);
    assert_eq!((quiet.injected[RULE], quiet.rules_replaced), (1, false));
    bank.shutdown().await;
}
