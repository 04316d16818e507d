//! The web phone at `/` of `vphone serve`, driven in real headless Chromium: create and
//! bind a phone by clicking, see its SMS, approve a challenge the bank pushed by clicking
//! in the sheet, deny one with the keyboard, and check what the bank recorded.
//!
//! Needs Debian's `chromium` and `chromedriver`. Without them the test says so and skips,
//! unless `VPHONE_REQUIRE_BROWSER` is set (CI sets it), where it fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_common;
mod webdriver;

use control_common::{Rig, challenge_of};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use vphone::api::DeviceId;
use vphone::sandbox::attempts::Status;
use webdriver::{Browser, ENTER, TAB};

/// The whole browser scenario finishes within this, or fails.
const LIMIT: Duration = Duration::from_secs(180);

/// Screenshots go to the worktree's `target/` (never committed).
fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name)
}

/// The browser and driver, or `None` after saying why the test is skipped.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    match webdriver::tools() {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("VPHONE_REQUIRE_BROWSER").is_some() => {
            panic!("VPHONE_REQUIRE_BROWSER is set but {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED web phone browser test: {why}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_phone_create_bind_sms_approve_and_deny_in_chromium() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    tokio::time::timeout(LIMIT, scenario(chromium, driver))
        .await
        .expect("the browser scenario took longer than its limit");
}

