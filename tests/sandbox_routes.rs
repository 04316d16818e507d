//! Every sandbox route over real HTTP: the success path and each refusal, asserting status,
//! `code`, and that the refused request changed nothing.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::{Bank, Key, OTHER_ID, OTHER_SECRET, assert_refused, random_number};
use serde_json::{Value, json};

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn both_token_endpoints_issue_bearer_tokens() {
    let bank = Bank::start().await;
    for path in ["/oauth2/token", "/oauth/token"] {
        let r = bank
            .http
            .post(format!("{}{path}", bank.base))
            .basic_auth("vphone-demo", Some("vphone-demo-secret"))
            .form(&[("grant_type", "client_credentials"), ("scope", "partners")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["scope"], "partners");
        let token = body["access_token"].as_str().unwrap();
        let (s, _) = bank
            .call_as(
                token,
                "POST",
                "/v1/persons",
                Some(json!({"first_name": "A", "last_name": "B"})),
            )
            .await;
        assert_eq!(s, 201);
    }
}

async fn token_status(
    bank: &Bank,
    id: &str,
    secret: &str,
    form: &[(&str, &str)],
) -> (reqwest::StatusCode, Value) {
    let r = bank
        .http
        .post(format!("{}/oauth2/token", bank.base))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn bad_client_credentials_get_invalid_client() {
    let bank = Bank::start().await;
    let form = [("grant_type", "client_credentials"), ("scope", "partners")];
    assert_refused(
        &token_status(&bank, "vphone-demo", "wrong", &form).await,
        401,
        "invalid_client",
    );
    assert_refused(
        &token_status(&bank, "nobody", "vphone-demo-secret", &form).await,
        401,
        "invalid_client",
    );
    let r = bank
        .http
        .post(format!("{}/oauth2/token", bank.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let grant = [("grant_type", "password")];
    assert_refused(
        &token_status(&bank, "vphone-demo", "vphone-demo-secret", &grant).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn v1_calls_need_a_known_unexpired_token() {
    let bank = Bank::start_with_clock().await;
    let r = bank
        .http
        .get(format!("{}/v1/persons/x", bank.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "unauthorized");
    assert_refused(
        &bank.call_as("nope", "GET", "/v1/persons/x", None).await,
        401,
        "invalid_token",
    );
    let person = bank.person().await;
    bank.advance(3600);
    assert_refused(
        &bank
            .call("GET", &format!("/v1/persons/{person}"), None)
            .await,
        401,
        "invalid_token",
    );
}

// ---------------------------------------------------------------- shape of refusals

#[tokio::test]
async fn malformed_requests_get_the_errors_shape() {
    let bank = Bank::start().await;
    let url = format!("{}/v1/persons", bank.base);
    let send = |body: Vec<u8>, ct: &'static str| {
        bank.http
            .post(&url)
            .bearer_auth(&bank.token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let read = |r: reqwest::Response| async move {
        let s = r.status();
        (s, r.json::<Value>().await.unwrap())
    };
    assert_refused(
        &read(
            send(b"{\"first_name\":".to_vec(), "application/json")
                .await
                .unwrap(),
        )
        .await,
        400,
        "invalid_json",
    );
    assert_refused(
        &read(send(b"{}".to_vec(), "text/plain").await.unwrap()).await,
        415,
        "unsupported_media_type",
    );
    let big = format!(
        "{{\"first_name\":\"{}\",\"last_name\":\"x\"}}",
        "a".repeat(70 * 1024)
    );
    assert_refused(
        &read(send(big.into_bytes(), "application/json").await.unwrap()).await,
        413,
        "payload_too_large",
    );
    let missing = bank
        .call("POST", "/v1/persons", Some(json!({"first_name": "A"})))
        .await;
    assert_refused(&missing, 400, "validation_error");
    assert!(
        missing.1["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("last_name")
    );
    assert_refused(
        &bank.call("GET", "/v1/nothing/here", None).await,
        404,
        "route_not_found",
    );
    assert_refused(
        &bank.call("GET", "/nothing", None).await,
        404,
        "route_not_found",
    );
    assert_refused(
        &bank.call("DELETE", "/v1/persons", None).await,
        405,
        "method_not_allowed",
    );
    let bad_type = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": 5})),
        )
        .await;
    assert_refused(&bad_type, 400, "validation_error");
    assert_eq!(bad_type.1["errors"][0]["source"]["field"], "person_id");
    assert_eq!(bank.state().stats().sms_sent, 0);
}

// ---------------------------------------------------------------- persons

#[tokio::test]
async fn persons_are_created_read_and_hidden_from_other_partners() {
    let bank = Bank::start().await;
    let (s, p) = bank
        .call(
            "POST",
            "/v1/persons",
            Some(json!({"first_name": "Ada", "last_name": "Lovelace", "nationality": "GB"})),
        )
        .await;
    assert_eq!(s, 201);
    let id = p["id"].as_str().unwrap();
    assert!(id.ends_with("cper") && id.len() == 36);
    let (s, got) = bank.call("GET", &format!("/v1/persons/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(got, p);
    assert_eq!(got["nationality"], "GB");
    let other = bank.token_for(OTHER_ID, OTHER_SECRET).await;
    assert_refused(
        &bank
            .call_as(&other, "GET", &format!("/v1/persons/{id}"), None)
            .await,
        404,
        "not_found",
    );
    assert_refused(
        &bank
            .call_as(
                &other,
                "PATCH",
                &format!("/v1/persons/{id}"),
                Some(json!({"first_name": "Eve"})),
            )
            .await,
        404,
        "not_found",
    );
    assert_refused(
        &bank
            .call(
                "GET",
                "/v1/persons/00000000000000000000000000000000cper",
                None,
            )
            .await,
        404,
        "not_found",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                "/v1/persons",
                Some(json!({"first_name": " ", "last_name": "x"})),
            )
            .await,
        400,
        "validation_error",
    );
}

#[tokio::test]
async fn a_mobile_number_is_verified_with_the_otp_from_its_outbox() {
    let bank = Bank::start().await;
    let person = bank.person().await;
    let number = random_number();
    let base = format!("/v1/persons/{person}/mobile_number");
    let (s, m) = bank
        .call("POST", &base, Some(json!({"number": number})))
        .await;
    assert_eq!(s, 201);
    assert_eq!(m["verified"], false);
    assert!(m["id"].as_str().unwrap().ends_with("cmno"));
    assert_refused(
        &bank
            .call("POST", &base, Some(json!({"number": "+15550101"})))
            .await,
        409,
        "mobile_number_exists",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                &format!("{base}/confirm"),
                Some(json!({"number": number, "token": "123456"})),
            )
            .await,
        409,
        "authorization_required",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                &format!("{base}/authorize"),
                Some(json!({"number": "+15550101"})),
            )
            .await,
        400,
        "mobile_number_mismatch",
    );
    assert!(bank.sms(&number).await.is_empty());
    let (s, _) = bank
        .call(
            "POST",
            &format!("{base}/authorize"),
            Some(json!({"number": number})),
        )
        .await;
    assert_eq!(s, 201);
    let otp = bank.last_otp(&number).await;
    let wrong = if otp == "000000" { "000001" } else { "000000" };
    assert_refused(
        &bank
            .call(
                "POST",
                &format!("{base}/confirm"),
                Some(json!({"number": number, "token": wrong})),
            )
            .await,
        403,
        "invalid_otp",
    );
    assert_eq!(bank.call("GET", &base, None).await.1["verified"], false);
    let (s, m) = bank
        .call(
            "POST",
            &format!("{base}/confirm"),
            Some(json!({"number": number, "token": otp})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(m["verified"], true);
    assert_refused(
        &bank
            .call(
                "POST",
                &format!("{base}/confirm"),
                Some(json!({"number": number, "token": otp})),
            )
            .await,
        409,
        "mobile_number_already_verified",
    );
}

#[tokio::test]
async fn a_mobile_otp_is_spent_after_three_wrong_answers_and_expires() {
    let bank = Bank::start_with_clock().await;
    for spend in [true, false] {
        let person = bank.person().await;
        let number = random_number();
        let base = format!("/v1/persons/{person}/mobile_number");
        bank.call("POST", &base, Some(json!({"number": number})))
            .await;
        bank.call(
            "POST",
            &format!("{base}/authorize"),
            Some(json!({"number": number})),
        )
        .await;
        let otp = bank.last_otp(&number).await;
        let wrong = if otp == "000000" { "000001" } else { "000000" };
        if spend {
            for _ in 0..3 {
                let r = bank
                    .call(
                        "POST",
                        &format!("{base}/confirm"),
                        Some(json!({"number": number, "token": wrong})),
                    )
                    .await;
                assert_refused(&r, 403, "invalid_otp");
            }
        } else {
            bank.advance(300);
        }
        let r = bank
            .call(
                "POST",
                &format!("{base}/confirm"),
                Some(json!({"number": number, "token": otp})),
            )
            .await;
        assert_refused(
            &r,
            403,
            if spend {
                "challenge_failed"
            } else {
                "challenge_expired"
            },
        );
        assert_eq!(bank.call("GET", &base, None).await.1["verified"], false);
    }
}

#[tokio::test]
async fn the_test_number_always_gets_212212_in_the_language_asked_for() {
    let bank = Bank::start().await;
    let person = bank.verified_person_with("+15550101").await;
    for (lang, word) in [
        ("de", "Ihr vphone-Code lautet 212212."),
        ("fr", "Votre code vphone est 212212."),
        ("en", "Your vphone code is 212212."),
    ] {
        let (s, _) = bank
            .call(
                "POST",
                "/v1/mfa/challenges/sms",
                Some(json!({"person_id": person, "language": lang})),
            )
            .await;
        assert_eq!(s, 201);
        let last = bank.sms("+15550101").await.pop().unwrap();
        assert_eq!(last["language"], lang);
        assert!(last["text"].as_str().unwrap().starts_with(word), "{last}");
    }
}

// ---------------------------------------------------------------- binding

#[tokio::test]
async fn binding_signs_the_otp_and_makes_the_device_visible() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    assert_eq!(device.len(), 32);
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
    let (s, c) = bank
        .call(
            "GET",
            &format!("/v1/mfa/challenges/signatures/{challenge}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c["type"], "signature");
    let otp = bank.last_otp(&number).await;
    let path = format!("/v1/mfa/challenges/signatures/{challenge}");
    let (s, _) = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": key.sign(otp.as_bytes())})),
        )
        .await;
    assert_eq!(s, 204);
    let (s, d) = bank
        .call("GET", &format!("/v1/mfa/devices/{device}"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(d["person_id"], person.as_str());
    assert!(d.get("deleted_at").is_none());
    let (s, list) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, keys) = bank
        .call("GET", &format!("/v1/mfa/devices/{device}/keys"), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(keys["keys"][0]["key_purpose"], "unrestricted");
    assert!(!keys.to_string().contains(&key.public_hex()));
    let r = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": key.sign(otp.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "challenge_already_used");
    assert_eq!(bank.state().stats().bindings, 1);
}

#[tokio::test]
async fn binding_is_refused_without_a_verified_number_or_with_a_bad_key() {
    let bank = Bank::start().await;
    let unverified = bank.person().await;
    let key = Key::new();
    let body = |person: &str, key_type: &str, key: String| json!({"person_id": person, "key_type": key_type, "key": key, "name": "p"});
    assert_refused(
        &bank
            .call(
                "POST",
                "/v1/mfa/devices",
                Some(body(&unverified, "ecdsa-p256", key.public_hex())),
            )
            .await,
        400,
        "telephone_number_not_found",
    );
    let (person, number) = bank.verified_person().await;
    let sent = bank.sms(&number).await.len();
    let point = key.public_hex();
    let compressed = format!("02{}", &point[2..66]);
    let mut off_curve = point.clone();
    off_curve.replace_range(128..130, if &point[128..130] == "00" { "01" } else { "00" });
    for (bad, code) in [
        (
            body(&person, "ed25519", point.clone()),
            "unsupported_key_type",
        ),
        (body(&person, "rsa", point.clone()), "unsupported_key_type"),
        (body(&person, "ecdsa-p256", compressed), "invalid_key"),
        (body(&person, "ecdsa-p256", off_curve), "invalid_key"),
        (
            body(&person, "ecdsa-p256", point[..128].to_owned()),
            "invalid_key",
        ),
        (
            body(&person, "ecdsa-p256", point.to_uppercase()),
            "invalid_key",
        ),
        (
            body(&person, "ecdsa-p256", format!("{point}0")),
            "invalid_key",
        ),
        // A `0x` prefix is not lowercase hex either (the hex decoder would strip it).
        (
            body(&person, "ecdsa-p256", format!("0x{point}")),
            "invalid_key",
        ),
        (
            body(
                "00000000000000000000000000000000cper",
                "ecdsa-p256",
                point.clone(),
            ),
            "not_found",
        ),
    ] {
        let r = bank.call("POST", "/v1/mfa/devices", Some(bad)).await;
        let status = if code == "not_found" { 404 } else { 400 };
        assert_refused(&r, status, code);
    }
    for app_signature in [
        "",
        "a".repeat(33).as_str(),
        "hash123456end",
        "has space",
        "ünïcode",
    ] {
        let mut bad = body(&person, "ecdsa-p256", point.clone());
        bad["sms_challenge"] = json!({ "app_signature": app_signature });
        let r = bank.call("POST", "/v1/mfa/devices", Some(bad)).await;
        assert_refused(&r, 400, "validation_error");
        assert_eq!(
            r.1["errors"][0]["source"]["field"], "sms_challenge.app_signature",
            "{app_signature:?}: {}",
            r.1
        );
    }
    assert_eq!(
        bank.sms(&number).await.len(),
        sent,
        "no refused binding sent an SMS"
    );
    let (s, list) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}"),
            None,
        )
        .await;
    assert_eq!((s.as_u16(), list), (200, json!([])));
}

#[tokio::test]
async fn a_binding_challenge_fails_on_wrong_answers_and_expires() {
    let bank = Bank::start_with_clock().await;
    let (person, number) = bank.verified_person().await;
    // Wrong answers: two leave it open, the third spends it.
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let otp = bank.last_otp(&number).await;
    let path = format!("/v1/mfa/challenges/signatures/{challenge}");
    for _ in 0..3 {
        let r = bank
            .call(
                "PUT",
                &path,
                Some(json!({"signature": key.sign(b"000000")})),
            )
            .await;
        assert_refused(&r, 403, "invalid_signature");
    }
    let r = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": key.sign(otp.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "challenge_failed");
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
    // Expiry.
    let key = Key::new();
    let (device, challenge) = bank.start_binding(&person, &key).await;
    let otp = bank.last_otp(&number).await;
    bank.advance(301);
    let r = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/signatures/{challenge}"),
            Some(json!({"signature": key.sign(otp.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "challenge_expired");
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
    assert_eq!(bank.state().stats().bindings, 0);
}

#[tokio::test]
async fn a_person_has_at_most_five_bound_devices_even_with_pending_bindings() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let mut phones = Vec::new();
    for _ in 0..4 {
        phones.push(bank.bind(&person, &number).await);
    }
    // Two bindings start while one place is left; the first to answer takes it.
    let (k1, k2) = (Key::new(), Key::new());
    let (_, c1) = bank.start_binding(&person, &k1).await;
    let otp1 = bank.last_otp(&number).await;
    let (d2, c2) = bank.start_binding(&person, &k2).await;
    let otp2 = bank.last_otp(&number).await;
    let (s, _) = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/signatures/{c1}"),
            Some(json!({"signature": k1.sign(otp1.as_bytes())})),
        )
        .await;
    assert_eq!(s, 204);
    let sig2 = json!({"signature": k2.sign(otp2.as_bytes())});
    let r = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/signatures/{c2}"),
            Some(sig2.clone()),
        )
        .await;
    assert_refused(&r, 409, "device_limit_reached");
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{d2}"), None)
            .await,
        404,
        "not_found",
    );
    let r = bank
        .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": Key::new().public_hex(), "name": "6th"})))
        .await;
    assert_refused(&r, 409, "device_limit_reached");
    let (_, list) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}&page[size]=100"),
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 5);
    // After a deletion the waiting binding's challenge, still open, succeeds.
    let (s, _) = bank
        .call(
            "DELETE",
            &format!("/v1/mfa/devices/{}", phones[0].device_id),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/signatures/{c2}"),
            Some(sig2),
        )
        .await;
    assert_eq!(s, 204);
    let (_, list) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}"),
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 5);
    let (_, all) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}&filter[include_deleted]=true"),
            None,
        )
        .await;
    assert_eq!(all.as_array().unwrap().len(), 6);
    let (_, page) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}&page[size]=2&page[number]=3"),
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_refused(
        &bank.call("GET", "/v1/mfa/devices", None).await,
        400,
        "validation_error",
    );
    assert_refused(
        &bank
            .call(
                "GET",
                &format!("/v1/mfa/devices?filter[person_id]={person}&page[size]=0"),
                None,
            )
            .await,
        400,
        "validation_error",
    );
}

#[tokio::test]
async fn a_bound_key_cannot_be_bound_again() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let r = bank
        .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": phone.key.public_hex(), "name": "again"})))
        .await;
    assert_refused(&r, 409, "key_already_bound");
    // Two pending bindings of one key: the second answer is refused.
    let key = Key::new();
    let (_, c1) = bank.start_binding(&person, &key).await;
    let o1 = bank.last_otp(&number).await;
    let (d2, c2) = bank.start_binding(&person, &key).await;
    let o2 = bank.last_otp(&number).await;
    let (s, _) = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/signatures/{c1}"),
            Some(json!({"signature": key.sign(o1.as_bytes())})),
        )
        .await;
    assert_eq!(s, 204);
    let r = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/signatures/{c2}"),
            Some(json!({"signature": key.sign(o2.as_bytes())})),
        )
        .await;
    assert_refused(&r, 409, "key_already_bound");
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{d2}"), None)
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn a_deleted_device_s_key_is_released_and_binds_a_new_device() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let (s, b) = bank
        .call(
            "DELETE",
            &format!("/v1/mfa/devices/{}", phone.device_id),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
    // The same key binds a new device (`bind_key` asserts each step's status).
    let again = bank.bind_key(&person, &number, phone.key).await;
    let (s, b) = bank
        .call("GET", &format!("/v1/mfa/devices/{}", again.device_id), None)
        .await;
    assert_eq!(s, 200, "{b}");
}

