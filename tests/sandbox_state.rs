//! `vphone sandbox --state FILE` as a child process: the bank survives restarts and SIGKILL,
//! and `--seed` makes ids and OTPs reproducible.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

mod common;
mod sandbox_common;

use common::child::Listening;
use common::phone_cli;
use rand::Rng;
use sandbox_common::Key;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vphone::sandbox::config::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use vphone::sandbox::store::{SqliteStore, SyncMode};

const BIN: &str = env!("CARGO_BIN_EXE_vphone");

/// Starts `vphone sandbox --listen 127.0.0.1:0 ARGS` and waits (at most 30 s) for its
/// address; killed (SIGKILL) when dropped.
fn start_sandbox(args: &[&str]) -> Listening {
    let mut command = Command::new(BIN);
    command
        .args(["sandbox", "--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn");
    Listening::start(command, "vphone sandbox")
}

/// [`start_sandbox`] keeping its state in `path`.
fn sandbox_on_file(path: &Path, extra: &[&str]) -> Listening {
    let mut args = vec!["--state", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    start_sandbox(&args)
}

/// A client of one sandbox process, with a token of the demo partner.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// What a call got: a status and body, or no answer (the process died).
type Answer = Option<(u16, Value)>;

impl Api {
    async fn new(base: &str) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let token =
            sandbox_common::partner_token(&http, base, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)
                .await;
        Api {
            http,
            base: base.to_owned(),
            token,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let text = resp.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `call` on a sandbox that is up: an answer is expected.
    async fn must(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, body)
            .await
            .unwrap_or_else(|| panic!("{method} {path}: no answer"))
    }

    /// A person with a verified number (static OTPs); `None` if the sandbox died meanwhile.
    async fn verified_person(&self, number: &str) -> Option<String> {
        let (s, p) = self
            .call(
                "POST",
                "/v1/persons",
                Some(json!({"first_name": "Ada", "last_name": "Lovelace"})),
            )
            .await?;
        assert_eq!(s, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_owned();
        let base = format!("/v1/persons/{id}/mobile_number");
        for (path, body) in [
            (base.clone(), json!({"number": number})),
            (format!("{base}/authorize"), json!({"number": number})),
            (
                format!("{base}/confirm"),
                json!({"number": number, "token": "212212"}),
            ),
        ] {
            let (s, b) = self.call("POST", &path, Some(body)).await?;
            assert_eq!(s, 201, "{path}: {b}");
        }
        Some(id)
    }
}

fn number() -> String {
    format!(
        "+49151{:08}",
        rand::thread_rng().gen_range(0..100_000_000u32)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sandbox_serves_the_same_bank_and_a_device_bound_before_signs_after() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bank.sqlite");
    let sandbox = sandbox_on_file(&file, &["--static-otp"]);
    let api = Api::new(&sandbox.base).await;
    let number = number();
    let person = api.verified_person(&number).await.unwrap();
    let key = Key::new();
    let (s, b) = api
        .must(
            "POST",
            "/v1/mfa/devices",
            Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "kept"})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let device = b["id"].as_str().unwrap().to_owned();
    let binding = b["challenge"]["id"].as_str().unwrap().to_owned();
    let answer = json!({"signature": key.sign(b"212212")});
    let path = format!("/v1/mfa/challenges/signatures/{binding}");
    let (s, b) = api.must("PUT", &path, Some(answer.clone())).await;
    assert_eq!(s, 204, "{b}");
    // Open work survives too: a device challenge made before the restart, answered after.
    let (s, open) = api
        .must(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": device})),
        )
        .await;
    assert_eq!(s, 201, "{open}");
    let update = api
        .must(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"first_name": "Augusta"})),
        )
        .await;
    assert_eq!(update.0, 202, "{}", update.1);
    sandbox.kill();

    let sandbox = sandbox_on_file(&file, &["--static-otp"]);
    let api = Api::new(&sandbox.base).await;
    let (s, p) = api
        .must("GET", &format!("/v1/persons/{person}"), None)
        .await;
    assert_eq!((s, p["first_name"].as_str()), (200, Some("Ada")), "{p}");
    let (s, m) = api
        .must("GET", &format!("/v1/persons/{person}/mobile_number"), None)
        .await;
    assert_eq!(
        (s, m["number"].as_str(), m["verified"].as_bool()),
        (200, Some(number.as_str()), Some(true)),
        "{m}"
    );
    let (s, d) = api
        .must("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_eq!(s, 200, "{d}");
    // The binding stays completed: answering it again is refused.
    let (s, b) = api.must("PUT", &path, Some(answer)).await;
    assert_eq!(
        (s, b["errors"][0]["code"].as_str()),
        (403, Some("challenge_already_used")),
        "{b}"
    );
    // The same key cannot be bound again: the bound keys were restored.
    let (s, b) = api
        .must(
            "POST",
            "/v1/mfa/devices",
            Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "again"})),
        )
        .await;
    assert_eq!(
        (s, b["errors"][0]["code"].as_str()),
        (409, Some("key_already_bound")),
        "{b}"
    );
    let sign = |c: &Value| json!({"signature": key.sign(c["string_to_sign"].as_str().unwrap().as_bytes())});
    let (s, b) = api
        .must(
            "PUT",
            &format!(
                "/v1/mfa/challenges/devices/{}",
                open["id"].as_str().unwrap()
            ),
            Some(sign(&open)),
        )
        .await;
    assert_eq!(s, 204, "the challenge made before the restart: {b}");
    let (s, fresh) = api
        .must(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": device})),
        )
        .await;
    assert_eq!(s, 201, "{fresh}");
    let (s, b) = api
        .must(
            "PUT",
            &format!(
                "/v1/mfa/challenges/devices/{}",
                fresh["id"].as_str().unwrap()
            ),
            Some(sign(&fresh)),
        )
        .await;
    assert_eq!(s, 204, "a new challenge after the restart: {b}");
    // The change request held before the restart is confirmed after it.
    let cr = update.1["id"].as_str().unwrap();
    let (s, b) = api
        .must(
            "POST",
            &format!("/v1/change_requests/{cr}/authorize"),
            Some(json!({"delivery_method": "static", "person_id": person})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = api
        .must(
            "POST",
            &format!("/v1/change_requests/{cr}/confirm"),
            Some(json!({"person_id": person, "tan": "212212"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (_, p) = api
        .must("GET", &format!("/v1/persons/{person}"), None)
        .await;
    assert_eq!(p["first_name"], "Augusta");
    sandbox.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_ids_and_otps() {
    async fn run(seed: &str) -> (String, String) {
        let sandbox = start_sandbox(&["--seed", seed]);
        let api = Api::new(&sandbox.base).await;
        let (_, p) = api
            .must(
                "POST",
                "/v1/persons",
                Some(json!({"first_name": "Ada", "last_name": "Lovelace"})),
            )
            .await;
        let id = p["id"].as_str().unwrap().to_owned();
        let number = "+4915100000001";
        let base = format!("/v1/persons/{id}/mobile_number");
        api.must("POST", &base, Some(json!({"number": number})))
            .await;
        api.must(
            "POST",
            &format!("{base}/authorize"),
            Some(json!({"number": number})),
        )
        .await;
        let sms: Vec<Value> = api
            .http
            .get(format!("{}/sandbox/sms?number=%2B4915100000001", api.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let text = sms.last().unwrap()["text"].as_str().unwrap().to_owned();
        sandbox.kill();
        (id, text)
    }
    let first = run("7").await;
    assert_eq!(
        first,
        run("7").await,
        "the same seed, the same person id and SMS"
    );
    assert_ne!(first.0, run("8").await.0, "another seed, another id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seeded_sandbox_restarted_on_its_state_file_draws_no_stored_id_again() {
    /// Creates a person named `name`; returns its id.
    async fn create(api: &Api, name: &str) -> String {
        let (s, p) = api
            .must(
                "POST",
                "/v1/persons",
                Some(json!({"first_name": name, "last_name": "Seeded"})),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        p["id"].as_str().unwrap().to_owned()
    }
    /// Two persons on `file` with `--seed 7`, a restart between them; returns both ids and
    /// what the first id names after the second was created.
    async fn history(file: &Path) -> (String, String, Value) {
        let sandbox = sandbox_on_file(file, &["--seed", "7"]);
        let first = create(&Api::new(&sandbox.base).await, "Ada").await;
        sandbox.kill();
        let sandbox = sandbox_on_file(file, &["--seed", "7"]);
        let api = Api::new(&sandbox.base).await;
        let second = create(&api, "Bob").await;
        let (s, p) = api.must("GET", &format!("/v1/persons/{first}"), None).await;
        assert_eq!(s, 200, "{p}");
        sandbox.kill();
        (first, second, p)
    }
    let dir = tempfile::tempdir().unwrap();
    let (first, second, kept) = history(&dir.path().join("a.sqlite")).await;
    assert_ne!(
        first, second,
        "the restart drew the stored person's id again"
    );
    assert_eq!(kept["first_name"], "Ada", "{kept}");
    // Still reproducible: the same history on another file gives the same ids.
    let (again_first, again_second, _) = history(&dir.path().join("b.sqlite")).await;
    assert_eq!((first, second), (again_first, again_second));
}

/// What the durability test learned about one challenge.
#[derive(Default)]
struct Answers {
    /// 2xx answers seen, over all rounds.
    accepted: u32,
    /// The request that answers it, to send again after a restart.
    path: String,
    body: Value,
}

#[derive(Default)]
struct Ledger {
    /// Devices whose binding was answered 204, with their keys.
    bound: Vec<(String, Arc<Key>)>,
    /// Every challenge answered (with or without an answer), by id.
    answered: HashMap<String, Answers>,
}

/// One worker until the sandbox dies or `until` passes: binds phones, answers device
/// challenges, records what was acknowledged.
async fn work(api: Api, ledger: Arc<Mutex<Ledger>>, until: tokio::time::Instant) {
    while tokio::time::Instant::now() < until {
        let Some(person) = api.verified_person(&number()).await else {
            return;
        };
        let key = Arc::new(Key::new());
        let Some((s, b)) = api
            .call(
                "POST",
                "/v1/mfa/devices",
                Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "p"})),
            )
            .await
        else {
            return;
        };
        assert_eq!(s, 202, "{b}");
        let device = b["id"].as_str().unwrap().to_owned();
        let challenge = b["challenge"]["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/mfa/challenges/signatures/{challenge}");
        let body = json!({"signature": key.sign(b"212212")});
        ledger.lock().unwrap().answered.insert(
            challenge.clone(),
            Answers {
                accepted: 0,
                path: path.clone(),
                body: body.clone(),
            },
        );
        let Some((s, b)) = api.call("PUT", &path, Some(body)).await else {
            return;
        };
        assert_eq!(s, 204, "{b}");
        {
            let mut l = ledger.lock().unwrap();
            l.answered.get_mut(&challenge).unwrap().accepted += 1;
            l.bound.push((device.clone(), key.clone()));
        }
        let Some((s, c)) = api
            .call(
                "POST",
                "/v1/mfa/challenges/devices",
                Some(json!({"device_id": device})),
            )
            .await
        else {
            return;
        };
        assert_eq!(s, 201, "{c}");
        let id = c["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/mfa/challenges/devices/{id}");
        let body = json!({"signature": key.sign(c["string_to_sign"].as_str().unwrap().as_bytes())});
        ledger.lock().unwrap().answered.insert(
            id.clone(),
            Answers {
                accepted: 0,
                path: path.clone(),
                body: body.clone(),
            },
        );
        let Some((s, b)) = api.call("PUT", &path, Some(body)).await else {
            return;
        };
        assert_eq!(s, 204, "{b}");
        ledger
            .lock()
            .unwrap()
            .answered
            .get_mut(&id)
            .unwrap()
            .accepted += 1;
    }
}

/// After a restart: every device bound with a 204 is still bound and signs; every challenge
/// answered before is answered again, and none is accepted twice.
async fn check(api: &Api, ledger: &Mutex<Ledger>, checked: &mut HashSet<String>) {
    let (bound, answered): (Vec<_>, Vec<_>) = {
        let l = ledger.lock().unwrap();
        (
            l.bound.clone(),
            l.answered
                .iter()
                .filter(|(id, _)| !checked.contains(*id))
                .map(|(id, a)| (id.clone(), a.path.clone(), a.body.clone()))
                .collect(),
        )
    };
    for (device, _) in &bound {
        let (s, d) = api
            .must("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await;
        assert_eq!(
            s, 200,
            "device {device} was bound with a 204 and is gone: {d}"
        );
        assert!(d["deleted_at"].is_null(), "{d}");
    }
    // A bound device signs after the restart (the last one, to keep the rounds short).
    if let Some((device, key)) = bound.last() {
        let (s, c) = api
            .must(
                "POST",
                "/v1/mfa/challenges/devices",
                Some(json!({"device_id": device})),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        let sig = key.sign(c["string_to_sign"].as_str().unwrap().as_bytes());
        let (s, b) = api
            .must(
                "PUT",
                &format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap()),
                Some(json!({"signature": sig})),
            )
            .await;
        assert_eq!(s, 204, "{b}");
    }
    for (id, path, body) in answered {
        let (s, b) = api.must("PUT", &path, Some(body)).await;
        let mut l = ledger.lock().unwrap();
        let a = l.answered.get_mut(&id).unwrap();
        if s == 204 {
            a.accepted += 1;
        } else {
            assert_eq!(
                (s, b["errors"][0]["code"].as_str()),
                (403, Some("challenge_already_used")),
                "challenge {id}: {b}"
            );
        }
        // Accepted once at most; a 403 `challenge_already_used` for one never acknowledged
        // means its answer was committed and the reply lost to the kill.
        assert!(a.accepted <= 1, "challenge {id} was completed twice");
        checked.insert(id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_acknowledged_binding_and_completes_no_challenge_twice() {
    const ROUNDS: usize = 5;
    const WORKERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bank.sqlite");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut checked = HashSet::new();
    let mut rng = rand::thread_rng();
    for round in 0..=ROUNDS {
        let sandbox = sandbox_on_file(&file, &["--static-otp"]);
        let api = Api::new(&sandbox.base).await;
        check(&api, &ledger, &mut checked).await;
        if round == ROUNDS {
            sandbox.kill();
            break;
        }
        // Work for a random while, then SIGKILL in the middle of it.
        let kill_after = Duration::from_millis(rng.gen_range(50..400));
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(work(api.clone(), ledger.clone(), until)))
            .collect();
        tokio::time::sleep(kill_after).await;
        sandbox.kill();
        for w in workers {
            w.await.unwrap();
        }
    }
    let l = ledger.lock().unwrap();
    eprintln!("bound {} answered {}", l.bound.len(), l.answered.len());
    assert!(!l.bound.is_empty(), "the rounds bound no device at all");
    let store = SqliteStore::open(&file, SyncMode::Normal).unwrap();
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

/// `vphone phone --json ARGS` in its own process against `api`, with a clean environment.
fn phone(home: &Path, api: &str, args: &[&str]) -> std::process::Output {
    phone_cli(home, api)
        .arg("--json")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_phone_bound_by_the_cli_before_a_sigkill_approves_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bank.sqlite");
    let home = dir.path().join("home");
    let number = number();
    let sandbox = sandbox_on_file(&file, &[]);
    for args in [
        &["create", "kim", "--number", number.as_str()][..],
        &["bind", "kim"][..],
    ] {
        let out = phone(&home, &sandbox.base, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    sandbox.kill();
    let sandbox = sandbox_on_file(&file, &[]);
    let out = phone(&home, &sandbox.base, &["approve", "kim"]);
    assert!(
        out.status.success(),
        "approve after the restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sandbox.kill();
}
