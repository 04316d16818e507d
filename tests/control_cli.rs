//! `vphone serve` as a process: what it refuses to start with, and a real run against its
//! embedded sandbox and against another server given with `--api`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::child::Listening;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_vphone");

/// Starts `vphone serve ARGS` and waits (at most 30 s) for the line naming its address.
fn serve(args: &[&str]) -> Listening {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(args)
        .env_remove("VPHONE_CLIENT_ID")
        .env_remove("VPHONE_CLIENT_SECRET")
        .env_remove("VPHONE_CREDENTIALS");
    Listening::start(command, "vphone serve")
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[test]
fn a_non_loopback_address_without_a_token_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token-file"), "{err}");
}

#[test]
fn a_short_or_missing_token_file_is_refused_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "s3cr3t\n").unwrap();
    for file in [short, dir.path().join("absent")] {
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
            .arg(&file)
            .arg("--home")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(4));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("token file"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_its_embedded_sandbox_hosts_phones_and_demands_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "a-long-enough-test-token\n").unwrap();
    let home = dir.path().join("home");
    let served = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        token_file.to_str().unwrap(),
        "--home",
        home.to_str().unwrap(),
    ]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let info = http
        .get(format!("{}/info", served.base))
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 401);
    let authed = |m: reqwest::Method, path: &str| {
        http.request(m, format!("{}{path}", served.base))
            .bearer_auth("a-long-enough-test-token")
    };
    let info: Value = authed(reqwest::Method::GET, "/info")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["embedded_sandbox"], true);
    let created = authed(reqwest::Method::POST, "/phones")
        .json(&json!({"name": "cli"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let bound = authed(reqwest::Method::POST, "/phones/cli/bind")
        .send()
        .await
        .unwrap();
    assert_eq!(bound.status(), 200);
    // The phone is a file in the home directory, as the CLI keeps it.
    assert!(home.join("phones/cli.toml").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_api_drives_another_sandbox_and_reads_its_outbox() {
    let sandbox = vphone::sandbox::spawn(vphone::sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let home = tempfile::tempdir().unwrap();
    let served = serve(&[
        "--listen",
        "127.0.0.1:0",
        "--api",
        &sandbox.base_url(),
        "--home",
        home.path().to_str().unwrap(),
    ]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", served.base);
    let (_, info) = call(&http, reqwest::Method::GET, url("/info"), None).await;
    assert_eq!(info["embedded_sandbox"], false);
    assert_eq!(info["api_base"], sandbox.base_url());
    let (status, created) = call(
        &http,
        reqwest::Method::POST,
        url("/phones"),
        Some(json!({"name": "remote", "number": "+4915199887766"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, bound) = call(
        &http,
        reqwest::Method::POST,
        url("/phones/remote/bind"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{bound}");
    // The SMS come from the other sandbox's outbox over HTTP.
    let (status, sms) = call(&http, reqwest::Method::GET, url("/phones/remote/sms"), None).await;
    assert_eq!(status, 200, "{sms}");
    assert_eq!(
        sms.as_array().unwrap().len(),
        2,
        "verification and binding: {sms}"
    );
    // ... and each raised an sms_received event for the phone (watchers are asynchronous,
    // so wait for them, bounded).
    let mut announced = Vec::new();
    let mut after = 0;
    for _ in 0..10 {
        if announced.len() >= 2 {
            break;
        }
        let page: Vec<Value> = http
            .get(url(&format!(
                "/phones/remote/events?after={after}&wait_ms=5000"
            )))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        after = page.last().map_or(after, |e| e["seq"].as_u64().unwrap());
        announced.extend(page.into_iter().filter(|e| e["type"] == "sms_received"));
    }
    let seqs: Vec<&Value> = announced.iter().map(|e| &e["data"]["seq"]).collect();
    assert_eq!(seqs, [&sms[0]["seq"], &sms[1]["seq"]]);
    // A push answered through the other sandbox completes there.
    let (status, pushed) = call(
        &http,
        reqwest::Method::POST,
        url("/phones/remote/push"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 202, "{pushed}");
    let id = pushed["id"].as_u64().unwrap();
    let (_, push) = call(
        &http,
        reqwest::Method::GET,
        url(&format!("/phones/remote/pushes/{id}?wait_ms=20000")),
        None,
    )
    .await;
    assert_eq!(push["outcome"], "answered", "{push}");
    let challenge =
        vphone::api::ChallengeId::from_server(push["challenge_id"].as_str().unwrap()).unwrap();
    let record = sandbox.state().challenge_status(&challenge).unwrap();
    assert_eq!(record.status, vphone::sandbox::attempts::Status::Completed);
}