async fn scenario(chromium: PathBuf, driver: PathBuf) {
    let rig = Rig::start().await;
    let b = Browser::start(&chromium, &driver, 1280, 1200).await;
    b.goto(&rig.url("/")).await;
    assert_eq!(b.text("h1").await, "vphone");
    // The page is live on the event stream.
    b.find("#live[data-state=\"live\"]").await;

    // Create a phone by typing its name and clicking.
    b.type_into("#create-name", "alice").await;
    b.click("#create-button").await;
    let phone = "[data-phone=\"alice\"]";
    // Set up: the number verified by SMS (what the page shows once the API says so).
    b.find(&format!(
        "{phone}[data-verified=\"true\"][data-bound=\"false\"]"
    ))
    .await;
    let shown = rig.get("/phones/alice").await;
    let number = shown["number"].as_str().unwrap().to_owned();
    assert_eq!(b.text(&format!("{phone} .phone-number")).await, number);
    // Once created, focus moved to the new phone's next step.
    b.find("#create[data-created=\"alice\"]").await;
    let focused = b
        .exec(
            "return document.activeElement.dataset.flow || null;",
            json!([]),
        )
        .await;
    assert_eq!(focused, "bind");

    // Bind by clicking; the phone shows its device and keys.
    b.click(&format!("{phone} [data-flow=\"bind\"]")).await;
    b.find(&format!("{phone}[data-bound=\"true\"]")).await;
    let shown = rig.get("/phones/alice").await;
    let device = shown["device_id"].as_str().unwrap().to_owned();
    assert_eq!(
        b.count(&format!("{phone} .key[data-purpose=\"unrestricted\"]"))
            .await,
        1
    );
    let device_text = b
        .exec(
            "return document.querySelector(arguments[0]).title;",
            json!([format!("{phone} .device-id")]),
        )
        .await;
    assert_eq!(device_text, device.as_str());

    // The binding's SMS arrived as a notification, with the text the inbox holds.
    let inbox = rig.get("/phones/alice/sms").await;
    let last = inbox.as_array().unwrap().last().expect("an SMS").clone();
    let sms_seq = last["seq"].as_u64().unwrap();
    let note = format!("{phone} .notification[data-sms=\"{sms_seq}\"]:not([hidden])");
    b.find(&note).await;
    assert_eq!(
        b.text(&format!("{note} .notification-text")).await,
        last["text"].as_str().unwrap()
    );
    // The timeline shows the bind flow with the numbers the API sent: as many steps as
    // its outcome timed (signing and waiting for the SMS among them, so not "requests").
    let finished = format!("{phone} .timeline [data-event=\"flow_finished\"]");
    b.find(&finished).await;
    let events = rig.events_after("/phones/alice/events", 0).await;
    let bound = events
        .iter()
        .find(|e| e["type"] == "flow_finished" && e["data"]["flow"] == "bind")
        .expect("the bind flow finished");
    let steps = bound["data"]["outcome"]["timings"]["steps"]
        .as_array()
        .unwrap()
        .len();
    assert!(steps > 1, "{bound}");
    assert_eq!(
        b.text(&format!("{finished} .steps summary")).await,
        format!("{steps} steps")
    );

    // Manual mode, chosen in the phone's own menu.
    b.click(&format!("{phone} .prompt-select option[value=\"manual\"]"))
        .await;
    b.find(&format!("{phone}[data-prompt=\"manual\"]")).await;
    assert_eq!(rig.get("/phones/alice/policy").await["prompt"], "manual");

    // The backend creates a challenge at the bank and pushes it; the sheet opens.
    let device = DeviceId::from_server(&device).unwrap();
    let challenge = rig.backend_challenge(&device, None).await;
    let push = rig
        .post(
            "/phones/alice/push",
            json!({"challenge_id": challenge.to_string()}),
        )
        .await;
    let sheet = format!("{phone} .sheet[data-challenge=\"{challenge}\"]:not([hidden])");
    b.find(&sheet).await;
    assert_eq!(
        b.text(&format!("{sheet} .sheet-title")).await,
        "Approve payment / login?"
    );
    assert_eq!(
        b.text(&format!("{sheet} .approve")).await,
        "Approve with biometrics"
    );
    assert_eq!(b.text(&format!("{sheet} .deny")).await, "Deny");
    // The sheet took the focus.
    let focused = b
        .exec(
            "return document.activeElement.dataset.action || null;",
            json!([]),
        )
        .await;
    assert_eq!(focused, "approve");
    // The bank has not been answered while the sheet waits.
    assert_eq!(rig.bank_record(&challenge).status, Status::Open);
    b.settle().await;
    b.screenshot(&shot("webphone-approval-sheet.png")).await;
    b.element_screenshot(phone, &shot("webphone-approval-phone.png"))
        .await;

    // Approve by clicking: the bank records the completed challenge.
    b.click(&format!("{sheet} .approve")).await;
    let done = rig.wait_push("alice", push["id"].as_u64().unwrap()).await;
    assert_eq!(done["outcome"], "answered", "{done}");
    assert_eq!(rig.bank_record(&challenge).status, Status::Completed);
    assert_eq!(challenge_of(&done["challenge_id"]), challenge);
    b.find(&format!(
        "{phone} .timeline [data-event=\"push_finished\"][data-outcome=\"answered\"][data-challenge=\"{challenge}\"]"
    ))
    .await;
    b.find(&format!(
        "{phone} .timeline [data-event=\"answered\"][data-ok=\"true\"]"
    ))
    .await;
    b.find(&format!("{phone}[data-pending=\"0\"] .sheet[hidden]"))
        .await;

    // At phone width: the page is the phone, nothing scrolls sideways.
    b.resize(390, 844).await;
    let challenge = rig.backend_challenge(&device, None).await;
    let push = rig
        .post(
            "/phones/alice/push",
            json!({"challenge_id": challenge.to_string()}),
        )
        .await;
    let sheet = format!("{phone} .sheet[data-challenge=\"{challenge}\"]:not([hidden])");
    b.find(&sheet).await;
    let overflow = b
        .exec(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        )
        .await;
    assert_eq!(overflow, 0, "the page scrolls sideways at 390 px");
    b.settle().await;
    b.screenshot(&shot("webphone-mobile-sheet.png")).await;

    // Deny with the keyboard: Tab from the focused Approve to Deny, then Enter.
    b.press(TAB).await;
    let focused = b
        .exec(
            "return document.activeElement.dataset.action || null;",
            json!([]),
        )
        .await;
    assert_eq!(focused, "deny");
    b.press(ENTER).await;
    let done = rig.wait_push("alice", push["id"].as_u64().unwrap()).await;
    assert_eq!(done["outcome"], "denied", "{done}");
    assert!(done["answers"].as_array().unwrap().is_empty(), "{done}");
    let record = rig.bank_record(&challenge);
    assert_eq!((record.status, record.failed), (Status::Open, 0));
    b.find(&format!(
        "{phone} .timeline [data-event=\"push_finished\"][data-outcome=\"denied\"][data-challenge=\"{challenge}\"]"
    ))
    .await;
    b.find(&format!("{phone}[data-pending=\"0\"] .sheet[hidden]"))
        .await;
    // Focus went back into the phone, not lost to the page.
    let inside = b
        .exec(
            "return !!document.activeElement.closest(arguments[0]);",
            json!([phone]),
        )
        .await;
    assert_eq!(inside, true);

    // Resuming by sequence number: drop the event stream, let something happen, reconnect.
    // The page asks for what it missed (`?after=` its last seq) and shows each event once.
    b.exec("app.source.close(); return true;", json!([])).await;
    let missed = rig.put_policy("alice", json!({"prompt": "deny"})).await;
    assert_eq!(missed["prompt"], "deny");
    b.exec("connect(); return true;", json!([])).await;
    b.find(&format!(
        "{phone} .timeline [data-event=\"policy_changed\"]"
    ))
    .await;
    b.find(&format!("{phone}[data-prompt=\"deny\"]")).await;
    let duplicates = b
        .exec(
            "const seqs = [...document.querySelectorAll(arguments[0])].map((e) => e.dataset.seq); return seqs.length - new Set(seqs).size;",
            json!([format!("{phone} .timeline .entry")]),
        )
        .await;
    assert_eq!(duplicates, 0, "an event was shown twice after resuming");

    // Nothing secret reached the page: no private key material, no partner secret.
    let html = b
        .exec("return document.documentElement.outerHTML;", json!([]))
        .await;
    let html = html.as_str().unwrap();
    for secret in ["PRIVATE KEY", "vphone-demo-secret", "client_secret"] {
        assert!(!html.contains(secret), "the page shows {secret}");
    }

    b.quit().await;
    rig.control.shutdown().await;
}

/// The page and its files are served with their types and a same-origin policy, also by a
/// server with a token (they are public); the API behind them still needs the token.
#[tokio::test]
async fn web_page_and_assets_are_served_and_the_api_keeps_its_token() {
    let rig = Rig::with(control_common::RigOptions {
        token: Some("a-token-of-sixteen-chars".to_owned()),
        ..Default::default()
    })
    .await;
    let http = reqwest::Client::new();
    for (path, kind, needle) in [
        ("/", "text/html", "/web/app.js"),
        ("/web/app.js", "text/javascript", "new EventSource("),
        ("/web/app.css", "text/css", ".sheet"),
    ] {
        let resp = http.get(rig.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers().clone();
        let ctype = headers["content-type"].to_str().unwrap();
        assert!(ctype.starts_with(kind), "{path}: {ctype}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(needle), "{path} lacks {needle}");
    }
    let resp = http.get(rig.url("/phones")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    rig.control.shutdown().await;
}
