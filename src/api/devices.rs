//! Device binding and device keys.

use super::{
    BindingChallengeType, ChallengeId, ChallengeKind, DeviceId, KeyId, KeyPurpose, KeyType,
    Language, PersonId, PublicKeyHex, SignatureHex, Timestamp,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Options of the SMS sent for binding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsChallengeOptions {
    /// Android SMS retriever hash, appended to the SMS text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_signature: Option<String>,
}

/// `POST /v1/mfa/devices` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRequest {
    /// Whose device this is.
    #[serde(deserialize_with = "super::strict::one")]
    pub person_id: PersonId,
    /// Only `ecdsa-p256` is accepted by the bank.
    pub key_type: KeyType,
    /// The public key to bind.
    pub key: PublicKeyHex,
    /// The key's purpose; `unrestricted` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_purpose: Option<KeyPurpose>,
    /// A name for the device.
    pub name: String,
    /// How possession is proven; `sms` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_type: Option<BindingChallengeType>,
    /// Language of the SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    /// SMS options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_challenge: Option<SmsChallengeOptions>,
    /// Opaque device data, stored and never interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<String>,
}

/// The binding challenge (`type: "signature"`). Only `id` is needed to answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureChallenge {
    /// The challenge id.
    pub id: ChallengeId,
    /// `signature`, when the server says.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChallengeKind>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it stops being answerable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// `POST /v1/mfa/devices` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateDeviceResponse {
    /// The new, not yet verified device.
    pub id: DeviceId,
    /// The challenge to sign the SMS OTP for.
    pub challenge: SignatureChallenge,
}

/// `PUT /v1/mfa/challenges/signatures/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSignatureChallenge {
    /// DER signature of the OTP's ASCII bytes, lowercase hex.
    pub signature: SignatureHex,
    /// Opaque device data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<String>,
}

/// A bound device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// The device id.
    pub id: DeviceId,
    /// Its name (empty when the server sent none).
    #[serde(default)]
    pub name: String,
    /// Its owner, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<PersonId>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it was deleted, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
}

/// `GET /v1/mfa/devices` query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceListQuery {
    /// Only this person's devices.
    #[serde(
        rename = "filter[person_id]",
        default,
        deserialize_with = "super::strict::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub person_id: Option<PersonId>,
    /// Also deleted devices.
    #[serde(
        rename = "filter[include_deleted]",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub include_deleted: Option<bool>,
    /// Page size (1-100, default 10).
    #[serde(
        rename = "page[size]",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub page_size: Option<u32>,
    /// Page number, from 1.
    #[serde(
        rename = "page[number]",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub page_number: Option<u32>,
}

/// Proof by an existing key that the device owner adds a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSignature {
    /// Which existing key signed.
    pub signature_key_purpose: KeyPurpose,
    /// DER signature of the new key's hex text, lowercase hex.
    pub signature: SignatureHex,
}

/// `POST /v1/mfa/devices/{id}/keys` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKeyRequest {
    /// The new public key.
    pub key: PublicKeyHex,
    /// Only `ecdsa-p256`.
    pub key_type: KeyType,
    /// Must differ from every key the device has.
    pub key_purpose: KeyPurpose,
    /// Signature by an existing key.
    pub device_signature: DeviceSignature,
}

/// `POST /v1/mfa/devices/{id}/keys` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddKeyResponse {
    /// The new key's id (some servers call it `key_id`).
    #[serde(alias = "key_id")]
    pub id: KeyId,
}

/// One key of a device, without key material.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySummary {
    /// The key id.
    pub key_id: KeyId,
    /// Its purpose.
    pub key_purpose: KeyPurpose,
    /// When it last signed a challenge: `Some(None)` when the server said never (`null`),
    /// `None` when it did not say (the field is left out, and stays out when written).
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    pub used_at: Option<Option<Timestamp>>,
}

/// Reads a field that may be `null` as `Some(None)`, so that with `default` a field left out
/// (`None`) is told from one sent as `null`.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `GET /v1/mfa/devices/{id}/keys` answer, as documented
/// (`{device_id, person_id, name, created_at, keys}`). Servers also answer a bare array of
/// keys or an array of device wrappers; read any of them with [`KeysAnswer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceKeys {
    /// The device, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// Its owner, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<PersonId>,
    /// Its name, when the server says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
    /// Its keys. Read as an array, a single object, or a map keyed by key id.
    #[serde(deserialize_with = "keys_any_shape")]
    pub keys: Vec<KeySummary>,
}

/// Any shape a server lists a device's keys in: the documented object, a bare array of
/// keys, or an array of device wrappers `[{person_id, device_id, name, keys: [...]}]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KeysAnswer {
    /// `{device_id, ..., keys: [...]}`.
    Object(DeviceKeys),
    /// `[{person_id, device_id, name, keys: [...]}]`.
    Wrappers(Vec<DeviceKeys>),
    /// `[{key_id, key_purpose}]`.
    Keys(Vec<KeySummary>),
}

impl KeysAnswer {
    /// The keys of `device`: from wrappers, those of the wrapper naming it (or of every
    /// wrapper when none names a device).
    pub fn into_device_keys(self, device: &DeviceId) -> DeviceKeys {
        match self {
            KeysAnswer::Object(keys) => keys,
            KeysAnswer::Keys(keys) => DeviceKeys::of(device, keys),
            KeysAnswer::Wrappers(wrappers) => {
                let named = wrappers
                    .iter()
                    .position(|w| w.device_id.as_ref() == Some(device));
                match named {
                    Some(i) => wrappers.into_iter().nth(i).unwrap_or_else(|| {
                        // `i` was found in this very vector.
                        DeviceKeys::of(device, Vec::new())
                    }),
                    None => {
                        let keys = wrappers.into_iter().flat_map(|w| w.keys).collect();
                        DeviceKeys::of(device, keys)
                    }
                }
            }
        }
    }
}

impl DeviceKeys {
    /// Keys of `device` with nothing else known about it.
    pub fn of(device: &DeviceId, keys: Vec<KeySummary>) -> DeviceKeys {
        DeviceKeys {
            device_id: Some(device.clone()),
            person_id: None,
            name: None,
            created_at: None,
            deleted_at: None,
            keys,
        }
    }
}

/// The key detail, `GET /v1/mfa/devices/{id}/keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDetail {
    /// The key id.
    pub key_id: KeyId,
    /// Its purpose.
    pub key_purpose: KeyPurpose,
    /// When it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it last signed a challenge.
    #[serde(default)]
    pub used_at: Option<Timestamp>,
}

#[derive(Deserialize)]
struct KeyBody {
    key_purpose: KeyPurpose,
    #[serde(default, deserialize_with = "given")]
    used_at: Option<Option<Timestamp>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum KeysShape {
    List(Vec<KeySummary>),
    One(KeySummary),
    Map(BTreeMap<KeyId, KeyBody>),
}

fn keys_any_shape<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeySummary>, D::Error> {
    Ok(match KeysShape::deserialize(d)? {
        KeysShape::List(list) => list,
        KeysShape::One(one) => vec![one],
        KeysShape::Map(map) => map
            .into_iter()
            .map(|(key_id, body)| KeySummary {
                key_id,
                key_purpose: body.key_purpose,
                used_at: body.used_at,
            })
            .collect(),
    })
}
