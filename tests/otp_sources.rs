//! Codes from servers that are not our sandbox: `--otp command:CMD`, `--otp prompt` with
//! codes piped on stdin, `auto` asking `GET /sandbox/health`; and `--transcript` on phone
//! commands, with every OTP and signature redacted.
#![allow(clippy::unwrap_used)]

mod common;

use assert_cmd::Command;
use common::{Rig, client_for, closed_port_url, phone_cli};
use vphone::client::Credentials;
use vphone::sandbox::{SandboxConfig, SandboxState, variant};

#[tokio::test(flavor = "multi_thread")]
async fn an_otp_command_is_told_the_number_and_the_kind_of_each_sms() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    // The test number always receives 212212; the command logs what it was asked for.
    let cmd = format!(
        "command:echo \"$VPHONE_OTP_NUMBER $VPHONE_OTP_KIND\" >> '{}'; echo 212212",
        seen.display()
    );
    for step in [
        vec!["create", "cmd", "--number", "+15550101"],
        vec!["bind", "cmd"],
    ] {
        phone_cli(dir.path(), &rig.base_url())
            .args(["--otp", &cmd])
            .args(&step)
            .assert()
            .success();
    }
    let log = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(log, "+15550101 verify_number\n+15550101 binding\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_otp_command_is_a_local_error_and_its_output_is_not_shown() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = phone_cli(dir.path(), &rig.base_url())
        .args(["--otp", "command:echo 246810; exit 7"])
        .args(["create", "bad", "--number", "+15550101"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("the OTP command gave no code"), "{stderr}");
    assert!(!stderr.contains("246810"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_reads_one_code_per_line_from_piped_stdin() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().unwrap();
    phone_cli(dir.path(), &rig.base_url())
        .args([
            "--otp",
            "prompt",
            "create",
            "piped",
            "--number",
            "+15550101",
        ])
        .write_stdin("212212\n")
        .assert()
        .success();
    // Blank lines are skipped; a wrong line is refused without echoing it.
    phone_cli(dir.path(), &rig.base_url())
        .args(["--otp", "prompt", "bind", "piped"])
        .write_stdin("\n212212\n")
        .assert()
        .success();
    let out = phone_cli(dir.path(), &rig.base_url())
        .args(["--otp", "prompt", "sms-challenge", "piped"])
        .write_stdin("")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("stdin ended before a code was read"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_transcript_has_every_exchange_and_no_secret() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jsonl");
    phone_cli(dir.path(), &rig.base_url())
        .args(["create", "t", "--number", "+15550101"])
        .assert()
        .success();
    phone_cli(dir.path(), &rig.base_url())
        .args(["--transcript", file.to_str().unwrap(), "bind", "t"])
        .assert()
        .success();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let calls: Vec<(String, String, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap().to_owned(),
                l["path"].as_str().unwrap().to_owned(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(calls[0], ("POST".into(), "/oauth2/token".into(), 200));
    assert!(
        calls
            .iter()
            .any(|(m, p, s)| m == "POST" && p == "/v1/mfa/devices" && *s == 202)
    );
    let answer = lines
        .iter()
        .find(|l| l["method"] == "PUT")
        .expect("the signed OTP was sent");
    assert_eq!(answer["status"], 204);
    assert_eq!(answer["request"]["signature"], "<redacted>");
    assert!(
        answer["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(lines[0]["response"]["access_token"] == "<redacted>");
    // The OTP (212212 for the test number) appears nowhere, nor does any signature's DER.
    assert!(!text.contains("212212"), "{text}");
    assert!(!text.contains("Bearer"), "{text}");
    let mut strings = Vec::new();
    lines.iter().for_each(|l| all_strings(l, &mut strings));
    let der = |s: &str| {
        s.starts_with("30")
            && (138..=146).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    assert!(!strings.iter().any(|s| der(s)), "{text}");
}

fn all_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| all_strings(v, out)),
        serde_json::Value::Object(m) => m.values().for_each(|v| all_strings(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_vphone_sandbox_is_asked_for_its_sms_outbox() {
    let rig = Rig::start().await;
    assert!(rig.client.is_vphone_sandbox().await);
    // The variant bank without its outbox answers /sandbox/health with an HTML 404 page.
    let foreign = variant::spawn_with(
        SandboxState::new(SandboxConfig::default()),
        "127.0.0.1:0".parse().unwrap(),
        variant::VariantOptions { outbox: false },
    )
    .await
    .unwrap();
    let client = client_for(&foreign.base_url(), Credentials::sandbox_default());
    assert!(!client.is_vphone_sandbox().await);
    let down = client_for(&closed_port_url(), Credentials::sandbox_default());
    assert!(!down.is_vphone_sandbox().await);
}

#[test]
fn a_fleet_runs_its_otp_command_once_per_sms_and_samples_its_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let file = dir.path().join("t.jsonl");
    Command::cargo_bin("vphone")
        .unwrap()
        .args([
            "load",
            "--devices",
            "4",
            "--scenario",
            "bind",
            "--progress",
            "off",
        ])
        .arg("--otp")
        .arg(format!(
            "command:echo \"$VPHONE_OTP_KIND\" >> '{}'; echo 212212",
            seen.display()
        ))
        .args([
            "--transcript",
            file.to_str().unwrap(),
            "--transcript-every",
            "2",
        ])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success();
    let mut kinds: Vec<String> = std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["binding"; 4]
            .iter()
            .chain(["verify_number"; 4].iter())
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    // One token call and 6 calls per phone (create person, number, authorize, confirm,
    // create device, answer): 25 exchanges, every second one recorded.
    let text = std::fs::read_to_string(&file).unwrap();
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 13, "{text}");
    assert!(seqs.iter().all(|s| s % 2 == 0), "{seqs:?}");
    assert!(!text.contains("212212"), "{text}");
}
