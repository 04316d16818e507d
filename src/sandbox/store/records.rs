//! The entities as stored: plain serde records, converted to and from the core's entities.
//! Keys are stored as their uncompressed points (hex) and parsed again when loaded.

use super::StoreError;
use crate::api::{
    ChallengeId, ChangeRequestId, ChangeRequestStatus, DeviceId, KeyId, KeyPurpose, MobileNumberId,
    Otp, Person, PersonId, PhoneNumber, Timestamp,
};
use crate::sandbox::core::attempts::Attempts;
use crate::sandbox::core::challenges::{ChallengeEntry, ChallengeWhat};
use crate::sandbox::core::change_requests::{ChangeRequestEntry, Confirmation, HeldChange, Proof};
use crate::sandbox::core::devices::{DeviceEntry, KeyEntry};
use crate::sandbox::core::persons::{MobileEntry, PersonEntry};
use crate::sandbox::ratelimit::Window;
use crate::sandbox::verify::VerifyingKey;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct MobileRecord {
    id: MobileNumberId,
    number: PhoneNumber,
    verified: bool,
    otp: Option<(Otp, Attempts)>,
}

/// A person as stored.
#[derive(Serialize, Deserialize)]
pub struct PersonRecord {
    person: Person,
    mobile: Option<MobileRecord>,
    devices: Vec<DeviceId>,
    bound: usize,
}

impl From<&PersonEntry> for PersonRecord {
    fn from(p: &PersonEntry) -> Self {
        PersonRecord {
            person: p.person.clone(),
            mobile: p.mobile.as_ref().map(|m| MobileRecord {
                id: m.id.clone(),
                number: m.number.clone(),
                verified: m.verified,
                otp: m.otp.clone(),
            }),
            devices: p.devices.clone(),
            bound: p.bound,
        }
    }
}

