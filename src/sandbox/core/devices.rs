//! Devices and binding. A binding stores an unverified device and sends an OTP; the device
//! signs the OTP with its new key, which binds it. The device limit counts bound devices
//! only; it is checked when the binding starts (so a caller learns early) and again when the
//! signature is accepted: of several bindings racing for the last free place, the first to
//! answer wins and the others are refused with their challenge left open.

use super::attempts::Attempts;
use super::challenges::{ChallengeEntry, ChallengeWhat};
use super::persons::PersonEntry;
use super::preverify::ToVerify;
use super::{Env, KeyIndex, Reason, Refusal, SendOtp, mint};
use crate::api::{
    ChallengeId, DeviceId, KeyId, KeyPurpose, Otp, PersonId, PhoneNumber, SignatureHex, Timestamp,
};
use crate::sandbox::config::SandboxConfig;
use crate::sandbox::verify::{VerifyingKey, check_der_signature};
use rand::RngCore;

/// One public key of a device.
#[derive(Clone)]
pub struct KeyEntry {
    /// Its id.
    pub id: KeyId,
    /// What it signs.
    pub purpose: KeyPurpose,
    /// The key, parsed once.
    pub key: VerifyingKey,
    /// When it was added.
    pub created_at: Timestamp,
    /// When it last answered a challenge.
    pub used_at: Option<Timestamp>,
}

/// A device, bound once its binding challenge is answered.
#[derive(Clone)]
pub struct DeviceEntry {
    /// Its id.
    pub id: DeviceId,
    /// Its person; never changes.
    pub person_id: PersonId,
    /// Its name.
    pub name: String,
    /// When the binding started.
    pub created_at: Timestamp,
    /// When it was deleted.
    pub deleted_at: Option<Timestamp>,
    /// Whether its binding was answered.
    pub verified: bool,
    /// Its keys (none once deleted).
    pub keys: Vec<KeyEntry>,
    /// The partner's opaque data about it.
    pub device_data: Option<String>,
}

impl DeviceEntry {
    /// The key of a purpose, if the device has one.
    pub fn key(&self, purpose: KeyPurpose) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.purpose == purpose)
    }

    /// Refuses unless the device is bound: an unverified device does not exist to the API.
    pub fn check_bound(&self) -> Result<(), Refusal> {
        if self.verified {
            Ok(())
        } else {
            Err(Refusal::new(
                Reason::NotFound,
                format!(
                    "there is no bound device {} for this partner; finish its binding first",
                    self.id
                ),
            ))
        }
    }

    /// The purpose a challenge uses when none is named: restricted if the device has it.
    pub fn default_purpose(&self) -> KeyPurpose {
        if self.key(KeyPurpose::Restricted).is_some() {
            KeyPurpose::Restricted
        } else {
            KeyPurpose::Unrestricted
        }
    }
}

/// Decodes and checks a signature field's DER before any verification.
pub fn der_of(signature: &SignatureHex, field: &str) -> Result<Vec<u8>, Refusal> {
    let der = signature.to_bytes();
    check_der_signature(&der)
        .map_err(|e| Refusal::new(Reason::InvalidSignatureEncoding, e.to_string()).field(field))?;
    Ok(der)
}

/// What a binding asks for: the request's checked fields.
#[derive(Clone)]
pub struct NewDevice {
    /// Its person.
    pub person_id: PersonId,
    /// Its name (checked, trimmed).
    pub name: String,
    /// The key to bind.
    pub key: VerifyingKey,
    /// The key's purpose.
    pub purpose: KeyPurpose,
    /// The partner's opaque data.
    pub device_data: Option<String>,
}

/// A started binding: the unverified device and its challenge to store, the OTP to send.
pub struct BindingStarted {
    /// The unverified device.
    pub device: DeviceEntry,
    /// The signature challenge's id.
    pub challenge_id: ChallengeId,
    /// The signature challenge.
    pub challenge: ChallengeEntry,
    /// The SMS to deliver.
    pub send: SendOtp,
}

