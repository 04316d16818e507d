//! What shape an answer came in: the one API.md documents, a variant the phone reads
//! (named), or one it cannot read. "Documented" is checked on the JSON itself (the fields
//! API.md lists are present), "readable" with the phone's own decoders, so the two can
//! disagree exactly where a server differs from the documentation but the phone copes.

use crate::api::{
    AddKeyResponse, ChangeRequest, CreateDeviceResponse, Device, DeviceChallenge, KeyDetail,
    KeysAnswer, MobileNumber, Person, PersonUpdate, SignatureChallenge, SmsChallenge,
    TokenResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// How an answer's body was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "shape", content = "note", rename_all = "snake_case")]
pub enum Shape {
    /// The fields API.md documents are all there.
    AsDocumented,
    /// Not as documented, but the phone reads it; the variant is named.
    Variant(String),
    /// The phone cannot read it; why.
    Unreadable(String),
    /// No success answer to read (refused, not offered, no answer, not reached).
    None,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::AsDocumented => f.write_str("as documented"),
            Shape::Variant(v) => write!(f, "variant: {v}"),
            Shape::Unreadable(why) => write!(f, "unreadable: {why}"),
            Shape::None => f.write_str("-"),
        }
    }
}

/// What a call's success body should hold, and how the phone reads it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Body {
    /// Nothing is read (204 documented; a body is ignored).
    Ignored,
    /// Nothing is read and API.md documents no body (any body, or none, is as documented).
    Any,
    /// The token answer.
    Token,
    /// A person.
    Person,
    /// A change request (DELETE mobile number, authorize).
    ChangeRequest,
    /// The answer to `PATCH /v1/persons/{id}`: a change request (documented) or the person.
    PatchPerson,
    /// A change request's confirmation.
    Confirmation,
    /// A mobile number.
    MobileNumber,
    /// The answer to `POST /v1/mfa/devices`.
    CreateDevice,
    /// The list of devices.
    DeviceList,
    /// One device.
    Device,
    /// A binding challenge.
    SignatureChallenge,
    /// The new key's id.
    AddKey,
    /// A device's keys.
    Keys,
    /// One key.
    Key,
    /// A device-signing challenge.
    DeviceChallenge,
    /// An SMS challenge.
    SmsChallenge,
}

const CHALLENGE: &[&str] = &["id", "type", "created_at", "expires_at"];

impl Body {
    /// The top-level fields API.md lists for this answer.
    fn documented(self) -> &'static [&'static str] {
        match self {
            Body::Ignored | Body::Any => &[],
            Body::Token => &["access_token", "token_type", "expires_in"],
            Body::Person => &["id", "first_name", "last_name"],
            Body::ChangeRequest | Body::PatchPerson => &["id", "status", "updated_at"],
            Body::Confirmation => &[
                "id",
                "status",
                "updated_at",
                "response_code",
                "response_body",
            ],
            Body::MobileNumber => &["id", "number", "verified"],
            Body::CreateDevice => &["id", "challenge"],
            Body::DeviceList => &[],
            Body::Device => &["id", "name", "person_id", "created_at"],
            Body::SignatureChallenge | Body::SmsChallenge => CHALLENGE,
            Body::AddKey => &["id"],
            Body::Keys => &["device_id", "person_id", "name", "created_at", "keys"],
            Body::Key => &["key_id", "key_purpose", "created_at", "used_at"],
            Body::DeviceChallenge => &[
                "id",
                "type",
                "string_to_sign",
                "key_purpose",
                "created_at",
                "expires_at",
            ],
        }
    }

    /// Whether the phone's decoder reads `v`.
    fn read(self, v: &Value) -> Result<(), String> {
        fn de<T: DeserializeOwned>(v: &Value) -> Result<(), String> {
            serde_json::from_value::<T>(v.clone())
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        match self {
            Body::Ignored | Body::Any => Ok(()),
            Body::Token => de::<TokenResponse>(v),
            Body::Person => de::<Person>(v),
            Body::ChangeRequest | Body::Confirmation => de::<ChangeRequest>(v),
            Body::PatchPerson => de::<PersonUpdate>(v),
            Body::MobileNumber => de::<MobileNumber>(v),
            Body::CreateDevice => de::<CreateDeviceResponse>(v),
            Body::DeviceList => de::<Vec<Device>>(v),
            Body::Device => de::<Device>(v),
            Body::SignatureChallenge => de::<SignatureChallenge>(v),
            Body::AddKey => de::<AddKeyResponse>(v),
            Body::Keys => de::<KeysAnswer>(v),
            Body::Key => de::<KeyDetail>(v),
            Body::DeviceChallenge => de::<DeviceChallenge>(v),
            Body::SmsChallenge => de::<SmsChallenge>(v),
        }
    }
}

