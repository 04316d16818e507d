//! The phone's parts on their own, for rigs whose backend sits between the phone and the
//! bank: make a key without telling any bank, show its public key, sign a message (after the
//! biometric prompt for a restricted key), read a code from the inbox, and record what the
//! backend did at the bank (`adopt`) so the whole flows work on that device afterwards.
//!
//! The key operations need no server, so they exist on [`SavedPhone`] (a phone read from its
//! file) as well as on [`Phone`]; both share the functions below.

use super::inbox::Marker;
use super::{Home, Phone, PhoneError, PhoneName, Profile, ProfileStore, SavedPhone};
use crate::api::{DeviceId, KeyId, KeyPurpose, Otp, PersonId, PhoneNumber};
use std::sync::Arc;
use std::time::Duration;
use vphone_keystore::{
    KeyLabel, KeystoreError, Passphrase, PublicKeyFormat, SignatureFormat, UserPresence, Vault,
    encode_signature,
};

/// A code read from the phone's inbox, with the marker to pass as `since` next time.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceivedOtp {
    /// The six digits (serialized in clear: printing it is what `otp` is for).
    #[serde(serialize_with = "expose_otp")]
    pub code: Otp,
    /// The inbox's position after this code: a later `otp --since` this never returns it.
    #[serde(serialize_with = "marker_number")]
    pub marker: Marker,
}

fn expose_otp<S: serde::Serializer>(otp: &Otp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(otp.expose())
}

fn marker_number<S: serde::Serializer>(m: &Marker, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(m.0)
}

/// What `adopt` records: the device a backend bound for this phone at the bank.
#[derive(Debug, Clone, Default)]
pub struct Adoption {
    /// The bank's id of the device.
    pub device_id: Option<DeviceId>,
    /// The bank's ids of the phone's keys, by purpose.
    pub key_ids: Vec<(KeyPurpose, KeyId)>,
    /// The person the device belongs to, when the rig knows it (needed by `devices`).
    pub person_id: Option<PersonId>,
}

/// The label of the phone's key of `purpose`: purpose, bank key id once known, fingerprint.
pub(super) fn label(profile: &Profile, vault: &Vault, purpose: KeyPurpose) -> Option<KeyLabel> {
    let key = vault.key(purpose)?;
    Some(key.label(profile.key_id(purpose).map(KeyId::as_str)))
}

fn labels(profile: &Profile, vault: &Vault) -> Vec<KeyLabel> {
    KeyPurpose::ALL
        .into_iter()
        .filter_map(|p| label(profile, vault, p))
        .collect()
}

fn new_key(
    profile: &Profile,
    vault: &mut Vault,
    purpose: KeyPurpose,
) -> Result<KeyLabel, PhoneError> {
    if vault.key(purpose).is_some() {
        return Err(PhoneError::KeyExists {
            name: profile.name.to_string(),
            purpose,
        });
    }
    Ok(vault.generate_key(purpose)?.label(None))
}

fn public_key(
    vault: &Vault,
    purpose: KeyPurpose,
    format: PublicKeyFormat,
) -> Result<String, PhoneError> {
    let key = vault.key(purpose).ok_or(KeystoreError::NoKey(purpose))?;
    Ok(key.public_key_as(format)?)
}

/// Signs `message` with the key of `purpose` (DER hex), asking `presence` first for a
/// restricted key, with the key named as everywhere else. The one signing path of the phone:
/// the flows and `sign-message` both come here.
pub(super) fn sign_hex(
    profile: &Profile,
    vault: &Vault,
    presence: &dyn UserPresence,
    purpose: KeyPurpose,
    message: &[u8],
    reason: &str,
) -> Result<String, PhoneError> {
    // A key whose addition the bank never confirmed would only be refused there.
    if profile.pending_key == Some(purpose) {
        return Err(PhoneError::KeyUnconfirmed {
            name: profile.name.to_string(),
            purpose,
        });
    }
    let bank_id = profile.key_id(purpose).map(KeyId::as_str);
    vault
        .sign_as(purpose, message, presence, reason, bank_id)
        .map_err(|e| match PhoneError::from(e) {
            PhoneError::Presence { source, .. } => PhoneError::Presence { purpose, source },
            other => other,
        })
}

