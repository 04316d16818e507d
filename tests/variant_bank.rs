//! The variant bank answers in other servers' shapes, and still is the strict sandbox
//! underneath: raw HTTP calls, signed with `ring`, walk every call it offers.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::{Bank, Key, random_number};
use serde_json::{Value, json};
use vphone::sandbox::{self, SandboxConfig, SandboxState, variant};

async fn variant_bank() -> Bank {
    let handle = variant::spawn_with(
        SandboxState::new(SandboxConfig::default()),
        "127.0.0.1:0".parse().unwrap(),
        variant::VariantOptions::default(),
    )
    .await
    .unwrap();
    let base = handle.base_url();
    let mut bank = Bank {
        handle,
        http: reqwest::Client::new(),
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

#[track_caller]
fn assert_variant_object(v: &Value) {
    assert!(v.get("_links").is_some() && v.get("meta").is_some(), "{v}");
    for unused in ["created_at", "updated_at", "verified", "used_at"] {
        assert!(v.get(unused).is_none(), "{unused} left out: {v}");
    }
}

#[track_caller]
fn long_id(v: &Value, prefix: &str) -> String {
    let id = v.as_str().unwrap();
    assert!(id.starts_with(prefix) && id.len() > 64, "{id}");
    id.to_owned()
}

#[tokio::test]
async fn every_call_answers_in_a_variant_shape_and_signatures_are_still_verified() {
    let bank = variant_bank().await;
    let (s, person) = bank
        .call(
            "POST",
            "/v1/persons",
            Some(json!({"first_name": "Ada", "last_name": "Lovelace"})),
        )
        .await;
    assert_eq!(s, 200, "{person}");
    assert_variant_object(&person);
    let person_id = long_id(&person["id"], "personId-");

    let number = random_number();
    let mobile = format!("/v1/persons/{person_id}/mobile_number");
    let (s, m) = bank
        .call("POST", &mobile, Some(json!({"number": number})))
        .await;
    assert_eq!(s, 200, "{m}");
    assert_variant_object(&m);
    long_id(&m["id"], "mobileNumberId-");
    let (s, b) = bank
        .call(
            "POST",
            &format!("{mobile}/authorize"),
            Some(json!({"number": number})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let otp = bank.last_otp(&number).await;
    let (s, b) = bank
        .call(
            "POST",
            &format!("{mobile}/confirm"),
            Some(json!({"number": number, "token": otp})),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // Binding: the layer maps the long ids back, the sandbox verifies the signature.
    let key = Key::new();
    let (s, created) = bank
        .call(
            "POST",
            "/v1/mfa/devices",
            Some(json!({"person_id": person_id, "key_type": "ecdsa-p256",
                "key": key.public_hex(), "name": "variant phone"})),
        )
        .await;
    assert_eq!(s, 200, "{created}");
    let device = long_id(&created["id"], "objectId-");
    let challenge = long_id(&created["challenge"]["id"], "objectId-");
    let otp = bank.last_otp(&number).await;
    let answer = format!("/v1/mfa/challenges/signatures/{challenge}");
    let wrong = Key::new().sign(otp.as_bytes());
    let (s, refused) = bank
        .call("PUT", &answer, Some(json!({"signature": wrong})))
        .await;
    assert_eq!(s, 403, "{refused}");
    assert_eq!(
        refused["code"], "invalid_signature",
        "flat error: {refused}"
    );
    assert!(refused.get("errors").is_none(), "{refused}");
    let (s, done) = bank
        .call(
            "PUT",
            &answer,
            Some(json!({"signature": key.sign(otp.as_bytes())})),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "completed");

    let (s, keys) = bank
        .call("GET", &format!("/v1/mfa/devices/{device}/keys"), None)
        .await;
    assert_eq!(s, 200, "{keys}");
    assert_eq!(keys[0]["device_id"], device.as_str(), "{keys}");
    let key_id = long_id(&keys[0]["keys"][0]["key_id"], "keyId-");
    assert_eq!(keys[0]["keys"][0]["key_purpose"], "unrestricted");
    let (s, detail) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices/{device}/keys/{key_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{detail}");
    assert_variant_object(&detail);
    let (s, list) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person_id}"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list[0]["id"], device.as_str());

    // A device-signing challenge comes without key_purpose; a wrong signature still fails.
    let (s, c) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": device})),
        )
        .await;
    assert_eq!(s, 200, "{c}");
    assert!(c.get("key_purpose").is_none(), "{c}");
    let to_sign = c["string_to_sign"].as_str().unwrap().to_owned();
    let path = format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap());
    let (s, b) = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": Key::new().sign(to_sign.as_bytes())})),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": key.sign(to_sign.as_bytes())})),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    // PATCH is applied at once and answered with the person.
    let (s, p) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person_id}"),
            Some(json!({"last_name": "Byron"})),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        (p["id"].as_str(), p["last_name"].as_str()),
        (Some(person_id.as_str()), Some("Byron"))
    );
    let (_, p) = bank
        .call("GET", &format!("/v1/persons/{person_id}"), None)
        .await;
    assert_eq!(p["last_name"], "Byron", "really changed: {p}");

    // A change request: lowercase statuses, a 202 confirmation without updated_at.
    let (s, cr) = bank.call("DELETE", &mobile, None).await;
    assert_eq!(s, 200, "{cr}");
    assert_eq!(cr["status"], "authorization_required");
    let cr_id = long_id(&cr["id"], "objectId-");
    let (s, auth) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{cr_id}/authorize"),
            Some(json!({"delivery_method": "device_signing", "device_id": device})),
        )
        .await;
    assert_eq!(s, 200, "{auth}");
    assert_eq!(auth["status"], "confirmation_required");
    let to_sign = auth["string_to_sign"].as_str().unwrap();
    let (s, confirmed) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{cr_id}/confirm"),
            Some(json!({"device_id": device, "signature": key.sign(to_sign.as_bytes())})),
        )
        .await;
    assert_eq!(s, 202, "{confirmed}");
    assert_eq!(confirmed["status"], "completed");
    assert!(confirmed.get("response_code").is_some(), "{confirmed}");
    assert_variant_object(&confirmed);
}