/// The shape of a success answer (`status`; `body`, `None` when empty) to a call whose
/// documented answer is `documented` with `expect`.
pub(super) fn classify(expect: Body, status: u16, documented: u16, body: Option<&Value>) -> Shape {
    let shape = classify_body(expect, body);
    if status == documented {
        return shape;
    }
    // Any 2xx is success, but a different one is worth naming.
    let note = format!("{status} instead of {documented}");
    match shape {
        Shape::AsDocumented => Shape::Variant(note),
        Shape::Variant(v) => Shape::Variant(format!("{note}; {v}")),
        other => other,
    }
}

fn classify_body(expect: Body, body: Option<&Value>) -> Shape {
    let Some(v) = body else {
        return match expect {
            Body::Ignored | Body::Any => Shape::AsDocumented,
            _ => Shape::Unreadable("no body".into()),
        };
    };
    if let Value::String(_) = v {
        // Recorded bodies that are not JSON are kept as a short string.
        return match expect {
            Body::Any => Shape::AsDocumented,
            Body::Ignored => Shape::Variant("a text body where none is documented".into()),
            _ => Shape::Unreadable("not JSON".into()),
        };
    }
    if let Err(why) = expect.read(v) {
        return Shape::Unreadable(first_line(&why));
    }
    match variant(expect, v) {
        Some(name) => Shape::Variant(name),
        None => Shape::AsDocumented,
    }
}

/// The named variant of a body the phone reads, or `None` when it is as documented.
fn variant(expect: Body, v: &Value) -> Option<String> {
    match (expect, v) {
        (Body::Any, _) => None,
        (Body::Ignored, _) => Some("a body where none is documented".into()),
        (Body::Keys, Value::Array(items)) => Some(
            if items.first().is_some_and(|i| i.get("keys").is_some()) {
                "keys as an array of device wrappers"
            } else {
                "keys as a bare array"
            }
            .into(),
        ),
        (Body::DeviceList, Value::Array(items)) => {
            let mut notes = Vec::new();
            let missing = missing_in_all(items, Body::Device.documented());
            if !missing.is_empty() {
                notes.push(format!("devices without {}", missing.join(", ")));
            }
            let odd = odd_ids(expect, v);
            if !odd.is_empty() {
                notes.push(format!(
                    "ids not in the documented format ({})",
                    odd.join(", ")
                ));
            }
            (!notes.is_empty()).then(|| notes.join("; "))
        }
        (Body::ChangeRequest | Body::Confirmation | Body::PatchPerson, Value::Object(m))
            if m.contains_key("first_name") && !m.contains_key("status") =>
        {
            Some("the person itself (applied without confirmation)".into())
        }
        (_, Value::Object(m)) => {
            let mut notes = Vec::new();
            let missing: Vec<&str> = expect
                .documented()
                .iter()
                .copied()
                .filter(|f| !m.contains_key(*f))
                .collect();
            if !missing.is_empty() {
                notes.push(format!("without {}", missing.join(", ")));
            }
            if let Some(status) = m.get("status").and_then(Value::as_str)
                && matches!(
                    expect,
                    Body::ChangeRequest | Body::Confirmation | Body::PatchPerson
                )
                && status != status.to_ascii_uppercase()
            {
                notes.push(format!("status in lower case ({status})"));
            }
            let odd = odd_ids(expect, v);
            if !odd.is_empty() {
                notes.push(format!(
                    "ids not in the documented format ({})",
                    odd.join(", ")
                ));
            }
            if let (Body::Keys, Some(Value::Array(keys))) = (expect, m.get("keys")) {
                let missing = missing_in_all(keys, &["key_id", "key_purpose", "used_at"]);
                if !missing.is_empty() {
                    notes.push(format!("keys without {}", missing.join(", ")));
                }
            }
            (!notes.is_empty()).then(|| notes.join("; "))
        }
        _ => Some("not the documented JSON type".into()),
    }
}

/// The documented id formats (API.md, Conventions).
#[derive(Clone, Copy)]
enum IdFormat {
    /// `<32 hex>cper`.
    Person,
    /// `<32 hex>cmno`.
    MobileNumber,
    /// 32 lowercase hex (devices, challenges, change requests).
    Hex32,
    /// A UUID (keys).
    Uuid,
}

impl IdFormat {
    fn holds(self, id: &str) -> bool {
        let hex32 = crate::api::is_hex32;
        match self {
            IdFormat::Person => id.strip_suffix("cper").is_some_and(hex32),
            IdFormat::MobileNumber => id.strip_suffix("cmno").is_some_and(hex32),
            IdFormat::Hex32 => hex32(id),
            IdFormat::Uuid => uuid::Uuid::parse_str(id).is_ok() && id.len() == 36,
        }
    }
}

