//! JSON round trips of the wire types against fixtures in `tests/data/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vphone::api::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Parses a fixture, writes it back, and checks nothing was lost or invented.
fn round_trips_exactly<T: Serialize + DeserializeOwned>(name: &str) -> T {
    let original = fixture(name);
    let typed: T =
        serde_json::from_value(original.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), original, "{name}");
    typed
}

#[test]
fn requests_round_trip_exactly() {
    let req: CreateDeviceRequest = round_trips_exactly("create_device_request.json");
    assert_eq!(req.key_type, KeyType::EcdsaP256);
    assert_eq!(req.language, Some(Language::De));
    assert_eq!(req.key.as_str().len(), 130);
    let add: AddKeyRequest = round_trips_exactly("add_key_request.json");
    assert_eq!(
        add.device_signature.signature_key_purpose,
        KeyPurpose::Unrestricted
    );
    let _: AnswerSignatureChallenge = round_trips_exactly("answer_signature_challenge.json");
    let auth: AuthorizeChangeRequest = round_trips_exactly("authorize_change_request.json");
    assert_eq!(auth.delivery_method, DeliveryMethod::DeviceSigning);
    let confirm: ConfirmChangeRequest = round_trips_exactly("confirm_change_request_tan.json");
    assert_eq!(
        confirm.tan.map(|t| t.expose().to_owned()).as_deref(),
        Some("212212")
    );
}

#[test]
fn responses_round_trip_exactly() {
    let created: CreateDeviceResponse = round_trips_exactly("create_device_response.json");
    assert_eq!(created.challenge.kind, Some(ChallengeKind::Signature));
    assert_eq!(
        created.challenge.expires_at.unwrap().unix() - created.challenge.created_at.unwrap().unix(),
        300
    );
    let device: Device = round_trips_exactly("device.json");
    assert!(device.deleted_at.is_some());
    let challenge: DeviceChallenge = round_trips_exactly("device_challenge.json");
    assert_eq!(challenge.key_purpose, Some(KeyPurpose::Restricted));
    let _: SmsChallenge = round_trips_exactly("sms_challenge.json");
    let cr: ChangeRequest = round_trips_exactly("change_request_completed.json");
    assert_eq!(cr.status, ChangeRequestStatus::Completed);
    let person: Person = round_trips_exactly("person.json");
    assert!(person.id.is_canonical());
    assert!(person.extra.contains_key("address"));
    let number: MobileNumber = round_trips_exactly("mobile_number.json");
    assert!(number.verified && number.id.is_canonical());
    let keys: DeviceKeys = round_trips_exactly("device_keys_array.json");
    assert_eq!(keys.keys.len(), 2);
}

#[test]
fn the_keys_list_is_read_as_an_object_too() {
    let keys: DeviceKeys = serde_json::from_value(fixture("device_keys_object.json")).unwrap();
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(keys.keys[0].key_purpose, KeyPurpose::Unrestricted);
}

#[test]
fn the_token_never_shows_in_debug_output() {
    let token: TokenResponse = serde_json::from_value(fixture("token_response.json")).unwrap();
    assert_eq!(
        token.access_token.expose(),
        "not-a-real-token-just-a-fixture"
    );
    assert!(!format!("{token:?}").contains("not-a-real-token"));
}

#[test]
fn both_error_shapes_parse_into_one_error_type() {
    let body = serde_json::to_vec(&fixture("error_errors_array.json")).unwrap();
    let e = RemoteError::from_body(403, &body);
    assert_eq!(e.status, 403);
    assert_eq!(e.code_str(), "invalid_signature");
    assert_eq!(e.title, "Invalid Signature");
    assert_eq!(e.field.as_deref(), Some("signature"));
    let typed: ApiErrorBody = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        fixture("error_errors_array.json")
    );

    let body = serde_json::to_vec(&fixture("error_flat.json")).unwrap();
    let e = RemoteError::from_body(404, &body);
    assert_eq!((e.status, e.code_str()), (404, "model_not_found"));
    assert!(e.detail.contains("MfaDevice"));
    assert!(
        e.to_string()
            .starts_with("HTTP 404 model_not_found: Couldn't find")
    );
}

#[test]
fn malformed_values_are_refused_when_parsed() {
    let mut bad = fixture("create_device_request.json");
    bad["key"] = Value::from("04ABCD");
    let err = serde_json::from_value::<CreateDeviceRequest>(bad).unwrap_err();
    assert!(err.to_string().contains("uppercase"), "{err}");

    let mut bad = fixture("create_device_request.json");
    bad["key_purpose"] = Value::from("sometimes");
    assert!(serde_json::from_value::<CreateDeviceRequest>(bad).is_err());

    let mut bad = fixture("confirm_change_request_tan.json");
    bad["tan"] = Value::from("21221");
    let err = serde_json::from_value::<ConfirmChangeRequest>(bad).unwrap_err();
    assert!(!err.to_string().contains("21221"), "the TAN leaked: {err}");
}