/// Starts binding `new` to `person`.
pub fn start_binding(
    person: &PersonEntry,
    new: NewDevice,
    keys: &dyn KeyIndex,
    config: &SandboxConfig,
    now: Timestamp,
    rng: &mut dyn RngCore,
) -> Result<BindingStarted, Refusal> {
    let number = person.verified_number("OTP", "add and confirm one first")?;
    let max = config.max_devices_per_person;
    if person.bound >= max {
        return Err(Refusal::new(
            Reason::DeviceLimitReached,
            format!("the person already has {max} bound devices; delete one first"),
        ));
    }
    if keys.is_bound(new.key.point()) {
        return Err(Refusal::new(
            Reason::KeyAlreadyBound,
            "this public key is already bound to a device; generate a new key",
        )
        .field("key"));
    }
    let device_id = mint::device_id(rng);
    let device = DeviceEntry {
        id: device_id.clone(),
        person_id: new.person_id,
        name: new.name,
        created_at: now,
        deleted_at: None,
        verified: false,
        keys: vec![KeyEntry {
            id: mint::key_id(rng),
            purpose: new.purpose,
            key: new.key,
            created_at: now,
            used_at: None,
        }],
        device_data: new.device_data,
    };
    let otp = mint::otp(rng, &number, config.static_otp);
    let challenge = ChallengeEntry {
        what: ChallengeWhat::Binding {
            device_id,
            otp: otp.clone(),
            sent_to: number.clone(),
        },
        attempts: Attempts::new(now, config.challenge_lifetime),
    };
    Ok(BindingStarted {
        device,
        challenge_id: mint::challenge_id(rng),
        challenge,
        send: SendOtp { number, otp },
    })
}

const START_AGAIN: &str = "start a new binding with POST /v1/mfa/devices";

/// What [`answer_binding`] would verify, read under the challenge's and device's locks so
/// the verification can run with no lock held (see [`super::preverify`]). Refuses what
/// [`answer_binding`] refuses before verifying, and nothing else.
pub fn binding_to_verify(
    challenge: &ChallengeEntry,
    device: &DeviceEntry,
    signature: &SignatureHex,
    now: Timestamp,
) -> Result<ToVerify, Refusal> {
    let (otp, _, der, key) = before_verifying(challenge, device, signature, now)?;
    Ok(ToVerify {
        keys: vec![key],
        message: otp.expose().as_bytes().to_vec(),
        der,
    })
}

/// What [`binding_to_verify`] and [`answer_binding`] check before verifying, in one order:
/// a binding challenge, still open, a signature in DER, and the device's key. Gives the OTP,
/// the number it was sent to, the DER and the key.
fn before_verifying<'a>(
    challenge: &'a ChallengeEntry,
    device: &DeviceEntry,
    signature: &SignatureHex,
    now: Timestamp,
) -> Result<(&'a Otp, &'a PhoneNumber, Vec<u8>, VerifyingKey), Refusal> {
    let ChallengeWhat::Binding { otp, sent_to, .. } = &challenge.what else {
        return Err(Refusal::new(Reason::NotFound, "not a binding challenge"));
    };
    challenge.attempts.check_open(now, "signature challenge")?;
    let der = der_of(signature, "signature")?;
    let key = binding_key(device)?;
    Ok((otp, sent_to, der, key))
}

/// The key a binding binds: the device's only key.
fn binding_key(device: &DeviceEntry) -> Result<VerifyingKey, Refusal> {
    device.keys.first().map(|k| k.key.clone()).ok_or_else(|| {
        Refusal::new(
            Reason::NotFound,
            "the device being bound has no key; start a new binding",
        )
    })
}

