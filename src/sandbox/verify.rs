//! Signature verification exactly as API.md says: ECDSA P-256 with SHA-256, the public key an
//! uncompressed SEC1 point, the signature strict ASN.1 DER. Uses aws-lc-rs with the key parsed
//! once at registration, so a verification costs only the ECDSA check itself.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use std::fmt;
use std::sync::Arc;

/// Length of an uncompressed P-256 point: `04 || X || Y`.
pub const UNCOMPRESSED_P256_LEN: usize = 65;

/// An uncompressed P-256 point, `04||X||Y`, kept by value (no allocation per key).
pub type Point = [u8; UNCOMPRESSED_P256_LEN];

/// A validated P-256 public key, ready to verify. Cheap to clone.
#[derive(Clone)]
pub struct VerifyingKey {
    parsed: Arc<ParsedPublicKey>,
    point: Point,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(P-256)")
    }
}

/// Why bytes are not an acceptable public key. Messages never repeat the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 65 bytes.
    #[error(
        "the key has {0} bytes; a P-256 key is the 65-byte uncompressed SEC1 point 04||X||Y (130 hex characters), not DER, PEM or compressed"
    )]
    Length(usize),
    /// Does not start with `04`.
    #[error(
        "the key does not start with 04; send the uncompressed SEC1 point 04||X||Y, not a compressed one"
    )]
    NotUncompressed,
    /// Not a point on the curve.
    #[error("the key is not a point on the P-256 curve")]
    NotOnCurve,
}

impl VerifyingKey {
    /// Validates an uncompressed P-256 point.
    pub fn from_uncompressed(point: &[u8]) -> Result<Self, KeyError> {
        let Ok(point) = Point::try_from(point) else {
            return Err(KeyError::Length(point.len()));
        };
        if point[0] != 0x04 {
            return Err(KeyError::NotUncompressed);
        }
        let parsed = ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point)
            .map_err(|_| KeyError::NotOnCurve)?;
        Ok(VerifyingKey {
            parsed: Arc::new(parsed),
            point,
        })
    }

    /// The 65 point bytes.
    pub fn point(&self) -> &Point {
        &self.point
    }

    /// Verifies a signature that already passed [`check_der_signature`].
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, der_signature).is_ok()
    }
}

/// Why a signature's encoding is refused. Checked before any verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the signature is not strict ASN.1 DER SEQUENCE {{ INTEGER r, INTEGER s }}: {0}; sign with SHA256withECDSA and send the DER bytes as lowercase hex (not raw r||s)"
)]
pub struct SignatureEncodingError(pub &'static str);

/// P-256 group order n, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// Reads one minimal DER INTEGER holding a value in 1..n; returns the rest.
fn der_integer(input: &[u8]) -> Result<&[u8], SignatureEncodingError> {
    let err = SignatureEncodingError;
    let (&tag, rest) = input.split_first().ok_or(err("an INTEGER is missing"))?;
    if tag != 0x02 {
        return Err(err("expected an INTEGER (tag 02)"));
    }
    let (&len, rest) = rest
        .split_first()
        .ok_or(err("an INTEGER length is missing"))?;
    let len = usize::from(len);
    // Short-form lengths only: an r or s of P-256 is at most 33 bytes.
    if len == 0 || len > 33 {
        return Err(err("an INTEGER has an impossible length for P-256"));
    }
    if rest.len() < len {
        return Err(err("an INTEGER is truncated"));
    }
    let (value, rest) = rest.split_at(len);
    if value[0] & 0x80 != 0 {
        return Err(err("an INTEGER is negative"));
    }
    if value[0] == 0 && (len == 1 || value[1] & 0x80 == 0) {
        return Err(err(
            "an INTEGER has a superfluous leading zero byte or is zero",
        ));
    }
    let magnitude = if value[0] == 0 { &value[1..] } else { value };
    if magnitude.len() > 32 || (magnitude.len() == 32 && magnitude >= &P256_ORDER[..]) {
        return Err(err("an INTEGER is not below the P-256 group order"));
    }
    Ok(rest)
}

/// Checks that `sig` is exactly one strict DER `SEQUENCE { INTEGER r, INTEGER s }` with
/// minimal lengths, positive values in range, and nothing after it.
pub fn check_der_signature(sig: &[u8]) -> Result<(), SignatureEncodingError> {
    let err = SignatureEncodingError;
    let (&tag, rest) = sig.split_first().ok_or(err("it is empty"))?;
    if tag != 0x30 {
        return Err(err("it does not start with SEQUENCE (tag 30)"));
    }
    let (&len, body) = rest
        .split_first()
        .ok_or(err("the SEQUENCE length is missing"))?;
    if len & 0x80 != 0 {
        // At most 2 + 2*(2+33) = 72 bytes: the short form is the only minimal encoding.
        return Err(err("the SEQUENCE length is not in minimal short form"));
    }
    let len = usize::from(len);
    if body.len() < len {
        return Err(err("it is truncated"));
    }
    if body.len() > len {
        return Err(err("there are bytes after the SEQUENCE"));
    }
    let rest = der_integer(body)?;
    let rest = der_integer(rest)?;
    if !rest.is_empty() {
        return Err(err("the SEQUENCE holds more than r and s"));
    }
    Ok(())
}

/// Half the P-256 group order, floor(n/2), big-endian: a signature's s above it is "high".
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether a strict-DER signature (one that passed [`check_der_signature`]) has s > n/2. Both
/// (r, s) and its twin (r, n − s) verify; a low-S policy accepts only the lower one. Anything
/// that is not strict DER answers `false` (it is refused as malformed elsewhere).
pub fn is_high_s(der: &[u8]) -> bool {
    if check_der_signature(der).is_err() {
        return false;
    }
    // SEQUENCE tag and length, then r's tag, length and value, then s's tag and length.
    let r_len = usize::from(der[3]);
    let s_start = 4 + r_len + 2;
    let s = &der[s_start..];
    let s = if s[0] == 0 { &s[1..] } else { s };
    s.len() == 32 && s > &P256_HALF_ORDER[..]
}

/// The outcome of checking a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It verifies.
    Valid,
    /// Well-formed, but not a signature of this message by this key.
    Mismatch,
    /// Not strict DER; nothing was verified.
    Malformed(SignatureEncodingError),
}

