//! Public keys and signatures in the encodings other systems read: the API's hex, SPKI
//! (base64 DER or PEM) and JWK for keys; DER (hex or base64) and raw `r||s` for signatures.
//! The DER and PEM come from the RustCrypto encoders (`p256`'s `pkcs8`/`pem` features), so no
//! ASN.1 is written by hand here.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePublicKey as _;
use p256::pkcs8::LineEnding;

use crate::error::KeystoreError;
use crate::key::{KeyAlgorithm, KeyPurpose, SigningKey};

/// How a public key is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicKeyFormat {
    /// Lowercase hex of the uncompressed SEC1 point `04||X||Y` (the API's format).
    #[default]
    Hex,
    /// Base64 (standard alphabet, padded) of the DER SubjectPublicKeyInfo.
    SpkiBase64,
    /// PEM `-----BEGIN PUBLIC KEY-----` of the SubjectPublicKeyInfo.
    Pem,
    /// A JSON Web Key `{"kty":"EC","crv":"P-256","x","y"}` (RFC 7518 §6.2.1).
    Jwk,
}

impl PublicKeyFormat {
    /// Every format, in the order help texts list them.
    pub const ALL: [PublicKeyFormat; 4] = [
        PublicKeyFormat::Hex,
        PublicKeyFormat::SpkiBase64,
        PublicKeyFormat::Pem,
        PublicKeyFormat::Jwk,
    ];

    /// The name on the command line: hex, spki-base64, pem or jwk.
    pub fn as_str(self) -> &'static str {
        match self {
            PublicKeyFormat::Hex => "hex",
            PublicKeyFormat::SpkiBase64 => "spki-base64",
            PublicKeyFormat::Pem => "pem",
            PublicKeyFormat::Jwk => "jwk",
        }
    }
}

/// How a signature is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureFormat {
    /// Lowercase hex of the ASN.1 DER `SEQUENCE { r, s }` (the API's format).
    #[default]
    Hex,
    /// Base64 (standard alphabet, padded) of the same DER.
    Base64,
    /// Base64 of the fixed 64-byte `r||s` (WebCrypto, JOSE `ES256`).
    RawBase64,
}

impl SignatureFormat {
    /// Every format, in the order help texts list them.
    pub const ALL: [SignatureFormat; 3] = [
        SignatureFormat::Hex,
        SignatureFormat::Base64,
        SignatureFormat::RawBase64,
    ];

    /// The name on the command line: hex, base64 or raw-base64.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFormat::Hex => "hex",
            SignatureFormat::Base64 => "base64",
            SignatureFormat::RawBase64 => "raw-base64",
        }
    }
}

fn unknown(what: &'static str, given: &str, all: &[&str]) -> KeystoreError {
    KeystoreError::InvalidInput {
        what,
        reason: format!("{given:?} is not one of {}", all.join(", ")),
    }
}

impl FromStr for PublicKeyFormat {
    type Err = KeystoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKeyFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let all = PublicKeyFormat::ALL.map(PublicKeyFormat::as_str);
                unknown("public key format", s, &all)
            })
    }
}

impl FromStr for SignatureFormat {
    type Err = KeystoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignatureFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let all = SignatureFormat::ALL.map(SignatureFormat::as_str);
                unknown("signature format", s, &all)
            })
    }
}

impl fmt::Display for PublicKeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SignatureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A P-256 public key as a JSON Web Key; serializes to exactly the four RFC 7518 members.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Jwk {
    /// Always "EC".
    pub kty: String,
    /// Always "P-256".
    pub crv: String,
    /// The X coordinate, 32 bytes, base64url without padding.
    pub x: String,
    /// The Y coordinate, 32 bytes, base64url without padding.
    pub y: String,
}

impl SigningKey {
    fn p256_public(&self) -> Result<p256::PublicKey, KeystoreError> {
        match self.algorithm() {
            KeyAlgorithm::EcdsaP256 => p256::PublicKey::from_sec1_bytes(&self.public_key_bytes())
                .map_err(|_| KeystoreError::InvalidInput {
                    what: "public key",
                    reason: "the vault's P-256 point does not decode".to_owned(),
                }),
            KeyAlgorithm::Ed25519 => Err(KeystoreError::InvalidInput {
                what: "public key format",
                reason: "only P-256 keys can be written as SPKI, PEM or JWK here".to_owned(),
            }),
        }
    }

    /// The DER SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, uncompressed point).
    pub fn public_key_spki_der(&self) -> Result<Vec<u8>, KeystoreError> {
        let der = self
            .p256_public()?
            .to_public_key_der()
            .map_err(|e| encoding_failed("SPKI DER", &e))?;
        Ok(der.as_bytes().to_vec())
    }