/// Answers a binding challenge with the OTP signed by the new key: binds `device` to
/// `person`. A signature that does not verify counts as a failed attempt; every other
/// refusal changes nothing.
#[allow(clippy::too_many_arguments)]
pub fn answer_binding(
    challenge: &mut ChallengeEntry,
    device: &mut DeviceEntry,
    person: &mut PersonEntry,
    signature: &SignatureHex,
    device_data: Option<String>,
    env: Env<'_>,
) -> Result<(), Refusal> {
    let (otp, sent_to, der, key) = before_verifying(challenge, device, signature, env.now)?;
    person.check_still_verified(sent_to, "OTP", START_AGAIN)?;
    if !env.verifier.verify(&key, otp.expose().as_bytes(), &der) {
        let left = challenge
            .attempts
            .record_failure(env.config.max_failed_attempts, env.now);
        return Err(Refusal::new(
            Reason::InvalidSignature,
            format!(
                "the signature does not verify over the SMS OTP's ASCII digits with the key being bound; {left}"
            ),
        )
        .field("signature"));
    }
    let max = env.config.max_devices_per_person;
    if person.bound >= max {
        return Err(Refusal::new(
            Reason::DeviceLimitReached,
            format!("the person already has {max} bound devices; delete one, then answer again"),
        ));
    }
    if !env.keys.claim(key.point(), &device.id) {
        return Err(Refusal::new(
            Reason::KeyAlreadyBound,
            "this public key was bound to another device meanwhile; generate a new key",
        ));
    }
    device.verified = true;
    if let Some(data) = device_data {
        device.device_data = Some(data);
    }
    person.bound += 1;
    person.devices.push(device.id.clone());
    challenge.attempts.complete(env.now);
    Ok(())
}