/// What the prompt shows for a message: its length and a printable excerpt, since a real
/// phone shows the user what they approve.
fn message_reason(message: &[u8]) -> String {
    const SHOWN: usize = 60;
    let text = String::from_utf8_lossy(message);
    let mut excerpt: String = text
        .chars()
        .take(SHOWN)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > SHOWN {
        excerpt.push('…');
    }
    format!("signing a {}-byte message \"{excerpt}\"", message.len())
}

fn sign_message(
    profile: &Profile,
    vault: &Vault,
    presence: &dyn UserPresence,
    purpose: KeyPurpose,
    message: &[u8],
    format: SignatureFormat,
) -> Result<String, PhoneError> {
    let der_hex = sign_hex(
        profile,
        vault,
        presence,
        purpose,
        message,
        &message_reason(message),
    )?;
    Ok(encode_signature(&der_hex, format)?)
}

fn adopt(profile: &mut Profile, vault: &Vault, adoption: Adoption) -> Result<(), PhoneError> {
    for (purpose, _) in &adoption.key_ids {
        if vault.key(*purpose).is_none() {
            return Err(KeystoreError::NoKey(*purpose).into());
        }
    }
    if let Some(device) = adoption.device_id {
        if profile.device_id.as_ref() != Some(&device) {
            // Key ids recorded for another device are not this one's.
            for purpose in KeyPurpose::ALL {
                profile.set_key_id(purpose, None);
            }
        }
        profile.device_id = Some(device);
        profile.bound = true;
    }
    for (purpose, id) in adoption.key_ids {
        profile.set_key_id(purpose, Some(id));
    }
    if let Some(person) = adoption.person_id {
        profile.person_id = Some(person);
    }
    Ok(())
}

impl SavedPhone {
    /// Creates saved phone `name` under `home` holding no key yet, without any server: a rig
    /// whose backend talks to the bank gives it keys with [`SavedPhone::new_key`]. `number`
    /// is where its codes arrive; `api_base` the server its other commands talk to.
    pub fn create(
        home: &Home,
        name: PhoneName,
        passphrase: Option<Arc<Passphrase>>,
        number: Option<PhoneNumber>,
        api_base: Option<String>,
    ) -> Result<SavedPhone, PhoneError> {
        let store = ProfileStore::new_phone(home, &name, passphrase)?;
        let mut profile = Profile::new(name);
        profile.number = number;
        profile.api_base = api_base;
        let mut saved = SavedPhone {
            profile,
            vault: Vault::new(),
            store,
        };
        saved.save()?;
        Ok(saved)
    }

    /// Records `number` as where this phone's codes arrive (not verified by any bank here).
    pub fn set_number(&mut self, number: PhoneNumber) -> Result<(), PhoneError> {
        self.profile.number = Some(number);
        self.save()
    }

    /// Makes a key of `purpose` and saves it, without telling any bank.
    pub fn new_key(&mut self, purpose: KeyPurpose) -> Result<KeyLabel, PhoneError> {
        let label = new_key(&self.profile, &mut self.vault, purpose)?;
        self.save()?;
        Ok(label)
    }

    /// The public key of `purpose` in `format`.
    pub fn public_key(
        &self,
        purpose: KeyPurpose,
        format: PublicKeyFormat,
    ) -> Result<String, PhoneError> {
        public_key(&self.vault, purpose, format)
    }

    /// Signs the bytes of `message` (SHA256withECDSA) with the key of `purpose`; a
    /// restricted key asks `presence` first.
    pub fn sign_message(
        &self,
        purpose: KeyPurpose,
        message: &[u8],
        format: SignatureFormat,
        presence: &dyn UserPresence,
    ) -> Result<String, PhoneError> {
        sign_message(
            &self.profile,
            &self.vault,
            presence,
            purpose,
            message,
            format,
        )
    }