/// The id fields of an answer and their documented formats.
fn id_fields(expect: Body) -> &'static [(&'static str, IdFormat)] {
    use IdFormat::*;
    match expect {
        Body::Person => &[("id", Person)],
        Body::MobileNumber => &[("id", MobileNumber)],
        Body::CreateDevice => &[("id", Hex32), ("challenge/id", Hex32)],
        Body::Device | Body::DeviceList => &[("id", Hex32), ("person_id", Person)],
        Body::SignatureChallenge
        | Body::SmsChallenge
        | Body::DeviceChallenge
        | Body::ChangeRequest
        | Body::PatchPerson
        | Body::Confirmation => &[("id", Hex32)],
        Body::AddKey => &[("id", Uuid)],
        Body::Keys => &[
            ("device_id", Hex32),
            ("person_id", Person),
            ("keys/key_id", Uuid),
        ],
        Body::Key => &[("key_id", Uuid)],
        Body::Ignored | Body::Any | Body::Token => &[],
    }
}

/// The id fields of `v` (an object, or an array of them) whose value is not in the
/// documented format, each with a short sample.
fn odd_ids(expect: Body, v: &Value) -> Vec<String> {
    let mut odd = Vec::new();
    let objects: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for (field, format) in id_fields(expect) {
        let mut values: Vec<&str> = Vec::new();
        for o in &objects {
            match field.split_once('/') {
                Some((outer, inner)) => match o.get(outer) {
                    Some(Value::Array(items)) => {
                        values.extend(items.iter().filter_map(|i| i.get(inner)?.as_str()));
                    }
                    Some(obj) => values.extend(obj.get(inner).and_then(Value::as_str)),
                    None => {}
                },
                None => values.extend(o.get(*field).and_then(Value::as_str)),
            }
        }
        if let Some(bad) = values.iter().find(|id| !format.holds(id)) {
            let head: String = bad.chars().take(12).collect();
            odd.push(format!(
                "{field} {head}…, {} characters",
                bad.chars().count()
            ));
        }
    }
    odd
}

/// The fields missing from at least one of `items`.
fn missing_in_all(items: &[Value], fields: &[&'static str]) -> Vec<&'static str> {
    fields
        .iter()
        .copied()
        .filter(|f| items.iter().any(|i| i.get(*f).is_none()))
        .collect()
}

fn first_line(s: &str) -> String {
    s.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_documented_challenge_is_as_documented_and_one_without_key_purpose_is_named() {
        let mut ch = json!({"id": "0123456789abcdef0123456789abcdef", "type": "device", "string_to_sign": "s",
            "key_purpose": "restricted", "created_at": "2026-11-28T15:56:19Z",
            "expires_at": "2026-11-28T16:01:19Z"});
        assert_eq!(
            classify_body(Body::DeviceChallenge, Some(&ch)),
            Shape::AsDocumented
        );
        ch.as_object_mut().unwrap().remove("key_purpose");
        match classify_body(Body::DeviceChallenge, Some(&ch)) {
            Shape::Variant(v) => assert_eq!(v, "without key_purpose"),
            // Until the phone reads challenges without key_purpose, this is the honest answer.
            Shape::Unreadable(_) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodies_the_phone_cannot_read_are_unreadable_and_empty_answers_as_documented() {
        assert!(matches!(
            classify_body(Body::Person, Some(&json!({"name": "x"}))),
            Shape::Unreadable(_)
        ));
        assert!(matches!(
            classify_body(Body::Person, Some(&json!("<html>oops</html>"))),
            Shape::Unreadable(_)
        ));
        assert_eq!(classify_body(Body::Ignored, None), Shape::AsDocumented);
        assert!(matches!(
            classify_body(Body::Ignored, Some(&json!({"ok": true}))),
            Shape::Variant(_)
        ));
    }

    #[test]
    fn another_status_and_opaque_ids_are_named_variants() {
        let person = json!({"id": "0123456789abcdef0123456789abcdefcper",
            "first_name": "A", "last_name": "B"});
        assert_eq!(
            classify(Body::Person, 201, 201, Some(&person)),
            Shape::AsDocumented
        );
        assert_eq!(
            classify(Body::Person, 200, 201, Some(&person)),
            Shape::Variant("200 instead of 201".into())
        );
        let person = json!({"id": "personId-0123456789ab", "first_name": "A", "last_name": "B"});
        let Shape::Variant(v) = classify(Body::Person, 201, 201, Some(&person)) else {
            panic!("not a variant")
        };
        assert_eq!(
            v,
            "ids not in the documented format (id personId-012…, 21 characters)"
        );
    }
}
