//! The phone (library) meets the sandbox's injected faults and ends in the documented state.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Rig, bounded};
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::{SandboxConfig, SandboxState};

/// A rig whose sandbox runs `rules` with seed 1.
async fn rig_with(rules: &[&str]) -> Rig {
    let config = SandboxConfig {
        faults: rules.iter().map(|r| FaultRule::parse(r).unwrap()).collect(),
        faults_seed: Some(1),
        ..SandboxConfig::default()
    };
    Rig::with_state(SandboxState::new(config)).await
}

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