    /// The public key as a JSON Web Key.
    pub fn public_key_jwk(&self) -> Result<Jwk, KeystoreError> {
        let point = self.p256_public()?.to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(encoding_failed("JWK", &"the point has no coordinates"));
        };
        Ok(Jwk {
            kty: "EC".to_owned(),
            crv: "P-256".to_owned(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// The public key written in `format` (a JWK as compact JSON, PEM with a final newline).
    pub fn public_key_as(&self, format: PublicKeyFormat) -> Result<String, KeystoreError> {
        match format {
            PublicKeyFormat::Hex => Ok(self.public_key_hex()),
            PublicKeyFormat::SpkiBase64 => Ok(STANDARD.encode(self.public_key_spki_der()?)),
            PublicKeyFormat::Pem => self
                .p256_public()?
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| encoding_failed("PEM", &e)),
            PublicKeyFormat::Jwk => {
                let jwk = self.public_key_jwk()?;
                // Four string members of base64url and fixed names: nothing to escape.
                Ok(format!(
                    r#"{{"kty":"{}","crv":"{}","x":"{}","y":"{}"}}"#,
                    jwk.kty, jwk.crv, jwk.x, jwk.y
                ))
            }
        }
    }
}

fn encoding_failed(what: &str, e: &dyn fmt::Display) -> KeystoreError {
    KeystoreError::InvalidInput {
        what: "public key",
        reason: format!("cannot write it as {what}: {e}"),
    }
}

/// Writes a P-256 DER signature (as the vault returns it, lowercase hex) in `format`.
pub fn encode_signature(der_hex: &str, format: SignatureFormat) -> Result<String, KeystoreError> {
    let invalid = |e: crate::VerifyError| KeystoreError::InvalidInput {
        what: "signature",
        reason: e.to_string(),
    };
    match format {
        SignatureFormat::Hex => Ok(der_hex.to_owned()),
        SignatureFormat::Base64 => {
            let der = crate::parse_signature_hex(der_hex).map_err(invalid)?;
            Ok(STANDARD.encode(der.to_der().as_bytes()))
        }
        SignatureFormat::RawBase64 => {
            let raw = crate::der_signature_hex_to_raw(der_hex).map_err(invalid)?;
            Ok(STANDARD.encode(raw))
        }
    }
}

/// How every command, prompt and JSON document names a key: its purpose, the bank's key id
/// once known, and the fingerprint of its public key (the vault's own key id stays inside).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyLabel {
    /// What the key may be used for.
    pub purpose: KeyPurpose,
    /// The bank's id of the key, once the phone knows it.
    pub key_id: Option<String>,
    /// The first 8 bytes of SHA-256 of the public key, in hex (as `show` prints it).
    pub fingerprint: String,
}

impl SigningKey {
    /// This key's label, with the bank's key id if known.
    pub fn label(&self, bank_key_id: Option<&str>) -> KeyLabel {
        KeyLabel {
            purpose: self.purpose(),
            key_id: bank_key_id.map(str::to_owned),
            fingerprint: self.fingerprint(),
        }
    }
}

impl fmt::Display for KeyLabel {
    /// `restricted key a6a9d8bc3e6ddcf1 (bank id c6dd1de6-…)`, or `(bank id not known)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} key {} (bank id ", self.purpose, self.fingerprint)?;
        match &self.key_id {
            Some(id) => write!(f, "{id})"),
            None => f.write_str("not known)"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate(KeyAlgorithm::EcdsaP256, KeyPurpose::Restricted)
    }

    #[test]
    fn format_names_round_trip_and_unknown_names_are_listed() {
        for f in PublicKeyFormat::ALL {
            assert_eq!(f.as_str().parse::<PublicKeyFormat>().unwrap(), f);
        }
        for f in SignatureFormat::ALL {
            assert_eq!(f.as_str().parse::<SignatureFormat>().unwrap(), f);
        }
        let err = "der".parse::<SignatureFormat>().unwrap_err().to_string();
        assert!(err.contains("hex, base64, raw-base64"), "{err}");
    }

    #[test]
    fn the_spki_is_the_fixed_p256_prefix_followed_by_the_point() {
        // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { 04||X||Y } }
        let prefix = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
        let k = key();
        let der = hex::encode(k.public_key_spki_der().unwrap());
        assert_eq!(der, format!("{prefix}{}", k.public_key_hex()));
    }

    #[test]
    fn the_pem_wraps_the_same_spki() {
        let k = key();
        let pem = k.public_key_as(PublicKeyFormat::Pem).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(body, k.public_key_as(PublicKeyFormat::SpkiBase64).unwrap());
    }

    #[test]
    fn ed25519_keys_are_refused_for_p256_formats() {
        let k = SigningKey::generate(KeyAlgorithm::Ed25519, KeyPurpose::Unrestricted);
        assert!(k.public_key_as(PublicKeyFormat::Jwk).is_err());
        assert!(k.public_key_as(PublicKeyFormat::Hex).is_ok());
    }

    #[test]
    fn a_label_names_purpose_fingerprint_and_bank_id() {
        let k = key();
        let fp = k.fingerprint();
        assert_eq!(
            k.label(None).to_string(),
            format!("restricted key {fp} (bank id not known)")
        );
        assert_eq!(
            k.label(Some("c6dd")).to_string(),
            format!("restricted key {fp} (bank id c6dd)")
        );
    }

    #[test]
    fn signatures_convert_from_der_hex() {
        let k = key();
        let der_hex = k.sign_hex(b"m");
        assert_eq!(
            encode_signature(&der_hex, SignatureFormat::Hex).unwrap(),
            der_hex
        );
        let b64 = encode_signature(&der_hex, SignatureFormat::Base64).unwrap();
        assert_eq!(hex::encode(STANDARD.decode(b64).unwrap()), der_hex);
        let raw = encode_signature(&der_hex, SignatureFormat::RawBase64).unwrap();
        assert_eq!(STANDARD.decode(raw).unwrap().len(), 64);
        assert!(encode_signature("zz", SignatureFormat::Base64).is_err());
    }
}
