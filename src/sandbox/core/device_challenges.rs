//! Device challenges: a bound device signs a random `string_to_sign` with the key of a
//! purpose (restricted if it has one and none is named).

use super::attempts::Attempts;
use super::challenges::{ChallengeEntry, ChallengeWhat};
use super::devices::{DeviceEntry, KeyEntry, der_of};
use super::preverify::ToVerify;
use super::{Env, Reason, Refusal, mint, purpose_word};
use crate::api::{ChallengeId, KeyPurpose, SignatureHex};
use crate::sandbox::config::SandboxConfig;
use rand::RngCore;

/// Makes a challenge for `device` to sign with the key of `purpose` (or its default).
pub fn create(
    device: &DeviceEntry,
    purpose: Option<KeyPurpose>,
    config: &SandboxConfig,
    now: crate::api::Timestamp,
    rng: &mut dyn RngCore,
) -> Result<(ChallengeId, ChallengeEntry), Refusal> {
    device.check_bound()?;
    if device.deleted_at.is_some() {
        return Err(Refusal::new(
            Reason::DeviceDeleted,
            "the device was deleted and can sign nothing; bind a new one",
        ));
    }
    let purpose = match purpose {
        Some(p) if device.key(p).is_none() => {
            return Err(if p == KeyPurpose::Restricted {
                Refusal::new(
                    Reason::RestrictedKeyRequired,
                    "the device has no restricted key; add one with POST /v1/mfa/devices/{id}/keys",
                )
            } else {
                Refusal::new(
                    Reason::KeyNotFound,
                    format!("the device has no {} key", purpose_word(p)),
                )
            }
            .field("key_purpose"));
        }
        Some(p) => p,
        None => device.default_purpose(),
    };
    let entry = ChallengeEntry {
        what: ChallengeWhat::Device {
            device_id: device.id.clone(),
            purpose,
            string_to_sign: mint::nonce_hex(rng, 24),
        },
        attempts: Attempts::new(now, config.challenge_lifetime),
    };
    Ok((mint::challenge_id(rng), entry))
}

/// What [`answer`] would verify, read under the challenge's and device's locks so the
/// verification can run with no lock held (see [`super::preverify`]): the key of the
/// challenge's purpose and, for a restricted challenge, the unrestricted key (to say which
/// key signed). Refuses what [`answer`] refuses before verifying, and nothing else.
pub fn to_verify(
    challenge: &ChallengeEntry,
    device: &DeviceEntry,
    signature: &SignatureHex,
    now: crate::api::Timestamp,
) -> Result<ToVerify, Refusal> {
    let (purpose, string_to_sign, der, key) = before_verifying(challenge, device, signature, now)?;
    let mut keys = vec![key.key.clone()];
    if purpose == KeyPurpose::Restricted
        && let Some(k) = device.key(KeyPurpose::Unrestricted)
    {
        keys.push(k.key.clone());
    }
    Ok(ToVerify {
        keys,
        message: string_to_sign.as_bytes().to_vec(),
        der,
    })
}

/// What [`to_verify`] and [`answer`] check before verifying, in one order: a device
/// challenge, still open, a signature in DER, and the key of the challenge's purpose on a
/// device that was not deleted. Gives that purpose, the text to sign, the DER and the key.
fn before_verifying<'a>(
    challenge: &'a ChallengeEntry,
    device: &'a DeviceEntry,
    signature: &SignatureHex,
    now: crate::api::Timestamp,
) -> Result<(KeyPurpose, &'a str, Vec<u8>, &'a KeyEntry), Refusal> {
    let ChallengeWhat::Device {
        purpose,
        string_to_sign,
        ..
    } = &challenge.what
    else {
        return Err(Refusal::new(Reason::NotFound, "not a device challenge"));
    };
    challenge.attempts.check_open(now, "device challenge")?;
    let der = der_of(signature, "signature")?;
    let key = signing_key(device, *purpose)?;
    Ok((*purpose, string_to_sign, der, key))
}

/// The device's key of `purpose`, unless the device was deleted or lost it.
fn signing_key(device: &DeviceEntry, purpose: KeyPurpose) -> Result<&KeyEntry, Refusal> {
    if device.deleted_at.is_some() {
        return Err(Refusal::new(
            Reason::DeviceDeleted,
            "the device was deleted after this challenge was made; it signs nothing",
        ));
    }
    device.key(purpose).ok_or_else(|| {
        Refusal::new(
            Reason::DeviceDeleted,
            "the device no longer has the key this challenge needs",
        )
    })
}