impl From<PersonRecord> for PersonEntry {
    fn from(r: PersonRecord) -> Self {
        PersonEntry {
            person: r.person,
            mobile: r.mobile.map(|m| MobileEntry {
                id: m.id,
                number: m.number,
                verified: m.verified,
                otp: m.otp,
            }),
            devices: r.devices,
            bound: r.bound,
            sms_sent: Window::default(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    id: KeyId,
    purpose: KeyPurpose,
    point: String,
    created_at: Timestamp,
    used_at: Option<Timestamp>,
}

/// A device as stored.
#[derive(Serialize, Deserialize)]
pub struct DeviceRecord {
    id: DeviceId,
    person_id: PersonId,
    name: String,
    created_at: Timestamp,
    deleted_at: Option<Timestamp>,
    verified: bool,
    keys: Vec<KeyRecord>,
    device_data: Option<String>,
}

impl From<&DeviceEntry> for DeviceRecord {
    fn from(d: &DeviceEntry) -> Self {
        DeviceRecord {
            id: d.id.clone(),
            person_id: d.person_id.clone(),
            name: d.name.clone(),
            created_at: d.created_at,
            deleted_at: d.deleted_at,
            verified: d.verified,
            keys: d
                .keys
                .iter()
                .map(|k| KeyRecord {
                    id: k.id.clone(),
                    purpose: k.purpose,
                    point: hex::encode(k.key.point()),
                    created_at: k.created_at,
                    used_at: k.used_at,
                })
                .collect(),
            device_data: d.device_data.clone(),
        }
    }
}

impl TryFrom<DeviceRecord> for DeviceEntry {
    type Error = StoreError;
    fn try_from(r: DeviceRecord) -> Result<Self, StoreError> {
        let keys = r
            .keys
            .into_iter()
            .map(|k| {
                // Lowercase hex only, as the sandbox writes it (no `0x`, no uppercase).
                let point = crate::api::PublicKeyHex::parse(&k.point)
                    .map_err(|e| StoreError::Corrupt(format!("device {}: key: {e}", r.id)))?
                    .to_bytes();
                let key = VerifyingKey::from_uncompressed(&point)
                    .map_err(|e| StoreError::Corrupt(format!("device {}: key: {e}", r.id)))?;
                Ok(KeyEntry {
                    id: k.id,
                    purpose: k.purpose,
                    key,
                    created_at: k.created_at,
                    used_at: k.used_at,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(DeviceEntry {
            id: r.id,
            person_id: r.person_id,
            name: r.name,
            created_at: r.created_at,
            deleted_at: r.deleted_at,
            verified: r.verified,
            keys,
            device_data: r.device_data,
        })
    }
}

#[derive(Serialize, Deserialize)]
enum WhatRecord {
    Binding {
        device_id: DeviceId,
        otp: Otp,
        sent_to: PhoneNumber,
    },
    Device {
        device_id: DeviceId,
        purpose: KeyPurpose,
        string_to_sign: String,
    },
    Sms {
        person_id: PersonId,
        otp: Otp,
        sent_to: PhoneNumber,
    },
}

/// A challenge as stored.
#[derive(Serialize, Deserialize)]
pub struct ChallengeRecord {
    id: ChallengeId,
    what: WhatRecord,
    attempts: Attempts,
}

impl ChallengeRecord {
    /// The record of challenge `id`.
    pub fn of(id: &ChallengeId, c: &ChallengeEntry) -> Self {
        let what = match &c.what {
            ChallengeWhat::Binding {
                device_id,
                otp,
                sent_to,
            } => WhatRecord::Binding {
                device_id: device_id.clone(),
                otp: otp.clone(),
                sent_to: sent_to.clone(),
            },
            ChallengeWhat::Device {
                device_id,
                purpose,
                string_to_sign,
            } => WhatRecord::Device {
                device_id: device_id.clone(),
                purpose: *purpose,
                string_to_sign: string_to_sign.clone(),
            },
            ChallengeWhat::Sms {
                person_id,
                otp,
                sent_to,
            } => WhatRecord::Sms {
                person_id: person_id.clone(),
                otp: otp.clone(),
                sent_to: sent_to.clone(),
            },
        };
        ChallengeRecord {
            id: id.clone(),
            what,
            attempts: c.attempts.clone(),
        }
    }

    /// The challenge's id and entry.
    pub fn into_entry(self) -> (ChallengeId, ChallengeEntry) {
        let what = match self.what {
            WhatRecord::Binding {
                device_id,
                otp,
                sent_to,
            } => ChallengeWhat::Binding {
                device_id,
                otp,
                sent_to,
            },
            WhatRecord::Device {
                device_id,
                purpose,
                string_to_sign,
            } => ChallengeWhat::Device {
                device_id,
                purpose,
                string_to_sign,
            },
            WhatRecord::Sms {
                person_id,
                otp,
                sent_to,
            } => ChallengeWhat::Sms {
                person_id,
                otp,
                sent_to,
            },
        };
        (
            self.id,
            ChallengeEntry {
                what,
                attempts: self.attempts,
            },
        )
    }
}

#[derive(Serialize, Deserialize)]
enum HeldRecord {
    UpdatePerson(crate::api::UpdatePerson),
    DeleteMobileNumber(MobileNumberId),
}

#[derive(Serialize, Deserialize)]
enum ProofRecord {
    Tan {
        person_id: PersonId,
        tan: Otp,
        sent_to: Option<PhoneNumber>,
    },
    Signature {
        device_id: DeviceId,
        purpose: KeyPurpose,
        string_to_sign: String,
    },
}

/// A change request as stored.
#[derive(Serialize, Deserialize)]
pub struct ChangeRequestRecord {
    id: ChangeRequestId,
    person_id: PersonId,
    change: HeldRecord,
    status: ChangeRequestStatus,
    updated_at: Timestamp,
    confirmation: Option<(ProofRecord, Attempts)>,
    response: Option<(u16, serde_json::Value)>,
}

impl From<&ChangeRequestEntry> for ChangeRequestRecord {
    fn from(c: &ChangeRequestEntry) -> Self {
        ChangeRequestRecord {
            id: c.id.clone(),
            person_id: c.person_id.clone(),
            change: match &c.change {
                HeldChange::UpdatePerson(u) => HeldRecord::UpdatePerson(u.clone()),
                HeldChange::DeleteMobileNumber(id) => HeldRecord::DeleteMobileNumber(id.clone()),
            },
            status: c.status,
            updated_at: c.updated_at,
            confirmation: c.confirmation.as_ref().map(|conf| {
                let proof = match &conf.proof {
                    Proof::Tan {
                        person_id,
                        tan,
                        sent_to,
                    } => ProofRecord::Tan {
                        person_id: person_id.clone(),
                        tan: tan.clone(),
                        sent_to: sent_to.clone(),
                    },
                    Proof::Signature {
                        device_id,
                        purpose,
                        string_to_sign,
                    } => ProofRecord::Signature {
                        device_id: device_id.clone(),
                        purpose: *purpose,
                        string_to_sign: string_to_sign.clone(),
                    },
                };
                (proof, conf.attempts.clone())
            }),
            response: c.response.clone(),
        }
    }
}

impl From<ChangeRequestRecord> for ChangeRequestEntry {
    fn from(r: ChangeRequestRecord) -> Self {
        ChangeRequestEntry {
            id: r.id,
            person_id: r.person_id,
            change: match r.change {
                HeldRecord::UpdatePerson(u) => HeldChange::UpdatePerson(u),
                HeldRecord::DeleteMobileNumber(id) => HeldChange::DeleteMobileNumber(id),
            },
            status: r.status,
            updated_at: r.updated_at,
            confirmation: r.confirmation.map(|(proof, attempts)| Confirmation {
                proof: match proof {
                    ProofRecord::Tan {
                        person_id,
                        tan,
                        sent_to,
                    } => Proof::Tan {
                        person_id,
                        tan,
                        sent_to,
                    },
                    ProofRecord::Signature {
                        device_id,
                        purpose,
                        string_to_sign,
                    } => Proof::Signature {
                        device_id,
                        purpose,
                        string_to_sign,
                    },
                },
                attempts,
            }),
            response: r.response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored device whose one key's point is `point`.
    fn device_with_point(point: &str) -> DeviceRecord {
        serde_json::from_value(serde_json::json!({
            "id": "0123456789abcdef0123456789abcdef",
            "person_id": "0123456789abcdef0123456789abcdefcper",
            "name": "phone",
            "created_at": "2026-01-01T00:00:00Z",
            "deleted_at": null,
            "verified": true,
            "keys": [{
                "id": "7a1f2c3d-4b5e-4f60-8a7b-9c0d1e2f3a4b",
                "purpose": "unrestricted",
                "point": point,
                "created_at": "2026-01-01T00:00:00Z",
                "used_at": null
            }],
            "device_data": null
        }))
        .unwrap()
    }

    #[test]
    fn a_stored_key_point_is_read_only_as_the_sandbox_writes_it() {
        let key = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
        let point = hex::encode(key.public_key().to_sec1_bytes());
        let entry = DeviceEntry::try_from(device_with_point(&point)).unwrap();
        assert_eq!(hex::encode(entry.keys[0].key.point()), point);
        // const-hex's decoder takes these; the store must not.
        for written_otherwise in [
            format!("0x{point}"),
            point.to_uppercase(),
            point[..128].to_owned(),
        ] {
            match DeviceEntry::try_from(device_with_point(&written_otherwise)) {
                Err(StoreError::Corrupt(why)) => assert!(why.contains("key"), "{why}"),
                Err(other) => panic!("{written_otherwise}: {other}"),
                Ok(_) => panic!("{written_otherwise}: accepted"),
            }
        }
    }
}
