//! `vphone demo` and `vphone probe` say what the server really answered: a layer in front
//! of the server records every status it served, and each demo line and probe row must
//! show exactly those. Against the variant bank, calls it does not offer are reported as
//! skipped (demo) or not offered (probe), never as failures, and the exit codes are the
//! documented ones.
#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use vphone::client::transcript::route_of;
use vphone::sandbox::{self, SandboxConfig, SandboxState, variant};

/// `(METHOD /route/{id}, status)` of every answer the server gave, in order.
type Served = Arc<Mutex<Vec<(String, u16)>>>;

/// Serves `app` on 127.0.0.1:0 behind a layer recording every status it answers.
async fn serve_recorded(app: Router) -> (String, Served) {
    let served: Served = Arc::default();
    let log = served.clone();
    let app = app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let log = log.clone();
        async move {
            let call = format!("{} {}", req.method(), route_of(req.uri().path()));
            let resp: Response = next.run(req).await;
            log.lock().push((call, resp.status().as_u16()));
            resp
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, served)
}

async fn recorded_sandbox() -> (String, Served) {
    serve_recorded(sandbox::router(SandboxState::new(SandboxConfig::default()))).await
}

/// Our sandbox, except that SMS challenges answer an HTML 404 page, as a server that does
/// not offer them.
async fn recorded_sandbox_without_sms_challenges() -> (String, Served) {
    let app = sandbox::router(SandboxState::new(SandboxConfig::default())).layer(
        middleware::from_fn(|req: Request, next: Next| async move {
            if req.uri().path().starts_with("/v1/mfa/challenges/sms") {
                let page = format!("<pre>Cannot {} {}</pre>", req.method(), req.uri().path());
                return (
                    axum::http::StatusCode::NOT_FOUND,
                    [("content-type", "text/html")],
                    page,
                )
                    .into_response();
            }
            next.run(req).await
        }),
    );
    serve_recorded(app).await
}

/// Our sandbox, except that its answers leave `field` out wherever it occurs, as a server
/// that does not send it.
async fn recorded_sandbox_leaving_out(field: &'static str) -> (String, Served) {
    fn strip(v: &mut Value, field: &str) {
        match v {
            Value::Object(o) => {
                o.remove(field);
                o.values_mut().for_each(|v| strip(v, field));
            }
            Value::Array(a) => a.iter_mut().for_each(|v| strip(v, field)),
            _ => {}
        }
    }
    let app = sandbox::router(SandboxState::new(SandboxConfig::default())).layer(
        middleware::from_fn(move |req: Request, next: Next| async move {
            let (parts, body) = next.run(req).await.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) else {
                return Response::from_parts(parts, axum::body::Body::from(bytes));
            };
            strip(&mut json, field);
            let mut resp = Response::from_parts(parts, axum::body::Body::from(json.to_string()));
            resp.headers_mut().remove("content-length");
            resp
        }),
    );
    serve_recorded(app).await
}

async fn recorded_variant_bank(outbox: bool) -> (String, Served) {
    let state = SandboxState::new(SandboxConfig::default());
    serve_recorded(variant::router(state, variant::VariantOptions { outbox })).await
}

/// `vphone` with no credentials from the environment (the sandbox's default partner).
fn cli() -> Command {
    let mut cmd = Command::cargo_bin("vphone").unwrap();
    cmd.env_remove("VPHONE_CREDENTIALS")
        .env_remove("VPHONE_CLIENT_ID")
        .env_remove("VPHONE_CLIENT_SECRET");
    cmd
}

/// Runs `vphone ARGS` off the runtime (the server keeps serving meanwhile).
async fn vphone(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        cli()
            .args(&args)
            .timeout(Duration::from_secs(90))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The server's answers to the API (its SMS outbox and health are the phone's SIM).
fn api_answers(served: &Served) -> Vec<(String, u16)> {
    served
        .lock()
        .iter()
        .filter(|(call, _)| !call.contains("/sandbox/"))
        .cloned()
        .collect()
}

