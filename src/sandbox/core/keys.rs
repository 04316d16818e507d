//! Adding a key to a bound device: one key per purpose, signed by a key the device has,
//! and never a key bound anywhere else.

use super::devices::{DeviceEntry, KeyEntry};
use super::preverify::ToVerify;
use super::{Env, Reason, Refusal, purpose_word};
use crate::api::{KeyId, KeyPurpose, PublicKeyHex};
use crate::sandbox::verify::VerifyingKey;
use rand::RngCore;

/// A key to add: the parsed key, its hex as sent (what the signature covers), its purpose,
/// and the signature by the device's key of `signer`.
pub struct NewKey<'a> {
    /// The parsed key.
    pub key: VerifyingKey,
    /// Its hex text as sent; the signature is over these bytes.
    pub hex: &'a PublicKeyHex,
    /// Its purpose.
    pub purpose: KeyPurpose,
    /// The purpose of the device's key that signed it.
    pub signer: KeyPurpose,
    /// The signature's DER.
    pub der: &'a [u8],
}

/// What [`add_key`] would verify, read under the device's lock so the verification can run
/// with no lock held (see [`super::preverify`]): the device's key of `new.signer` over the
/// new key's hex text. Refuses what [`add_key`] refuses before verifying, and nothing else.
pub fn add_key_to_verify(device: &DeviceEntry, new: &NewKey<'_>) -> Result<ToVerify, Refusal> {
    let signing_key = before_verifying(device, new)?;
    Ok(ToVerify {
        keys: vec![signing_key],
        message: new.hex.as_str().as_bytes().to_vec(),
        der: new.der.to_vec(),
    })
}

/// What [`add_key_to_verify`] and [`add_key`] check before verifying, in one order: the
/// device's key that must have signed.
fn before_verifying(device: &DeviceEntry, new: &NewKey<'_>) -> Result<VerifyingKey, Refusal> {
    if device.deleted_at.is_some() {
        return Err(Refusal::new(
            Reason::DeviceDeleted,
            "the device was deleted; it takes no keys",
        ));
    }
    if device.key(new.purpose).is_some() {
        return Err(Refusal::new(
            Reason::KeyPurposeTaken,
            format!(
                "the device already has a {} key; a device has one key per purpose",
                purpose_word(new.purpose)
            ),
        )
        .field("key_purpose"));
    }
    device
        .key(new.signer)
        .map(|k| k.key.clone())
        .ok_or_else(|| {
            Refusal::new(
                Reason::KeyNotFound,
                format!(
                    "the device has no {} key to sign with; name a purpose it has",
                    purpose_word(new.signer)
                ),
            )
            .field("device_signature.signature_key_purpose")
        })
}

/// Adds `new` to `device`; returns the new key's id.
pub fn add_key(
    device: &mut DeviceEntry,
    new: NewKey<'_>,
    env: Env<'_>,
    rng: &mut dyn RngCore,
) -> Result<KeyId, Refusal> {
    let signing_key = before_verifying(device, &new)?;
    if !env
        .verifier
        .verify(&signing_key, new.hex.as_str().as_bytes(), new.der)
    {
        return Err(Refusal::new(
            Reason::InvalidSignature,
            format!(
                "device_signature.signature does not verify over the new key's hex text with the device's {} key",
                purpose_word(new.signer)
            ),
        )
        .field("device_signature.signature"));
    }
    if !env.keys.claim(new.key.point(), &device.id) {
        return Err(Refusal::new(
            Reason::KeyAlreadyBound,
            "this public key is already bound; generate a new key",
        )
        .field("key"));
    }
    let id = super::mint::key_id(rng);
    device.keys.push(KeyEntry {
        id: id.clone(),
        purpose: new.purpose,
        key: new.key,
        created_at: env.now,
        used_at: None,
    });
    Ok(id)
}
