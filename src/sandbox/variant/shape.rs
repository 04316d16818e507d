//! Which call a request is, and how the variant bank reshapes the real sandbox's answer to it.

use serde_json::{Map, Value, json};

/// The calls of API.md the variant bank tells apart (after ids were mapped back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// `PATCH /v1/persons/{id}`: answered with the person, applied at once.
    PatchPerson,
    /// `GET /v1/mfa/devices/{id}/keys`: answered as an array of device wrappers.
    ListKeys,
    /// `POST /v1/mfa/challenges/devices` and its `GET`: answered without `key_purpose`.
    DeviceChallenge,
    /// `PUT` of a binding or device-signing challenge: 200 with a small body, not 204.
    AnswerChallenge,
    /// `POST /v1/change_requests/{id}/confirm`: 202 `{id, status, response_code, response_body}`.
    ConfirmChangeRequest,
    /// Any other `/v1` call of API.md: the generic variant shape.
    Other,
    /// A call this bank does not offer (SMS challenges, unknown routes): an HTML 404 page.
    NotOffered,
}

impl Call {
    /// Classifies `method path` (the real path, ids already mapped back).
    pub(super) fn of(method: &str, path: &str) -> Call {
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (method, segs.as_slice()) {
            ("PATCH", ["v1", "persons", _]) => Call::PatchPerson,
            (_, ["v1", "mfa", "challenges", "sms", ..]) => Call::NotOffered,
            ("GET", ["v1", "mfa", "devices", _, "keys"]) => Call::ListKeys,
            ("POST", ["v1", "mfa", "challenges", "devices"])
            | ("GET", ["v1", "mfa", "challenges", "devices", _]) => Call::DeviceChallenge,
            ("PUT", ["v1", "mfa", "challenges", "devices" | "signatures", _]) => {
                Call::AnswerChallenge
            }
            ("POST", ["v1", "change_requests", _, "confirm"]) => Call::ConfirmChangeRequest,
            (
                _,
                ["v1", "persons", ..]
                | ["v1", "mfa", "devices", ..]
                | ["v1", "mfa", "challenges", "devices" | "signatures", ..]
                | ["v1", "change_requests", ..],
            ) => Call::Other,
            _ => Call::NotOffered,
        }
    }

    /// The status the variant bank answers instead of the sandbox's success status: 200 for
    /// 201 and 202 (and for 204 where it sends a body), 202 for a confirmation.
    pub(super) fn success_status(self, real: u16) -> u16 {
        match (self, real) {
            (Call::ConfirmChangeRequest, _) => 202,
            (Call::AnswerChallenge, 204) => 200,
            (_, 201 | 202) => 200,
            (_, other) => other,
        }
    }
}

/// Fields the sandbox sends that no phone flow uses; the variant bank leaves them out.
const UNUSED: &[&str] = &["created_at", "updated_at", "verified", "used_at"];

/// Adds the unknown fields a real server's answers carry (links, vendor metadata).
fn add_unknown_fields(obj: &mut Map<String, Value>) {
    obj.insert(
        "_links".to_owned(),
        json!({"self": {"href": "https://bank.example/v1"}}),
    );
    obj.insert(
        "meta".to_owned(),
        json!({"vendor": "variant-bank", "api_revision": 3, "flags": [true, null]}),
    );
}

/// The generic variant of one answer object: unused fields left out, unknown fields added,
/// status words in lowercase.
fn reshape_object(obj: &mut Map<String, Value>) {
    for field in UNUSED {
        obj.remove(*field);
    }
    if let Some(Value::String(status)) = obj.get_mut("status") {
        *status = status.to_ascii_lowercase();
    }
    add_unknown_fields(obj);
}

/// Reshapes a success body of `call` (ids already shown as variant ids).
pub(super) fn reshape_success(call: Call, body: Value) -> Value {
    match (call, body) {
        (Call::ListKeys, Value::Object(device)) => list_keys_as_wrappers(device),
        (Call::ConfirmChangeRequest, Value::Object(cr)) => {
            let mut out = Map::new();
            for field in ["id", "status", "response_code", "response_body"] {
                if let Some(v) = cr.get(field) {
                    out.insert(field.to_owned(), v.clone());
                }
            }
            reshape_object(&mut out);
            Value::Object(out)
        }
        (Call::DeviceChallenge, Value::Object(mut c)) => {
            c.remove("key_purpose");
            reshape_object(&mut c);
            Value::Object(c)
        }
        (_, Value::Object(mut obj)) => {
            reshape_object(&mut obj);
            Value::Object(obj)
        }
        (_, Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(mut obj) => {
                        reshape_object(&mut obj);
                        Value::Object(obj)
                    }
                    other => other,
                })
                .collect(),
        ),
        (_, other) => other,
    }
}

