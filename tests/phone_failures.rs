//! The failures a user meets, each with a message naming the cause and the next step.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

mod common;

use common::{Rig, bounded, client_for, closed_port_url, unique_number};
use std::sync::Arc;
use std::time::Duration;
use vphone::api::{CreateDeviceChallenge, KeyPurpose, MobileNumberRequest, Otp, now_utc};
use vphone::client::Credentials;
use vphone::phone::cli::CliError;
use vphone::phone::{Home, OtpSource, Phone, PhoneError, PhoneName, person_named};
use vphone::sandbox::{ManualClock, SandboxConfig, SandboxState, SystemClock};

#[tokio::test]
async fn a_wrong_otp_fails_binding_and_says_why() {
    bounded(async {
        let rig = Rig::start().await;
        let mut phone = rig.registered("wrong").await;
        let mut liar = Phone::new(
            PhoneName::parse("liar").unwrap(),
            rig.client.clone(),
            OtpSource::Static(Otp::parse("000000").unwrap()),
        );
        let p = phone.profile().clone();
        liar.join_person(p.person_id.unwrap(), p.number.unwrap())
            .unwrap();
        let err = liar.bind().await.unwrap_err();
        assert_eq!(err.status(), Some(403), "{err}");
        let text = err.to_string();
        assert!(text.contains("bind: answer binding challenge"), "{text}");
        assert!(text.contains("the signature did not verify"), "{text}");
        assert_eq!(err.exit_code(), 1);
        assert!(!liar.profile().bound);
        // The honest phone of the same person still binds.
        phone.bind().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_wrong_sms_code_is_refused_with_the_attempt_limit() {
    bounded(async {
        let rig = Rig::start().await;
        let phone = rig.registered("typo").await;
        let typo = phone.with_otp_source(OtpSource::Static(Otp::parse("000000").unwrap()));
        let err = typo.sms_challenge().await.unwrap_err();
        assert_eq!(err.status(), Some(403));
        let text = err.to_string();
        assert!(
            text.contains("invalid_otp") && text.contains("3 wrong answers"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_expired_challenge_is_refused_by_the_bank_with_the_next_step() {
    bounded(async {
        let clock = Arc::new(ManualClock::new());
        let state = SandboxState::with_clock(SandboxConfig::default(), clock.clone());
        let rig = Rig::with_state(state).await;
        let phone = rig.bound("late").await;
        let device = phone.profile().device_id.clone().unwrap();
        let create = CreateDeviceChallenge {
            device_id: device,
            key_purpose: None,
            device_data: None,
        };
        // The bank's clock moves past the 5 minutes; the phone's does not know.
        let challenge = rig.client.create_device_challenge(&create).await.unwrap();
        clock.advance(Duration::from_secs(301));
        let err = phone.sign_challenge(&challenge.id).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("challenge_expired") && text.contains("start a new one"),
            "{text}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_challenge_already_expired_on_the_phones_clock_is_not_signed() {
    bounded(async {
        // The phone's injected clock runs past the challenge's 5 minutes; the bank's does
        // not, so the challenge is still open there.
        let rig = Rig::start().await;
        let clock = Arc::new(ManualClock::new());
        let phone = rig.bound("stale").await.with_clock(clock.clone());
        let create = CreateDeviceChallenge {
            device_id: phone.profile().device_id.clone().unwrap(),
            key_purpose: None,
            device_data: None,
        };
        let stale = rig.client.create_device_challenge(&create).await.unwrap();
        clock.advance(Duration::from_secs(301));
        let err = phone.sign_challenge(&stale.id).await.unwrap_err();
        assert!(matches!(err, PhoneError::Challenge { .. }), "{err:?}");
        assert!(err.to_string().contains("start a new one"), "{err}");
        // Nothing was sent: on the wall clock the same phone answers the same challenge.
        let phone = phone.with_clock(Arc::new(SystemClock));
        phone.sign_challenge(&stale.id).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deleted_device_is_refused_with_the_next_step() {
    bounded(async {
        let rig = Rig::start().await;
        let phone = rig.bound("gone").await;
        // Someone else (another app, the bank's back office) deletes the device.
        let device = phone.profile().device_id.clone().unwrap();
        rig.client.delete_device(&device).await.unwrap();
        let err = phone.approve(None).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err.status(), Some(403 | 404)), "{text}");
        assert!(text.contains("bind"), "{text}");
        assert_eq!(err.exit_code(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_sixth_device_of_a_person_is_refused_naming_the_limit() {
    bounded(async {
        let rig = Rig::start().await;
        let first = rig.bound("one").await;
        let mut phones = vec![first];
        for i in 2..=5 {
            let mut p = rig.sibling(&phones[0], &format!("p{i}"));
            p.bind().await.unwrap();
            phones.push(p);
        }
        assert_eq!(phones[0].devices(false).await.unwrap().len(), 5);
        let mut sixth = rig.sibling(&phones[0], "six");
        let err = sixth.bind().await.unwrap_err();
        assert_eq!(err.status(), Some(409));
        let text = err.to_string();
        assert!(text.contains("device_limit_reached"), "{text}");
        assert!(text.contains("at most 5"), "{text}");
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone phone delete-device"), "{cli}");
        assert!(cli.contains("`vphone phone devices six`"), "{cli}");
        assert!(
            !text.contains("vphone phone"),
            "the library names no command: {text}"
        );
        // Following the advice works.
        phones[4].delete_device().await.unwrap();
        sixth.bind().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_server_that_is_down_is_reported_as_unreachable() {
    bounded(async {
        let client = client_for(&closed_port_url(), Credentials::sandbox_default());
        let mut phone = Phone::new(
            PhoneName::parse("offline").unwrap(),
            client.clone(),
            OtpSource::SandboxHttp(client),
        );
        let err = phone
            .register(person_named("No", "Server"), unique_number())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("cannot reach") && text.contains("is the server running?"),
            "{text}"
        );
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone sandbox`"), "{cli}");
    })
    .await;
}

#[tokio::test]
async fn bad_credentials_are_refused_naming_what_to_check() {
    bounded(async {
        let rig = Rig::start().await;
        let client = client_for(
            &rig.base_url(),
            Credentials::new("vphone-demo", "not-the-secret"),
        );
        let mut phone = Phone::new(
            PhoneName::parse("intruder").unwrap(),
            client.clone(),
            OtpSource::SandboxHttp(client),
        );
        let err = phone
            .register(person_named("Bad", "Creds"), unique_number())
            .await
            .unwrap_err();
        assert_eq!(err.status(), Some(401));
        let text = err.to_string();
        assert!(text.contains("VPHONE_CLIENT_ID"), "{text}");
        assert!(!text.contains("not-the-secret"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn flows_that_need_setup_say_which_command_to_run() {
    bounded(async {
        let rig = Rig::start().await;
        let mut phone = rig.phone("fresh");
        let err = phone.bind().await.unwrap_err();
        assert!(!err.to_string().contains("vphone"), "{err}");
        assert_eq!(err.exit_code(), 4);
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone phone create fresh"), "{cli}");
        let mut phone = rig.registered("half").await;
        let err = phone
            .add_key(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone phone bind half`"), "{cli}");
        phone.bind().await.unwrap();
        let err = phone.bind().await.unwrap_err();
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone phone delete-device half`"), "{cli}");
        let err = phone
            .add_key(Some(KeyPurpose::Unrestricted))
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::KeyExists { .. }), "{err:?}");
    })
    .await;
}

/// A bank that offers challenges the phone must not sign: an unrestricted challenge when
/// the restricted key was asked for, and an empty `string_to_sign`. Counts answers.
async fn dubious_bank(answers: Arc<std::sync::atomic::AtomicUsize>) -> String {
    use axum::routing::{get, post};
    let challenge = |string_to_sign: &str| {
        let created = now_utc();
        serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef",
            "type": "device",
            "string_to_sign": string_to_sign,
            "key_purpose": "unrestricted",
            "created_at": created.to_string(),
            "expires_at": created.plus_seconds(300).to_string(),
        })
        .to_string()
    };
    let (a, b) = (challenge("pay 10 EUR"), challenge(""));
    let app = axum::Router::new()
        .route(
            "/oauth2/token",
            post(|| async { r#"{"access_token":"t","token_type":"bearer","expires_in":3599}"# }),
        )
        .route(
            "/v1/mfa/challenges/devices",
            post(move || async move { (axum::http::StatusCode::CREATED, a) }),
        )
        .route(
            "/v1/mfa/challenges/devices/{id}",
            get(move || async move { b }).put(move || async move {
                answers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn the_phone_refuses_challenges_it_cannot_answer_as_asked_and_signs_nothing() {
    bounded(async {
        let rig = Rig::start().await;
        let dir = tempfile::tempdir().unwrap();
        let home = vphone::phone::Home::new(dir.path());
        let name = PhoneName::parse("careful").unwrap();
        let source = OtpSource::SandboxHttp(rig.client.clone());
        let mut phone = rig.saved_bound(&home, &name).await;
        phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
        let answers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let fake = client_for(
            &dubious_bank(answers.clone()).await,
            Credentials::sandbox_default(),
        );
        let phone = Phone::open(&home, name, fake, source, None).unwrap();

        let err = phone
            .approve(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::Challenge { .. }), "{err:?}");
        assert!(
            err.to_string().contains("restricted key was requested"),
            "{err}"
        );
        assert_eq!(err.exit_code(), 1);

        let id = vphone::api::ChallengeId::from_user("0123456789abcdef0123456789abcdef").unwrap();
        let err = phone.sign_challenge(&id).await.unwrap_err();
        assert!(err.to_string().contains("empty string_to_sign"), "{err}");
        assert_eq!(
            answers.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing may be signed and sent"
        );
    })
    .await;
}

#[tokio::test]
async fn a_lost_answer_after_the_bank_bound_or_added_the_key_is_not_reported_as_failure() {
    bounded(async {
        // The bank acts on the binding answer and on the new key, then the connection closes
        // unanswered (the sandbox's `drop_after` fault). The client resends the PUT once; the
        // POST it may not resend.
        let config = SandboxConfig {
            faults: [
                "PUT /v1/mfa/challenges/signatures/*: drop_after next=1",
                "POST /v1/mfa/devices/*/keys: drop_after next=1",
            ]
            .iter()
            .map(|r| vphone::sandbox::faults::FaultRule::parse(r).unwrap())
            .collect(),
            ..SandboxConfig::default()
        };
        let sandbox = vphone::sandbox::spawn(config).await.unwrap();
        let client = client_for(&sandbox.base_url(), Credentials::sandbox_default());
        let mut phone = Phone::new(
            PhoneName::parse("patient").unwrap(),
            client.clone(),
            OtpSource::SandboxHttp(client),
        );
        phone
            .register(person_named("Pat", "Ient"), unique_number())
            .await
            .unwrap();
        // Each answer is lost, but the bank did bind and did add the key.
        phone.bind().await.unwrap();
        assert!(phone.profile().bound);
        let added = phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
        assert_eq!(
            phone.profile().restricted_key_id.as_ref(),
            Some(&added.key_id)
        );
        // The phone kept the key the bank knows, so it signs with it.
        phone.approve(Some(KeyPurpose::Restricted)).await.unwrap();
        let injected: Vec<u64> = sandbox
            .state()
            .fault_counts()
            .iter()
            .map(|c| c.injected)
            .collect();
        assert_eq!(injected, [1, 1], "both answers were lost");
        assert_eq!(sandbox.state().stats().bindings, 1);
        sandbox.shutdown().await;
    })
    .await;
}

/// The sandbox, with the key calls under the test's control: with `slow_posts`, the bank adds
/// a key and the connection closes unanswered; with `slow_lists_after_post`, so does every key
/// list asked for after such a request. When the add-key request reaches the bank, it records whether the
/// phone's saved file (`phone_file`) already held the new key as pending.
#[derive(Default)]
struct KeysWire {
    slow_posts: std::sync::atomic::AtomicBool,
    slow_lists_after_post: std::sync::atomic::AtomicBool,
    posted: std::sync::atomic::AtomicBool,
    phone_file: std::sync::Mutex<Option<(std::path::PathBuf, PhoneName)>>,
    saved_at_post: std::sync::Mutex<Option<(Option<KeyPurpose>, Vec<KeyPurpose>)>>,
}

async fn keys_wire_sandbox(wire: Arc<KeysWire>) -> vphone::sandbox::SandboxHandle {
    use axum::extract::{Request, State};
    use axum::middleware::{self, Next};
    use std::sync::atomic::Ordering::SeqCst;
    async fn gate(
        State(wire): State<Arc<KeysWire>>,
        req: Request,
        next: Next,
    ) -> axum::response::Response {
        let keys = req.uri().path().ends_with("/keys");
        let post = req.method() == axum::http::Method::POST;
        if keys && post {
            let file = wire.phone_file.lock().unwrap().clone();
            if let Some((home, name)) = file {
                let saved =
                    vphone::phone::SavedPhone::load(&vphone::phone::Home::new(home), name, None)
                        .unwrap();
                let held = saved.vault().keys().map(|k| k.purpose()).collect();
                *wire.saved_at_post.lock().unwrap() = Some((saved.profile().pending_key, held));
            }
        }
        let slow = keys
            && if post {
                wire.slow_posts.load(SeqCst)
            } else {
                wire.slow_lists_after_post.load(SeqCst) && wire.posted.load(SeqCst)
            };
        if keys && post {
            wire.posted.store(true, SeqCst);
        }
        let mut response = next.run(req).await;
        if slow {
            // The bank acted; its answer is lost on the way.
            response
                .extensions_mut()
                .insert(vphone::sandbox::faults::DropConnection);
        }
        response
    }
    let state = SandboxState::new(SandboxConfig::default());
    let app =
        vphone::sandbox::router(state.clone()).layer(middleware::from_fn_with_state(wire, gate));
    vphone::sandbox::spawn_router(state, "127.0.0.1:0".parse().unwrap(), app)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_add_key_whose_outcome_is_unknown_keeps_the_key_pending_until_the_bank_is_asked() {
    bounded(async {
        use std::sync::atomic::Ordering::SeqCst;
        let wire = Arc::new(KeysWire::default());
        let sandbox = keys_wire_sandbox(wire.clone()).await;
        let client = client_for(&sandbox.base_url(), Credentials::sandbox_default());
        let dir = tempfile::tempdir().unwrap();
        let home = vphone::phone::Home::new(dir.path());
        let name = PhoneName::parse("durable").unwrap();
        let source = OtpSource::SandboxHttp(client.clone());
        let mut phone =
            Phone::create(&home, name.clone(), client.clone(), source.clone(), None).unwrap();
        phone
            .register(person_named("Dura", "Ble"), unique_number())
            .await
            .unwrap();
        phone.bind().await.unwrap();
        *wire.phone_file.lock().unwrap() = Some((dir.path().to_owned(), name.clone()));
        wire.slow_posts.store(true, SeqCst);
        wire.slow_lists_after_post.store(true, SeqCst);

        // Both the add and the follow-up list lose their answers: the outcome is unknown.
        let err = phone
            .add_key(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::KeyPending { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("pending") && !text.contains("vphone"),
            "{text}"
        );
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone phone keys durable`"), "{cli}");
        // The key was on disk, pending, before the bank heard of it: a crash loses nothing.
        let (pending, held) = wire.saved_at_post.lock().unwrap().clone().unwrap();
        assert_eq!(pending, Some(KeyPurpose::Restricted));
        assert!(held.contains(&KeyPurpose::Restricted), "{held:?}");
        drop(phone);

        // A later run (a new process, say) settles it with the bank, which did add it.
        wire.slow_posts.store(false, SeqCst);
        wire.slow_lists_after_post.store(false, SeqCst);
        let mut phone = Phone::open(&home, name.clone(), client.clone(), source, None).unwrap();
        assert_eq!(phone.profile().pending_key, Some(KeyPurpose::Restricted));
        // Until it is settled, the pending key signs nothing and says how to settle it.
        let err = phone
            .approve(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::KeyUnconfirmed { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 4);
        let cli = CliError::from(err).to_string();
        assert!(cli.contains("`vphone phone keys durable`"), "{cli}");
        let keys = phone.keys().await.unwrap();
        let bank_id = keys
            .keys
            .iter()
            .find(|k| k.key_purpose == KeyPurpose::Restricted)
            .unwrap()
            .key_id
            .clone();
        assert_eq!(phone.profile().pending_key, None);
        assert_eq!(phone.profile().restricted_key_id.as_ref(), Some(&bank_id));
        phone.approve(Some(KeyPurpose::Restricted)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_pending_key_the_bank_never_added_is_forgotten_and_add_key_starts_afresh() {
    bounded(async {
        let rig = Rig::start().await;
        let dir = tempfile::tempdir().unwrap();
        let home = vphone::phone::Home::new(dir.path());
        let name = PhoneName::parse("unsent").unwrap();
        let source = OtpSource::SandboxHttp(rig.client.clone());
        let phone = rig.saved_bound(&home, &name).await;
        drop(phone);
        // The phone saved a pending key, then crashed before its request left: edit the
        // saved file into that state.
        let path = home.path_of(&name);
        let mut vault = vphone_keystore::Vault::load(&path, None).unwrap();
        vault.generate_key(KeyPurpose::Restricted).unwrap();
        vault.set_meta("key_pending", "restricted");
        vault.save(&path, None).unwrap();

        let mut phone = Phone::open(&home, name, rig.client.clone(), source, None).unwrap();
        let stale = phone
            .vault()
            .key(KeyPurpose::Restricted)
            .unwrap()
            .fingerprint();
        let added = phone.add_key(Some(KeyPurpose::Restricted)).await.unwrap();
        assert_eq!(phone.profile().pending_key, None);
        assert_eq!(
            phone.profile().restricted_key_id.as_ref(),
            Some(&added.key_id)
        );
        let fresh = phone
            .vault()
            .key(KeyPurpose::Restricted)
            .unwrap()
            .fingerprint();
        assert_ne!(stale, fresh, "the key the bank never saw is replaced");
        phone.approve(Some(KeyPurpose::Restricted)).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_refused_add_key_forgets_the_key_on_disk_too() {
    bounded(async {
        let rig = Rig::start().await;
        let dir = tempfile::tempdir().unwrap();
        let home = vphone::phone::Home::new(dir.path());
        let name = PhoneName::parse("refused").unwrap();
        let mut phone = rig.saved_bound(&home, &name).await;
        // The device is deleted behind the phone's back: the bank refuses the key.
        let device = phone.profile().device_id.clone().unwrap();
        rig.client.delete_device(&device).await.unwrap();
        let err = phone
            .add_key(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::Bank { .. }), "{err:?}");
        let saved = vphone::phone::SavedPhone::load(&home, name, None).unwrap();
        assert_eq!(saved.profile().pending_key, None);
        assert!(saved.vault().key(KeyPurpose::Restricted).is_none());
    })
    .await;
}

#[tokio::test]
async fn a_lost_add_key_answer_never_adopts_an_older_key_of_the_same_purpose() {
    bounded(async {
        use std::sync::atomic::Ordering::SeqCst;
        let wire = Arc::new(KeysWire::default());
        let sandbox = keys_wire_sandbox(wire.clone()).await;
        let client = client_for(&sandbox.base_url(), Credentials::sandbox_default());
        let dir = tempfile::tempdir().unwrap();
        let home = vphone::phone::Home::new(dir.path());
        let name = PhoneName::parse("orphan").unwrap();
        let source = OtpSource::SandboxHttp(client.clone());
        let mut phone =
            Phone::create(&home, name.clone(), client.clone(), source.clone(), None).unwrap();
        phone
            .register(person_named("Or", "Phan"), unique_number())
            .await
            .unwrap();
        phone.bind().await.unwrap();
        let orphan = phone
            .add_key(Some(KeyPurpose::Restricted))
            .await
            .unwrap()
            .key_id;
        drop(phone);
        // The phone loses its restricted key; the bank still lists it (an orphan).
        let path = home.path_of(&name);
        let mut vault = vphone_keystore::Vault::load(&path, None).unwrap();
        vault.remove(KeyPurpose::Restricted);
        vault.remove_meta("key_id.restricted");
        vault.save(&path, None).unwrap();

        // The bank refuses the new key (the purpose is taken), but that answer is lost; the
        // follow-up list answers and shows only the orphan of that purpose.
        wire.slow_posts.store(true, SeqCst);
        let mut phone = Phone::open(&home, name.clone(), client.clone(), source, None).unwrap();
        let err = phone
            .add_key(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::KeyPending { .. }), "{err:?}");
        assert_ne!(phone.profile().restricted_key_id.as_ref(), Some(&orphan));

        // Settling with the bank finds no new key: the unsent key is forgotten and the
        // orphan is not taken for the phone's own.
        wire.slow_posts.store(false, SeqCst);
        phone.keys().await.unwrap();
        assert_eq!(phone.profile().pending_key, None);
        assert!(phone.vault().key(KeyPurpose::Restricted).is_none());
        assert_eq!(phone.profile().restricted_key_id, None);
    })
    .await;
}

#[tokio::test]
async fn hints_name_the_phone_instead_of_a_placeholder() {
    bounded(async {
        let rig = Rig::start().await;
        let phone = rig.bound("hinted").await;
        // The bank refuses a restricted challenge for a device without a restricted key.
        let err = phone
            .approve(Some(KeyPurpose::Restricted))
            .await
            .unwrap_err();
        let text = CliError::from(err).to_string();
        assert!(
            text.contains("`vphone phone add-key hinted --purpose restricted`"),
            "{text}"
        );
        assert!(!text.contains("NAME"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn an_unknown_challenge_id_is_refused_with_a_hint_about_challenges_not_devices() {
    bounded(async {
        let rig = Rig::start().await;
        let phone = rig.bound("unknown").await;
        let id = vphone::api::ChallengeId::from_user("0123456789abcdef0123456789abcdef").unwrap();
        let err = phone.sign_challenge(&id).await.unwrap_err();
        assert_eq!(err.status(), Some(404), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("check the challenge id") && text.contains("5 minutes"),
            "{text}"
        );
        assert!(!text.contains("phone devices"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_device_deleted_elsewhere_is_forgotten_by_delete_device_and_the_phone_binds_again() {
    bounded(async {
        let rig = Rig::start().await;
        let mut phone = rig.bound("elsewhere").await;
        let device = phone.profile().device_id.clone().unwrap();
        rig.client.delete_device(&device).await.unwrap();
        // The refusal points at delete-device first: bind alone would refuse a bound phone.
        let text = CliError::from(phone.approve(None).await.unwrap_err()).to_string();
        assert!(text.contains("delete-device"), "{text}");
        let out = phone.delete_device().await.unwrap();
        assert!(out.already_deleted);
        assert_eq!(out.device_id, device);
        assert!(phone.profile().device_id.is_none() && !phone.profile().bound);
        let again = phone.bind().await.unwrap();
        assert_ne!(again.device_id, device);
        phone.approve(None).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn delete_device_keeps_the_keys_when_the_bank_does_not_list_the_device_as_deleted() {
    bounded(async {
        let rig = Rig::start().await;
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        let name = PhoneName::parse("kept").unwrap();
        let source = OtpSource::SandboxHttp(rig.client.clone());
        let phone = rig.saved_bound(&home, &name).await;
        let device = phone.profile().device_id.clone().unwrap();
        drop(phone);
        // Pointed at another bank, which knows neither the device nor the person: its 404
        // proves nothing, so the phone must keep its keys and its binding.
        let other = Rig::start().await;
        let mut astray = Phone::open(
            &home,
            name.clone(),
            other.client.clone(),
            source.clone(),
            None,
        )
        .unwrap();
        let err = astray.delete_device().await.unwrap_err();
        assert_eq!(err.status(), Some(404), "{err}");
        drop(astray);
        let phone = Phone::open(&home, name, rig.client.clone(), source, None).unwrap();
        assert_eq!(phone.profile().device_id.as_ref(), Some(&device));
        assert!(phone.profile().bound);
        phone.approve(None).await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn create_run_again_after_a_lost_answer_reads_the_number_and_continues() {
    bounded(async {
        let rig = Rig::start().await;
        let number = unique_number();
        let mut phone = rig.phone("lost");
        phone
            .create_person(&person_named("Lost", "Answer"))
            .await
            .unwrap();
        let person = phone.profile().person_id.clone().unwrap();
        // The bank added the number, but its answer never reached the phone.
        let req = MobileNumberRequest {
            number: number.clone(),
        };
        rig.client
            .create_mobile_number(&person, &req)
            .await
            .unwrap();
        assert!(phone.profile().number.is_none());
        // Running create again: 409 mobile_number_exists, then the phone reads the
        // person's number and verifies it.
        let out = phone
            .register(person_named("Lost", "Answer"), number.clone())
            .await
            .unwrap();
        assert_eq!(out.person.id, person);
        assert!(out.mobile_number.verified && phone.profile().number_verified);
        phone.bind().await.unwrap();

        // Another number than the one the bank holds is not taken over.
        let mut other = rig.phone("other");
        other
            .create_person(&person_named("Other", "Number"))
            .await
            .unwrap();
        let p = other.profile().person_id.clone().unwrap();
        rig.client.create_mobile_number(&p, &req).await.unwrap();
        let err = other
            .register(person_named("Other", "Number"), unique_number())
            .await
            .unwrap_err();
        assert!(matches!(err, PhoneError::NumberMismatch { .. }), "{err:?}");
    })
    .await;
}
