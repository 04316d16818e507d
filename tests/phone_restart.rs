//! A phone survives a restart: bound in one process, it signs in another from its profile.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

mod common;

use assert_cmd::Command;
use common::{Rig, bounded, phone_cli, phone_cli_bare, unique_number};
use vphone::api::{CreateDeviceChallenge, KeyPurpose};
use vphone::phone::{Home, OtpSource, Phone, PhoneName};

#[tokio::test]
async fn a_phone_bound_and_dropped_signs_again_from_its_saved_profile() {
    bounded(async {
        let rig = Rig::start().await;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let name = PhoneName::parse("saved").unwrap();
        let source = OtpSource::SandboxHttp(rig.client.clone());
        let device = {
            let mut phone = rig.saved_bound(&home, &name).await;
            phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
            phone.profile().device_id.clone().unwrap()
        };
        // A fresh client too: nothing survives but the file.
        let client = common::client_for(
            &rig.base_url(),
            vphone::client::Credentials::sandbox_default(),
        );
        let phone = Phone::open(&home, name, client.clone(), source, None).unwrap();
        assert!(phone.profile().bound);
        assert_eq!(phone.profile().device_id.as_ref(), Some(&device));
        let challenge = client
            .create_device_challenge(&CreateDeviceChallenge {
                device_id: device,
                key_purpose: Some(KeyPurpose::Restricted),
                device_data: None,
            })
            .await
            .unwrap();
        phone.sign_challenge(&challenge.id).await.unwrap();
    })
    .await;
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_cli_processes_create_bind_and_sign_with_one_sealed_profile() {
    let rig = Rig::start().await;
    let base = rig.base_url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    let number = unique_number().to_string();
    let client = rig.client.clone();
    // The CLI blocks; run it off the runtime that serves the sandbox.
    tokio::task::spawn_blocking(move || {
        let sealed = |cmd: &mut Command| {
            cmd.env("VPHONE_PASSPHRASE", "correct horse battery staple");
        };
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        json(
            &c.args(["--json", "create", "kim", "--number", &number])
                .output()
                .unwrap(),
        );
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        let bound = json(&c.args(["--json", "bind", "kim"]).output().unwrap());
        let device = bound["device_id"].as_str().unwrap().to_owned();
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        json(
            &c.args(["--json", "add-key", "kim", "--purpose", "restricted"])
                .output()
                .unwrap(),
        );

        // The profile is sealed: nothing readable on disk, and no passphrase, no phone.
        let file = std::fs::read_to_string(home.join("phones/kim.toml")).unwrap();
        assert!(
            !file.contains(&device),
            "the sealed file shows the device id"
        );
        phone_cli(&home, &base)
            .args(["bind", "kim"])
            .assert()
            .code(4)
            .stderr(predicates::str::contains("VPHONE_PASSPHRASE"));

        let challenge = tokio::runtime::Runtime::new().unwrap().block_on(async {
            client
                .create_device_challenge(&CreateDeviceChallenge {
                    device_id: vphone::api::DeviceId::from_server(&device).unwrap(),
                    key_purpose: Some(KeyPurpose::Restricted),
                    device_data: None,
                })
                .await
                .unwrap()
        });
        // --purpose reaches the phone: one that differs from the challenge's is refused
        // before anything is signed, and the matching one signs.
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        c.args([
            "sign",
            "kim",
            "--challenge",
            challenge.id.as_str(),
            "--purpose",
            "unrestricted",
        ])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("restricted"));
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        let signed = json(
            &c.args([
                "--json",
                "sign",
                "kim",
                "--challenge",
                challenge.id.as_str(),
                "--purpose",
                "restricted",
            ])
            .output()
            .unwrap(),
        );
        assert_eq!(signed["key_purpose"], "restricted");
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        let keys = json(&c.args(["--json", "keys", "kim"]).output().unwrap());
        assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
        let mut c = phone_cli(&home, &base);
        sealed(&mut c);
        let list = json(&c.args(["--json", "list"]).output().unwrap());
        assert_eq!(list, serde_json::json!(["kim"]));
    })
    .await
    .unwrap();
}

