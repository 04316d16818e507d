//! Deterministic key derivation from a seed, so fleets of phones are reproducible.

use std::fmt;

use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::backend::is_valid_scalar;
use crate::error::KeystoreError;
use crate::key::KeyPurpose;

/// Domain tag of `Seed::from_u64`; changing it changes every derived fleet.
const SEED_FROM_U64_TAG: &[u8] = b"vphone-keystore/seed-from-u64/v1";
/// HKDF salt for key derivation.
const DERIVE_SALT: &[u8] = b"vphone-keystore/derive/v1";
/// HKDF info prefix for the P-256 scalar.
const SCALAR_TAG: &[u8] = b"vphone-keystore/p256-scalar/v1";
/// HKDF info prefix for the key id.
const KEY_ID_TAG: &[u8] = b"vphone-keystore/key-id/v1";
/// Domain tag of `Seed::fingerprint`.
const FINGERPRINT_TAG: &[u8] = b"vphone-keystore/seed-fingerprint/v1";

/// 32 secret bytes from which keys are derived; `Debug` is redacted, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 32]);

impl Seed {
    /// Parses 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Result<Seed, KeystoreError> {
        let invalid = |reason: &str| KeystoreError::InvalidInput {
            what: "seed",
            reason: reason.to_owned(),
        };
        if s.len() != 64 {
            return Err(invalid("expected 64 hex characters"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| invalid("not hex"))?;
        let seed = Seed(bytes);
        bytes.zeroize();
        Ok(seed)
    }

    /// A deterministic seed from a number: SHA-256(domain tag || n little-endian).
    pub fn from_u64(n: u64) -> Seed {
        let mut hasher = Sha256::new();
        hasher.update(SEED_FROM_U64_TAG);
        hasher.update(n.to_le_bytes());
        Seed(hasher.finalize().into())
    }

    /// A fresh seed from the operating system's CSPRNG.
    pub fn random() -> Seed {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let seed = Seed(bytes);
        bytes.zeroize();
        seed
    }

    /// Wraps raw bytes as a seed.
    pub fn from_bytes(bytes: [u8; 32]) -> Seed {
        Seed(bytes)
    }

    /// A public name for the seed, safe to print: the first 8 bytes of SHA-256(domain tag ||
    /// seed), in hex. Two runs with the same fingerprint used the same seed; the seed cannot
    /// be recovered from it.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(FINGERPRINT_TAG);
        hasher.update(self.0);
        hex::encode(&hasher.finalize()[..8])
    }
}

impl fmt::Debug for Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

/// HKDF info: tag || index (little-endian) || purpose name || counter.
fn info(tag: &[u8], index: u64, purpose: KeyPurpose, counter: u32) -> Vec<u8> {
    let mut info = Vec::with_capacity(tag.len() + 8 + 12 + 4);
    info.extend_from_slice(tag);
    info.extend_from_slice(&index.to_le_bytes());
    info.extend_from_slice(purpose.as_str().as_bytes());
    info.extend_from_slice(&counter.to_le_bytes());
    info
}

/// Derives the P-256 private scalar and the key id for (`seed`, `index`, `purpose`); every
/// backend builds its key from this scalar, so all of them derive the same key.
pub(crate) fn derive_scalar(
    seed: &Seed,
    index: u64,
    purpose: KeyPurpose,
) -> (Zeroizing<[u8; 32]>, Uuid) {
    let hk = Hkdf::<Sha256>::new(Some(DERIVE_SALT), &seed.0);
    let mut counter: u32 = 0;
    let scalar = loop {
        let mut okm = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's 255*32 limit, so expand cannot fail.
        #[allow(clippy::expect_used)]
        hk.expand(&info(SCALAR_TAG, index, purpose, counter), okm.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        // Rejects zero and values >= n (probability ~2^-32 per try); retry with the next counter.
        if is_valid_scalar(&okm) {
            break okm;
        }
        counter += 1;
    };
    let mut id = [0u8; 16];
    #[allow(clippy::expect_used)]
    hk.expand(&info(KEY_ID_TAG, index, purpose, 0), &mut id)
        .expect("16 bytes is a valid HKDF-SHA256 output length");
    (scalar, uuid::Builder::from_random_bytes(id).into_uuid())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_from_hex_rejects_wrong_length_and_non_hex() {
        assert!(Seed::from_hex("00").is_err());
        assert!(Seed::from_hex(&"zz".repeat(32)).is_err());
        assert!(Seed::from_hex(&"ab".repeat(32)).is_ok());
    }

    #[test]
    fn fingerprints_name_seeds_without_showing_them() {
        let seed = Seed::from_u64(42);
        assert_eq!(seed.fingerprint(), Seed::from_u64(42).fingerprint());
        assert_ne!(seed.fingerprint(), Seed::from_u64(43).fingerprint());
        assert_eq!(seed.fingerprint().len(), 16);
        assert!(!hex::encode(seed.0).contains(&seed.fingerprint()));
    }

    #[test]
    fn seed_from_u64_is_deterministic_and_distinct() {
        assert_eq!(Seed::from_u64(7).0, Seed::from_u64(7).0);
        assert_ne!(Seed::from_u64(7).0, Seed::from_u64(8).0);
    }

    #[test]
    fn derived_key_ids_are_v4_uuids() {
        let (_, id) = derive_scalar(&Seed::from_u64(1), 0, KeyPurpose::Unrestricted);
        assert_eq!(id.get_version_num(), 4);
    }
}
