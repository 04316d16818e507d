//! Helpers for the sandbox tests: a sandbox on 127.0.0.1:0, raw HTTP calls, and signing with
//! `ring`, an ECDSA implementation independent of the sandbox's.
#![allow(dead_code, clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::Arc;
use vphone::sandbox::{self, ManualClock, SandboxConfig, SandboxHandle, SandboxState};

/// The second partner of [`two_partner_config`].
pub const OTHER_ID: &str = "other-partner";
/// Its secret.
pub const OTHER_SECRET: &str = "other-partner-secret";

/// A running sandbox and a client holding a token of the demo partner.
pub struct Bank {
    pub handle: SandboxHandle,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub clock: Option<Arc<ManualClock>>,
}

/// The default config plus a second partner.
pub fn two_partner_config() -> SandboxConfig {
    let mut config = SandboxConfig::default();
    config.partners.push(sandbox::PartnerConfig {
        client_id: OTHER_ID.into(),
        client_secret: OTHER_SECRET.into(),
        name: "other".into(),
    });
    config
}

/// A key pair made by ring.
pub struct Key {
    pub pair: EcdsaKeyPair,
}

impl Key {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Key { pair }
    }

    /// The 65-byte uncompressed point as lowercase hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// DER signature bytes.
    pub fn sign_der(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&SystemRandom::new(), message)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// DER signature as lowercase hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.sign_der(message))
    }
}

/// A bound device.
pub struct Phone {
    pub device_id: String,
    pub key: Key,
}

/// Asserts the `errors` shape with this status and code.
#[track_caller]
pub fn assert_refused(got: &(StatusCode, Value), status: u16, code: &str) {
    let (s, body) = got;
    assert_eq!(s.as_u16(), status, "status; body: {body}");
    let e = &body["errors"][0];
    assert_eq!(e["code"], code, "code; body: {body}");
    assert_eq!(e["status"], status, "body status; body: {body}");
    assert!(
        e["detail"].as_str().is_some_and(|d| d.len() > 10),
        "a detail that says what was wrong: {body}"
    );
    assert!(e["id"].as_str().is_some_and(|i| i.len() == 36), "{body}");
}

