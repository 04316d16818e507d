//! Review findings on the sandbox: each test pins one gap that was found and fixed (or one
//! behaviour that was checked and is right, so it stays that way).
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::{Bank, Key, assert_refused};
use serde_json::{Value, json};

/// Sends a raw body with a content type; returns the status and the body as JSON (or as a
/// JSON string when it is not JSON).
async fn raw(
    bank: &Bank,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (reqwest::StatusCode, Value) {
    let mut req = bank
        .http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", bank.base),
        )
        .bearer_auth(&bank.token);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.body(body.to_owned()).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn a_body_is_one_json_value_with_nothing_after_it() {
    let bank = Bank::start().await;
    let person = bank.person().await;
    let mobile = format!("/v1/persons/{person}/mobile_number");
    for body in [
        r#"{"number":"+15550101"} trailing"#,
        r#"{"number":"+15550101"}{}"#,
        r#"{"number":"+15550101"},"#,
    ] {
        assert_refused(
            &raw(&bank, "POST", &mobile, JSON, body).await,
            400,
            "invalid_json",
        );
    }
    assert_refused(&bank.call("GET", &mobile, None).await, 404, "not_found");
    // Whitespace after the value is fine.
    let (s, b) = raw(
        &bank,
        "POST",
        &mobile,
        JSON,
        "{\"number\":\"+15550101\"}\n ",
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test]
async fn a_key_sent_twice_is_refused_even_among_kept_person_fields() {
    let bank = Bank::start().await;
    for body in [
        r#"{"first_name":"A","last_name":"B","nationality":"DE","nationality":"FR"}"#,
        r#"{"first_name":"A","last_name":"B","address":{"city":"X","city":"Y"}}"#,
        r#"{"first_name":"A","last_name":"B","list":[{"k":1,"k":2}]}"#,
    ] {
        let got = raw(&bank, "POST", "/v1/persons", JSON, body).await;
        assert_refused(&got, 400, "validation_error");
        let detail = got.1["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("twice"), "{detail}");
    }
    // Distinct keys, also the same key in different objects, are fine.
    let (s, p) = raw(
        &bank,
        "POST",
        "/v1/persons",
        JSON,
        r#"{"first_name":"A","last_name":"B","address":{"city":"X"},"contact_address":{"city":"X"}}"#,
    )
    .await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["contact_address"]["city"], "X");
}

#[tokio::test]
async fn refusals_never_echo_an_otp_sent_as_a_number() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let (_, sc) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    let answer = format!("/v1/mfa/challenges/sms/{}", sc["id"].as_str().unwrap());
    let otp = bank.last_otp(&number).await;
    for body in [
        format!(r#"{{"code": {otp}}}"#),
        format!(r#"{{"code": {otp}.0}}"#),
        format!(r#"{{"code": [{otp}]}}"#),
    ] {
        let got = raw(&bank, "PUT", &answer, JSON, &body).await;
        let text = got.1.to_string();
        assert!(!text.contains(&otp), "the OTP is echoed: {text}");
        // A random OTP may start with 0, and JSON numbers may not: such a body is not JSON,
        // though the sandbox may refuse the field's type before it reaches the number.
        let is_json = serde_json::from_str::<serde_json::Value>(&body).is_ok();
        if !is_json && got.1["errors"][0]["code"] == "invalid_json" {
            assert_refused(&got, 400, "invalid_json");
        } else {
            assert_refused(&got, 400, "validation_error");
            assert_eq!(got.1["errors"][0]["source"]["field"], "code", "{text}");
        }
    }
    let (_, cr) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"first_name": "X"})),
        )
        .await;
    let id = cr["id"].as_str().unwrap();
    bank.call(
        "POST",
        &format!("/v1/change_requests/{id}/authorize"),
        Some(json!({"delivery_method": "static", "person_id": person})),
    )
    .await;
    let got = raw(
        &bank,
        "POST",
        &format!("/v1/change_requests/{id}/confirm"),
        JSON,
        &format!(r#"{{"person_id":"{person}","tan":212212}}"#),
    )
    .await;
    assert_refused(&got, 400, "validation_error");
    assert!(!got.1.to_string().contains("212212"), "{}", got.1);
    // None of these counted as an answer: the right code still completes the challenge.
    let (s, b) = bank.call("PUT", &answer, Some(json!({"code": otp}))).await;
    assert_eq!(s, 204, "{b}");
}

#[tokio::test]
async fn unreadable_path_segments_answer_in_the_errors_shape() {
    let bank = Bank::start().await;
    for path in [
        "/v1/persons/%FF%FE",
        "/v1/persons/%C3/mobile_number",
        "/v1/mfa/devices/%FF/keys/%FE",
        "/v1/mfa/challenges/sms/%80",
        "/v1/change_requests/%FF",
    ] {
        assert_refused(&raw(&bank, "GET", path, None, "").await, 404, "not_found");
    }
}

#[tokio::test]
async fn an_older_mobile_number_deletion_does_not_delete_a_newer_number() {
    let bank = Bank::start().await;
    let (person, _) = bank.verified_person().await;
    let mobile = format!("/v1/persons/{person}/mobile_number");
    let (_, older) = bank.call("DELETE", &mobile, None).await;
    let (_, newer) = bank.call("DELETE", &mobile, None).await;
    let confirm_static = |id: String| {
        let bank = &bank;
        let person = person.clone();
        async move {
            let (s, b) = bank
                .call(
                    "POST",
                    &format!("/v1/change_requests/{id}/authorize"),
                    Some(json!({"delivery_method": "static", "person_id": person})),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            let (s, b) = bank
                .call(
                    "POST",
                    &format!("/v1/change_requests/{id}/confirm"),
                    Some(json!({"person_id": person, "tan": "212212"})),
                )
                .await;
            assert_eq!(s, 201, "{b}");
            b
        }
    };
    let done = confirm_static(newer["id"].as_str().unwrap().to_owned()).await;
    assert_eq!(done["response_code"], 200);
    assert_refused(&bank.call("GET", &mobile, None).await, 404, "not_found");
    let (s, b) = bank
        .call("POST", &mobile, Some(json!({"number": "+15550101"})))
        .await;
    assert_eq!(s, 201, "{b}");
    let done = confirm_static(older["id"].as_str().unwrap().to_owned()).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["response_code"], 404, "{done}");
    let (s, now) = bank.call("GET", &mobile, None).await;
    assert_eq!(s, 200, "the newer number is kept: {now}");
    assert_eq!(now["number"], "+15550101");
}

#[tokio::test]
async fn unknown_query_parameters_are_refused() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    bank.call(
        "DELETE",
        &format!("/v1/mfa/devices/{}", phone.device_id),
        None,
    )
    .await;
    // A misspelt filter must not quietly answer as if it were absent.
    let got = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}&filter[include_delete]=true"),
            None,
        )
        .await;
    assert_refused(&got, 400, "validation_error");
    assert_eq!(
        got.1["errors"][0]["source"]["field"], "filter[include_delete]",
        "{}",
        got.1
    );
    let (s, all) = bank
        .call(
            "GET",
            &format!("/v1/mfa/devices?filter[person_id]={person}&filter[include_deleted]=true"),
            None,
        )
        .await;
    assert_eq!((s.as_u16(), all.as_array().unwrap().len()), (200, 1));
    let r = bank
        .http
        .get(format!(
            "{}/sandbox/sms?number=%2B15550101&wait=5000",
            bank.base
        ))
        .send()
        .await
        .unwrap();
    let got = (r.status(), r.json::<Value>().await.unwrap());
    assert_refused(&got, 400, "validation_error");
}