#[tokio::test]
async fn calls_it_does_not_offer_answer_an_html_page() {
    let bank = variant_bank().await;
    let r = bank
        .http
        .post(format!("{}/v1/mfa/challenges/sms", bank.base))
        .bearer_auth(&bank.token)
        .json(&json!({"person_id": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<pre>Cannot POST /v1/mfa/challenges/sms</pre>"),
        "{page}"
    );
}

#[tokio::test]
async fn without_the_outbox_the_bank_hides_its_sandbox_routes() {
    let handle = variant::spawn_with(
        SandboxState::new(SandboxConfig::default()),
        "127.0.0.1:0".parse().unwrap(),
        variant::VariantOptions { outbox: false },
    )
    .await
    .unwrap();
    let r = reqwest::get(format!("{}/sandbox/health", handle.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Cannot GET /sandbox/health")
    );
    let with_outbox = variant::spawn(SandboxConfig::default()).await.unwrap();
    let r = reqwest::get(format!("{}/sandbox/health", with_outbox.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn the_sandbox_itself_still_refuses_ids_outside_the_strict_rule() {
    // The phone reads long opaque ids; the sandbox keeps validating what it receives.
    let bank = Bank::start().await;
    let long = format!("personId-{}-{}", "a".repeat(32), "b".repeat(32));
    let key = Key::new();
    let got = bank
        .call(
            "POST",
            "/v1/mfa/devices",
            Some(json!({"person_id": long, "key_type": "ecdsa-p256",
                "key": key.public_hex(), "name": "n"})),
        )
        .await;
    assert_eq!(got.0, 400, "{}", got.1);
    let got = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": "a device"})),
        )
        .await;
    assert_eq!(got.0, 400, "{}", got.1);
}