/// A partner's bearer token from the sandbox at `base` (client credentials, scope
/// `partners`).
pub async fn partner_token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> String {
    let r = http
        .post(format!("{base}/oauth2/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "partners")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// A random E.164 number, so its OTPs are random.
pub fn random_number() -> String {
    use rand::Rng;
    format!(
        "+49151{:08}",
        rand::thread_rng().gen_range(0..100_000_000u32)
    )
}

impl Bank {
    pub async fn start() -> Bank {
        Self::start_with(two_partner_config(), false).await
    }

    pub async fn start_with_clock() -> Bank {
        Self::start_with(two_partner_config(), true).await
    }

    pub async fn start_with(config: SandboxConfig, manual_clock: bool) -> Bank {
        let (state, clock) = if manual_clock {
            let clock = Arc::new(ManualClock::new());
            (SandboxState::with_clock(config, clock.clone()), Some(clock))
        } else {
            (SandboxState::new(config), None)
        };
        let mut bank = Self::start_on(state).await;
        bank.clock = clock;
        bank
    }

    /// Serves `state` (e.g. one on a store of the test's own).
    pub async fn start_on(state: SandboxState) -> Bank {
        let handle = sandbox::spawn_with(state, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let base = handle.base_url();
        let mut bank = Bank {
            handle,
            http,
            base,
            token: String::new(),
            clock: None,
        };
        bank.token = bank
            .token_for(
                sandbox::config::DEFAULT_CLIENT_ID,
                sandbox::config::DEFAULT_CLIENT_SECRET,
            )
            .await;
        bank
    }

    pub fn state(&self) -> &SandboxState {
        self.handle.state()
    }

    pub fn advance(&self, seconds: u64) {
        self.clock
            .as_ref()
            .expect("started with a manual clock")
            .advance(std::time::Duration::from_secs(seconds));
    }

    pub async fn token_for(&self, id: &str, secret: &str) -> String {
        partner_token(&self.http, &self.base, id, secret).await
    }

    /// Calls as the demo partner.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let token = self.token.clone();
        self.call_as(&token, method, path, body).await
    }

    /// Calls with a token.
    pub async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// The SMS sent to a number so far.
    pub async fn sms(&self, number: &str) -> Vec<Value> {
        let r = self
            .http
            .get(format!(
                "{}/sandbox/sms?number={}",
                self.base,
                number.replace('+', "%2B")
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Vec<Value>>().await.unwrap()
    }

    /// The code in the last SMS to a number.
    pub async fn last_otp(&self, number: &str) -> String {
        let messages = self.sms(number).await;
        let text = messages.last().expect("an SMS was sent")["text"]
            .as_str()
            .unwrap()
            .to_owned();
        text.split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == 6)
            .unwrap()
            .to_owned()
    }

    pub async fn person(&self) -> String {
        let (s, p) = self
            .call(
                "POST",
                "/v1/persons",
                Some(json!({"first_name": "Ada", "last_name": "Lovelace"})),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        p["id"].as_str().unwrap().to_owned()
    }

    /// A person with a verified mobile number; returns (person id, number).
    pub async fn verified_person_with(&self, number: &str) -> String {
        let id = self.person().await;
        let base = format!("/v1/persons/{id}/mobile_number");
        let (s, b) = self
            .call("POST", &base, Some(json!({"number": number})))
            .await;
        assert_eq!(s, 201, "{b}");
        let (s, b) = self
            .call(
                "POST",
                &format!("{base}/authorize"),
                Some(json!({"number": number})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        let otp = self.last_otp(number).await;
        let (s, b) = self
            .call(
                "POST",
                &format!("{base}/confirm"),
                Some(json!({"number": number, "token": otp})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        id
    }

    /// A person with a random verified number.
    pub async fn verified_person(&self) -> (String, String) {
        let number = random_number();
        (self.verified_person_with(&number).await, number)
    }

    /// Starts a binding; returns (device id, challenge id).
    pub async fn start_binding(&self, person: &str, key: &Key) -> (String, String) {
        let (s, b) = self
            .call(
                "POST",
                "/v1/mfa/devices",
                Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "test phone"})),
            )
            .await;
        assert_eq!(s, 202, "{b}");
        (
            b["id"].as_str().unwrap().to_owned(),
            b["challenge"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Binds a new device to a person whose number is `number`.
    pub async fn bind(&self, person: &str, number: &str) -> Phone {
        self.bind_key(person, number, Key::new()).await
    }

    /// Binds a new device with `key` to a person whose number is `number`.
    pub async fn bind_key(&self, person: &str, number: &str, key: Key) -> Phone {
        let (device_id, challenge) = self.start_binding(person, &key).await;
        let otp = self.last_otp(number).await;
        let (s, b) = self
            .call(
                "PUT",
                &format!("/v1/mfa/challenges/signatures/{challenge}"),
                Some(json!({"signature": key.sign(otp.as_bytes())})),
            )
            .await;
        assert_eq!(s, 204, "{b}");
        Phone { device_id, key }
    }

    /// Adds a restricted key to a bound device, signed by its unrestricted key.
    pub async fn add_restricted(&self, phone: &Phone) -> Key {
        let key = Key::new();
        let (s, b) = self
            .call(
                "POST",
                &format!("/v1/mfa/devices/{}/keys", phone.device_id),
                Some(json!({
                    "key": key.public_hex(), "key_type": "ecdsa-p256", "key_purpose": "restricted",
                    "device_signature": {"signature_key_purpose": "unrestricted",
                                         "signature": phone.key.sign(key.public_hex().as_bytes())}
                })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        key
    }
}