/// Checked and right; pinned so it stays that way.
#[tokio::test]
async fn charset_parameters_are_accepted_and_other_methods_get_the_errors_shape() {
    let bank = Bank::start().await;
    for ct in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ] {
        let (s, b) = raw(
            &bank,
            "POST",
            "/v1/persons",
            Some(ct),
            r#"{"first_name":"A","last_name":"B"}"#,
        )
        .await;
        assert_eq!(s, 201, "{ct}: {b}");
    }
    assert_refused(
        &raw(&bank, "OPTIONS", "/v1/persons", None, "").await,
        405,
        "method_not_allowed",
    );
    let r = bank
        .http
        .head(format!("{}/v1/mfa/challenges/sms", bank.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

/// Authorizes a change request with the static TAN and confirms it.
async fn confirm_with_static_tan(bank: &Bank, id: &str, person: &str) -> Value {
    let (s, b) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{id}/authorize"),
            Some(json!({"delivery_method": "static", "person_id": person})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{id}/confirm"),
            Some(json!({"person_id": person, "tan": "212212"})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    b
}

/// A PATCH of the person's first name; returns the change request's id.
async fn held_update(bank: &Bank, person: &str) -> String {
    let (s, cr) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"first_name": "Grace"})),
        )
        .await;
    assert_eq!(s, 202, "{cr}");
    cr["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn finished_challenges_and_change_requests_are_forgotten_after_the_retention_window() {
    let bank = Bank::start_with_clock().await;
    let retention = bank.state().config().retention.as_secs();
    assert_eq!(retention, 15 * 60, "the default");
    let (person, number) = bank.verified_person().await;
    let before = bank.state().stats();

    // Bindings nobody answers: each leaves an unverified device and a challenge behind.
    let mut unanswered = Vec::new();
    for _ in 0..20 {
        unanswered.push(bank.start_binding(&person, &Key::new()).await);
    }
    // A binding that completes: its device stays, its challenge goes.
    let phone = bank.bind(&person, &number).await;
    // An SMS challenge spent by wrong answers.
    let (s, sms) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    assert_eq!(s, 201, "{sms}");
    let sms = format!("/v1/mfa/challenges/sms/{}", sms["id"].as_str().unwrap());
    for _ in 0..3 {
        let (s, _) = bank
            .call("PUT", &sms, Some(json!({"code": "000000"})))
            .await;
        assert_eq!(s, 403);
    }
    // A device challenge left open, a change request never authorized, one completed.
    let (s, dc) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": phone.device_id})),
        )
        .await;
    assert_eq!(s, 201, "{dc}");
    let device_challenge = format!("/v1/mfa/challenges/devices/{}", dc["id"].as_str().unwrap());
    let idle_cr = held_update(&bank, &person).await;
    let done_cr = held_update(&bank, &person).await;
    confirm_with_static_tan(&bank, &done_cr, &person).await;

    let held = bank.state().stats();
    assert_eq!(held.live_devices - before.live_devices, 21);
    assert_eq!(held.live_challenges - before.live_challenges, 23);
    assert_eq!(held.live_change_requests - before.live_change_requests, 2);

    // Expired, but within the retention window: nothing is forgotten, answers are unchanged.
    bank.advance(301);
    assert_eq!(bank.state().sweep(), swept(0, 0, 0));
    let (device, challenge) = &unanswered[0];
    let answer = format!("/v1/mfa/challenges/signatures/{challenge}");
    let signed = json!({"signature": Key::new().sign(b"212212")});
    assert_refused(
        &bank.call("PUT", &answer, Some(signed.clone())).await,
        403,
        "challenge_expired",
    );
    assert_refused(
        &bank
            .call("PUT", &sms, Some(json!({"code": "000000"})))
            .await,
        403,
        "challenge_failed",
    );
    let (s, b) = bank
        .call("GET", &format!("/v1/change_requests/{done_cr}"), None)
        .await;
    assert_eq!((s.as_u16(), b["status"].as_str()), (200, Some("COMPLETED")));

    // Finished for longer than the retention window: forgotten, and 404 from now on.
    bank.advance(retention);
    assert_eq!(bank.state().sweep(), swept(23, 20, 2));
    let after = bank.state().stats();
    assert_eq!(after.live_challenges, before.live_challenges);
    assert_eq!(after.live_change_requests, before.live_change_requests);
    assert_eq!(
        after.live_devices,
        before.live_devices + 1,
        "only the bound one"
    );
    assert_eq!(after.swept, 45);
    let got = bank.call("PUT", &answer, Some(signed)).await;
    assert_refused(&got, 404, "not_found");
    let detail = got.1["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("forgotten 15m"), "{detail}");
    assert_refused(&bank.call("GET", &answer, None).await, 404, "not_found");
    assert_refused(&bank.call("GET", &sms, None).await, 404, "not_found");
    assert_refused(
        &bank.call("GET", &device_challenge, None).await,
        404,
        "not_found",
    );
    for cr in [&idle_cr, &done_cr] {
        assert_refused(
            &bank
                .call("GET", &format!("/v1/change_requests/{cr}"), None)
                .await,
            404,
            "not_found",
        );
    }
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
    let (s, b) = bank
        .call("GET", &format!("/v1/mfa/devices/{}", phone.device_id), None)
        .await;
    assert_eq!(s, 200, "the bound device is kept: {b}");

    // Something finished just now is kept until its own window is over.
    let (_, fresh) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    let fresh = format!("/v1/mfa/challenges/sms/{}", fresh["id"].as_str().unwrap());
    let otp = bank.last_otp(&number).await;
    let (s, _) = bank.call("PUT", &fresh, Some(json!({"code": otp}))).await;
    assert_eq!(s, 204);
    bank.advance(retention);
    assert_eq!(bank.state().sweep(), swept(0, 0, 0));
    assert_refused(
        &bank.call("PUT", &fresh, Some(json!({"code": otp}))).await,
        403,
        "challenge_already_used",
    );
    bank.advance(1);
    assert_eq!(bank.state().sweep(), swept(1, 0, 0));
}

fn swept(challenges: usize, devices: usize, change_requests: usize) -> vphone::sandbox::Swept {
    vphone::sandbox::Swept {
        challenges,
        devices,
        change_requests,
    }
}

#[tokio::test]
async fn the_sweep_runs_in_the_background_of_a_spawned_sandbox() {
    let mut config = sandbox_common::two_partner_config();
    config.retention = std::time::Duration::ZERO;
    let bank = Bank::start_with(config, true).await;
    let (person, _) = bank.verified_person().await;
    let (_, challenge) = bank.start_binding(&person, &Key::new()).await;
    bank.advance(301);
    let forgotten = async {
        while bank.state().stats().live_challenges > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), forgotten)
        .await
        .expect("the background sweep forgets the expired binding within a few seconds");
    assert_eq!(bank.state().stats().live_devices, 0);
    assert_refused(
        &bank
            .call(
                "GET",
                &format!("/v1/mfa/challenges/signatures/{challenge}"),
                None,
            )
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn an_otp_or_tan_sent_to_a_number_since_deleted_is_refused() {
    let bank = Bank::start().await;
    let (person, old_number) = bank.verified_person().await;
    // A binding, an SMS challenge and an SMS-TAN change request, all sent to the old number.
    let key = Key::new();
    let (device, binding) = bank.start_binding(&person, &key).await;
    let binding_otp = bank.last_otp(&old_number).await;
    let (s, sms) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    assert_eq!(s, 201, "{sms}");
    let sms = format!("/v1/mfa/challenges/sms/{}", sms["id"].as_str().unwrap());
    let sms_otp = bank.last_otp(&old_number).await;
    let update = held_update(&bank, &person).await;
    let (s, b) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{update}/authorize"),
            Some(json!({"delivery_method": "mobile_number", "person_id": person})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let tan = bank.last_otp(&old_number).await;

    // The number is deleted (confirmed with the static TAN).
    let mobile = format!("/v1/persons/{person}/mobile_number");
    let (s, deletion) = bank.call("DELETE", &mobile, None).await;
    assert_eq!(s, 202, "{deletion}");
    confirm_with_static_tan(&bank, deletion["id"].as_str().unwrap(), &person).await;

    let answers = |new_number: bool| {
        let (bank, person) = (&bank, person.clone());
        let (binding, sms, update) = (binding.clone(), sms.clone(), update.clone());
        let (binding_otp, sms_otp, tan) = (binding_otp.clone(), sms_otp.clone(), tan.clone());
        let key = &key;
        async move {
            let what = if new_number {
                "after a new number was verified"
            } else {
                "with no number"
            };
            for got in [
                bank.call(
                    "PUT",
                    &format!("/v1/mfa/challenges/signatures/{binding}"),
                    Some(json!({"signature": key.sign(binding_otp.as_bytes())})),
                )
                .await,
                bank.call("PUT", &sms, Some(json!({"code": sms_otp}))).await,
                bank.call(
                    "POST",
                    &format!("/v1/change_requests/{update}/confirm"),
                    Some(json!({"person_id": person, "tan": tan})),
                )
                .await,
            ] {
                assert_refused(&got, 403, "mobile_number_changed");
                let detail = got.1["errors"][0]["detail"].as_str().unwrap().to_owned();
                assert!(
                    detail.contains("new") || detail.contains("again"),
                    "{what}: {detail}"
                );
            }
        }
    };
    answers(false).await;
    // A new verified number does not revive what was sent to the old one.
    let new_number = sandbox_common::random_number();
    for (path, body) in [
        ("", json!({"number": new_number})),
        ("/authorize", json!({"number": new_number})),
    ] {
        let (s, b) = bank
            .call("POST", &format!("{mobile}{path}"), Some(body))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let otp = bank.last_otp(&new_number).await;
    let (s, b) = bank
        .call(
            "POST",
            &format!("{mobile}/confirm"),
            Some(json!({"number": new_number, "token": otp})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    answers(true).await;

    // Nothing happened: no device bound, the person unchanged, the change request still open.
    assert_refused(
        &bank
            .call("GET", &format!("/v1/mfa/devices/{device}"), None)
            .await,
        404,
        "not_found",
    );
    assert_eq!(bank.state().stats().bindings, 0);
    let (_, p) = bank
        .call("GET", &format!("/v1/persons/{person}"), None)
        .await;
    assert_eq!(p["first_name"], "Ada");
    let (_, cr) = bank
        .call("GET", &format!("/v1/change_requests/{update}"), None)
        .await;
    assert_eq!(cr["status"], "CONFIRMATION_REQUIRED");
    // Starting again sends to the new number and works.
    bank.bind(&person, &new_number).await;
}

#[tokio::test]
async fn a_confirmation_carrying_the_other_methods_fields_is_refused() {
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let someone = "0123456789abcdef0123456789abcdef";
    let refused_for = |got: (reqwest::StatusCode, Value), field: &str| {
        assert_refused(&got, 400, "validation_error");
        assert_eq!(got.1["errors"][0]["source"]["field"], field, "{}", got.1);
    };

    // Authorized for a TAN: a signature or device id alongside is refused, not ignored.
    let by_tan = held_update(&bank, &person).await;
    let (s, b) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{by_tan}/authorize"),
            Some(json!({"delivery_method": "static", "person_id": person})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let confirm = format!("/v1/change_requests/{by_tan}/confirm");
    let signature = phone.key.sign(b"anything");
    for (extra, value) in [
        ("signature", json!(signature)),
        ("device_id", json!(someone)),
    ] {
        let mut body = json!({"person_id": person, "tan": "212212"});
        body[extra] = value;
        refused_for(bank.call("POST", &confirm, Some(body)).await, extra);
    }
    let (_, cr) = bank
        .call("GET", &format!("/v1/change_requests/{by_tan}"), None)
        .await;
    assert_eq!(cr["status"], "CONFIRMATION_REQUIRED", "nothing changed");
    let (_, p) = bank
        .call("GET", &format!("/v1/persons/{person}"), None)
        .await;
    assert_eq!(p["first_name"], "Ada");

    // Authorized for device signing: a TAN or person id alongside is refused.
    let by_device = held_update(&bank, &person).await;
    let (s, auth) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{by_device}/authorize"),
            Some(json!({"delivery_method": "device_signing", "device_id": phone.device_id})),
        )
        .await;
    assert_eq!(s, 201, "{auth}");
    let string_to_sign = auth["string_to_sign"].as_str().unwrap();
    let signature = phone.key.sign(string_to_sign.as_bytes());
    let confirm = format!("/v1/change_requests/{by_device}/confirm");
    for (extra, value) in [("tan", json!("212212")), ("person_id", json!(person))] {
        let mut body = json!({"device_id": phone.device_id, "signature": signature});
        body[extra] = value;
        refused_for(bank.call("POST", &confirm, Some(body)).await, extra);
    }
    assert_eq!(bank.state().stats().verifications, 1, "only the binding's");

    // Each with only its own fields goes through, first try: no attempt was spent.
    let (s, b) = bank
        .call(
            "POST",
            &confirm,
            Some(json!({"device_id": phone.device_id, "signature": signature})),
        )
        .await;
    assert_eq!(
        (s.as_u16(), &b["status"]),
        (201, &json!("COMPLETED")),
        "{b}"
    );
    let (s, b) = bank
        .call(
            "POST",
            &format!("/v1/change_requests/{by_tan}/confirm"),
            Some(json!({"person_id": person, "tan": "212212"})),
        )
        .await;
    assert_eq!(
        (s.as_u16(), &b["status"]),
        (201, &json!("COMPLETED")),
        "{b}"
    );
}

#[tokio::test]
async fn emails_and_names_are_checked_on_create_and_patch_and_a_refusal_changes_nothing() {
    let bank = Bank::start().await;
    let person = bank.person().await;
    let path = format!("/v1/persons/{person}");
    let (_, original) = bank.call("GET", &path, None).await;
    let before = bank.state().stats();
    let long = format!("{}@example.com", "a".repeat(250));
    let bad_emails = [
        "",
        "   ",
        "ada",
        "@example.com",
        "ada@",
        "ada@@example.com",
        "a@b@c",
        "ada @example.com",
        "ada@example.com\n",
        long.as_str(),
    ];
    let refused = |got: (reqwest::StatusCode, Value), field: &str| {
        assert_refused(&got, 400, "validation_error");
        assert_eq!(got.1["errors"][0]["source"]["field"], field, "{}", got.1);
    };
    for email in bad_emails {
        refused(
            bank.call("PATCH", &path, Some(json!({"email": email})))
                .await,
            "email",
        );
        refused(
            bank.call(
                "POST",
                "/v1/persons",
                Some(json!({"first_name": "A", "last_name": "B", "email": email})),
            )
            .await,
            "email",
        );
    }
    for field in ["first_name", "last_name"] {
        for blank in ["", " ", "\t\n", "\u{3000}"] {
            refused(
                bank.call("PATCH", &path, Some(json!({ field: blank })))
                    .await,
                field,
            );
            let mut create = json!({"first_name": "A", "last_name": "B"});
            create[field] = json!(blank);
            refused(bank.call("POST", "/v1/persons", Some(create)).await, field);
        }
    }
    // Nothing was held and nothing was created; the person is as it was.
    let after = bank.state().stats();
    assert_eq!(after.live_change_requests, before.live_change_requests);
    assert_eq!(after.live_persons, before.live_persons);
    assert_eq!(bank.call("GET", &path, None).await.1, original);

    // A plausible address is held and applied.
    let (s, cr) = bank
        .call("PATCH", &path, Some(json!({"email": "ada@example.com"})))
        .await;
    assert_eq!(s, 202, "{cr}");
    confirm_with_static_tan(&bank, cr["id"].as_str().unwrap(), &person).await;
    assert_eq!(
        bank.call("GET", &path, None).await.1["email"],
        "ada@example.com"
    );
}
