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
    /// Always `device`.
    #[serde(rename = "type")]
    pub kind: ChallengeKind,
    /// The exact text to sign (its UTF-8 bytes).
    pub string_to_sign: String,
    /// Which key must sign.
    pub key_purpose: KeyPurpose,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being answerable.
    pub expires_at: Timestamp,
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
    /// Always `sms`.
    #[serde(rename = "type")]
    pub kind: ChallengeKind,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops being answerable.
    pub expires_at: Timestamp,
}

/// `PUT /v1/mfa/challenges/sms/{id}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerSmsChallenge {
    /// The OTP received by SMS.
    pub code: Otp,
}
