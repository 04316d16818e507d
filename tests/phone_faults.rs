//! The phone (library) meets the sandbox's injected faults and ends in the documented state,
//! under the client's retry policy (README, "Retries"). Waits between attempts go through a
//! recording [`Sleeper`], so the tests assert what the policy waited without waiting.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Rig, bounded};
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use vphone::api::{ChallengeId, KeyPurpose};
use vphone::client::{ApiClient, ClientConfig, Credentials, RetryPolicy, Sleeper};
use vphone::sandbox::attempts::Status;
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::{ManualClock, SandboxConfig, SandboxState};

/// Records every wait the client asks for and returns at once.
#[derive(Default)]
struct Waits(Mutex<Vec<Duration>>);

impl Sleeper for Waits {
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.0.lock().push(d);
        Box::pin(async {})
    }
}

impl Waits {
    fn taken(&self) -> Vec<Duration> {
        self.0.lock().clone()
    }
}

/// A rig with `rules` whose client follows `policy`, waiting through a fresh [`Waits`].
async fn rig_retrying(rules: &[&str], policy: RetryPolicy) -> (Rig, Arc<Waits>) {
    let mut rig = rig_with(rules).await;
    let waits = Arc::new(Waits::default());
    let config = ClientConfig::local(
        rig.base_url().parse().unwrap(),
        Credentials::sandbox_default(),
    )
    .with_timeout(Duration::from_secs(10))
    .with_retry(policy.with_sleeper(waits.clone()));
    rig.client = ApiClient::new(config).unwrap();
    (rig, waits)
}

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
        assert!(outcome.answer_lost, "the outcome says the answer was lost");
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
        // A POST whose connection closed unanswered is not resent (the bank may have
        // acted), so the dropped creation reaches the phone as "unreachable".
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
async fn a_503_on_a_read_is_retried_with_backoff_and_the_sandbox_saw_every_attempt() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &["GET /v1/mfa/devices/*: status=503 next=2"],
            RetryPolicy::default(),
        )
        .await;
        let phone = rig.bound("read-503").await;
        // Two refusals, then the answer: three attempts within the default three retries.
        let device = phone.device().await.unwrap();
        assert_eq!(Some(device.id), phone.profile().device_id);
        assert_eq!(rig.injected().await, [2]);
        let waits = waits.taken();
        assert_eq!(waits.len(), 2, "{waits:?}");
        // Full jitter below a doubling ceiling: under 100 ms, then under 200 ms.
        assert!(waits[0] < Duration::from_millis(100), "{waits:?}");
        assert!(waits[1] < Duration::from_millis(200), "{waits:?}");
    })
    .await;
}

#[tokio::test]
async fn a_503_that_outlasts_the_retries_is_reported_as_the_bank_s_failure() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &["GET /v1/mfa/devices/*: status=503 next=10"],
            RetryPolicy::default().with_retries(2),
        )
        .await;
        let phone = rig.bound("outlasted").await;
        let err = phone.device().await.unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
        assert_eq!(err.exit_code(), 1, "{err}");
        assert!(err.to_string().contains("service_unavailable"), "{err}");
        // The sandbox marks what its fault rules made up, and the phone says so, and how
        // often the client tried.
        assert!(
            err.to_string()
                .contains("[a fault the vphone sandbox injected] (after 2 retries)"),
            "{err}"
        );
        assert_eq!(
            rig.injected().await,
            [3],
            "the first attempt and two retries"
        );
        assert_eq!(waits.taken().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn with_no_retry_a_503_is_reported_after_one_attempt() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &["GET /v1/mfa/devices/*: status=503 next=1"],
            RetryPolicy::none(),
        )
        .await;
        let phone = rig.bound("no-retry").await;
        let err = phone.device().await.unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
        assert_eq!(err.exit_code(), 1, "{err}");
        assert_eq!(rig.injected().await, [1]);
        assert!(waits.taken().is_empty());
        assert!(phone.device().await.is_ok());
    })
    .await;
}

#[tokio::test]
async fn a_429_on_a_post_is_retried_after_its_retry_after() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &["POST /v1/mfa/challenges/devices: status=429 retry_after=3 next=1"],
            RetryPolicy::default(),
        )
        .await;
        let phone = rig.bound("limited").await;
        // A 429 is a refusal before the bank acted: even a POST is sent again, after exactly
        // the seconds the bank asked for.
        phone.approve(Some(KeyPurpose::Unrestricted)).await.unwrap();
        assert_eq!(rig.injected().await, [1]);
        assert_eq!(waits.taken(), [Duration::from_secs(3)]);
    })
    .await;
}

