//! The phone (library) meets the sandbox's injected faults and ends in the documented state.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Rig, bounded};
use std::sync::Arc;
use std::time::Duration;
use vphone::api::ChallengeId;
use vphone::sandbox::attempts::Status;
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::{ManualClock, SandboxConfig, SandboxState};

fn config_with(rules: &[&str]) -> SandboxConfig {
    SandboxConfig {
        faults: rules.iter().map(|r| FaultRule::parse(r).unwrap()).collect(),
        faults_seed: Some(1),
        ..SandboxConfig::default()
    }
}

/// A rig whose sandbox runs `rules` with seed 1.
async fn rig_with(rules: &[&str]) -> Rig {
    Rig::with_state(SandboxState::new(config_with(rules))).await
}

/// A rig whose sandbox runs `rules` on a clock that moves only when told (held SMS wait for it).
async fn rig_on_clock(rules: &[&str]) -> (Rig, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let state = SandboxState::with_clock(config_with(rules), clock.clone());
    (Rig::with_state(state).await, clock)
}

/// Waits (bounded) until the sandbox holds back exactly `n` SMS.
async fn until_held(rig: &Rig, n: usize) {
    for _ in 0..2000 {
        if rig.sandbox.state().sms_held() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "the sandbox holds {} SMS, not {n}",
        rig.sandbox.state().sms_held()
    );
}

/// Asserts the bank recorded challenge `id` as answered at the first try.
fn assert_answered_first_time(rig: &Rig, id: &ChallengeId) {
    let record = rig.sandbox.state().challenge_status(id).unwrap();
    assert_eq!((record.status, record.failed), (Status::Completed, 0));
}

const SMS_CHALLENGE: &str = "POST /v1/mfa/challenges/sms";

const ANSWER_BINDING: &str = "PUT /v1/mfa/challenges/signatures/*";

#[tokio::test]
async fn a_lost_answer_to_the_binding_leaves_the_phone_bound_after_reading_state() {
    bounded(async {
        let rig = rig_with(&[&format!("{ANSWER_BINDING}: drop_after next=1")]).await;
        let mut phone = rig.registered("lost-answer").await;
        // The bank binds the device, the answer never arrives; the phone reads the device
        // back and finds it bound.
        let outcome = phone.bind().await.unwrap();
        assert!(phone.profile().bound);
        let device = phone.device().await.unwrap();
        assert_eq!(device.id, outcome.device_id);
        let stats = rig.sandbox.state().stats();
        assert_eq!(stats.bindings, 1);
        assert_eq!(rig.sandbox.state().fault_counts()[0].injected, 1);
    })
    .await;
}

#[tokio::test]
async fn a_connection_dropped_before_the_bank_acts_is_reported_unreachable() {
    bounded(async {
        // A POST is never resent by the client, so the dropped creation reaches the phone.
        let rig = rig_with(&["POST /v1/mfa/devices: drop_before next=1"]).await;
        let mut phone = rig.registered("dropped").await;
        let err = phone.bind().await.unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(err.to_string().contains("bind: create device"), "{err}");
        assert!(!phone.profile().bound);
        let stats = rig.sandbox.state().stats();
        assert_eq!(
            (stats.bindings, stats.live_devices),
            (0, 0),
            "the bank did nothing"
        );
        assert_eq!(rig.sandbox.state().fault_counts()[0].injected, 1);
        // Nothing was created, so binding again simply works.
        phone.bind().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_put_dropped_before_the_bank_acts_is_resent_once_by_the_client() {
    bounded(async {
        let rig = rig_with(&[&format!("{ANSWER_BINDING}: drop_before next=1")]).await;
        let mut phone = rig.registered("resent").await;
        phone.bind().await.unwrap();
        assert!(phone.profile().bound);
        assert_eq!(rig.sandbox.state().stats().bindings, 1);
        assert_eq!(rig.sandbox.state().fault_counts()[0].injected, 1);
    })
    .await;
}

#[tokio::test]
async fn a_503_on_a_read_is_reported_as_a_server_failure_without_retrying() {
    bounded(async {
        let rig = rig_with(&["GET /v1/mfa/devices/*: status=503 next=1"]).await;
        let phone = rig.bound("read-503").await;
        // Today the client does not retry: the first read fails with the bank's 503, in
        // exit-code category 1 (the server answered), and the next read succeeds.
        let err = phone.device().await.unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("service_unavailable"), "{err}");
        assert!(phone.device().await.is_ok());
        assert_eq!(rig.sandbox.state().fault_counts()[0].injected, 1);
    })
    .await;
}

#[tokio::test]
async fn a_401_as_if_the_token_expired_is_survived_by_a_token_refresh() {
    bounded(async {
        let rig = rig_with(&["GET /v1/mfa/devices/*: status=401 next=1"]).await;
        let phone = rig.bound("token-401").await;
        let result = phone.device().await;
        let injected = rig.sandbox.state().fault_counts()[0].injected;
        assert_eq!(injected, 1);
        // The client refreshes its token once on 401 `invalid_token` and repeats the call.
        assert!(result.is_ok(), "{:?}", result.err().map(|e| e.to_string()));
    })
    .await;
}

#[tokio::test]
async fn a_dropped_sms_ends_in_an_otp_timeout_that_names_the_number() {
    bounded(async {
        let rig = rig_with(&["POST /v1/mfa/devices: sms_drop"]).await;
        let mut phone = rig
            .registered("sms-drop")
            .await
            .with_otp_timeout(Duration::from_millis(300));
        let number = phone.profile().number.clone().unwrap();
        let err = phone.bind().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("no SMS with a 6-digit code reached {number}")),
            "{text}"
        );
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(!phone.profile().bound);
        assert_eq!(rig.sandbox.state().stats().bindings, 0);
        assert_eq!(rig.sandbox.state().fault_counts()[0].injected, 1);
    })
    .await;
}