    /// Records a device (and key ids) that someone else bound at the bank for this phone.
    pub fn adopt(&mut self, adoption: Adoption) -> Result<(), PhoneError> {
        adopt(&mut self.profile, &self.vault, adoption)?;
        self.save()
    }

    /// Every key the phone holds, named as everywhere else.
    pub fn key_labels(&self) -> Vec<KeyLabel> {
        labels(&self.profile, &self.vault)
    }

    /// Writes the profile and keys back to the phone's file.
    pub fn save(&mut self) -> Result<(), PhoneError> {
        self.profile.write(&mut self.vault);
        self.store.save(&self.vault)?;
        Ok(())
    }
}

impl Phone {
    fn toolkit_inbox(&self) -> Result<&super::Inbox, PhoneError> {
        self.inbox.as_ref().ok_or_else(|| PhoneError::NoNumber {
            name: self.name().to_string(),
        })
    }

    /// Makes a key of `purpose` and saves it, without telling any bank (a backend will).
    pub fn new_key(&mut self, purpose: KeyPurpose) -> Result<KeyLabel, PhoneError> {
        let label = new_key(&self.profile, &mut self.vault, purpose)?;
        self.save()?;
        Ok(label)
    }

    /// The public key of `purpose` in `format` (hex is the API's format).
    pub fn public_key(
        &self,
        purpose: KeyPurpose,
        format: PublicKeyFormat,
    ) -> Result<String, PhoneError> {
        public_key(&self.vault, purpose, format)
    }

    /// Signs the bytes of `message` (SHA256withECDSA) with the key of `purpose`, asking the
    /// phone's biometric prompt first for a restricted key, exactly as the flows do.
    pub fn sign_message(
        &self,
        purpose: KeyPurpose,
        message: &[u8],
        format: SignatureFormat,
    ) -> Result<String, PhoneError> {
        sign_message(
            &self.profile,
            &self.vault,
            &*self.presence,
            purpose,
            message,
            format,
        )
    }

    /// The newest code that reached the phone's number after `since` (any time, without a
    /// marker), waiting up to `wait` for one if none is there yet.
    pub async fn otp(
        &self,
        since: Option<Marker>,
        wait: Duration,
    ) -> Result<ReceivedOtp, PhoneError> {
        let inbox = self.toolkit_inbox()?;
        let code = inbox
            .newest_otp(since.unwrap_or_default(), wait)
            .await
            .map_err(|source| PhoneError::Inbox {
                step: "otp: read inbox",
                source,
            })?;
        Ok(ReceivedOtp {
            code,
            marker: inbox.seen(),
        })
    }

    /// The inbox's current end: pass it as `since` to [`Phone::otp`] after triggering an SMS,
    /// so an older code is never returned.
    pub async fn otp_marker(&self) -> Result<Marker, PhoneError> {
        self.toolkit_inbox()?
            .marker()
            .await
            .map_err(|source| PhoneError::Inbox {
                step: "otp: read inbox",
                source,
            })
    }

    /// Records a device (and key ids) that a backend bound at the bank for this phone, so
    /// `keys`, `sign_challenge` and `delete_device` work on it.
    pub fn adopt(&mut self, adoption: Adoption) -> Result<(), PhoneError> {
        adopt(&mut self.profile, &self.vault, adoption)?;
        self.save()
    }

    /// The label of the key of `purpose`: purpose, bank key id once known, fingerprint.
    pub fn key_label(&self, purpose: KeyPurpose) -> Option<KeyLabel> {
        label(&self.profile, &self.vault, purpose)
    }

    /// Every key the phone holds, named as everywhere else.
    pub fn key_labels(&self) -> Vec<KeyLabel> {
        labels(&self.profile, &self.vault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_shows_a_printable_excerpt_of_the_message() {
        assert_eq!(
            message_reason(b"pay 10 EUR\nto Bob"),
            "signing a 17-byte message \"pay 10 EUR to Bob\""
        );
        let long = "x".repeat(100);
        assert!(message_reason(long.as_bytes()).ends_with("…\""));
    }
}
