//! The phone as a toolkit: a partner backend (written here, with its own routes) sits between
//! the phone and the sandbox bank. The test drives it with only `new-key`, `public-key`, `otp`
//! and `sign-message` — through the CLI and through the library — then `adopt` hands the
//! device to the phone's own commands.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use common::{Rig, bounded, phone_cli, unique_number};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use vphone::api::{
    AddKeyRequest, AnswerDeviceChallenge, AnswerSignatureChallenge, BindingChallengeType,
    ChallengeId, ConfirmMobileNumber, CreateDeviceChallenge, CreateDeviceRequest, DeviceId,
    DeviceSignature, KeyId, KeyPurpose, KeyType, MobileNumberRequest, Otp, PersonId, PhoneNumber,
    PublicKeyHex, SignatureHex,
};
use vphone::client::ApiClient;
use vphone::phone::{Adoption, OtpSource, Phone, PhoneName};
use vphone_keystore::{
    PresenceError, PresenceRequest, PublicKeyFormat, SignatureFormat, UserPresence,
};

// ---------------------------------------------------------------------------------------
// The partner backend: one app user, the bank behind it, reached with the partner's client.

#[derive(Default)]
struct AppUser {
    person: Option<PersonId>,
    number: Option<PhoneNumber>,
    device: Option<DeviceId>,
    binding: Option<ChallengeId>,
    payments: HashMap<String, ChallengeId>,
}

#[derive(Clone)]
struct Backend {
    bank: ApiClient,
    user: Arc<Mutex<AppUser>>,
}

type Answer = Result<Json<Value>, (axum::http::StatusCode, String)>;

fn failed(e: impl std::fmt::Display) -> (axum::http::StatusCode, String) {
    (axum::http::StatusCode::BAD_GATEWAY, e.to_string())
}

fn field<'a>(body: &'a Value, name: &str) -> &'a str {
    body[name].as_str().unwrap_or_default()
}

async fn signup(State(b): State<Backend>, Json(body): Json<Value>) -> Answer {
    let number = PhoneNumber::parse(field(&body, "number")).map_err(failed)?;
    let person = b
        .bank
        .create_person(&vphone::phone::person_named("App", "User"))
        .await
        .map_err(failed)?;
    let req = MobileNumberRequest {
        number: number.clone(),
    };
    b.bank
        .create_mobile_number(&person.id, &req)
        .await
        .map_err(failed)?;
    b.bank
        .authorize_mobile_number(&person.id, &req)
        .await
        .map_err(failed)?;
    let mut user = b.user.lock();
    user.person = Some(person.id.clone());
    user.number = Some(number);
    Ok(Json(json!({"person_id": person.id})))
}

async fn signup_confirm(State(b): State<Backend>, Json(body): Json<Value>) -> Answer {
    let token = Otp::parse(field(&body, "code")).map_err(failed)?;
    let (person, number) = {
        let user = b.user.lock();
        (user.person.clone().unwrap(), user.number.clone().unwrap())
    };
    b.bank
        .confirm_mobile_number(&person, &ConfirmMobileNumber { number, token })
        .await
        .map_err(failed)?;
    Ok(Json(json!({"verified": true})))
}

async fn bind_start(State(b): State<Backend>, Json(body): Json<Value>) -> Answer {
    let person_id = b.user.lock().person.clone().unwrap();
    let req = CreateDeviceRequest {
        person_id,
        key_type: KeyType::EcdsaP256,
        key: PublicKeyHex::parse(field(&body, "public_key")).map_err(failed)?,
        key_purpose: Some(KeyPurpose::Unrestricted),
        name: "partner app".to_owned(),
        challenge_type: Some(BindingChallengeType::Sms),
        language: None,
        sms_challenge: None,
        device_data: None,
    };
    let created = b.bank.create_device(&req).await.map_err(failed)?;
    let mut user = b.user.lock();
    user.device = Some(created.id.clone());
    user.binding = Some(created.challenge.id);
    Ok(Json(json!({"device_id": created.id})))
}

async fn bind_finish(State(b): State<Backend>, Json(body): Json<Value>) -> Answer {
    let (device, challenge) = {
        let user = b.user.lock();
        (user.device.clone().unwrap(), user.binding.clone().unwrap())
    };
    let answer = AnswerSignatureChallenge {
        signature: SignatureHex::parse(field(&body, "signature")).map_err(failed)?,
        device_data: None,
    };
    b.bank
        .answer_signature_challenge(&challenge, &answer)
        .await
        .map_err(failed)?;
    Ok(Json(json!({"device_id": device})))
}

