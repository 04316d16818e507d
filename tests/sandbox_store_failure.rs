//! A commit to the `--state` file that fails is not acknowledged (500 `storage_error`), and
//! the sandbox then refuses every `/v1/` request until it is restarted, so nothing it
//! answers depends on what was lost; a sandbox restarted on the file serves exactly what was
//! acknowledged, and the refused requests can be made again there.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

mod sandbox_common;

use sandbox_common::{Bank, Key, assert_refused, random_number};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use vphone::sandbox::store::{Row, Snapshot, SqliteStore, Store, StoreError, SyncMode};
use vphone::sandbox::{SandboxConfig, SandboxState, SystemClock};

/// A SQLite store whose commits fail (as on a full disk) while `fail` is set.
struct Failing {
    file: SqliteStore,
    fail: Arc<AtomicBool>,
}

impl Store for Failing {
    fn is_durable(&self) -> bool {
        true
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.file.load()
    }
    fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Database(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            )));
        }
        self.file.commit(rows)
    }
}

/// A sandbox's state on the file at `path`, its commits failing while `fail` is set.
fn state_on(path: &Path, fail: &Arc<AtomicBool>) -> SandboxState {
    let store = Failing {
        file: SqliteStore::open(path, SyncMode::Normal).unwrap(),
        fail: fail.clone(),
    };
    SandboxState::with_store(
        SandboxConfig::default(),
        Arc::new(SystemClock),
        Box::new(store),
    )
    .unwrap()
}

async fn bank_on(path: &Path, fail: &Arc<AtomicBool>) -> Bank {
    Bank::start_on(state_on(path, fail)).await
}

/// What a partner sees of a person: their number and bound devices.
async fn visible(bank: &Bank, person: &str) -> (Value, Value) {
    let (s, number) = bank
        .call("GET", &format!("/v1/persons/{person}/mobile_number"), None)
        .await;
    assert_eq!(s, 200, "{number}");
    let (s, devices) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}&page[size]=100"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{devices}");
    (number, devices)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_refuses_changes_until_restart_and_the_restart_serves_what_was_acknowledged()
 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bank.sqlite");
    let fail = Arc::new(AtomicBool::new(false));
    let bank = bank_on(&file, &fail).await;
    let (person, number) = bank.verified_person().await;

    // Acknowledged before the failure: one bound device.
    let kept = bank.bind(&person, &number).await.device_id;

    // A number waiting for its confirmation, and a second binding waiting for its answer.
    let other = bank.person().await;
    let new_number = random_number();
    let base = format!("/v1/persons/{other}/mobile_number");
    for path in [base.clone(), format!("{base}/authorize")] {
        let (s, b) = bank
            .call("POST", &path, Some(json!({"number": new_number})))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let confirm = json!({"number": new_number, "token": bank.last_otp(&new_number).await});
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let otp = bank.last_otp(&number).await;
    let answer = json!({"signature": key.sign(otp.as_bytes())});
    let binding = format!("/v1/mfa/challenges/signatures/{challenge}");

    // The right answer whose commit fails (as on a full disk): 500, not acknowledged.
    fail.store(true, Ordering::SeqCst);
    let got = bank.call("PUT", &binding, Some(answer.clone())).await;
    assert_refused(&got, 500, "storage_error");
    // The disk is freed, but memory may now hold what the file does not: every change is
    // refused until a restart, before its handler runs, so none changes anything.
    fail.store(false, Ordering::SeqCst);
    let wrong = json!({"signature": key.sign(b"000000")});
    for _ in 0..4 {
        let got = bank.call("PUT", &binding, Some(wrong.clone())).await;
        assert_refused(&got, 500, "storage_error");
    }
    let got = bank
        .call("DELETE", &format!("/v1/mfa/devices/{kept}"), None)
        .await;
    assert_refused(&got, 500, "storage_error");
    let got = bank
        .call("POST", &format!("{base}/confirm"), Some(confirm.clone()))
        .await;
    assert_refused(&got, 500, "storage_error");
    // Refused before the handler runs: an authorization would have sent an SMS.
    let sent = bank.sms(&new_number).await.len();
    let got = bank
        .call(
            "POST",
            &format!("{base}/authorize"),
            Some(json!({"number": new_number})),
        )
        .await;
    assert_refused(&got, 500, "storage_error");
    assert_eq!(
        bank.sms(&new_number).await.len(),
        sent,
        "no SMS for a refused change"
    );
    let got = bank
        .call(
            "POST",
            "/v1/persons",
            Some(json!({"first_name": "Refused", "last_name": "Change"})),
        )
        .await;
    assert_refused(&got, 500, "storage_error");
    // Its health check says so, for a supervisor to restart it.
    let (s, health) = bank.call("GET", "/sandbox/health", None).await;
    assert_eq!(s, 503, "{health}");
    assert_eq!(
        (&health["status"], &health["state_file"], &health["service"]),
        (&json!("failed"), &json!("failed"), &json!("vphone-sandbox")),
        "{health}"
    );
    // Reads are refused too: memory holds the binding answered 500, which a restart will
    // not serve, so the device must not be shown bound.
    let got = bank
        .call("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_refused(&got, 500, "storage_error");
    // The sandbox's own routes still answer.
    let (s, stats) = bank.call("GET", "/sandbox/stats", None).await;
    assert_eq!(s, 200, "{stats}");
    bank.handle.shutdown().await;

    // A sandbox restarted on the file serves what was acknowledged, and nothing else.
    let restarted = bank_on(&file, &fail).await;
    let (s, health) = restarted.call("GET", "/sandbox/health", None).await;
    assert_eq!(
        (s.as_u16(), &health["state_file"]),
        (200, &json!("ok")),
        "{health}"
    );
    let (_, devices) = visible(&restarted, &person).await;
    let ids: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![kept.as_str()], "{devices}");
    let (s, b) = restarted
        .call("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_eq!(s, 404, "the unacknowledged binding is not kept: {b}");
    // The refused changes spent nothing: the binding's attempts are all left, so its right
    // answer binds now, and the number's OTP still confirms it.
    let (s, b) = restarted.call("PUT", &binding, Some(answer)).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = restarted
        .call("POST", &format!("{base}/confirm"), Some(confirm))
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = restarted
        .call("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_eq!(s, 200, "{b}");
}

/// A sweep with nothing to forget queues nothing to commit: the next answer does not wait for
/// a commit that would come only with some later change (it hung there once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_that_forgets_nothing_holds_up_no_answer() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_on(&dir.path().join("bank.sqlite"), &Arc::default());
    let bank = Bank::start_on(state.clone()).await;
    let person = bank.person().await;
    state.sweep();
    // Bounded: a hang fails the test instead of stalling the suite.
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        bank.call("GET", &format!("/v1/persons/{person}"), None),
    )
    .await;
    let (s, b) = read.expect("the read after an empty sweep was answered");
    assert_eq!(s, 200, "{b}");
}
