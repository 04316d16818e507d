//! Signing keys: one P-256 or Ed25519 private key with its purpose and id.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use p256::ecdsa::signature::Signer as _;
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::{Zeroize as _, ZeroizeOnDrop, Zeroizing};

use crate::backend::{AwsLcP256, Backend};
use crate::error::KeystoreError;

/// What a key may be used for: without the user, or only after the user confirms.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum KeyPurpose {
    /// Usable without the user (the default key of a bound device).
    Unrestricted,
    /// Released only after the (emulated) biometric prompt approves.
    Restricted,
}

impl KeyPurpose {
    /// The wire name: "unrestricted" or "restricted".
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Unrestricted => "unrestricted",
            KeyPurpose::Restricted => "restricted",
        }
    }

    /// Both purposes, unrestricted first.
    pub const ALL: [KeyPurpose; 2] = [KeyPurpose::Unrestricted, KeyPurpose::Restricted];
}

impl fmt::Display for KeyPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyPurpose {
    type Err = KeystoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unrestricted" => Ok(KeyPurpose::Unrestricted),
            "restricted" => Ok(KeyPurpose::Restricted),
            other => Err(KeystoreError::InvalidInput {
                what: "key purpose",
                reason: format!("{other:?} is neither \"unrestricted\" nor \"restricted\""),
            }),
        }
    }
}

/// The signature algorithm of a key.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256 (the bank's only device key type).
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// Ed25519 (secondary keys only).
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyAlgorithm {
    /// The wire name: "ecdsa-p256" or "ed25519".
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeystoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => Err(KeystoreError::InvalidInput {
                what: "key algorithm",
                reason: format!("{other:?} is neither \"ecdsa-p256\" nor \"ed25519\""),
            }),
        }
    }
}

/// The private half; every library type here zeroizes itself on drop.
pub(crate) enum Secret {
    P256(p256::ecdsa::SigningKey),
    /// A P-256 key whose arithmetic aws-lc does (see [`Backend::AwsLc`]).
    P256AwsLc(AwsLcP256),
    Ed25519(ed25519_dalek::SigningKey),
}

/// One private key with its purpose and id; not `Clone`, not `Serialize`, zeroized on drop,
/// and its `Debug` shows only the key id, algorithm, purpose and public fingerprint.
pub struct SigningKey {
    secret: Secret,
    purpose: KeyPurpose,
    key_id: Uuid,
    created_at: u64,
}

// Every secret field is a RustCrypto/dalek key that zeroizes itself on drop.
impl ZeroizeOnDrop for SigningKey {}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SigningKey {
    /// A fresh key from the operating system's CSPRNG, with a random key id.
    pub fn generate(algorithm: KeyAlgorithm, purpose: KeyPurpose) -> SigningKey {
        let secret = match algorithm {
            KeyAlgorithm::EcdsaP256 => Secret::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            KeyAlgorithm::Ed25519 => {
                Secret::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng))
            }
        };
        SigningKey::from_parts(secret, purpose, Uuid::new_v4(), now_unix())
    }

    /// A deterministic P-256 key (and key id) for `index` and `purpose` under `seed`, on the
    /// reference backend.
    pub fn derive(seed: &crate::derive::Seed, index: u64, purpose: KeyPurpose) -> SigningKey {
        SigningKey::derive_with(seed, index, purpose, Backend::RustCrypto)
    }

    /// [`SigningKey::derive`] on a chosen backend: the same scalar, key id and public key
    /// whichever backend does the arithmetic.
    pub fn derive_with(
        seed: &crate::derive::Seed,
        index: u64,
        purpose: KeyPurpose,
        backend: Backend,
    ) -> SigningKey {
        let (scalar, key_id) = crate::derive::derive_scalar(seed, index, purpose);
        // `derive_scalar` returns only scalars in [1, n), which both libraries accept; the
        // reference backend is the fallback should aws-lc ever disagree.
        let secret = match backend {
            Backend::AwsLc => AwsLcP256::from_scalar(&scalar).map(Secret::P256AwsLc),
            Backend::RustCrypto => None,
        };
        let secret = match secret {
            Some(s) => s,
            None => match p256::ecdsa::SigningKey::from_slice(scalar.as_ref()) {
                Ok(k) => Secret::P256(k),
                // Unreachable for the same reason; an explicit panic beats a wrong key.
                #[allow(clippy::panic)]
                Err(_) => panic!("derived P-256 scalar out of range"),
            },
        };
        SigningKey::from_parts(secret, purpose, key_id, now_unix())
    }

    /// Which backend does this key's arithmetic (Ed25519 keys: the reference).
    pub fn backend(&self) -> Backend {
        match self.secret {
            Secret::P256AwsLc(_) => Backend::AwsLc,
            Secret::P256(_) | Secret::Ed25519(_) => Backend::RustCrypto,
        }
    }

    pub(crate) fn from_parts(
        secret: Secret,
        purpose: KeyPurpose,
        key_id: Uuid,
        created_at: u64,
    ) -> Self {
        SigningKey {
            secret,
            purpose,
            key_id,
            created_at,
        }
    }

    /// Rebuilds a key from its raw secret bytes (32 bytes for both algorithms).
    pub(crate) fn from_secret_bytes(
        algorithm: KeyAlgorithm,
        bytes: &[u8],
        purpose: KeyPurpose,
        key_id: Uuid,
        created_at: u64,
    ) -> Result<SigningKey, KeystoreError> {
        let invalid = |reason: &str| KeystoreError::InvalidInput {
            what: "private key",
            reason: reason.to_owned(),
        };
        let secret = match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                if bytes.len() != 32 {
                    return Err(invalid("a P-256 scalar must be 32 bytes"));
                }
                let key = p256::ecdsa::SigningKey::from_slice(bytes).map_err(|_| {
                    invalid("the P-256 scalar is zero or not below the group order")
                })?;
                Secret::P256(key)
            }
            KeyAlgorithm::Ed25519 => {
                let mut raw = Zeroizing::new([0u8; 32]);
                if bytes.len() != 32 {
                    return Err(invalid("an Ed25519 secret must be 32 bytes"));
                }
                raw.copy_from_slice(bytes);
                Secret::Ed25519(ed25519_dalek::SigningKey::from_bytes(&raw))
            }
        };
        Ok(SigningKey::from_parts(secret, purpose, key_id, created_at))
    }

    /// The raw secret bytes; callers must keep them in zeroizing buffers.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        match &self.secret {
            Secret::P256(k) => {
                // `to_bytes` returns a stack copy; wipe it once it has been moved to the heap.
                let mut bytes = k.to_bytes();
                let out = Zeroizing::new(bytes.to_vec());
                bytes.zeroize();
                out
            }
            Secret::P256AwsLc(k) => k.secret_bytes(),
            Secret::Ed25519(k) => {
                let mut bytes = k.to_bytes();
                let out = Zeroizing::new(bytes.to_vec());
                bytes.zeroize();
                out
            }
        }
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.secret {
            Secret::P256(_) | Secret::P256AwsLc(_) => KeyAlgorithm::EcdsaP256,
            Secret::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// What the key may be used for.
    pub fn purpose(&self) -> KeyPurpose {
        self.purpose
    }

    /// The key's id (random for generated keys, deterministic for derived ones).
    pub fn key_id(&self) -> Uuid {
        self.key_id
    }

    /// When the key was created or derived, in unix seconds.
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The raw public key bytes: 65-byte uncompressed SEC1 point, or 32 Ed25519 bytes.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.secret {
            Secret::P256(k) => k
                .verifying_key()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
            Secret::P256AwsLc(k) => k.public_key_bytes().to_vec(),
            Secret::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
        }
    }

    /// Lowercase hex of the public key: `04||X||Y` (130 chars) for P-256, 64 chars for Ed25519.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key_bytes())
    }

    /// The signature bytes: DER SHA256withECDSA for P-256 (RFC 6979 deterministic nonces on
    /// the reference backend, random ones on aws-lc), raw 64 bytes for Ed25519.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.secret {
            Secret::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(message);
                sig.to_der().as_bytes().to_vec()
            }
            Secret::P256AwsLc(k) => k.sign(message),
            Secret::Ed25519(k) => k.sign(message).to_bytes().to_vec(),
        }
    }

    /// Lowercase hex of [`SigningKey::sign`]: DER for P-256 (starts `30`), 128 chars for Ed25519.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.sign(message))
    }

    /// A short public fingerprint: the first 8 bytes of SHA-256(public key bytes), in hex.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.public_key_bytes());
        hex::encode(&digest[..8])
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm())
            .field("purpose", &self.purpose)
            .field("backend", &self.backend().as_str())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Dangerous entry points that expose or import raw private keys; for tests and migrations only.