/// Deletes a bound device and releases its keys.
pub fn delete(
    person: &mut PersonEntry,
    device: &mut DeviceEntry,
    keys: &dyn KeyIndex,
    now: Timestamp,
) -> Result<(), Refusal> {
    if device.deleted_at.is_some() {
        return Err(Refusal::new(
            Reason::NotFound,
            format!("device {} was already deleted", device.id),
        ));
    }
    device.deleted_at = Some(now);
    for key in device.keys.drain(..) {
        keys.release(key.key.point());
    }
    person.bound = person.bound.saturating_sub(1);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::core::testing::{
        Keys, PlainVerifier, TestKey, config, rng, t0, verified_person,
    };
    use rand::rngs::StdRng;

    /// Starts binding a phone with `key` for `person` at [`t0`].
    fn start(
        person: &PersonEntry,
        key: &TestKey,
        keys: &Keys,
        config: &SandboxConfig,
        rng: &mut StdRng,
    ) -> BindingStarted {
        let new_device = NewDevice {
            person_id: person.person.id.clone(),
            name: "phone".into(),
            key: key.verifying(),
            purpose: KeyPurpose::Unrestricted,
            device_data: None,
        };
        start_binding(person, new_device, keys, config, t0(), rng).unwrap()
    }

    /// The rules' environment at [`t0`], verifying with [`PlainVerifier`].
    fn env<'a>(config: &'a SandboxConfig, keys: &'a Keys) -> Env<'a> {
        Env {
            config,
            now: t0(),
            keys,
            verifier: &PlainVerifier,
        }
    }

    /// Answers the binding `started` with `key`'s signature of its OTP.
    fn answer(
        started: &mut BindingStarted,
        person: &mut PersonEntry,
        key: &TestKey,
        env: Env<'_>,
    ) -> Result<(), Refusal> {
        let signed = key.sign(started.send.otp.expose().as_bytes());
        answer_binding(
            &mut started.challenge,
            &mut started.device,
            person,
            &signed,
            None,
            env,
        )
    }

    #[test]
    fn binding_fails_when_the_signature_is_wrong_and_binds_with_the_signed_otp() {
        let (config, mut rng, keys) = (config(), rng(7), Keys::default());
        let mut person = verified_person(&mut rng);
        let key = TestKey::new();
        let mut started = start(&person, &key, &keys, &config, &mut rng);
        let env = env(&config, &keys);
        let wrong = key.sign(b"000000");
        let (challenge, device) = (&mut started.challenge, &mut started.device);
        let refused =
            answer_binding(challenge, device, &mut person, &wrong, None, env).unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidSignature);
        assert!(
            refused.detail.ends_with("2 attempts are left"),
            "{}",
            refused.detail
        );
        assert!(
            !started.device.verified
                && person.bound == 0
                && !keys.is_bound(key.verifying().point())
        );
        answer(&mut started, &mut person, &key, env).unwrap();
        assert!(started.device.verified);
        assert_eq!(
            (person.bound, person.devices.clone()),
            (1, vec![started.device.id.clone()])
        );
        assert!(keys.is_bound(key.verifying().point()));
        let again = answer(&mut started, &mut person, &key, env).unwrap_err();
        assert_eq!(again.reason, Reason::ChallengeAlreadyUsed);
        assert_eq!(person.bound, 1, "a completed challenge binds nothing twice");
    }

    #[test]
    fn the_device_limit_is_checked_again_when_the_binding_is_answered() {
        let (mut config, mut rng, keys) = (config(), rng(8), Keys::default());
        config.max_devices_per_person = 1;
        let mut person = verified_person(&mut rng);
        let (k1, k2) = (TestKey::new(), TestKey::new());
        let mut first = start(&person, &k1, &keys, &config, &mut rng);
        let mut second = start(&person, &k2, &keys, &config, &mut rng);
        let env = env(&config, &keys);
        answer(&mut first, &mut person, &k1, env).unwrap();
        let refused = answer(&mut second, &mut person, &k2, env).unwrap_err();
        assert_eq!(refused.reason, Reason::DeviceLimitReached);
        assert_eq!(
            second.challenge.attempts.status,
            super::super::attempts::Status::Open,
            "left open"
        );
        delete(&mut person, &mut first.device, &keys, t0()).unwrap();
        assert!(!keys.is_bound(k1.verifying().point()));
        answer(&mut second, &mut person, &k2, env).unwrap();
        assert_eq!(person.bound, 1);
    }

    #[test]
    fn a_seeded_generator_mints_the_same_ids_and_otps() {
        let run = |seed| {
            let (config, mut rng, keys) = (config(), rng(seed), Keys::default());
            let person = verified_person(&mut rng);
            let s = start(&person, &TestKey::new(), &keys, &config, &mut rng);
            (
                person.person.id,
                s.device.id,
                s.challenge_id,
                s.send.otp.expose().to_owned(),
            )
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn a_key_is_added_once_per_purpose_signed_by_a_key_the_device_has() {
        use crate::sandbox::core::keys::{NewKey, add_key};
        let (config, mut rng, keys) = (config(), rng(9), Keys::default());
        let mut person = verified_person(&mut rng);
        let key = TestKey::new();
        let mut s = start(&person, &key, &keys, &config, &mut rng);
        let env = env(&config, &keys);
        answer(&mut s, &mut person, &key, env).unwrap();
        let device = &mut s.device;
        let restricted = TestKey::new();
        let hex = restricted.hex();
        let forged = TestKey::new().sign(hex.as_str().as_bytes()).to_bytes();
        let new = |der| NewKey {
            key: restricted.verifying(),
            hex: &hex,
            purpose: KeyPurpose::Restricted,
            signer: KeyPurpose::Unrestricted,
            der,
        };
        let refused = add_key(device, new(&forged), env, &mut rng).unwrap_err();
        assert_eq!(refused.reason, Reason::InvalidSignature);
        let vouched = key.sign(hex.as_str().as_bytes()).to_bytes();
        add_key(device, new(&vouched), env, &mut rng).unwrap();
        assert_eq!(device.default_purpose(), KeyPurpose::Restricted);
        let twice = add_key(device, new(&vouched), env, &mut rng).unwrap_err();
        assert_eq!(twice.reason, Reason::KeyPurposeTaken);
    }
}
