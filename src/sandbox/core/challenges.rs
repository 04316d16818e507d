//! A challenge of any kind, as the bank holds it: what it asks for and its attempts.

use super::attempts::Attempts;
use super::{Reason, Refusal};
use crate::api::{ChallengeId, DeviceId, KeyPurpose, Otp, PersonId, PhoneNumber};

/// What a challenge asks for.
#[derive(Clone)]
pub enum ChallengeWhat {
    /// Binding: the new device signs the OTP sent by SMS to `sent_to`, which must still be
    /// the person's verified number when it is answered.
    Binding {
        /// The device being bound.
        device_id: DeviceId,
        /// The OTP it signs.
        otp: Otp,
        /// Where the OTP went.
        sent_to: PhoneNumber,
    },
    /// Device signing: the device signs `string_to_sign` with the key of `purpose`.
    Device {
        /// The device that answers.
        device_id: DeviceId,
        /// The key that signs.
        purpose: KeyPurpose,
        /// What it signs.
        string_to_sign: String,
    },
    /// SMS: the person types the OTP sent to `sent_to`, which must still be their verified
    /// number when it is answered.
    Sms {
        /// The person who answers.
        person_id: PersonId,
        /// The OTP they type.
        otp: Otp,
        /// Where the OTP went.
        sent_to: PhoneNumber,
    },
}

/// A challenge of any kind.
#[derive(Clone)]
pub struct ChallengeEntry {
    /// What it asks for.
    pub what: ChallengeWhat,
    /// Its attempts and status.
    pub attempts: Attempts,
}

/// The refusal for a challenge id of another kind than the route's (`kind`: "device", ...).
pub fn wrong_kind(id: &ChallengeId, kind: &str) -> Refusal {
    Refusal::new(
        Reason::NotFound,
        format!("there is no {kind} challenge {id}; it is another kind of challenge"),
    )
}

impl ChallengeEntry {
    /// The device a binding challenge binds; any other kind is `wrong_kind`.
    pub fn binding_device(&self, id: &ChallengeId) -> Result<&DeviceId, Refusal> {
        match &self.what {
            ChallengeWhat::Binding { device_id, .. } => Ok(device_id),
            _ => Err(wrong_kind(id, "signature")),
        }
    }

    /// The device a device challenge asks; any other kind is `wrong_kind`.
    pub fn signing_device(&self, id: &ChallengeId) -> Result<&DeviceId, Refusal> {
        match &self.what {
            ChallengeWhat::Device { device_id, .. } => Ok(device_id),
            _ => Err(wrong_kind(id, "device")),
        }
    }

    /// The person an SMS challenge asks; any other kind is `wrong_kind`.
    pub fn sms_person(&self, id: &ChallengeId) -> Result<&PersonId, Refusal> {
        match &self.what {
            ChallengeWhat::Sms { person_id, .. } => Ok(person_id),
            _ => Err(wrong_kind(id, "SMS")),
        }
    }
}