#[test]
fn cli_errors_map_to_exit_codes_and_name_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let down = common::closed_port_url();
    phone_cli(dir.path(), &down)
        .args(["bind", "nobody"])
        .assert()
        .code(4)
        .stderr(predicates::str::contains(
            "next: create it with `vphone phone create nobody --number",
        ));
    phone_cli(dir.path(), &down)
        .args(["create", "x", "--number", "+4917012345678"])
        .assert()
        .code(3)
        .stderr(predicates::str::contains("is the server running?"));
    phone_cli(dir.path(), &down)
        .args(["create", "bad/name"])
        .assert()
        .code(2);
    phone_cli(dir.path(), &down)
        .args(["approve"])
        .assert()
        .code(2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phone_remembers_its_server_so_later_commands_need_no_api_flag() {
    let rig = Rig::start().await;
    let base = rig.base_url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    let number = unique_number().to_string();
    tokio::task::spawn_blocking(move || {
        json(
            &phone_cli(&home, &base)
                .args(["--json", "create", "ada", "--number", &number])
                .output()
                .unwrap(),
        );
        // No --api: the phone goes back to the server it was created against, not to
        // the default 127.0.0.1:8080.
        let bound = json(
            &phone_cli_bare(&home)
                .args(["--json", "bind", "ada"])
                .output()
                .unwrap(),
        );
        assert!(bound["device_id"].is_string(), "{bound}");
        json(
            &phone_cli_bare(&home)
                .args(["--json", "approve", "ada"])
                .output()
                .unwrap(),
        );
        // An explicit --api still wins.
        phone_cli(&home, &common::closed_port_url())
            .args(["approve", "ada"])
            .assert()
            .code(3);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_create_that_stopped_half_way_is_finished_by_running_it_again() {
    let rig = Rig::start().await;
    let base = rig.base_url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    let number = unique_number().to_string();
    tokio::task::spawn_blocking(move || {
        // The server is down: nothing reaches the bank, and the message says how to go on.
        phone_cli(&home, &common::closed_port_url())
            .args(["create", "eve", "--number", &number])
            .assert()
            .code(3)
            .stderr(predicates::str::contains("vphone phone create eve"));
        // The person is created but the code is wrong (a fresh number gets a random OTP).
        phone_cli(&home, &base)
            .args(["--otp", "static", "create", "eve", "--number", &number])
            .assert()
            .code(1)
            .stderr(predicates::str::contains("invalid_otp"));
        let half = json(
            &phone_cli(&home, &base)
                .args(["--json", "show", "eve"])
                .output()
                .unwrap(),
        );
        let person = half["profile"]["person_id"].as_str().unwrap().to_owned();
        assert_eq!(half["profile"]["number_verified"], false, "{half}");
        // Another number would orphan the first: refused, naming the one to use.
        phone_cli(&home, &base)
            .args(["create", "eve", "--number", "+4917099999999"])
            .assert()
            .code(4)
            .stderr(predicates::str::contains(format!("--number {number}")));
        // Again, right: the same person is finished, not a second one created, and the
        // phone says so rather than claiming it created the person now.
        let done = json(
            &phone_cli(&home, &base)
                .args(["--json", "create", "eve", "--number", &number])
                .output()
                .unwrap(),
        );
        assert_eq!(done["person"]["id"], person.as_str(), "{done}");
        assert_eq!(done["person_created"], false, "{done}");
        assert_eq!(done["mobile_number"]["verified"], true, "{done}");
        json(
            &phone_cli(&home, &base)
                .args(["--json", "bind", "eve"])
                .output()
                .unwrap(),
        );
        // In text: a person made in one go says "created"; one finished later says whose
        // run created it.
        let other = unique_number().to_string();
        let fresh = phone_cli(&home, &base)
            .args(["create", "fay", "--number", &other])
            .output()
            .unwrap();
        let fresh = String::from_utf8_lossy(&fresh.stdout).into_owned();
        assert!(fresh.contains(" created, number "), "{fresh}");
        let third = unique_number().to_string();
        phone_cli(&home, &base)
            .args(["--otp", "static", "create", "gus", "--number", &third])
            .assert()
            .code(1);
        let resumed = phone_cli(&home, &base)
            .args(["create", "gus", "--number", &third])
            .output()
            .unwrap();
        let resumed = String::from_utf8_lossy(&resumed.stdout).into_owned();
        assert!(
            resumed.contains("created by an earlier run, read back"),
            "{resumed}"
        );
        // Finished phones are not created twice.
        phone_cli(&home, &base)
            .args(["create", "eve", "--number", &number])
            .assert()
            .code(4)
            .stderr(predicates::str::contains("already exists"));
    })
    .await
    .unwrap();
}

#[test]
fn with_json_a_failure_prints_a_json_error_on_stdout_too() {
    let dir = tempfile::tempdir().unwrap();
    let down = common::closed_port_url();
    let out = phone_cli(dir.path(), &down)
        .args(["--json", "create", "j", "--number", "+4917012345678"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["exit_code"], 3, "{doc}");
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is the server running?"),
        "{doc}"
    );
    // The human message still goes to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: "));
    let out = phone_cli(dir.path(), &down)
        .args(["--json", "bind", "nobody"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["exit_code"], 4, "{doc}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_json_a_refusal_carries_the_banks_status_and_code() {
    let rig = Rig::start().await;
    let base = rig.base_url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    let number = unique_number().to_string();
    tokio::task::spawn_blocking(move || {
        json(
            &phone_cli(&home, &base)
                .args(["--json", "create", "r", "--number", &number])
                .output()
                .unwrap(),
        );
        json(
            &phone_cli(&home, &base)
                .args(["--json", "bind", "r"])
                .output()
                .unwrap(),
        );
        let out = phone_cli(&home, &base)
            .args([
                "--json",
                "sign",
                "r",
                "--challenge",
                "0123456789abcdef0123456789abcdef",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["error"]["status"], 404, "{doc}");
        assert_eq!(doc["error"]["exit_code"], 1, "{doc}");
    })
    .await
    .unwrap();
}

#[test]
fn show_offline_needs_no_credentials_and_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path());
    // A phone set up against Solaris production, whose credentials this shell lacks.
    let config = vphone::client::ClientConfig::new(
        &vphone::client::Target::SolarisProduction,
        vphone::client::Credentials::new("someone", "elses-secret"),
    );
    let client = vphone::client::ApiClient::new(config).unwrap();
    Phone::create(
        &home,
        PhoneName::parse("prod").unwrap(),
        client,
        OtpSource::Terminal,
        None,
    )
    .unwrap();
    // Online, show needs credentials for a non-local server...
    phone_cli_bare(dir.path())
        .args(["show", "prod"])
        .assert()
        .code(4);
    // ...offline it reads the file only.
    let shown = json(
        &phone_cli_bare(dir.path())
            .args(["--json", "show", "prod", "--offline"])
            .output()
            .unwrap(),
    );
    assert_eq!(shown["profile"]["name"], "prod", "{shown}");
    assert!(shown["device"].is_null(), "{shown}");
}

#[test]
fn with_json_a_usage_error_prints_a_json_error_on_stdout_too() {
    let dir = tempfile::tempdir().unwrap();
    let out = phone_cli_bare(dir.path())
        .args(["--json", "bind"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["exit_code"], 2, "{doc}");
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("required") && message.contains("<NAME>"),
        "{doc}"
    );
    assert!(!message.starts_with("error:"), "{doc}");
    // clap's own message (with usage) still goes to stderr.
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"));
    // Without --json, stdout stays empty; --help still prints help and succeeds.
    let out = phone_cli_bare(dir.path()).args(["bind"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    phone_cli_bare(dir.path())
        .args(["--json", "bind", "--help"])
        .assert()
        .success()
        .stdout(predicates::str::contains("Usage:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_processes_work_from_a_profile_saved_against_a_bank_with_long_opaque_ids() {
    // The variant bank mints ids like `personId-<32 hex>-<32 hex>`: 70-80 characters, past
    // the sandbox's own 1-64 rule. Each command is its own process, so every id goes through
    // the saved profile or the command line.
    let rig = Rig::on(common::Server::Variant).await;
    let base = rig.base_url();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_owned();
    let number = unique_number().to_string();
    let client = rig.client.clone();
    tokio::task::spawn_blocking(move || {
        let long = |v: &serde_json::Value| {
            let id = v.as_str().unwrap_or_default().to_owned();
            assert!(id.len() > 64, "{id:?}");
            id
        };
        let created = json(
            &phone_cli(&home, &base)
                .args(["--json", "create", "vee", "--number", &number])
                .output()
                .unwrap(),
        );
        let person = long(&created["person"]["id"]);
        let bound = json(
            &phone_cli(&home, &base)
                .args(["--json", "bind", "vee"])
                .output()
                .unwrap(),
        );
        let device = long(&bound["device_id"]);
        let approved = json(
            &phone_cli(&home, &base)
                .args(["--json", "approve", "vee"])
                .output()
                .unwrap(),
        );
        assert_eq!(approved["key_purpose"], "unrestricted", "{approved}");
        long(&approved["challenge_id"]);

        // Ids typed on the command line: a challenge the backend created, and the person
        // a second phone joins.
        let challenge = tokio::runtime::Runtime::new().unwrap().block_on(async {
            client
                .create_device_challenge(&CreateDeviceChallenge {
                    device_id: device.parse().unwrap(),
                    key_purpose: Some(KeyPurpose::Unrestricted),
                    device_data: None,
                })
                .await
                .unwrap()
        });
        let challenge = challenge.id.to_string();
        let signed = json(
            &phone_cli(&home, &base)
                .args(["--json", "sign", "vee", "--challenge", &challenge])
                .output()
                .unwrap(),
        );
        assert_eq!(signed["challenge_id"], challenge.as_str(), "{signed}");
        let joined = json(
            &phone_cli(&home, &base)
                .args(["--json", "create", "vee2", "--number", &number])
                .args(["--person-id", &person])
                .output()
                .unwrap(),
        );
        assert_eq!(joined["person_id"], person.as_str(), "{joined}");
        // The bank's key id, read into the profile, handed back as a rig would with adopt.
        json(
            &phone_cli(&home, &base)
                .args(["--json", "keys", "vee"])
                .output()
                .unwrap(),
        );
        let show = || {
            json(
                &phone_cli(&home, &base)
                    .args(["--json", "show", "vee", "--offline"])
                    .output()
                    .unwrap(),
            )["profile"]
                .clone()
        };
        let key = long(&show()["unrestricted_key_id"]);
        let adopted = json(
            &phone_cli(&home, &base)
                .args(["--json", "adopt", "vee", "--device-id", &device])
                .args(["--key-id", &format!("unrestricted={key}")])
                .args(["--person-id", &person])
                .output()
                .unwrap(),
        );
        assert_eq!(
            adopted["profile"]["device_id"],
            device.as_str(),
            "{adopted}"
        );
        let shown = show();
        assert_eq!(shown["device_id"], device.as_str(), "{shown}");
        assert_eq!(shown["person_id"], person.as_str(), "{shown}");
        assert_eq!(shown["unrestricted_key_id"], key.as_str(), "{shown}");
    })
    .await
    .unwrap();
}
