//! Strict SHA256withECDSA verification, exactly as the bank checks device signatures.

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};

use crate::error::VerifyError;

/// Decodes lowercase, even-length hex; `what` names the input in the error.
fn decode_lower_hex(s: &str, what: &str) -> Result<Vec<u8>, String> {
    if s.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if !s.len().is_multiple_of(2) {
        return Err(format!(
            "{what} has an odd number of hex characters ({})",
            s.len()
        ));
    }
    if let Some(pos) = s
        .bytes()
        .position(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(format!(
            "{what} must be lowercase hex; invalid character at position {pos}"
        ));
    }
    hex::decode(s).map_err(|_| format!("{what} is not hex"))
}

/// Parses lowercase hex of a 65-byte uncompressed SEC1 point that lies on P-256.
pub fn parse_public_key_hex(public_key_hex: &str) -> Result<VerifyingKey, VerifyError> {
    let bytes =
        decode_lower_hex(public_key_hex, "public key").map_err(VerifyError::BadPublicKey)?;
    if bytes.len() != 65 {
        return Err(VerifyError::BadPublicKey(format!(
            "expected 65 bytes (uncompressed SEC1 point 04||X||Y), got {}",
            bytes.len()
        )));
    }
    if bytes[0] != 0x04 {
        return Err(VerifyError::BadPublicKey(format!(
            "expected uncompressed point prefix 04, got {:02x}",
            bytes[0]
        )));
    }
    VerifyingKey::from_sec1_bytes(&bytes)
        .map_err(|_| VerifyError::BadPublicKey("the point is not on the P-256 curve".to_owned()))
}

/// Whether `s` is lowercase hex of a 65-byte uncompressed SEC1 point on P-256.
pub fn public_key_hex_is_valid(s: &str) -> bool {
    parse_public_key_hex(s).is_ok()
}

/// Parses lowercase hex of a strict ASN.1 DER `SEQUENCE { INTEGER r, INTEGER s }`.
pub fn parse_signature_hex(signature_hex: &str) -> Result<Signature, VerifyError> {
    let bytes =
        decode_lower_hex(signature_hex, "signature").map_err(VerifyError::BadSignatureEncoding)?;
    if bytes.first() != Some(&0x30) {
        return Err(VerifyError::BadSignatureEncoding(
            "not ASN.1 DER (expected a SEQUENCE starting with 30; raw r||s is not accepted)"
                .to_owned(),
        ));
    }
    let sig = Signature::from_der(&bytes).map_err(|_| {
        VerifyError::BadSignatureEncoding(
            "not a valid DER SEQUENCE of two positive INTEGERs r and s".to_owned(),
        )
    })?;
    // Belt and braces: only the one canonical encoding of (r, s) is accepted.
    if sig.to_der().as_bytes() != bytes.as_slice() {
        return Err(VerifyError::BadSignatureEncoding(
            "DER is not canonical (padding, long-form lengths or trailing bytes)".to_owned(),
        ));
    }
    Ok(sig)
}

/// Checks a SHA256withECDSA DER signature (lowercase hex) over `message` under a P-256 key.
pub fn verify_hex(
    public_key_hex: &str,
    message: &[u8],
    signature_hex: &str,
) -> Result<(), VerifyError> {
    let key = parse_public_key_hex(public_key_hex)?;
    let sig = parse_signature_hex(signature_hex)?;
    key.verify(message, &sig).map_err(|_| VerifyError::Mismatch)
}

/// Converts a DER signature (lowercase hex) into the 64-byte fixed-size `r||s` form.
pub fn der_signature_hex_to_raw(signature_hex: &str) -> Result<[u8; 64], VerifyError> {
    let sig = parse_signature_hex(signature_hex)?;
    Ok(sig.to_bytes().into())
}

/// Converts a 64-byte `r||s` signature into DER, as lowercase hex.
pub fn raw_signature_to_der_hex(raw: &[u8; 64]) -> Result<String, VerifyError> {
    let sig = Signature::from_slice(raw).map_err(|_| {
        VerifyError::BadSignatureEncoding("r or s is zero or not below the group order".to_owned())
    })?;
    Ok(hex::encode(sig.to_der().as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_odd_and_uppercase_hex_are_named_in_the_error() {
        assert!(decode_lower_hex("", "x").unwrap_err().contains("empty"));
        assert!(decode_lower_hex("abc", "x").unwrap_err().contains("odd"));
        assert!(
            decode_lower_hex("AB", "x")
                .unwrap_err()
                .contains("lowercase")
        );
    }

    #[test]
    fn a_point_off_the_curve_is_rejected() {
        let mut bad = String::from("04");
        bad.push_str(&"11".repeat(64));
        assert!(matches!(
            parse_public_key_hex(&bad),
            Err(VerifyError::BadPublicKey(_))
        ));
    }
}