#[tokio::test]
async fn a_delayed_sms_is_answered_when_it_arrives() {
    bounded(async {
        let (rig, clock) = rig_on_clock(&[&format!("{SMS_CHALLENGE}: sms_delay=30s")]).await;
        let phone = rig.registered("sms-delay").await;
        let drive = async {
            until_held(&rig, 1).await;
            clock.advance(Duration::from_secs(30));
        };
        let (outcome, ()) = tokio::join!(phone.sms_challenge(), drive);
        assert_answered_first_time(&rig, &outcome.unwrap().challenge_id);
    })
    .await;
}

#[tokio::test]
async fn a_late_duplicate_of_a_used_code_is_never_reused() {
    bounded(async {
        // The first SMS comes again 2 s later; the second is 4 s late, so the copy of the
        // first (already used) code lands while the phone waits for the second.
        let (rig, clock) = rig_on_clock(&[
            &format!("{SMS_CHALLENGE}: sms_duplicate=2s next=1"),
            &format!("{SMS_CHALLENGE}: sms_delay=4s next=1"),
        ])
        .await;
        let phone = rig.registered("sms-duplicate").await;
        let first = phone.sms_challenge().await.unwrap();
        assert_answered_first_time(&rig, &first.challenge_id);
        let drive = async {
            until_held(&rig, 2).await;
            clock.advance(Duration::from_secs(2));
            until_held(&rig, 1).await;
            // Gives the phone's long-poll time to see the copy alone (it must skip it).
            tokio::time::sleep(Duration::from_millis(200)).await;
            clock.advance(Duration::from_secs(2));
        };
        let (second, ()) = tokio::join!(phone.sms_challenge(), drive);
        let second = second.unwrap();
        assert_answered_first_time(&rig, &second.challenge_id);
        let counts = rig.sandbox.state().fault_counts();
        assert_eq!((counts[0].injected, counts[1].injected), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn an_older_code_delivered_after_a_newer_one_is_skipped() {
    bounded(async {
        let rig = rig_with(&[&format!("{SMS_CHALLENGE}: sms_reorder next=1")]).await;
        let phone = rig
            .registered("sms-reorder")
            .await
            .with_otp_timeout(Duration::from_millis(300));
        let number = phone.profile().number.clone().unwrap();
        // The first code is held back until the next SMS: the phone gives up on it.
        let err = phone.sms_challenge().await.unwrap_err();
        assert!(err.to_string().contains(&number.to_string()), "{err}");
        let phone = phone.with_otp_timeout(Duration::from_secs(10));
        // The second code arrives, then the first after it; the phone answers with the newer.
        let second = phone.sms_challenge().await.unwrap();
        assert_answered_first_time(&rig, &second.challenge_id);
        // Nothing is reused: the held-back code, now in the inbox, is not taken for the next.
        let third = phone.sms_challenge().await.unwrap();
        assert_answered_first_time(&rig, &third.challenge_id);
        let ids: Vec<u64> = rig
            .sandbox
            .state()
            .sms_since(&number, 0)
            .iter()
            .filter_map(|m| m.message_id)
            .collect();
        let n = ids.len();
        assert!(
            ids[n - 3] > ids[n - 2] && ids[n - 2] < ids[n - 1],
            "the older code arrived between the newer ones: {ids:?}"
        );
        assert_eq!(rig.sandbox.state().fault_counts()[0].injected, 1);
    })
    .await;
}
