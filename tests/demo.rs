//! `vphone demo` runs every flow against an in-process sandbox and exits 0.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

use assert_cmd::Command;
use predicates::str::contains;
use std::time::Duration;

#[test]
fn vphone_demo_walks_every_flow_and_exits_0() {
    Command::cargo_bin("vphone")
        .unwrap()
        .arg("demo")
        .timeout(Duration::from_secs(90))
        .assert()
        .success()
        .stdout(contains("summary: 16/16 steps ok"))
        .stdout(contains("deleted device is refused"));
}

#[test]
fn vphone_demo_json_reports_every_step() {
    let out = Command::cargo_bin("vphone")
        .unwrap()
        .args(["demo", "--json"])
        .timeout(Duration::from_secs(90))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["passed"], 16);
    assert_eq!(report["steps"].as_array().unwrap().len(), 16);
}

#[test]
fn vphone_demo_against_a_server_that_is_down_exits_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    Command::cargo_bin("vphone")
        .unwrap()
        .args(["demo", "--api", &url])
        .timeout(Duration::from_secs(30))
        .assert()
        .code(3)
        .stdout(contains("is the server running?"));
}

#[test]
fn vphone_demo_json_prints_a_json_error_when_it_cannot_start() {
    // The real Solaris sandbox needs credentials; none are set, so the walk cannot start.
    let out = Command::cargo_bin("vphone")
        .unwrap()
        .env_remove("VPHONE_CLIENT_ID")
        .env_remove("VPHONE_CLIENT_SECRET")
        .env_remove("VPHONE_CREDENTIALS")
        .args(["demo", "--json", "--target", "solaris-sandbox"])
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VPHONE_CLIENT_ID"),
        "{doc}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vphone_demo_says_where_its_codes_came_from() {
    let sandbox = vphone::sandbox::spawn(vphone::sandbox::SandboxConfig {
        static_otp: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = sandbox.base_url();
    let run = move |otp: Option<&'static str>| {
        let mut cmd = Command::cargo_bin("vphone").unwrap();
        cmd.args(["demo", "--api", &url]);
        if let Some(otp) = otp {
            cmd.args(["--otp", otp]);
        }
        cmd.timeout(Duration::from_secs(60)).output().unwrap()
    };
    let (fixed, sms) = tokio::task::spawn_blocking(move || (run(Some("static")), run(None)))
        .await
        .unwrap();
    let fixed = String::from_utf8_lossy(&fixed.stdout).into_owned();
    assert!(fixed.contains("16/16 steps ok"), "{fixed}");
    assert!(fixed.contains("code from the fixed code after"), "{fixed}");
    assert!(
        fixed.contains("answered with the code from the fixed code"),
        "{fixed}"
    );
    assert!(fixed.contains("OTP from the fixed code signed"), "{fixed}");
    assert!(
        !fixed.contains("SMS after") && !fixed.contains("SMS signed"),
        "{fixed}"
    );
    // Against our sandbox without --otp, the phone reads its SMS outbox.
    let sms = String::from_utf8_lossy(&sms.stdout).into_owned();
    assert!(sms.contains("code from the SMS after"), "{sms}");
    assert!(sms.contains("OTP from the SMS signed"), "{sms}");
}