/// Every `→ NNN` status a line prints.
fn printed_statuses(line: &str) -> Vec<u16> {
    line.split("→ ")
        .skip(1)
        .filter_map(|rest| rest.get(..3)?.parse().ok())
        .collect()
}

/// Runs `vphone demo --json` against `base` and checks every step's calls and printed
/// statuses against what the server served; returns the report and the exit code.
async fn demo_against(base: &str, served: &Served, extra: &[&str]) -> (Value, Option<i32>) {
    let mut a = args(&["demo", "--json", "--api", base]);
    a.extend(args(extra));
    let out = vphone(a).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let steps = report["steps"].as_array().unwrap();
    let mut shown = Vec::new();
    for step in steps {
        let calls: Vec<(String, u16)> = step["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["call"].as_str().unwrap().to_owned(),
                    c["status"].as_u64().unwrap() as u16,
                )
            })
            .collect();
        let detail = step["detail"].as_str().unwrap();
        let statuses: Vec<u16> = calls.iter().map(|(_, s)| *s).collect();
        assert_eq!(printed_statuses(detail), statuses, "{detail}");
        shown.extend(calls);
    }
    assert_eq!(
        shown,
        api_answers(served),
        "the demo's calls are not what the server served"
    );
    (report, out.status.code())
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_lines_show_the_statuses_our_sandbox_served() {
    let (base, served) = recorded_sandbox().await;
    let (report, code) = demo_against(&base, &served, &[]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["passed"], 16);
    assert_eq!(report["skipped"], 0);
    // Our sandbox answers 202 to a binding and 403 to a deleted device: shown as served.
    assert!(
        step(&report, "bind unrestricted key")["detail"]
            .as_str()
            .unwrap()
            .starts_with("POST /v1/mfa/devices → 202")
    );
    assert!(
        step(&report, "deleted device is refused")["detail"]
            .as_str()
            .unwrap()
            .contains("→ 403")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_lifetime_shown_is_the_one_the_server_sent_or_none() {
    // Our sandbox says 3599 s: the line shows it.
    let (base, served) = recorded_sandbox().await;
    let (report, _) = demo_against(&base, &served, &[]).await;
    assert_eq!(
        step(&report, "get token")["detail"],
        "POST /oauth2/token → 200 — bearer token, lives 3599 s"
    );
    // A server that does not say: no lifetime is made up.
    let (base, served) = recorded_sandbox_leaving_out("expires_in").await;
    let (report, code) = demo_against(&base, &served, &[]).await;
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        step(&report, "get token")["detail"],
        "POST /oauth2/token → 200 — bearer token, lifetime not stated by the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_server_does_not_offer_is_skipped_and_the_walk_goes_on() {
    let (base, served) = recorded_sandbox_without_sms_challenges().await;
    let (report, code) = demo_against(&base, &served, &[]).await;
    let sms = step(&report, "SMS challenge");
    assert_eq!(sms["status"], "skipped", "{report:#}");
    assert_eq!(
        sms["detail"],
        "skipped: server does not offer POST /v1/mfa/challenges/sms — POST /v1/mfa/challenges/sms → 404"
    );
    // Every later step that does not need it ran and passed.
    for later in [
        "change name, SMS TAN",
        "delete device",
        "deleted device is refused",
    ] {
        assert_eq!(step(&report, later)["status"], "ok", "{report:#}");
    }
    assert_eq!(
        (&report["passed"], &report["skipped"], &report["failed"]),
        (&Value::from(15), &Value::from(1), &Value::from(0))
    );
    // Skipped steps do not fail the demo (documented in `vphone demo --help`).
    assert_eq!(code, Some(0));

    // The human lines say the same.
    let out = vphone(args(&["demo", "--api", &base])).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("SMS challenge ..................... skipped: server does not offer POST /v1/mfa/challenges/sms"),
        "{text}"
    );
    assert!(
        text.contains("summary: 15/16 steps ok, 1 skipped, 0 failed"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_api_fails_the_demo_instead_of_skipping_everything() {
    // Every route of the variant bank's HTML 404 page, token included: a wrong base URL.
    let (base, served) = recorded_variant_bank(false).await;
    let wrong = format!("{base}/not-the-api");
    let (report, code) = demo_against(&wrong, &served, &[]).await;
    assert_eq!(code, Some(1), "{report:#}");
    let token = step(&report, "get token");
    assert_eq!(token["status"], "failed");
    assert!(
        token["detail"]
            .as_str()
            .unwrap()
            .contains("does not offer POST /not-the-api/oauth2/token"),
        "{token}"
    );
    assert_eq!(report["passed"], 0);
    assert_eq!(step(&report, "create person")["status"], "not_run");
    // A step that did not run took no time: none is shown for it.
    for s in report["steps"].as_array().unwrap() {
        match s["status"].as_str().unwrap() {
            "not_run" => assert!(s["ms"].is_null(), "{s}"),
            _ => assert!(s["ms"].as_f64().is_some(), "{s}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_against_our_sandbox_reads_every_call_as_documented() {
    let (base, served) = recorded_sandbox().await;
    let out = vphone(args(&["probe", "--json", "--api", &base])).await;
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let answers = api_answers(&served);
    for row in report["calls"].as_array().unwrap() {
        let call = row["call"].as_str().unwrap();
        assert_eq!(row["shape"], "as_documented", "{row}");
        // The row's status is the server's first answer to that call.
        let first = answers.iter().find(|(c, _)| c == call).unwrap();
        assert_eq!(row["status"].as_u64(), Some(u64::from(first.1)), "{row}");
    }
    assert_eq!(report["calls"].as_array().unwrap().len(), 25);
    for f in report["flows"].as_array().unwrap() {
        assert_eq!(f["works"], true, "{f}");
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_against_the_variant_bank_shows_its_statuses_and_skips_what_it_does_not_offer() {
    let (base, served) = recorded_variant_bank(true).await;
    let (report, code) = demo_against(&base, &served, &[]).await;
    let sms = step(&report, "SMS challenge");
    assert_eq!(sms["status"], "skipped", "{report:#}");
    assert_eq!(
        sms["detail"],
        "skipped: server does not offer POST /v1/mfa/challenges/sms — POST /v1/mfa/challenges/sms → 404"
    );
    // The bank answers 200 where our sandbox answers 201/202: the lines say 200.
    let person = step(&report, "create person");
    assert_eq!(person["status"], "ok", "{report:#}");
    assert!(
        person["detail"]
            .as_str()
            .unwrap()
            .starts_with("POST /v1/persons → 200")
    );
    // The phone reads every other variant: the rest passes, and skipped steps do not fail
    // the demo (documented in `vphone demo --help`).
    assert_eq!(
        (&report["passed"], &report["skipped"], &report["failed"]),
        (&Value::from(15), &Value::from(1), &Value::from(0)),
        "{report:#}"
    );
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_against_the_variant_bank_names_the_variants_and_what_it_does_not_offer() {
    let (base, served) = recorded_variant_bank(true).await;
    let out = vphone(args(&["probe", "--json", "--api", &base])).await;
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let answers = api_answers(&served);
    let rows = report["calls"].as_array().unwrap();
    for row in rows {
        let call = row["call"].as_str().unwrap();
        match answers.iter().find(|(c, _)| c == call) {
            Some((_, status)) => {
                assert_eq!(row["status"].as_u64(), Some(u64::from(*status)), "{row}")
            }
            None => assert_eq!(row["outcome"], "not reached", "{row}"),
        }
    }
    let row = |call: &str| rows.iter().find(|r| r["call"] == call).unwrap();
    let sms = row("POST /v1/mfa/challenges/sms");
    assert_eq!(
        (sms["status"].as_u64(), &sms["outcome"]),
        (Some(404), &Value::from("not offered"))
    );
    let person = row("POST /v1/persons");
    assert_eq!(person["status"], 200);
    assert_eq!(person["shape"], "variant", "{person}");
    let note = |call: &str| row(call)["note"].as_str().unwrap_or_default().to_owned();
    let person = note("POST /v1/persons");
    assert!(person.starts_with("200 instead of 201"), "{person}");
    assert!(
        person.contains("ids not in the documented format (id personId-"),
        "{person}"
    );
    assert!(note("GET /v1/mfa/devices/{id}/keys").contains("keys as an array of device wrappers"));
    assert!(note("POST /v1/mfa/challenges/devices").contains("without key_purpose"));
    assert!(
        note("PATCH /v1/persons/{id}").contains("the person itself (applied without confirmation)")
    );
    // Every flow but the SMS challenge works against it.
    for f in report["flows"].as_array().unwrap() {
        assert_eq!(f["works"], f["flow"] != "sms-challenge", "{f}");
    }
    let flows = report["flows"].as_array().unwrap();
    let sms_flow = flows.iter().find(|f| f["flow"] == "sms-challenge").unwrap();
    assert_eq!(sms_flow["works"], false, "{sms_flow}");
}

/// Runs `vphone phone ARGS` with its phones in `home`, off the runtime.
async fn phone(home: &std::path::Path, list: &[&str]) -> std::process::Output {
    let home = home.to_owned();
    let list = args(list);
    tokio::task::spawn_blocking(move || {
        cli()
            .env_remove("VPHONE_PASSPHRASE")
            .env_remove("VPHONE_PASSPHRASE_FILE")
            .env("VPHONE_HOME", home)
            .arg("phone")
            .args(&list)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// A phone `kay` created, bound and with a used unrestricted key and an unused restricted
/// one, at `base`; returns the `keys` lines and the `--json keys` document.
async fn keys_after_one_approval(home: &std::path::Path, base: &str) -> (String, Value) {
    let number = format!("+49151{:08}", rand_digits());
    for step in [
        vec!["create", "kay", "--api", base, "--number", number.as_str()],
        vec!["bind", "kay"],
        vec!["approve", "kay", "--purpose", "unrestricted"],
        vec!["add-key", "kay", "--purpose", "restricted"],
    ] {
        let out = phone(home, &step).await;
        assert!(
            out.status.success(),
            "{step:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = phone(home, &["keys", "kay"]).await;
    let json = phone(home, &["--json", "keys", "kay"]).await;
    (
        String::from_utf8(text.stdout).unwrap(),
        serde_json::from_slice(&json.stdout).unwrap(),
    )
}

fn rand_digits() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(std::process::id()) % 100_000_000) as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_keys_says_when_a_key_was_used_only_as_the_server_said() {
    // Our sandbox says when each key was used, and null for a key never used.
    let (base, _) = recorded_sandbox().await;
    let home = tempfile::tempdir().unwrap();
    let (text, json) = keys_after_one_approval(home.path(), &base).await;
    let line = |purpose: &str| {
        text.lines()
            .find(|l| l.starts_with(purpose))
            .unwrap_or_else(|| panic!("no {purpose} key in {text}"))
            .to_owned()
    };
    assert!(!line("unrestricted").ends_with("used never"), "{text}");
    assert!(!line("unrestricted").contains("not given"), "{text}");
    assert!(line("restricted").ends_with("used never"), "{text}");
    for key in json["keys"].as_array().unwrap() {
        assert!(key.get("used_at").is_some(), "{json}");
    }
    // A server that leaves used_at out: nothing is said of when its keys were used.
    let (base, _) = recorded_sandbox_leaving_out("used_at").await;
    let home = tempfile::tempdir().unwrap();
    let (text, json) = keys_after_one_approval(home.path(), &base).await;
    assert_eq!(text.lines().count(), 2, "{text}");
    for l in text.lines() {
        assert!(l.ends_with("used (not given)"), "{text}");
    }
    for key in json["keys"].as_array().unwrap() {
        assert!(key.get("used_at").is_none(), "{json}");
    }
}
