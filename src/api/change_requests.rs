//! Change requests: sensitive writes held until the person authorizes and confirms them.

use super::{
    ChangeRequestId, ChangeRequestStatus, DeliveryMethod, DeviceId, Otp, PersonId, SignatureHex,
    Timestamp,
};
use serde::{Deserialize, Serialize};

/// A change request as the bank returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRequest {
    /// Its id.
    pub id: ChangeRequestId,
    /// Where it stands.
    pub status: ChangeRequestStatus,
    /// When it last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
    /// Where to authorize it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What a device must sign (device signing only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string_to_sign: Option<String>,
    /// HTTP status of the held call, once carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
    /// Body of the held call, once carried out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<serde_json::Value>,
}

/// What `PATCH /v1/persons/{id}` answered: a change request to authorize and confirm (as
/// documented), or the person itself because the server applied the change at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PersonUpdate {
    /// The change is held until confirmed.
    Held(ChangeRequest),
    /// The server applied the change without confirmation and answered the person.
    Applied(super::Person),
}

/// `POST /v1/change_requests/{id}/authorize` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeChangeRequest {
    /// How the person will confirm.
    pub delivery_method: DeliveryMethod,
    /// The person (`mobile_number` and `static`).
    #[serde(
        default,
        deserialize_with = "super::strict::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub person_id: Option<PersonId>,
    /// The signing device (`device_signing`).
    #[serde(
        default,
        deserialize_with = "super::strict::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<DeviceId>,
    /// Opaque device data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<String>,
}

/// `POST /v1/change_requests/{id}/confirm` body: a TAN or a device signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmChangeRequest {
    /// The person (TAN confirmation).
    #[serde(
        default,
        deserialize_with = "super::strict::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub person_id: Option<PersonId>,
    /// The TAN (SMS or static).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tan: Option<Otp>,
    /// The device (signature confirmation).
    #[serde(
        default,
        deserialize_with = "super::strict::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<DeviceId>,
    /// DER signature of `string_to_sign`, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureHex>,
    /// Opaque device data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<String>,
}
