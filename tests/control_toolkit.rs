//! The toolkit routes of the control API: a backend (here, the test with its own client of
//! the sandbox) binds a phone and approves a payment using only new-key, public-key, otp and
//! sign-message over HTTP; then adopt hands the device to the flow routes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod control_common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use control_common::{Rig, bounded};
use serde_json::{Value, json};
use vphone::api::{
    AddKeyRequest, AnswerDeviceChallenge, AnswerSignatureChallenge, BindingChallengeType,
    ConfirmMobileNumber, CreateDeviceChallenge, CreateDeviceRequest, DeviceSignature, KeyPurpose,
    KeyType, MobileNumberRequest, Otp, PublicKeyHex, SignatureHex,
};
use vphone::phone::person_named;
use vphone::sandbox::attempts::Status;

fn text(v: &Value) -> &str {
    v.as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_binds_and_approves_through_the_toolkit_routes_then_adopt_hands_over() {
    bounded(async {
        let rig = Rig::start().await;
        let bank = &rig.backend;
        let number = "+4915199887766";

        // A phone with only a key and a number; no bank has heard of it.
        let made = rig
            .post(
                "/phones/kit/new-key",
                json!({"purpose": "unrestricted", "number": number}),
            )
            .await;
        let public_key = text(&made["public_key"]).to_owned();
        assert_eq!(made["key"]["key_id"], Value::Null);

        // The backend signs the user up; the code reaches the phone.
        let person = bank
            .create_person(&person_named("Kit", "User"))
            .await
            .unwrap();
        let req = MobileNumberRequest {
            number: number.parse().unwrap(),
        };
        bank.create_mobile_number(&person.id, &req).await.unwrap();
        let marker = rig.get("/phones/kit/otp/marker").await["marker"]
            .as_u64()
            .unwrap();
        bank.authorize_mobile_number(&person.id, &req)
            .await
            .unwrap();
        let code = rig
            .get(&format!("/phones/kit/otp?since={marker}&wait_ms=10000"))
            .await;
        let token = Otp::parse(text(&code["code"])).unwrap();
        bank.confirm_mobile_number(
            &person.id,
            &ConfirmMobileNumber {
                number: req.number.clone(),
                token,
            },
        )
        .await
        .unwrap();

        // Binding: the backend sends the public key, the phone signs the OTP.
        let marker = code["marker"].as_u64().unwrap();
        let created = bank
            .create_device(&CreateDeviceRequest {
                person_id: person.id.clone(),
                key_type: KeyType::EcdsaP256,
                key: PublicKeyHex::parse(&public_key).unwrap(),
                key_purpose: Some(KeyPurpose::Unrestricted),
                name: "kit".to_owned(),
                challenge_type: Some(BindingChallengeType::Sms),
                language: None,
                sms_challenge: None,
                device_data: None,
            })
            .await
            .unwrap();
        let code = rig
            .get(&format!("/phones/kit/otp?since={marker}&wait_ms=10000"))
            .await;
        let signed = rig
            .post(
                "/phones/kit/sign-message",
                json!({"purpose": "unrestricted", "message": code["code"]}),
            )
            .await;
        bank.answer_signature_challenge(
            &created.challenge.id,
            &AnswerSignatureChallenge {
                signature: SignatureHex::parse(text(&signed["signature"])).unwrap(),
                device_data: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            rig.bank_record(&created.challenge.id).status,
            Status::Completed
        );

        // The restricted key: made, read as a JWK (the same point as its hex), vouched for.
        let restricted = rig
            .post("/phones/kit/new-key", json!({"purpose": "restricted"}))
            .await;
        let hex_key = text(&restricted["public_key"]).to_owned();
        let jwk = rig
            .get("/phones/kit/public-key?purpose=restricted&format=jwk")
            .await;
        let x = URL_SAFE_NO_PAD
            .decode(text(&jwk["public_key"]["x"]))
            .unwrap();
        let y = URL_SAFE_NO_PAD
            .decode(text(&jwk["public_key"]["y"]))
            .unwrap();
        assert_eq!(format!("04{}{}", hex::encode(x), hex::encode(y)), hex_key);
        let vouch = rig
            .post(
                "/phones/kit/sign-message",
                json!({"purpose": "unrestricted", "message": hex_key}),
            )
            .await;
        let added = bank
            .add_key(
                &created.id,
                &AddKeyRequest {
                    key: PublicKeyHex::parse(&hex_key).unwrap(),
                    key_type: KeyType::EcdsaP256,
                    key_purpose: KeyPurpose::Restricted,
                    device_signature: DeviceSignature {
                        signature_key_purpose: KeyPurpose::Unrestricted,
                        signature: SignatureHex::parse(text(&vouch["signature"])).unwrap(),
                    },
                },
            )
            .await
            .unwrap();

        // A payment signed with the restricted key: the phone's prompt (policy) is asked.
        let payment = bank
            .create_device_challenge(&CreateDeviceChallenge {
                device_id: created.id.clone(),
                key_purpose: Some(KeyPurpose::Restricted),
                device_data: None,
            })
            .await
            .unwrap();
        rig.put_policy("kit", json!({"prompt": "deny"})).await;
        let (status, refused) = rig
            .call(
                "POST",
                "/phones/kit/sign-message",
                Some(json!({"purpose": "restricted", "message": payment.string_to_sign})),
            )
            .await;
        assert_eq!(status, 422, "{refused}");
        rig.put_policy("kit", json!({"prompt": "approve"})).await;
        let approved = rig
            .post(
                "/phones/kit/sign-message",
                json!({"purpose": "restricted", "message": payment.string_to_sign}),
            )
            .await;
        assert_eq!(approved["key"]["purpose"], "restricted");
        bank.answer_device_challenge(
            &payment.id,
            &AnswerDeviceChallenge {
                signature: SignatureHex::parse(text(&approved["signature"])).unwrap(),
                device_data: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(rig.bank_record(&payment.id).status, Status::Completed);
        bank.get_device(&created.id)
            .await
            .expect("the device is bound");

        // adopt: the flow routes now work on the backend's device.
        let adopted = rig
            .post(
                "/phones/kit/adopt",
                json!({
                    "device_id": created.id,
                    "key_ids": {"restricted": added.id},
                    "person_id": person.id,
                }),
            )
            .await;
        assert_eq!(adopted["phone"]["bound"], true, "{adopted}");
        let keys = rig.get("/phones/kit/keys").await;
        assert_eq!(keys["keys"].as_array().unwrap().len(), 2, "{keys}");
        let shown = rig.get("/phones/kit").await;
        for key in shown["keys"].as_array().unwrap() {
            assert!(
                key["key_id"].is_string(),
                "keys fills in every bank id: {shown}"
            );
        }
        let (status, gone) = rig.call("DELETE", "/phones/kit/device", None).await;
        assert_eq!(status, 200, "{gone}");
        let device = bank.get_device(&created.id).await.unwrap();
        assert!(device.deleted_at.is_some(), "{device:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolkit_routes_refuse_bad_formats_and_missing_keys_in_the_error_shape() {
    bounded(async {
        let rig = Rig::start().await;
        let (status, body) = rig
            .call(
                "POST",
                "/phones/bare/new-key",
                Some(json!({"purpose": "restricted", "format": "der"})),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(text(&body["error"]["message"]).contains("hex, spki-base64, pem, jwk"));
        rig.post("/phones/bare/new-key", json!({"purpose": "restricted"}))
            .await;
        let (status, body) = rig
            .call(
                "POST",
                "/phones/bare/sign-message",
                Some(json!({"purpose": "unrestricted", "message": "m"})),
            )
            .await;
        assert_eq!(status / 100, 4, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        let (status, body) = rig.call("GET", "/phones/bare/otp/marker", None).await;
        assert_eq!(status, 409, "a phone without a number has no inbox: {body}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rig_hands_back_the_long_opaque_ids_of_a_bank_we_did_not_write() {
    bounded(async {
        let rig = Rig::with(control_common::RigOptions {
            variant: true,
            ..Default::default()
        })
        .await;
        // A phone bound at the variant bank: its ids are 70-80 characters.
        let device = rig.bound("a").await;
        rig.get("/phones/a/keys").await;
        let a = rig.get("/phones/a").await;
        let person = text(&a["person_id"]).to_owned();
        let key = text(&a["unrestricted_key_id"]).to_owned();
        for id in [device.as_str(), &person, &key] {
            assert!(id.len() > 64, "{id}");
        }

        // The rig's backend hands the same ids to another phone: adopt takes them.
        rig.post("/phones/kit/new-key", json!({"purpose": "unrestricted"}))
            .await;
        let adopted = rig
            .post(
                "/phones/kit/adopt",
                json!({
                    "device_id": device,
                    "key_ids": {"unrestricted": key},
                    "person_id": person,
                }),
            )
            .await;
        assert_eq!(adopted["phone"]["device_id"], device.as_str(), "{adopted}");
        assert_eq!(adopted["phone"]["person_id"], person.as_str(), "{adopted}");
        let devices = rig.get("/phones/kit/devices").await;
        assert!(devices.to_string().contains(device.as_str()), "{devices}");

        // A phone joining the existing person by its id.
        let (status, joined) = rig
            .call(
                "POST",
                "/phones",
                Some(json!({"name": "b", "person_id": person, "number": a["number"]})),
            )
            .await;
        assert_eq!(status, 201, "{joined}");
        assert_eq!(joined["phone"]["person_id"], person.as_str(), "{joined}");
    })
    .await;
}
