//! Persons and their mobile numbers, the prerequisites of device binding.

use super::{MobileNumberId, Otp, PersonId, PhoneNumber, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/persons` body. Fields vphone does not model are kept as they are (the sandbox
/// accepts only the bank's documented person fields among them; see its README section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatePerson {
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Optional e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Optional salutation (`MR`, `MS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    /// Optional ISO date of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Other person fields (address, nationality, ...), stored and returned unchanged.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `PATCH /v1/persons/{id}` body: the fields to change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePerson {
    /// New given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// New family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// New e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl UpdatePerson {
    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.first_name.is_none() && self.last_name.is_none() && self.email.is_none()
    }
}

/// A person as the bank returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    /// The person's id.
    pub id: PersonId,
    /// Given name (empty when the server sent none).
    #[serde(default)]
    pub first_name: String,
    /// Family name (empty when the server sent none).
    #[serde(default)]
    pub last_name: String,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Salutation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salutation: Option<String>,
    /// Date of birth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// When the person was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// Other person fields, as stored.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `POST .../mobile_number` and `.../mobile_number/authorize` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNumberRequest {
    /// The number in E.164 form.
    pub number: PhoneNumber,
}

/// `POST .../mobile_number/confirm` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmMobileNumber {
    /// The number being confirmed.
    pub number: PhoneNumber,
    /// The OTP the number received.
    pub token: Otp,
}

/// A person's mobile number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileNumber {
    /// The record's id.
    pub id: MobileNumberId,
    /// The number, when the server sent one in E.164 form (others are ignored: the phone
    /// knows the number it asked for).
    #[serde(
        default,
        deserialize_with = "e164_or_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub number: Option<PhoneNumber>,
    /// Whether the number was confirmed with an OTP; `false` when the server does not say.
    #[serde(default)]
    pub verified: bool,
}

fn e164_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PhoneNumber>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    Ok(text.and_then(|t| PhoneNumber::parse(&t).ok()))
}