pub mod hazmat {
    use super::{KeyAlgorithm, KeyPurpose, SigningKey};
    use crate::error::KeystoreError;
    use uuid::Uuid;
    use zeroize::Zeroizing;

    /// DANGER: the private key as lowercase hex (P-256 scalar or Ed25519 seed).
    pub fn secret_scalar_hex(key: &SigningKey) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(key.secret_bytes().as_slice()))
    }

    /// DANGER: imports a private key from hex (64 chars, either case), with a fresh random id.
    pub fn signing_key_from_secret_hex(
        algorithm: KeyAlgorithm,
        secret_hex: &str,
        purpose: KeyPurpose,
    ) -> Result<SigningKey, KeystoreError> {
        // Exactly 64 hex digits: `hex::decode` would also take a `0x` prefix.
        if secret_hex.len() != 64 {
            return Err(KeystoreError::InvalidInput {
                what: "private key",
                reason: format!("{} characters, not 64 hex digits", secret_hex.len()),
            });
        }
        let bytes =
            Zeroizing::new(
                hex::decode(secret_hex).map_err(|_| KeystoreError::InvalidInput {
                    what: "private key",
                    reason: "not hex".to_owned(),
                })?,
            );
        SigningKey::from_secret_bytes(
            algorithm,
            &bytes,
            purpose,
            Uuid::new_v4(),
            super::now_unix(),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Names {
        purpose: KeyPurpose,
        algorithm: KeyAlgorithm,
    }

    #[test]
    fn serde_uses_the_wire_names() {
        let names = Names {
            purpose: KeyPurpose::Restricted,
            algorithm: KeyAlgorithm::EcdsaP256,
        };
        let text = toml::to_string(&names).unwrap();
        assert_eq!(
            text,
            "purpose = \"restricted\"\nalgorithm = \"ecdsa-p256\"\n"
        );
        assert_eq!(toml::from_str::<Names>(&text).unwrap(), names);
    }

    #[test]
    fn imported_keys_reject_zero_and_out_of_range_scalars() {
        let id = Uuid::nil();
        for bad in [[0u8; 32], [0xff; 32]] {
            let r = SigningKey::from_secret_bytes(
                KeyAlgorithm::EcdsaP256,
                &bad,
                KeyPurpose::Restricted,
                id,
                0,
            );
            assert!(r.is_err());
        }
        let r = SigningKey::from_secret_bytes(
            KeyAlgorithm::Ed25519,
            &[1u8; 31],
            KeyPurpose::Restricted,
            id,
            0,
        );
        assert!(r.is_err());
    }
}