/// The restricted key joins the device, vouched for by the unrestricted key's signature over
/// the new key's hex (API.md, adding a key).
async fn add_restricted_key(State(b): State<Backend>, Json(body): Json<Value>) -> Answer {
    let device = b.user.lock().device.clone().unwrap();
    let req = AddKeyRequest {
        key: PublicKeyHex::parse(field(&body, "public_key")).map_err(failed)?,
        key_type: KeyType::EcdsaP256,
        key_purpose: KeyPurpose::Restricted,
        device_signature: DeviceSignature {
            signature_key_purpose: KeyPurpose::Unrestricted,
            signature: SignatureHex::parse(field(&body, "signature")).map_err(failed)?,
        },
    };
    let added = b.bank.add_key(&device, &req).await.map_err(failed)?;
    Ok(Json(json!({"key_id": added.id})))
}

async fn approve_start(State(b): State<Backend>, Path(payment): Path<String>) -> Answer {
    let device_id = b.user.lock().device.clone().unwrap();
    let req = CreateDeviceChallenge {
        device_id,
        key_purpose: Some(KeyPurpose::Restricted),
        device_data: None,
    };
    let challenge = b.bank.create_device_challenge(&req).await.map_err(failed)?;
    b.user.lock().payments.insert(payment, challenge.id.clone());
    Ok(Json(json!({"string_to_sign": challenge.string_to_sign})))
}

async fn approve_finish(
    State(b): State<Backend>,
    Path(payment): Path<String>,
    Json(body): Json<Value>,
) -> Answer {
    let challenge = b.user.lock().payments.get(&payment).cloned().unwrap();
    let answer = AnswerDeviceChallenge {
        signature: SignatureHex::parse(field(&body, "signature")).map_err(failed)?,
        device_data: None,
    };
    b.bank
        .answer_device_challenge(&challenge, &answer)
        .await
        .map_err(failed)?;
    Ok(Json(
        json!({"status": "approved", "challenge_id": challenge}),
    ))
}

/// Starts the backend on 127.0.0.1:0 and returns its base URL.
async fn start_backend(bank: ApiClient) -> (String, Backend) {
    let backend = Backend {
        bank,
        user: Arc::default(),
    };
    let app = Router::new()
        .route("/app/signup", post(signup))
        .route("/app/signup/confirm", post(signup_confirm))
        .route("/app/bind/start", post(bind_start))
        .route("/app/bind/finish", post(bind_finish))
        .route("/app/keys/restricted", post(add_restricted_key))
        .route("/app/payments/{id}/approve/start", post(approve_start))
        .route("/app/payments/{id}/approve/finish", post(approve_finish))
        .with_state(backend.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), backend)
}

/// The app's call to its backend.
async fn app(base: &str, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

// ---------------------------------------------------------------------------------------
// What the bank shows afterwards.

/// The device is bound (the bank lists only verified devices), the restricted key signed the
/// payment challenge (its `used_at` is set), and that challenge is spent: answering it again
/// with the very signature that completed it is refused.
async fn bank_shows_bound_and_approved(
    bank: &ApiClient,
    device: &DeviceId,
    challenge: &ChallengeId,
    signature: &str,
) {
    bank.get_device(device).await.expect("the device is bound");
    let keys = bank.list_keys(device).await.unwrap();
    let restricted = keys
        .keys
        .iter()
        .find(|k| k.key_purpose == KeyPurpose::Restricted)
        .expect("the restricted key is on the device");
    assert!(restricted.used_at.flatten().is_some(), "{keys:?}");
    let again = AnswerDeviceChallenge {
        signature: SignatureHex::parse(signature).unwrap(),
        device_data: None,
    };
    let refused = bank
        .answer_device_challenge(challenge, &again)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(403), "{refused}");
}

// ---------------------------------------------------------------------------------------
// Through the CLI.

