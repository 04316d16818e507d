//! The tolerant reader: every response decoder accepts its documented JSON with arbitrary
//! fields added (at the top and in nested objects), and reads the same values from it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt::Debug;
use vphone::api::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Extra fields: names no documented field has (they start with `x_`), any values.
fn extras() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(("x_[a-z0-9_]{1,12}", any_json()), 1..6)
}

/// Adds `extra` to every object in `v` (the top one and nested ones).
fn with_extras(v: &Value, extra: &[(String, Value)]) -> Value {
    match v {
        Value::Object(map) => {
            let mut out: Map<String, Value> = map
                .iter()
                .map(|(k, v)| (k.clone(), with_extras(v, extra)))
                .collect();
            for (k, x) in extra {
                out.insert(k.clone(), x.clone());
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|i| with_extras(i, extra)).collect()),
        other => other.clone(),
    }
}

fn reads_the_same<T: DeserializeOwned + PartialEq + Debug>(name: &str, extra: &[(String, Value)]) {
    let documented = fixture(name);
    let plain: T = serde_json::from_value(documented.clone()).unwrap();
    let padded: T = serde_json::from_value(with_extras(&documented, extra))
        .unwrap_or_else(|e| panic!("{name} with extra fields: {e}"));
    assert_eq!(plain, padded, "{name}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_response_decoder_ignores_extra_fields(extra in extras()) {
        reads_the_same::<CreateDeviceResponse>("create_device_response.json", &extra);
        reads_the_same::<Device>("device.json", &extra);
        reads_the_same::<DeviceChallenge>("device_challenge.json", &extra);
        reads_the_same::<SmsChallenge>("sms_challenge.json", &extra);
        // `response_body` is the held call's answer, kept as it came: compare the rest.
        let cr = fixture("change_request_completed.json");
        let mut plain: ChangeRequest = serde_json::from_value(cr.clone()).unwrap();
        let mut padded: ChangeRequest = serde_json::from_value(with_extras(&cr, &extra)).unwrap();
        prop_assert!(padded.response_body.is_some());
        (plain.response_body, padded.response_body) = (None, None);
        prop_assert_eq!(plain, padded);
        reads_the_same::<MobileNumber>("mobile_number.json", &extra);
        reads_the_same::<DeviceKeys>("device_keys_array.json", &extra);
        reads_the_same::<DeviceKeys>("device_keys_object.json", &extra);
        reads_the_same::<KeysAnswer>("device_keys_array.json", &extra);
        let token: TokenResponse = serde_json::from_value(with_extras(
            &fixture("token_response.json"), &extra)).unwrap();
        prop_assert_eq!(token.access_token.expose(), "not-a-real-token-just-a-fixture");

        // A person keeps unknown fields (`extra`), so compare what the flows read.
        let person = fixture("person.json");
        let plain: Person = serde_json::from_value(person.clone()).unwrap();
        let padded: Person = serde_json::from_value(with_extras(&person, &extra)).unwrap();
        prop_assert_eq!(
            (&plain.id, &plain.first_name, &plain.last_name),
            (&padded.id, &padded.first_name, &padded.last_name)
        );

        // PATCH's answer is still told apart: a change request, or the person itself.
        let held: PersonUpdate = serde_json::from_value(with_extras(
            &fixture("change_request_completed.json"), &extra)).unwrap();
        prop_assert!(matches!(held, PersonUpdate::Held(_)));
        let applied: PersonUpdate =
            serde_json::from_value(with_extras(&person, &extra)).unwrap();
        prop_assert!(matches!(applied, PersonUpdate::Applied(p) if p.id == plain.id));

        // Error bodies in both shapes keep their code.
        for (name, code) in [("error_errors_array.json", "invalid_signature"),
                             ("error_flat.json", "model_not_found")] {
            let body = serde_json::to_vec(&with_extras(&fixture(name), &extra)).unwrap();
            let e = RemoteError::from_body(403, &body);
            prop_assert_eq!(e.code_str(), code);
        }
    }

    #[test]
    fn the_variant_shapes_are_read_with_extra_fields_too(extra in extras()) {
        let device = "deviceId-0123456789abcdef0123456789abcdef-0123456789abcdef0123456789abcdef";
        let wrappers = serde_json::json!([{
            "person_id": "personId-1", "device_id": device, "name": "n",
            "keys": [{"key_id": "keyId-1", "key_purpose": "unrestricted"}]
        }]);
        let keys: KeysAnswer = serde_json::from_value(with_extras(&wrappers, &extra)).unwrap();
        let keys = keys.into_device_keys(&DeviceId::from_server(device).unwrap());
        prop_assert_eq!(keys.keys.len(), 1);
        prop_assert_eq!(keys.keys[0].key_purpose, KeyPurpose::Unrestricted);
        let confirmation = serde_json::json!({
            "id": "objectId-2", "status": "completed", "response_code": 200,
            "response_body": {"id": "personId-1"}
        });
        let cr: ChangeRequest =
            serde_json::from_value(with_extras(&confirmation, &extra)).unwrap();
        prop_assert_eq!(cr.status, ChangeRequestStatus::Completed);
        prop_assert!(cr.updated_at.is_none());
        let challenge = serde_json::json!({"id": "objectId-3", "string_to_sign": "pay 1 EUR"});
        let c: DeviceChallenge = serde_json::from_value(with_extras(&challenge, &extra)).unwrap();
        prop_assert!(c.key_purpose.is_none() && c.expires_at.is_none());
    }
}