/// `{device_id, person_id, name, created_at, keys:[{key_id, key_purpose, used_at}]}` becomes
/// `[{person_id, device_id, name, keys:[{key_id, key_purpose}]}]`, as one server lists keys.
fn list_keys_as_wrappers(device: Map<String, Value>) -> Value {
    let keys: Vec<Value> = match device.get("keys") {
        Some(Value::Array(keys)) => keys
            .iter()
            .map(|k| json!({"key_id": k.get("key_id"), "key_purpose": k.get("key_purpose")}))
            .collect(),
        _ => Vec::new(),
    };
    let mut wrapper = Map::new();
    for field in ["person_id", "device_id", "name"] {
        if let Some(v) = device.get(field) {
            wrapper.insert(field.to_owned(), v.clone());
        }
    }
    wrapper.insert("keys".to_owned(), Value::Array(keys));
    add_unknown_fields(&mut wrapper);
    Value::Array(vec![Value::Object(wrapper)])
}

/// The body the variant bank sends where the sandbox answers 204 to a challenge answer.
pub(super) fn answered_body(shown_id: Option<&str>) -> Value {
    let mut obj = Map::new();
    if let Some(id) = shown_id {
        obj.insert("id".to_owned(), Value::String(id.to_owned()));
    }
    obj.insert("status".to_owned(), Value::String("completed".to_owned()));
    add_unknown_fields(&mut obj);
    Value::Object(obj)
}

/// The sandbox's `{"errors":[{...}]}` as Solaris' flat shape
/// `{id, status, code, title, detail, error_code}`; other bodies unchanged.
pub(super) fn flatten_error(body: Value) -> Value {
    let first = body
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
        .and_then(Value::as_object);
    let Some(first) = first else {
        return body;
    };
    let mut flat = Map::new();
    for field in ["id", "status", "code", "title", "detail"] {
        if let Some(v) = first.get(field) {
            flat.insert(field.to_owned(), v.clone());
        }
    }
    if let Some(Value::String(code)) = first.get("code") {
        flat.insert(
            "error_code".to_owned(),
            Value::String(code.to_ascii_uppercase()),
        );
    }
    Value::Object(flat)
}

/// An Express-style HTML 404 page for a call the bank does not offer.
pub(super) fn html_not_found(method: &str, path: &str) -> String {
    let shown: String = format!("{method} {path}")
        .chars()
        .map(|c| match c {
            '<' | '>' | '&' | '"' => '_',
            c => c,
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot {shown}</pre>\n</body>\n</html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_told_apart_by_method_and_path() {
        let id = "ab".repeat(16);
        assert_eq!(
            Call::of("PATCH", &format!("/v1/persons/{id}cper")),
            Call::PatchPerson
        );
        assert_eq!(Call::of("POST", "/v1/mfa/challenges/sms"), Call::NotOffered);
        assert_eq!(
            Call::of("PUT", &format!("/v1/mfa/challenges/sms/{id}")),
            Call::NotOffered
        );
        assert_eq!(Call::of("GET", "/v2/whatever"), Call::NotOffered);
        assert_eq!(
            Call::of("GET", &format!("/v1/mfa/devices/{id}/keys")),
            Call::ListKeys
        );
        assert_eq!(Call::of("POST", "/v1/mfa/devices"), Call::Other);
    }

    #[test]
    fn keys_become_an_array_of_device_wrappers_without_created_at() {
        let body = json!({"device_id": "d", "person_id": "p", "name": "n",
            "created_at": "2026-11-28T15:56:19Z",
            "keys": [{"key_id": "k", "key_purpose": "unrestricted", "used_at": null}]});
        let v = reshape_success(Call::ListKeys, body);
        assert_eq!(v[0]["keys"][0]["key_id"], "k");
        assert!(v[0].get("created_at").is_none());
        assert!(v[0]["keys"][0].get("used_at").is_none());
    }

    #[test]
    fn errors_are_flattened_and_pages_name_the_call() {
        let flat = flatten_error(json!({"errors": [{"id": "x", "status": 403,
            "code": "invalid_otp", "title": "Invalid OTP", "detail": "wrong"}]}));
        assert_eq!(flat["code"], "invalid_otp");
        assert_eq!(flat["error_code"], "INVALID_OTP");
        assert!(flat.get("errors").is_none());
        assert!(
            html_not_found("POST", "/v1/mfa/challenges/sms")
                .contains("<pre>Cannot POST /v1/mfa/challenges/sms</pre>")
        );
    }
}