#[tokio::test]
async fn a_deleted_device_signs_nothing() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let dev = &phone.device_id;
    let (s, early) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": dev})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = bank
        .call("DELETE", &format!("/v1/mfa/devices/{dev}"), None)
        .await;
    assert_eq!(s, 204);
    let (s, d) = bank
        .call("GET", &format!("/v1/mfa/devices/{dev}"), None)
        .await;
    assert_eq!(s, 200);
    assert!(d["deleted_at"].is_string());
    let (_, keys) = bank
        .call("GET", &format!("/v1/mfa/devices/{dev}/keys"), None)
        .await;
    assert_eq!(keys["keys"], json!([]));
    assert_refused(
        &bank
            .call("DELETE", &format!("/v1/mfa/devices/{dev}"), None)
            .await,
        404,
        "not_found",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                "/v1/mfa/challenges/devices",
                Some(json!({"device_id": dev})),
            )
            .await,
        403,
        "device_deleted",
    );
    let sts = early["string_to_sign"].as_str().unwrap();
    let r = bank
        .call(
            "PUT",
            &format!(
                "/v1/mfa/challenges/devices/{}",
                early["id"].as_str().unwrap()
            ),
            Some(json!({"signature": phone.key.sign(sts.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "device_deleted");
    let (_, list) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}"),
            None,
        )
        .await;
    assert_eq!(list, json!([]));
    // Its key is free again.
    let (s, _) = bank
        .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": phone.key.public_hex(), "name": "again"})))
        .await;
    assert_eq!(s, 202);
}

// ---------------------------------------------------------------- keys

#[tokio::test]
async fn a_key_is_added_once_per_purpose_with_a_signature_by_an_existing_key() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let path = format!("/v1/mfa/devices/{}/keys", phone.device_id);
    let new = Key::new();
    let add = |purpose: &str, signer: &str, sig: String, key: String| {
        json!({"key": key, "key_type": "ecdsa-p256", "key_purpose": purpose,
               "device_signature": {"signature_key_purpose": signer, "signature": sig}})
    };
    // Signed by the wrong key, over the wrong text, by a purpose the device lacks.
    let by_new = new.sign(new.public_hex().as_bytes());
    assert_refused(
        &bank
            .call(
                "POST",
                &path,
                Some(add("restricted", "unrestricted", by_new, new.public_hex())),
            )
            .await,
        403,
        "invalid_signature",
    );
    let wrong_text = phone.key.sign(b"something else");
    assert_refused(
        &bank
            .call(
                "POST",
                &path,
                Some(add(
                    "restricted",
                    "unrestricted",
                    wrong_text,
                    new.public_hex(),
                )),
            )
            .await,
        403,
        "invalid_signature",
    );
    let good = phone.key.sign(new.public_hex().as_bytes());
    assert_refused(
        &bank
            .call(
                "POST",
                &path,
                Some(add(
                    "restricted",
                    "restricted",
                    good.clone(),
                    new.public_hex(),
                )),
            )
            .await,
        403,
        "key_not_found",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                &path,
                Some(add(
                    "unrestricted",
                    "unrestricted",
                    good.clone(),
                    new.public_hex(),
                )),
            )
            .await,
        409,
        "key_purpose_taken",
    );
    let (_, keys) = bank.call("GET", &path, None).await;
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        1,
        "refusals added nothing"
    );
    let (s, added) = bank
        .call(
            "POST",
            &path,
            Some(add("restricted", "unrestricted", good, new.public_hex())),
        )
        .await;
    assert_eq!(s, 201);
    let key_id = added["id"].as_str().unwrap();
    let (s, detail) = bank.call("GET", &format!("{path}/{key_id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(detail["key_purpose"], "restricted");
    assert!(detail["used_at"].is_null());
    let third = Key::new();
    let sig = new.sign(third.public_hex().as_bytes());
    assert_refused(
        &bank
            .call(
                "POST",
                &path,
                Some(add("restricted", "restricted", sig, third.public_hex())),
            )
            .await,
        409,
        "key_purpose_taken",
    );
    assert_refused(
        &bank
            .call(
                "GET",
                &format!("{path}/00000000-0000-4000-8000-000000000000"),
                None,
            )
            .await,
        404,
        "not_found",
    );
}

// ---------------------------------------------------------------- device signing

#[tokio::test]
async fn device_challenges_verify_once_with_the_right_key() {
    let bank = Bank::start_with_clock().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let create = |purpose: Option<&str>| {
        let mut body = json!({"device_id": phone.device_id});
        if let Some(p) = purpose {
            body["key_purpose"] = json!(p);
        }
        bank.call("POST", "/v1/mfa/challenges/devices", Some(body))
    };
    assert_refused(
        &create(Some("restricted")).await,
        403,
        "restricted_key_required",
    );
    let (s, c) = create(None).await;
    assert_eq!(s, 201);
    assert_eq!(
        (c["type"].as_str(), c["key_purpose"].as_str()),
        (Some("device"), Some("unrestricted"))
    );
    let id = c["id"].as_str().unwrap();
    let sts = c["string_to_sign"].as_str().unwrap();
    assert_eq!(
        bank.call("GET", &format!("/v1/mfa/challenges/devices/{id}"), None)
            .await
            .1,
        c
    );
    let path = format!("/v1/mfa/challenges/devices/{id}");
    let r = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": phone.key.sign(b"other message")})),
        )
        .await;
    assert_refused(&r, 403, "invalid_signature");
    let (s, _) = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": phone.key.sign(sts.as_bytes())})),
        )
        .await;
    assert_eq!(s, 204);
    let r = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": phone.key.sign(sts.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "challenge_already_used");
    let (_, keys) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices/{}/keys", phone.device_id),
            None,
        )
        .await;
    assert!(keys["keys"][0]["used_at"].is_string());
    // A restricted key makes restricted the default, and the unrestricted key cannot answer.
    let restricted = bank.add_restricted(&phone).await;
    let (_, c) = create(None).await;
    assert_eq!(c["key_purpose"], "restricted");
    let path = format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap());
    let sts = c["string_to_sign"].as_str().unwrap();
    let r = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": phone.key.sign(sts.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "restricted_key_required");
    let (s, _) = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": restricted.sign(sts.as_bytes())})),
        )
        .await;
    assert_eq!(s, 204);
    // Expiry.
    let (_, c) = create(Some("unrestricted")).await;
    let sts = c["string_to_sign"].as_str().unwrap();
    bank.advance(300);
    let r = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap()),
            Some(json!({"signature": phone.key.sign(sts.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "challenge_expired");
    assert_refused(
        &bank
            .call(
                "POST",
                "/v1/mfa/challenges/devices",
                Some(json!({"device_id": "00000000000000000000000000000000"})),
            )
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn three_wrong_signatures_spend_a_device_challenge() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let (_, c) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": phone.device_id})),
        )
        .await;
    let path = format!("/v1/mfa/challenges/devices/{}", c["id"].as_str().unwrap());
    let other = Key::new();
    let sts = c["string_to_sign"].as_str().unwrap();
    for _ in 0..3 {
        let r = bank
            .call(
                "PUT",
                &path,
                Some(json!({"signature": other.sign(sts.as_bytes())})),
            )
            .await;
        assert_refused(&r, 403, "invalid_signature");
    }
    let r = bank
        .call(
            "PUT",
            &path,
            Some(json!({"signature": phone.key.sign(sts.as_bytes())})),
        )
        .await;
    assert_refused(&r, 403, "challenge_failed");
    let (_, keys) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices/{}/keys", phone.device_id),
            None,
        )
        .await;
    assert!(keys["keys"][0]["used_at"].is_null());
}

// ---------------------------------------------------------------- SMS challenges

#[tokio::test]
async fn sms_challenges_take_the_code_once() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    assert_refused(
        &bank
            .call(
                "POST",
                "/v1/mfa/challenges/sms",
                Some(json!({"person_id": bank.person().await})),
            )
            .await,
        400,
        "telephone_number_not_found",
    );
    let (s, c) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(c["type"], "sms");
    let path = format!("/v1/mfa/challenges/sms/{}", c["id"].as_str().unwrap());
    assert_eq!(bank.call("GET", &path, None).await.1, c);
    let otp = bank.last_otp(&number).await;
    let wrong = if otp == "000000" { "000001" } else { "000000" };
    assert_refused(
        &bank.call("PUT", &path, Some(json!({"code": wrong}))).await,
        403,
        "invalid_otp",
    );
    assert_refused(
        &bank
            .call("PUT", &path, Some(json!({"code": "12345"})))
            .await,
        400,
        "validation_error",
    );
    let (s, _) = bank.call("PUT", &path, Some(json!({"code": otp}))).await;
    assert_eq!(s, 204);
    assert_refused(
        &bank.call("PUT", &path, Some(json!({"code": otp}))).await,
        403,
        "challenge_already_used",
    );
    // Another kind's id is not an SMS challenge.
    let (_, d) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": bank.bind(&person, &number).await.device_id})),
        )
        .await;
    assert_refused(
        &bank
            .call(
                "GET",
                &format!("/v1/mfa/challenges/sms/{}", d["id"].as_str().unwrap()),
                None,
            )
            .await,
        404,
        "not_found",
    );
    // Spent after three wrong codes.
    let (_, c) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    let path = format!("/v1/mfa/challenges/sms/{}", c["id"].as_str().unwrap());
    let otp = bank.last_otp(&number).await;
    let wrong = if otp == "000000" { "000001" } else { "000000" };
    for _ in 0..3 {
        assert_refused(
            &bank.call("PUT", &path, Some(json!({"code": wrong}))).await,
            403,
            "invalid_otp",
        );
    }
    assert_refused(
        &bank.call("PUT", &path, Some(json!({"code": otp}))).await,
        403,
        "challenge_failed",
    );
}