/// Strict DER check, then ECDSA verification. The function the sandbox and its bench use.
pub fn verify_signature(key: &VerifyingKey, message: &[u8], der_signature: &[u8]) -> Verdict {
    if let Err(e) = check_der_signature(der_signature) {
        return Verdict::Malformed(e);
    }
    if key.verify(message, der_signature) {
        Verdict::Valid
    } else {
        Verdict::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    fn key_pair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn a_der_signature_verifies_and_variants_do_not() {
        let kp = key_pair();
        let key = VerifyingKey::from_uncompressed(kp.public_key().as_ref()).unwrap();
        let sig = kp.sign(&SystemRandom::new(), b"212212").unwrap();
        let sig = sig.as_ref();
        assert_eq!(verify_signature(&key, b"212212", sig), Verdict::Valid);
        assert_eq!(verify_signature(&key, b"212213", sig), Verdict::Mismatch);
        let mut trailing = sig.to_vec();
        trailing.push(0);
        assert!(matches!(
            verify_signature(&key, b"212212", &trailing),
            Verdict::Malformed(_)
        ));
        assert!(matches!(
            verify_signature(&key, b"212212", &sig[..sig.len() - 1]),
            Verdict::Malformed(_)
        ));
    }

    #[test]
    fn non_minimal_integers_are_refused() {
        // r = 1 with a superfluous leading zero.
        assert!(
            check_der_signature(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01]).is_err()
        );
        assert!(check_der_signature(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]).is_ok());
        // Negative s.
        assert!(check_der_signature(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x81]).is_err());
        // Zero r.
        assert!(check_der_signature(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]).is_err());
        // Long-form length.
        assert!(
            check_der_signature(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]).is_err()
        );
    }

    /// The twin of a DER signature: (r, n − s), DER-encoded.
    pub(crate) fn twin(der: &[u8]) -> Vec<u8> {
        let r_len = usize::from(der[3]);
        let r = &der[4..4 + r_len];
        let s = &der[4 + r_len + 2..];
        let s = if s[0] == 0 { &s[1..] } else { s };
        let mut padded = [0u8; 32];
        padded[32 - s.len()..].copy_from_slice(s);
        // n − s, big-endian subtraction with borrow.
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let mut d = i16::from(P256_ORDER[i]) - i16::from(padded[i]) - borrow;
            borrow = i16::from(d < 0);
            if d < 0 {
                d += 256;
            }
            out[i] = d as u8;
        }
        let mut s2: Vec<u8> = out.iter().copied().skip_while(|&b| b == 0).collect();
        if s2[0] & 0x80 != 0 {
            s2.insert(0, 0);
        }
        let mut sig = vec![0x30, 0, 0x02, r.len() as u8];
        sig.extend_from_slice(r);
        sig.extend_from_slice(&[0x02, s2.len() as u8]);
        sig.extend_from_slice(&s2);
        sig[1] = (sig.len() - 2) as u8;
        sig
    }

    #[test]
    fn a_signature_and_its_twin_both_verify_and_exactly_one_is_high_s() {
        let kp = key_pair();
        let key = VerifyingKey::from_uncompressed(kp.public_key().as_ref()).unwrap();
        for _ in 0..16 {
            let sig = kp.sign(&SystemRandom::new(), b"212212").unwrap();
            let sig = sig.as_ref().to_vec();
            let other = twin(&sig);
            assert_eq!(verify_signature(&key, b"212212", &other), Verdict::Valid);
            assert_ne!(is_high_s(&sig), is_high_s(&other));
            assert_eq!(twin(&other), sig);
        }
        assert!(!is_high_s(b"not der"));
    }

    #[test]
    fn keys_must_be_uncompressed_points_on_the_curve() {
        let kp = key_pair();
        let point = kp.public_key().as_ref();
        assert!(VerifyingKey::from_uncompressed(point).is_ok());
        assert_eq!(
            VerifyingKey::from_uncompressed(&point[..33]).unwrap_err(),
            KeyError::Length(33)
        );
        let mut compressed = point.to_vec();
        compressed[0] = 0x02;
        assert_eq!(
            VerifyingKey::from_uncompressed(&compressed).unwrap_err(),
            KeyError::NotUncompressed
        );
        let mut off_curve = point.to_vec();
        off_curve[64] ^= 1;
        assert_eq!(
            VerifyingKey::from_uncompressed(&off_curve).unwrap_err(),
            KeyError::NotOnCurve
        );
    }
}