/// Answers a device challenge with a signature; marks the key used. A signature that does
/// not verify counts as a failed attempt; every other refusal changes nothing.
pub fn answer(
    challenge: &mut ChallengeEntry,
    device: &mut DeviceEntry,
    signature: &SignatureHex,
    device_data: Option<String>,
    env: Env<'_>,
) -> Result<(), Refusal> {
    let (purpose, string_to_sign, der, key) =
        before_verifying(challenge, device, signature, env.now)?;
    let message = string_to_sign.as_bytes();
    if !env.verifier.verify(&key.key, message, &der) {
        // A restricted challenge signed with the unrestricted key deserves a precise answer.
        let used_unrestricted = purpose == KeyPurpose::Restricted
            && device
                .key(KeyPurpose::Unrestricted)
                .is_some_and(|k| env.verifier.verify(&k.key, message, &der));
        let left = challenge
            .attempts
            .record_failure(env.config.max_failed_attempts, env.now);
        return Err(if used_unrestricted {
            Refusal::new(
                Reason::RestrictedKeyRequired,
                format!(
                    "this challenge needs the restricted key, but it was signed with the unrestricted key; {left}"
                ),
            )
        } else {
            Refusal::new(
                Reason::InvalidSignature,
                format!(
                    "the signature does not verify over string_to_sign with the device's {} key; {left}",
                    purpose_word(purpose)
                ),
            )
        }
        .field("signature"));
    }
    challenge.attempts.complete(env.now);
    if let Some(k) = device.keys.iter_mut().find(|k| k.purpose == purpose) {
        k.used_at = Some(env.now);
    }
    if let Some(data) = device_data {
        device.device_data = Some(data);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::core::devices::{DeviceEntry, KeyEntry};
    use crate::sandbox::core::testing::{Keys, PlainVerifier, TestKey, config, rng, t0};

    fn bound_device(
        key: &TestKey,
        purpose: KeyPurpose,
        rng: &mut rand::rngs::StdRng,
    ) -> DeviceEntry {
        DeviceEntry {
            id: mint::device_id(rng),
            person_id: mint::person_id(rng),
            name: "phone".into(),
            created_at: t0(),
            deleted_at: None,
            verified: true,
            keys: vec![KeyEntry {
                id: mint::key_id(rng),
                purpose,
                key: key.verifying(),
                created_at: t0(),
                used_at: None,
            }],
            device_data: None,
        }
    }

    #[test]
    fn a_late_answer_is_refused_and_a_right_one_marks_the_key_used() {
        let (config, mut rng, keys) = (config(), rng(11), Keys::default());
        let key = TestKey::new();
        let mut device = bound_device(&key, KeyPurpose::Unrestricted, &mut rng);
        let (_, mut c) = create(&device, None, &config, t0(), &mut rng).unwrap();
        let ChallengeWhat::Device { string_to_sign, .. } = &c.what else {
            panic!("a device challenge")
        };
        let sig = key.sign(string_to_sign.as_bytes());
        let late = t0().plus_seconds(300);
        let env = |now| Env {
            config: &config,
            now,
            keys: &keys,
            verifier: &PlainVerifier,
        };
        let refused = answer(&mut c, &mut device, &sig, None, env(late)).unwrap_err();
        assert_eq!(refused.reason, Reason::ChallengeExpired);
        assert_eq!(device.keys[0].used_at, None);
        answer(&mut c, &mut device, &sig, None, env(t0().plus_seconds(299))).unwrap();
        assert_eq!(device.keys[0].used_at, Some(t0().plus_seconds(299)));
    }

    #[test]
    fn a_restricted_challenge_signed_with_the_unrestricted_key_says_so_and_three_spend_it() {
        let (config, mut rng, keys) = (config(), rng(12), Keys::default());
        let (unrestricted, restricted) = (TestKey::new(), TestKey::new());
        let mut device = bound_device(&unrestricted, KeyPurpose::Unrestricted, &mut rng);
        device.keys.push(KeyEntry {
            id: mint::key_id(&mut rng),
            purpose: KeyPurpose::Restricted,
            key: restricted.verifying(),
            created_at: t0(),
            used_at: None,
        });
        let (_, mut c) = create(&device, None, &config, t0(), &mut rng).unwrap();
        let ChallengeWhat::Device {
            string_to_sign,
            purpose,
            ..
        } = &c.what
        else {
            panic!("a device challenge")
        };
        assert_eq!(*purpose, KeyPurpose::Restricted);
        let sig = unrestricted.sign(string_to_sign.as_bytes());
        let env = Env {
            config: &config,
            now: t0(),
            keys: &keys,
            verifier: &PlainVerifier,
        };
        let reasons: Vec<_> = (0..4)
            .map(|_| {
                answer(&mut c, &mut device, &sig, None, env)
                    .unwrap_err()
                    .reason
            })
            .collect();
        assert_eq!(
            reasons,
            [
                Reason::RestrictedKeyRequired,
                Reason::RestrictedKeyRequired,
                Reason::RestrictedKeyRequired,
                Reason::ChallengeFailed
            ]
        );
    }
}
