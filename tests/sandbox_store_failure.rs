//! A commit to the `--state` file that fails leaves the bank in memory as it is on disk:
//! the request answers 500 `storage_error` and its change is undone, so retrying it later
//! behaves as if it had never been sent (no attempt spent, no device bound or deleted), and
//! a sandbox restarted on the file serves what the live one serves.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

mod sandbox_common;

use sandbox_common::{Bank, Key, assert_refused, random_number};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use vphone::sandbox::store::{Snapshot, SqliteStore, Store, StoreError, SyncMode, Write};
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
    fn commit(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Database(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            )));
        }
        self.file.commit(writes)
    }
}

async fn bank_on(path: &Path, fail: &Arc<AtomicBool>) -> Bank {
    let store = Failing {
        file: SqliteStore::open(path, SyncMode::Normal).unwrap(),
        fail: fail.clone(),
    };
    let state = SandboxState::with_store(
        SandboxConfig::default(),
        Arc::new(SystemClock),
        Box::new(store),
    )
    .unwrap();
    Bank::start_on(state).await
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
async fn a_failed_commit_changes_nothing_in_memory_and_memory_agrees_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bank.sqlite");
    let fail = Arc::new(AtomicBool::new(false));
    let bank = bank_on(&file, &fail).await;
    let (person, number) = bank.verified_person().await;

    // A binding whose right answer cannot be committed: 500, and the device stays unbound.
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let otp = bank.last_otp(&number).await;
    let answer = json!({"signature": key.sign(otp.as_bytes())});
    let binding = format!("/v1/mfa/challenges/signatures/{challenge}");
    fail.store(true, Ordering::SeqCst);
    let got = bank.call("PUT", &binding, Some(answer.clone())).await;
    assert_refused(&got, 500, "storage_error");
    // Wrong answers that cannot be committed spend no attempt: more of them than the
    // limit (3) would fail the challenge if they counted.
    let wrong = json!({"signature": key.sign(b"000000")});
    for _ in 0..4 {
        let got = bank.call("PUT", &binding, Some(wrong.clone())).await;
        assert_refused(&got, 500, "storage_error");
    }
    fail.store(false, Ordering::SeqCst);
    let got = bank
        .call("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_eq!(got.0, 404, "not bound in memory: {}", got.1);
    // The key is not held by the failed binding: the same answer binds now.
    let (s, b) = bank.call("PUT", &binding, Some(answer)).await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = bank
        .call("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_eq!(s, 200, "{b}");

    // A deletion that cannot be committed: the device stays bound and its key still signs.
    fail.store(true, Ordering::SeqCst);
    let got = bank
        .call("DELETE", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_refused(&got, 500, "storage_error");
    fail.store(false, Ordering::SeqCst);
    let (s, ch) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": device})),
        )
        .await;
    assert_eq!(s, 201, "the device is still bound: {ch}");
    let signed = key.sign(ch["string_to_sign"].as_str().unwrap().as_bytes());
    let (s, b) = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/devices/{}", ch["id"].as_str().unwrap()),
            Some(json!({"signature": signed})),
        )
        .await;
    assert_eq!(s, 204, "its key is still bound: {b}");

    // A new number confirmed with its right OTP while commits fail stays unverified.
    let other = bank.person().await;
    let new_number = random_number();
    let base = format!("/v1/persons/{other}/mobile_number");
    for path in [base.clone(), format!("{base}/authorize")] {
        let (s, b) = bank
            .call("POST", &path, Some(json!({"number": new_number})))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let otp = bank.last_otp(&new_number).await;
    let confirm = json!({"number": new_number, "token": otp});
    fail.store(true, Ordering::SeqCst);
    let got = bank
        .call("POST", &format!("{base}/confirm"), Some(confirm.clone()))
        .await;
    assert_refused(&got, 500, "storage_error");
    fail.store(false, Ordering::SeqCst);
    let (s, b) = bank.call("GET", &base, None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["verified"], false, "{b}");

    // Memory and the file agree: a sandbox restarted on the file serves the same.
    let live = (visible(&bank, &person).await, visible(&bank, &other).await);
    bank.handle.shutdown().await;
    let restarted = bank_on(&file, &fail).await;
    let reloaded = (
        visible(&restarted, &person).await,
        visible(&restarted, &other).await,
    );
    assert_eq!(live, reloaded);
    assert_eq!(
        live.0.1.as_array().map(Vec::len),
        Some(1),
        "one bound device: {}",
        live.0.1
    );
    // And the confirmation refused for storage can be made now.
    let (s, b) = restarted
        .call("POST", &format!("{base}/confirm"), Some(confirm))
        .await;
    assert_eq!(s, 201, "{b}");
}