// ---------------------------------------------------------------- change requests

async fn first_name(bank: &Bank, person: &str) -> String {
    bank.call("GET", &format!("/v1/persons/{person}"), None)
        .await
        .1["first_name"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_person_update_is_held_until_confirmed_with_the_static_tan() {
    let bank = Bank::start().await;
    let (person, _) = bank.verified_person().await;
    let (s, cr) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"first_name": "Grace"})),
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(cr["status"], "AUTHORIZATION_REQUIRED");
    let id = cr["id"].as_str().unwrap();
    assert_eq!(cr["url"], format!("/v1/change_requests/{id}/authorize"));
    assert_eq!(
        first_name(&bank, &person).await,
        "Ada",
        "not applied before confirmation"
    );
    let confirm = format!("/v1/change_requests/{id}/confirm");
    assert_refused(
        &bank
            .call(
                "POST",
                &confirm,
                Some(json!({"person_id": person, "tan": "212212"})),
            )
            .await,
        409,
        "invalid_change_request_state",
    );
    let authorize = format!("/v1/change_requests/{id}/authorize");
    assert_refused(
        &bank
            .call(
                "POST",
                &authorize,
                Some(json!({"delivery_method": "static", "person_id": bank.person().await})),
            )
            .await,
        403,
        "person_mismatch",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                &authorize,
                Some(json!({"delivery_method": "static"})),
            )
            .await,
        400,
        "validation_error",
    );
    let (s, auth) = bank
        .call(
            "POST",
            &authorize,
            Some(json!({"delivery_method": "static", "person_id": person})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(auth["status"], "CONFIRMATION_REQUIRED");
    assert_refused(
        &bank
            .call(
                "POST",
                &confirm,
                Some(json!({"person_id": person, "tan": "212213"})),
            )
            .await,
        403,
        "invalid_otp",
    );
    assert_eq!(first_name(&bank, &person).await, "Ada");
    let (s, done) = bank
        .call(
            "POST",
            &confirm,
            Some(json!({"person_id": person, "tan": "212212"})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["response_code"], 200);
    assert_eq!(done["response_body"]["first_name"], "Grace");
    assert_eq!(first_name(&bank, &person).await, "Grace");
    assert_refused(
        &bank
            .call(
                "POST",
                &confirm,
                Some(json!({"person_id": person, "tan": "212212"})),
            )
            .await,
        403,
        "challenge_already_used",
    );
    assert_refused(
        &bank
            .call(
                "POST",
                &authorize,
                Some(json!({"delivery_method": "static", "person_id": person})),
            )
            .await,
        409,
        "invalid_change_request_state",
    );
    assert_eq!(
        bank.call("GET", &format!("/v1/change_requests/{id}"), None)
            .await
            .1["status"],
        "COMPLETED"
    );
    assert_refused(
        &bank
            .call("PATCH", &format!("/v1/persons/{person}"), Some(json!({})))
            .await,
        400,
        "validation_error",
    );
}

#[tokio::test]
async fn a_change_request_is_confirmed_with_an_sms_tan_and_fails_after_three_wrong_ones() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    for succeed in [true, false] {
        let (_, cr) = bank
            .call(
                "PATCH",
                &format!("/v1/persons/{person}"),
                Some(json!({"last_name": "Hopper"})),
            )
            .await;
        let id = cr["id"].as_str().unwrap();
        let before = bank.sms(&number).await.len();
        let (s, _) = bank
            .call(
                "POST",
                &format!("/v1/change_requests/{id}/authorize"),
                Some(json!({"delivery_method": "mobile_number", "person_id": person})),
            )
            .await;
        assert_eq!(s, 201);
        assert_eq!(bank.sms(&number).await.len(), before + 1);
        let tan = bank.last_otp(&number).await;
        let confirm = format!("/v1/change_requests/{id}/confirm");
        if succeed {
            let (s, done) = bank
                .call(
                    "POST",
                    &confirm,
                    Some(json!({"person_id": person, "tan": tan})),
                )
                .await;
            assert_eq!(
                (s.as_u16(), done["status"].as_str()),
                (201, Some("COMPLETED"))
            );
        } else {
            let wrong = if tan == "000000" { "000001" } else { "000000" };
            for _ in 0..3 {
                assert_refused(
                    &bank
                        .call(
                            "POST",
                            &confirm,
                            Some(json!({"person_id": person, "tan": wrong})),
                        )
                        .await,
                    403,
                    "invalid_otp",
                );
            }
            assert_refused(
                &bank
                    .call(
                        "POST",
                        &confirm,
                        Some(json!({"person_id": person, "tan": tan})),
                    )
                    .await,
                403,
                "challenge_failed",
            );
            assert_eq!(
                bank.call("GET", &format!("/v1/change_requests/{id}"), None)
                    .await
                    .1["status"],
                "FAILED"
            );
        }
    }
    let (_, p) = bank
        .call("GET", &format!("/v1/persons/{person}"), None)
        .await;
    assert_eq!(p["last_name"], "Hopper");
}

#[tokio::test]
async fn a_mobile_number_deletion_is_confirmed_by_device_signature() {
    let bank = Bank::start_with_clock().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let mobile = format!("/v1/persons/{person}/mobile_number");
    let (s, cr) = bank.call("DELETE", &mobile, None).await;
    assert_eq!(s, 202);
    let id = cr["id"].as_str().unwrap();
    let authorize = format!("/v1/change_requests/{id}/authorize");
    // Another person's device cannot authorize it.
    let (p2, n2) = bank.verified_person().await;
    let stranger = bank.bind(&p2, &n2).await;
    assert_refused(
        &bank
            .call(
                "POST",
                &authorize,
                Some(json!({"delivery_method": "device_signing", "device_id": stranger.device_id})),
            )
            .await,
        403,
        "person_mismatch",
    );
    let (s, auth) = bank
        .call(
            "POST",
            &authorize,
            Some(json!({"delivery_method": "device_signing", "device_id": phone.device_id})),
        )
        .await;
    assert_eq!(s, 201);
    let sts = auth["string_to_sign"].as_str().unwrap();
    let confirm = format!("/v1/change_requests/{id}/confirm");
    let by_other =
        json!({"device_id": phone.device_id, "signature": Key::new().sign(sts.as_bytes())});
    assert_refused(
        &bank.call("POST", &confirm, Some(by_other)).await,
        403,
        "invalid_signature",
    );
    assert_eq!(
        bank.call("GET", &mobile, None).await.0,
        200,
        "not deleted before confirmation"
    );
    assert_refused(
        &bank
            .call(
                "POST",
                &confirm,
                Some(json!({"device_id": phone.device_id, "signature": "3006020101020101ff"})),
            )
            .await,
        400,
        "invalid_signature_encoding",
    );
    let (s, done) = bank
        .call(
            "POST",
            &confirm,
            Some(
                json!({"device_id": phone.device_id, "signature": phone.key.sign(sts.as_bytes())}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{done}");
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["response_body"]["number"], number.as_str());
    assert_refused(&bank.call("GET", &mobile, None).await, 404, "not_found");
    assert_refused(&bank.call("DELETE", &mobile, None).await, 404, "not_found");
    // An expired confirmation refuses, and a re-authorization starts a fresh one.
    let (_, cr) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"email": "a@b.c"})),
        )
        .await;
    let id = cr["id"].as_str().unwrap();
    let (_, auth) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{id}/authorize"),
            Some(json!({"delivery_method": "device_signing", "device_id": phone.device_id})),
        )
        .await;
    bank.advance(300);
    let sts = auth["string_to_sign"].as_str().unwrap();
    let answer = json!({"device_id": phone.device_id, "signature": phone.key.sign(sts.as_bytes())});
    assert_refused(
        &bank
            .call(
                "POST",
                &format!("/v1/change_requests/{id}/confirm"),
                Some(answer),
            )
            .await,
        403,
        "challenge_expired",
    );
    assert!(
        bank.call("GET", &format!("/v1/persons/{person}"), None)
            .await
            .1
            .get("email")
            .is_none()
    );
}

