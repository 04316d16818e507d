//! Device-signing and SMS challenges.

use super::{
    ChallengeId, ChallengeKind, DeviceId, KeyPurpose, Language, Otp, PersonId, SignatureHex,
    Timestamp,
};
use serde::{Deserialize, Serialize};

/// `POST /v1/mfa/challenges/devices` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceChallenge {
    /// The device that must sign.
    #[serde(deserialize_with = "super::strict::one")]
    pub device_id: DeviceId,
    /// Which key must sign; see API.md for the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_purpose: Option<KeyPurpose>,
    /// Opaque device data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<String>,
}

/// A device-signing challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceChallenge {
    /// The challenge id.
    pub id: ChallengeId,
    /// `device`, when the server says.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChallengeKind>,
    /// The exact text to sign (its UTF-8 bytes).
    pub string_to_sign: String,
    /// Which key must sign; when the server does not say, the purpose the phone asked for,
    /// else its only key (see `phone::logic::challenge_purpose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_purpose: Option<KeyPurpose>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it stops being answerable; without it, the phone leaves expiry to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// `PUT /v1/mfa/challenges/devices/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerDeviceChallenge {
    /// DER signature of `string_to_sign`, lowercase hex.
    pub signature: SignatureHex,
    /// Opaque device data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_data: Option<String>,
}

/// `POST /v1/mfa/challenges/sms` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSmsChallenge {
    /// Whose verified number receives the OTP.
    #[serde(deserialize_with = "super::strict::one")]
    pub person_id: PersonId,
    /// Language of the SMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
}

/// An SMS challenge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmsChallenge {
    /// The challenge id.
    pub id: ChallengeId,
    /// `sms`, when the server says.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ChallengeKind>,
    /// When it was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Timestamp>,
    /// When it stops being answerable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// `PUT /v1/mfa/challenges/sms/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSmsChallenge {
    /// The OTP received by SMS.
    pub code: Otp,
}