/// Runs `vphone phone ARGS` off the runtime (it blocks) and returns its stdout, trimmed;
/// stdin is `input`.
async fn cli(home: &std::path::Path, api: &str, args: &[&str], input: &str) -> String {
    let mut cmd = phone_cli(home, api);
    cmd.args(args).write_stdin(input.to_owned());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "vphone phone {args:?}: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_phone_binds_and_approves_a_payment_through_a_partner_backend() {
    bounded(async {
        let rig = Rig::start().await;
        let api = rig.base_url();
        let (backend, state) = start_backend(rig.client.clone()).await;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let number = unique_number().to_string();

        // Sign up: the backend creates the person and the bank texts the phone.
        let public_key = cli(
            home,
            &api,
            &[
                "new-key",
                "app",
                "--purpose",
                "unrestricted",
                "--number",
                &number,
            ],
            "",
        )
        .await;
        assert_eq!(public_key.len(), 130, "{public_key}");
        let marker = cli(home, &api, &["otp", "app", "--print-marker"], "").await;
        let person = app(&backend, "/app/signup", json!({"number": number})).await;
        let code = cli(
            home,
            &api,
            &["otp", "app", "--since", &marker, "--wait", "10s"],
            "",
        )
        .await;
        assert_eq!(code.len(), 6, "{code}");
        app(&backend, "/app/signup/confirm", json!({"code": code})).await;

        // Bind: public key to the backend, the OTP signed with the new key.
        let marker = cli(home, &api, &["otp", "app", "--print-marker"], "").await;
        let bound = app(
            &backend,
            "/app/bind/start",
            json!({"public_key": public_key}),
        )
        .await;
        let code = cli(
            home,
            &api,
            &["otp", "app", "--since", &marker, "--wait", "10s"],
            "",
        )
        .await;
        let signature = cli(
            home,
            &api,
            &[
                "sign-message",
                "app",
                "--purpose",
                "unrestricted",
                "--message",
                &code,
            ],
            "",
        )
        .await;
        app(
            &backend,
            "/app/bind/finish",
            json!({"signature": signature}),
        )
        .await;
        let device = DeviceId::from_server(bound["device_id"].as_str().unwrap()).unwrap();

        // The restricted key joins, vouched for by the unrestricted one.
        cli(
            home,
            &api,
            &["new-key", "app", "--purpose", "restricted"],
            "",
        )
        .await;
        let restricted = cli(
            home,
            &api,
            &["public-key", "app", "--purpose", "restricted"],
            "",
        )
        .await;
        let vouch = cli(
            home,
            &api,
            &[
                "sign-message",
                "app",
                "--purpose",
                "unrestricted",
                "--message",
                &restricted,
            ],
            "",
        )
        .await;
        let added = app(
            &backend,
            "/app/keys/restricted",
            json!({"public_key": restricted, "signature": vouch}),
        )
        .await;
        let key_id = added["key_id"].as_str().unwrap().to_owned();

        // A payment: the string to sign comes from the backend, the user approves the prompt.
        let to_sign = app(&backend, "/app/payments/p-1/approve/start", json!({})).await;
        let to_sign = to_sign["string_to_sign"].as_str().unwrap().to_owned();
        let mut denied = phone_cli(home, &api);
        denied
            .args([
                "--presence",
                "deny",
                "sign-message",
                "app",
                "--purpose",
                "restricted",
                "--stdin",
            ])
            .write_stdin(to_sign.clone());
        let denied = tokio::task::spawn_blocking(move || denied.output().unwrap())
            .await
            .unwrap();
        assert_eq!(denied.status.code(), Some(1));
        assert!(denied.stdout.is_empty(), "a refusal prints no signature");
        let signed = cli(
            home,
            &api,
            &["sign-message", "app", "--purpose", "restricted", "--stdin"],
            &to_sign,
        )
        .await;
        let done = app(
            &backend,
            "/app/payments/p-1/approve/finish",
            json!({"signature": signed}),
        )
        .await;
        let challenge = ChallengeId::from_server(done["challenge_id"].as_str().unwrap()).unwrap();
        bank_shows_bound_and_approved(&rig.client, &device, &challenge, &signed).await;
        assert_eq!(state.user.lock().device.as_ref(), Some(&device));

        // adopt: the phone's own commands now work on the backend's device.
        let adopt_key = format!("restricted={key_id}");
        cli(
            home,
            &api,
            &[
                "adopt",
                "app",
                "--device-id",
                device.as_str(),
                "--key-id",
                &adopt_key,
                "--person-id",
                person["person_id"].as_str().unwrap(),
            ],
            "",
        )
        .await;
        let keys: Value =
            serde_json::from_str(&cli(home, &api, &["--json", "keys", "app"], "").await).unwrap();
        assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
        // Every key now shows its purpose, the bank's id and its fingerprint.
        let shown: Value = serde_json::from_str(
            &cli(home, &api, &["--json", "show", "app", "--offline"], "").await,
        )
        .unwrap();
        let labels = shown["keys"].as_array().unwrap();
        assert_eq!(labels.len(), 2, "{shown}");
        for label in labels {
            assert!(label["key_id"].is_string(), "{shown}");
            assert_eq!(label["fingerprint"].as_str().unwrap().len(), 16, "{shown}");
        }
        assert!(
            labels
                .iter()
                .any(|l| l["purpose"] == "restricted" && l["key_id"] == key_id.as_str()),
            "{shown}"
        );
        // The prompt and `keys` name the restricted key alike.
        let restricted_label = labels
            .iter()
            .find(|l| l["purpose"] == "restricted")
            .unwrap();
        let fingerprint = restricted_label["fingerprint"].as_str().unwrap().to_owned();
        let named = format!("restricted key {fingerprint} (bank id {key_id})");
        let listed = cli(home, &api, &["keys", "app"], "").await;
        assert!(listed.contains(&named), "{listed}");
        let mut asked = phone_cli(home, &api);
        asked
            .args([
                "--presence",
                "prompt",
                "approve",
                "app",
                "--purpose",
                "restricted",
            ])
            .write_stdin("y\n");
        let asked = tokio::task::spawn_blocking(move || asked.output().unwrap())
            .await
            .unwrap();
        let prompt = String::from_utf8_lossy(&asked.stderr);
        assert!(asked.status.success(), "{prompt}");
        assert!(prompt.starts_with("Approve device challenge "), "{prompt}");
        assert!(
            prompt.contains(&format!(" with {named}? [y/N]")),
            "{prompt}"
        );
        assert!(String::from_utf8_lossy(&asked.stdout).contains(&named));
        cli(home, &api, &["delete-device", "app"], "").await;
        let gone = rig.client.get_device(&device).await.unwrap();
        assert!(gone.deleted_at.is_some(), "{gone:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Through the library.

/// Approves every prompt and remembers what it was asked.
#[derive(Default)]
struct Recorder(Mutex<Vec<PresenceRequest>>);

impl UserPresence for Recorder {
    fn confirm(&self, request: &PresenceRequest) -> Result<(), PresenceError> {
        self.0.lock().push(request.clone());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_library_phone_binds_and_approves_a_payment_through_a_partner_backend() {
    bounded(async {
        let rig = Rig::start().await;
        let (backend, _state) = start_backend(rig.client.clone()).await;
        let prompt = Arc::new(Recorder::default());
        let number = unique_number();
        let mut phone = Phone::new(
            PhoneName::parse("lib-app").unwrap(),
            rig.client.clone(),
            OtpSource::SandboxHttp(rig.client.clone()),
        )
        .with_presence(prompt.clone());
        phone.set_number(number.clone());
        let wait = Duration::from_secs(10);

        phone.new_key(KeyPurpose::Unrestricted).unwrap();
        let public_key = phone
            .public_key(KeyPurpose::Unrestricted, PublicKeyFormat::Hex)
            .unwrap();
        let marker = phone.otp_marker().await.unwrap();
        let person = app(&backend, "/app/signup", json!({"number": number.as_str()})).await;
        let code = phone.otp(Some(marker), wait).await.unwrap();
        app(
            &backend,
            "/app/signup/confirm",
            json!({"code": code.code.expose()}),
        )
        .await;

        let marker = phone.otp_marker().await.unwrap();
        let bound = app(
            &backend,
            "/app/bind/start",
            json!({"public_key": public_key}),
        )
        .await;
        let code = phone.otp(Some(marker), wait).await.unwrap();
        assert!(
            code.marker > marker,
            "the code's marker moves past the one taken before"
        );
        let signature = phone
            .sign_message(
                KeyPurpose::Unrestricted,
                code.code.expose().as_bytes(),
                SignatureFormat::Hex,
            )
            .unwrap();
        app(
            &backend,
            "/app/bind/finish",
            json!({"signature": signature}),
        )
        .await;
        let device = DeviceId::from_server(bound["device_id"].as_str().unwrap()).unwrap();

        let label = phone.new_key(KeyPurpose::Restricted).unwrap();
        let restricted = phone
            .public_key(KeyPurpose::Restricted, PublicKeyFormat::Hex)
            .unwrap();
        let vouch = phone
            .sign_message(
                KeyPurpose::Unrestricted,
                restricted.as_bytes(),
                SignatureFormat::Hex,
            )
            .unwrap();
        assert!(
            prompt.0.lock().is_empty(),
            "the unrestricted key signs without asking"
        );
        let added = app(
            &backend,
            "/app/keys/restricted",
            json!({"public_key": restricted, "signature": vouch}),
        )
        .await;
        let key_id = KeyId::from_server(added["key_id"].as_str().unwrap()).unwrap();

        let to_sign = app(&backend, "/app/payments/p-9/approve/start", json!({})).await;
        let to_sign = to_sign["string_to_sign"].as_str().unwrap();
        let signed = phone
            .sign_message(
                KeyPurpose::Restricted,
                to_sign.as_bytes(),
                SignatureFormat::Hex,
            )
            .unwrap();
        {
            let asked = prompt.0.lock();
            assert_eq!(asked.len(), 1, "the restricted key asked once");
            assert_eq!(
                asked[0].key, label,
                "the prompt names the key as new_key did"
            );
        }
        let done = app(
            &backend,
            "/app/payments/p-9/approve/finish",
            json!({"signature": signed}),
        )
        .await;
        let challenge = ChallengeId::from_server(done["challenge_id"].as_str().unwrap()).unwrap();
        bank_shows_bound_and_approved(&rig.client, &device, &challenge, &signed).await;

        phone
            .adopt(Adoption {
                device_id: Some(device.clone()),
                key_ids: vec![(KeyPurpose::Restricted, key_id.clone())],
                person_id: Some(
                    PersonId::from_server(person["person_id"].as_str().unwrap()).unwrap(),
                ),
            })
            .unwrap();
        let label = phone.key_label(KeyPurpose::Restricted).unwrap();
        assert_eq!(label.key_id.as_deref(), Some(key_id.as_str()));
        assert_eq!(phone.keys().await.unwrap().keys.len(), 2);
        assert!(
            phone
                .key_label(KeyPurpose::Unrestricted)
                .unwrap()
                .key_id
                .is_some(),
            "keys fills in the other id"
        );
        // The whole flows work on the adopted device: a challenge signed by the phone itself.
        let approved = phone.approve(Some(KeyPurpose::Restricted)).await.unwrap();
        assert_eq!(approved.key_purpose, KeyPurpose::Restricted);
        assert_eq!(
            prompt.0.lock().last().unwrap().key.key_id.as_deref(),
            Some(key_id.as_str())
        );
        assert!(
            prompt
                .0
                .lock()
                .last()
                .unwrap()
                .reason
                .starts_with("device challenge ")
        );
        phone.delete_device().await.unwrap();
        let gone = rig.client.get_device(&device).await.unwrap();
        assert!(gone.deleted_at.is_some(), "{gone:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn otp_reads_the_newest_code_and_a_marker_hides_older_ones() {
    bounded(async {
        let rig = Rig::start().await;
        let phone = rig.registered("codes").await;
        let person = common::person_of(&phone);
        let number = phone.profile().number.clone().unwrap();
        let sms = vphone::api::CreateSmsChallenge {
            person_id: person,
            language: None,
        };
        for _ in 0..2 {
            rig.client.create_sms_challenge(&sms).await.unwrap();
        }
        let sent = rig.sandbox.state().sms_since(&number, 0);
        let newest = sent.last().and_then(|m| m.code()).unwrap();
        let got = phone.otp(None, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.code.expose(), newest.expose());
        assert_eq!(got.marker.0, sent.last().unwrap().seq);

        // After a marker, only a code sent later counts: none yet, so the wait runs out.
        let marker = phone.otp_marker().await.unwrap();
        let err = phone
            .otp(Some(marker), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        rig.client.create_sms_challenge(&sms).await.unwrap();
        let later = phone
            .otp(Some(marker), Duration::from_secs(5))
            .await
            .unwrap();
        let last = rig.sandbox.state().sms_since(&number, marker.0);
        assert_eq!(last.len(), 1);
        assert_eq!(later.code.expose(), last[0].code().unwrap().expose());
    })
    .await;
}