// ---------------------------------------------------------------- partner isolation

#[tokio::test]
async fn another_partners_ids_answer_404_everywhere() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let (_, dc) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": phone.device_id})),
        )
        .await;
    let (_, sc) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    let (_, cr) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"first_name": "X"})),
        )
        .await;
    let (_, started) = bank
        .call("POST", "/v1/mfa/devices", Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": Key::new().public_hex(), "name": "p"})))
        .await;
    let other = bank.token_for(OTHER_ID, OTHER_SECRET).await;
    let d = &phone.device_id;
    let (dc, sc, cr) = (
        dc["id"].as_str().unwrap(),
        sc["id"].as_str().unwrap(),
        cr["id"].as_str().unwrap(),
    );
    let sig = started["challenge"]["id"].as_str().unwrap();
    let calls: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/persons/{person}/mobile_number"), None),
        (
            "POST",
            format!("/v1/persons/{person}/mobile_number"),
            Some(json!({"number": "+15550101"})),
        ),
        (
            "DELETE",
            format!("/v1/persons/{person}/mobile_number"),
            None,
        ),
        ("GET", format!("/v1/mfa/devices/{d}"), None),
        ("DELETE", format!("/v1/mfa/devices/{d}"), None),
        ("GET", format!("/v1/mfa/devices/{d}/keys"), None),
        (
            "GET",
            format!("/v1/mfa/devices?filter[person_id]={person}"),
            None,
        ),
        (
            "POST",
            "/v1/mfa/devices".into(),
            Some(
                json!({"person_id": person, "key_type": "ecdsa-p256", "key": Key::new().public_hex(), "name": "p"}),
            ),
        ),
        (
            "POST",
            "/v1/mfa/challenges/devices".into(),
            Some(json!({"device_id": d})),
        ),
        (
            "POST",
            "/v1/mfa/challenges/sms".into(),
            Some(json!({"person_id": person})),
        ),
        ("GET", format!("/v1/mfa/challenges/devices/{dc}"), None),
        (
            "PUT",
            format!("/v1/mfa/challenges/devices/{dc}"),
            Some(json!({"signature": "3006020101020101"})),
        ),
        ("GET", format!("/v1/mfa/challenges/sms/{sc}"), None),
        (
            "PUT",
            format!("/v1/mfa/challenges/sms/{sc}"),
            Some(json!({"code": "212212"})),
        ),
        ("GET", format!("/v1/mfa/challenges/signatures/{sig}"), None),
        (
            "PUT",
            format!("/v1/mfa/challenges/signatures/{sig}"),
            Some(json!({"signature": "3006020101020101"})),
        ),
        ("GET", format!("/v1/change_requests/{cr}"), None),
        (
            "POST",
            format!("/v1/change_requests/{cr}/authorize"),
            Some(json!({"delivery_method": "static", "person_id": person})),
        ),
        (
            "POST",
            format!("/v1/change_requests/{cr}/confirm"),
            Some(json!({"person_id": person, "tan": "212212"})),
        ),
    ];
    for (method, path, body) in calls {
        let r = bank.call_as(&other, method, &path, body).await;
        assert_eq!(r.0, 404, "{method} {path}: {}", r.1);
        assert_eq!(r.1["errors"][0]["code"], "not_found", "{method} {path}");
    }
    assert_eq!(
        bank.call("GET", &format!("/v1/mfa/devices/{d}"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        bank.call("GET", &format!("/v1/change_requests/{cr}"), None)
            .await
            .1["status"],
        "AUTHORIZATION_REQUIRED"
    );
    assert_eq!(first_name(&bank, &person).await, "Ada");
}

// ---------------------------------------------------------------- sandbox routes

#[tokio::test]
async fn the_outbox_long_polls_and_subscriptions_see_every_sms() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let mut rx = bank.handle.subscribe_sms();
    let after = bank.sms(&number).await.last().unwrap()["seq"]
        .as_u64()
        .unwrap();
    let poll = |wait_ms: u64| {
        bank.http
            .get(format!(
                "{}/sandbox/sms?number={}&after={after}&wait_ms={wait_ms}",
                bank.base,
                number.replace('+', "%2B")
            ))
            .send()
    };
    // Nothing new arrives while it waits: the poll ends empty when its wait is over.
    let empty: Vec<Value> = poll(150).await.unwrap().json().await.unwrap();
    assert!(empty.is_empty());
    let waiting = poll(10_000);
    let trigger = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        bank.call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person, "language": "fr"})),
        )
        .await
    };
    let (got, (s, _)) = tokio::join!(waiting, trigger);
    assert_eq!(s, 201);
    let got: Vec<Value> = got.unwrap().json().await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0]["seq"].as_u64().unwrap() > after);
    assert_eq!(got[0]["number"], number.as_str());
    let pushed = rx.recv().await.unwrap();
    assert_eq!(pushed.seq, got[0]["seq"].as_u64().unwrap());
    assert_eq!(
        bank.state()
            .sms_since(&number.parse().unwrap(), after)
            .len(),
        1
    );
    let r = bank
        .http
        .get(format!("{}/sandbox/sms?number=12", bank.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = bank
        .http
        .get(format!("{}/sandbox/health", bank.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn static_otp_mode_sends_212212_to_every_number() {
    let mut config = sandbox_common::two_partner_config();
    config.static_otp = true;
    let bank = Bank::start_with(config, false).await;
    let (_, number) = bank.verified_person().await;
    assert_eq!(bank.last_otp(&number).await, "212212");
}

#[tokio::test]
async fn injected_latency_delays_v1_responses_only() {
    // Every /v1 call waits 2 s; /sandbox/health, asked once such a call reached the sandbox,
    // answers before it: an ordering, not a stopwatch.
    let mut config = sandbox_common::two_partner_config();
    config.latency = Some(std::time::Duration::from_secs(2));
    let bank = Bank::start_with(config, false).await;
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let ticket = || finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let before = bank.state().stats().requests;
    let person = async {
        bank.person().await;
        ticket()
    };
    let health = async {
        // Bounded: the person call reaches the sandbox within 100 polls of 20 ms.
        for _ in 0..100 {
            if bank.state().stats().requests > before {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            bank.state().stats().requests > before,
            "the /v1 call never arrived"
        );
        let r = bank
            .http
            .get(format!("{}/sandbox/health", bank.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        ticket()
    };
    let (person_done, health_done) = tokio::join!(person, health);
    assert_eq!(
        (health_done, person_done),
        (0, 1),
        "/sandbox/health answered first, the delayed /v1 call after it"
    );
}
