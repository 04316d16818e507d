//! Signing backends: who does the P-256 arithmetic for a key.
//!
//! RustCrypto's `p256` is the reference (pure Rust, deterministic RFC 6979 signatures, the
//! backend of single phones and vaults). aws-lc-rs does the same arithmetic in assembly-
//! optimized C, several times faster; fleets use it by default. Both start from the same
//! 32-byte scalar, so the same seed, index and purpose give the same public key on either.
//! aws-lc's ECDSA nonces are random (not RFC 6979): its signatures of one message differ
//! from call to call and from the reference's, and all of them verify under the same key.

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use zeroize::Zeroizing;

use crate::error::KeystoreError;

/// Which library signs and computes public keys for a P-256 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// RustCrypto `p256`: the reference, deterministic (RFC 6979) signatures.
    #[default]
    RustCrypto,
    /// aws-lc-rs: the fast one, randomized ECDSA nonces.
    AwsLc,
}

impl Backend {
    /// Both backends, the reference first.
    pub const ALL: [Backend; 2] = [Backend::RustCrypto, Backend::AwsLc];

    /// The command-line name: "rustcrypto" or "aws-lc".
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::RustCrypto => "rustcrypto",
            Backend::AwsLc => "aws-lc",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backend {
    type Err = KeystoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "rustcrypto" => Ok(Backend::RustCrypto),
            "aws-lc" => Ok(Backend::AwsLc),
            other => Err(KeystoreError::InvalidInput {
                what: "signer",
                reason: format!("{other:?} is neither \"rustcrypto\" nor \"aws-lc\""),
            }),
        }
    }
}

/// The P-256 group order n, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Whether 32 big-endian bytes are a valid private scalar (1 <= k < n); looks at every byte
/// whatever the value, so its time says nothing about the secret.
pub(crate) fn is_valid_scalar(k: &[u8; 32]) -> bool {
    // k - n computed byte by byte from the least significant end: a final borrow means k < n.
    let mut borrow = 0u16;
    let mut any = 0u8;
    for i in (0..32).rev() {
        let diff = u16::from(k[i])
            .wrapping_sub(u16::from(ORDER[i]))
            .wrapping_sub(borrow);
        borrow = (diff >> 8) & 1;
        any |= k[i];
    }
    borrow == 1 && any != 0
}

/// RFC 5915 `ECPrivateKey` without the public key: SEQUENCE { INTEGER 1, OCTET STRING(32)
/// k, [0] OID prime256v1 }. aws-lc computes the public point itself when parsing it.
const DER_PREFIX: [u8; 7] = [0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
const DER_SUFFIX: [u8; 12] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

/// A P-256 key held by aws-lc. aws-lc frees its key with `OPENSSL_free`, which wipes the
/// allocation first, so the scalar is zeroized on drop as with the reference backend.
pub(crate) struct AwsLcP256(EcdsaKeyPair);

impl AwsLcP256 {
    /// The key of a valid scalar (see [`is_valid_scalar`]); `None` if aws-lc rejects it.
    pub(crate) fn from_scalar(k: &[u8; 32]) -> Option<AwsLcP256> {
        let mut der = Zeroizing::new([0u8; 51]);
        der[..7].copy_from_slice(&DER_PREFIX);
        der[7..39].copy_from_slice(k);
        der[39..].copy_from_slice(&DER_SUFFIX);
        EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, der.as_ref())
            .ok()
            .map(AwsLcP256)
    }

    /// The 65-byte uncompressed SEC1 public point.
    pub(crate) fn public_key_bytes(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    /// A DER SHA256withECDSA signature with a random nonce.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        // aws-lc fails to sign only when it cannot allocate or its own self-checks fail;
        // neither is a condition a caller could handle.
        #[allow(clippy::expect_used)]
        let sig = self
            .0
            .sign(&SystemRandom::new(), message)
            .expect("aws-lc ECDSA signing with a valid P-256 key");
        sig.as_ref().to_vec()
    }

    /// The 32-byte scalar, in a buffer that wipes itself.
    pub(crate) fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        match self.0.private_key().as_be_bytes() {
            // `EcPrivateKeyBin` zeroizes its own buffer on drop.
            Ok(bin) => Zeroizing::new(bin.as_ref().to_vec()),
            Err(_) => Zeroizing::new(Vec::new()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scalar_range_check_matches_the_definition() {
        let mut n_minus_1 = ORDER;
        n_minus_1[31] -= 1;
        let mut one = [0u8; 32];
        one[31] = 1;
        assert!(is_valid_scalar(&one));
        assert!(is_valid_scalar(&n_minus_1));
        assert!(!is_valid_scalar(&[0u8; 32]));
        assert!(!is_valid_scalar(&ORDER));
        assert!(!is_valid_scalar(&[0xff; 32]));
        let mut just_above = ORDER;
        just_above[31] += 1;
        assert!(!is_valid_scalar(&just_above));
        let mut high_byte_below = ORDER;
        high_byte_below[4] = 0xff;
        high_byte_below[31] = 0;
        // 0xffffffff ff.. > n: the fifth byte of n is 0x00.
        assert!(!is_valid_scalar(&high_byte_below));
    }

    #[test]
    fn aws_lc_accepts_the_range_ends() {
        let mut n_minus_1 = ORDER;
        n_minus_1[31] -= 1;
        let mut one = [0u8; 32];
        one[31] = 1;
        assert!(AwsLcP256::from_scalar(&one).is_some());
        assert!(AwsLcP256::from_scalar(&n_minus_1).is_some());
        assert_eq!(
            AwsLcP256::from_scalar(&one).unwrap().secret_bytes()[..],
            one
        );
    }
}