#[tokio::test]
async fn a_retry_after_longer_than_the_cap_is_not_waited_for() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &["POST /v1/mfa/challenges/devices: status=429 retry_after=60 next=1"],
            RetryPolicy::default(),
        )
        .await;
        let phone = rig.bound("patient").await;
        let err = phone
            .approve(Some(KeyPurpose::Unrestricted))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(429), "{err}");
        assert_eq!(rig.injected().await, [1]);
        assert!(waits.taken().is_empty());
    })
    .await;
}

const TOKEN: &str = "POST /oauth2/token";

#[tokio::test]
async fn a_refused_token_request_is_retried_after_its_retry_after() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &[
                &format!("{TOKEN}: status=429 retry_after=3 next=1"),
                &format!("{TOKEN}: status=503 retry_after=2 next=1"),
            ],
            RetryPolicy::default(),
        )
        .await;
        // The phone's first call needs a token: refused twice, each time the client waits
        // what the refusal asked for (not its backoff), then the token and the call go through.
        let phone = rig.bound("token-limited").await;
        assert!(phone.profile().bound);
        assert_eq!(rig.injected().await, [1, 1]);
        assert_eq!(
            waits.taken(),
            [Duration::from_secs(3), Duration::from_secs(2)]
        );
    })
    .await;
}

#[tokio::test]
async fn a_token_refusal_asking_for_more_than_the_cap_ends_the_retries() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &[&format!("{TOKEN}: status=503 retry_after=60 next=1")],
            RetryPolicy::default(),
        )
        .await;
        let err = rig
            .client
            .get_discard("/v1/mfa/devices?person_id=nobody")
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(503), "{err}");
        assert!(
            err.to_string()
                .contains("[a fault the vphone sandbox injected]"),
            "{err}"
        );
        assert_eq!(rig.injected().await, [1]);
        assert!(waits.taken().is_empty(), "{:?}", waits.taken());
    })
    .await;
}

#[tokio::test]
async fn a_500_on_a_post_is_never_retried() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &["POST /v1/mfa/challenges/devices: status=500 next=1"],
            RetryPolicy::default(),
        )
        .await;
        let phone = rig.bound("five-hundred").await;
        let err = phone
            .approve(Some(KeyPurpose::Unrestricted))
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(500), "{err}");
        assert_eq!(rig.injected().await, [1]);
        assert!(waits.taken().is_empty());
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
async fn a_lost_answer_to_creating_the_device_is_unreachable_and_binding_again_works() {
    bounded(async {
        // The bank creates the (unbound) device, the answer never arrives: a POST is not
        // resent, so the phone reports the server unreachable; nothing is bound, and the
        // next bind starts afresh with the same key.
        let rig = rig_with(&["POST /v1/mfa/devices: drop_after next=1"]).await;
        let mut phone = rig.registered("lost-create").await;
        let err = phone.bind().await.unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(!phone.profile().bound);
        assert_eq!(rig.sandbox.state().stats().bindings, 0);
        let outcome = phone.bind().await.unwrap();
        assert!(!outcome.answer_lost);
        assert!(phone.profile().bound);
        assert_eq!(rig.sandbox.state().stats().bindings, 1);
        assert_eq!(rig.injected().await, [1]);
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

#[tokio::test]
async fn repeated_drops_of_an_idempotent_answer_are_retried_with_backoff() {
    bounded(async {
        let (rig, waits) = rig_retrying(
            &[&format!("{ANSWER_BINDING}: drop_before next=3")],
            RetryPolicy::default(),
        )
        .await;
        let mut phone = rig.registered("dropped-thrice").await;
        // The first resend is immediate (a stale keep-alive connection looks the same);
        // the next two wait a backoff each.
        let outcome = phone.bind().await.unwrap();
        assert!(
            !outcome.answer_lost,
            "the bank never acted before the last attempt"
        );
        assert_eq!(rig.sandbox.state().stats().bindings, 1);
        assert_eq!(rig.injected().await, [3]);
        assert_eq!(waits.taken().len(), 2, "{:?}", waits.taken());
    })
    .await;
}
