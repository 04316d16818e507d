//! Value types that validate when parsed, so malformed values never cross a boundary.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Whether two secrets (a token, a client secret, an OTP) are the same, in time that depends
/// on neither where they differ nor their lengths: both are hashed with SHA-256 and the
/// digests compared with `subtle`. The one comparison of secrets in the crate.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use aws_lc_rs::digest::{SHA256, digest};
    let (a, b) = (digest(&SHA256, a), digest(&SHA256, b));
    a.as_ref().ct_eq(b.as_ref()).into()
}

/// Why a value was refused. Messages never repeat secret input (OTPs, TANs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Hex text that is empty, of odd length, too long, or not lowercase hex.
    #[error("{what} must be lowercase hexadecimal of even length, {min}-{max} characters: {why}")]
    Hex {
        /// What the value was meant to be.
        what: &'static str,
        /// Shortest allowed length.
        min: usize,
        /// Longest allowed length.
        max: usize,
        /// What exactly is wrong.
        why: String,
    },
    /// An OTP or TAN that is not exactly six ASCII digits.
    #[error("a one-time password is exactly 6 digits (0-9)")]
    Otp,
    /// A phone number that is not in E.164 form.
    #[error("{0:?} is not an E.164 phone number: write '+', the country code and 6-14 more digits")]
    PhoneNumber(String),
}

/// Whether every byte is `0-9` or `a-f`: every byte is looked at (no early exit), so the
/// loop vectorizes; an answer of `false` is rare and is explained by the caller.
pub(crate) fn is_lowercase_hex(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| {
        ok & ((b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'a') < 6))
    })
}

fn check_hex(what: &'static str, s: &str, min: usize, max: usize) -> Result<(), ValueError> {
    let fail = |why: String| ValueError::Hex {
        what,
        min,
        max,
        why,
    };
    if s.len() < min || s.len() > max {
        return Err(fail(format!("it has {} characters", s.len())));
    }
    if !s.len().is_multiple_of(2) {
        return Err(fail(format!(
            "it has an odd number ({}) of characters",
            s.len()
        )));
    }
    // The usual case checked with no early exit, which the compiler turns into vector
    // instructions; the slower search below only names the fault.
    if is_lowercase_hex(s.as_bytes()) {
        return Ok(());
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !matches!(c, '0'..='9' | 'a'..='f'))
    {
        let why = if c.is_ascii_hexdigit() {
            format!("uppercase digit {c:?} at position {i}")
        } else {
            format!("character {c:?} at position {i} is not a hex digit")
        };
        return Err(fail(why));
    }
    Ok(())
}

macro_rules! hex_value {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        /// Written from where the text is (no copy into a `String` first).
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Parses lowercase hex of allowed length.
            pub fn parse(s: &str) -> Result<Self, ValueError> {
                check_hex($what, s, $min, $max)?;
                Ok($name(s.to_owned()))
            }

            /// The hex text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The decoded bytes.
            pub fn to_bytes(&self) -> Vec<u8> {
                // Validated as even-length lowercase hex on construction; decoding into a
                // buffer of the right size skips `hex::decode`'s byte-by-byte collect.
                let mut bytes = vec![0u8; self.0.len() / 2];
                match hex::decode_to_slice(&self.0, &mut bytes) {
                    Ok(()) => bytes,
                    Err(_) => Vec::new(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                check_hex($what, &s, $min, $max)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

hex_value!(
    /// A public key as lowercase hex (for P-256 the 65-byte uncompressed SEC1 point).
    PublicKeyHex,
    "a public key",
    2,
    1024
);
hex_value!(
    /// A signature as lowercase hex (for P-256 ASN.1 DER, 140-144 characters).
    SignatureHex,
    "a signature",
    2,
    2048
);

/// A six-digit one-time password or TAN. Its `Debug` and `Display` never show the digits.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Otp(Zeroizing<String>);

/// Written from the zeroized buffer itself: no copy of the digits is left behind.
impl Serialize for Otp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl Otp {
    /// Parses exactly six ASCII digits.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if s.len() == 6 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Otp(Zeroizing::new(s.to_owned())))
        } else {
            Err(ValueError::Otp)
        }
    }

    /// The digits. Call only to sign, send or compare them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in constant time, so timing does not reveal how many digits matched.
    pub fn matches(&self, other: &Otp) -> bool {
        same_secret(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl fmt::Debug for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Otp(<redacted>)")
    }
}

impl fmt::Display for Otp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl TryFrom<String> for Otp {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        let s = Zeroizing::new(s);
        Otp::parse(&s)
    }
}

/// A mobile number in E.164 form, e.g. `+15550101`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct PhoneNumber(String);

/// Written from where the text is (no copy into a `String` first).
impl Serialize for PhoneNumber {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl PhoneNumber {
    /// Parses `+` followed by 7 to 15 digits, the first not zero.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let digits = s.strip_prefix('+').unwrap_or("");
        let ok = (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if ok {
            Ok(PhoneNumber(s.to_owned()))
        } else {
            Err(ValueError::PhoneNumber(s.chars().take(32).collect()))
        }
    }

    /// The text of [`PhoneNumber::test_number`].
    pub const TEST: &'static str = "+15550101";

    /// The sandbox's test number, which always receives `212212`.
    pub fn test_number() -> Self {
        PhoneNumber(Self::TEST.to_owned())
    }

    /// The number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.0)
    }
}

impl FromStr for PhoneNumber {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}

impl From<PhoneNumber> for String {
    fn from(v: PhoneNumber) -> String {
        v.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vectorized_hex_check_agrees_with_the_definition_for_every_byte_at_every_position() {
        let is_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        for len in [1usize, 15, 16, 17, 64, 130, 144] {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(is_lowercase_hex(&bytes), is_hex(b), "{b} at {at} of {len}");
                }
            }
        }
        assert!(is_lowercase_hex(b""));
    }

    #[test]
    fn secrets_match_only_when_every_byte_and_the_length_agree() {
        assert!(same_secret(b"s3cret-token", b"s3cret-token"));
        assert!(same_secret(b"", b""));
        assert!(!same_secret(b"s3cret-token", b"s3cret-tokeN"));
        assert!(!same_secret(b"s3cret-token", b"s3cret-tok"), "a prefix");
        assert!(
            !same_secret(b"s3cret-token", b"s3cret-token\0"),
            "a longer text"
        );
        assert!(!same_secret(b"", b"x"));
    }

    #[test]
    fn hex_values_refuse_uppercase_odd_and_foreign_characters() {
        assert!(SignatureHex::parse("3044ab").is_ok());
        let upper = SignatureHex::parse("3044AB").unwrap_err().to_string();
        assert!(upper.contains("uppercase"), "{upper}");
        assert!(
            SignatureHex::parse("304")
                .unwrap_err()
                .to_string()
                .contains("odd")
        );
        assert!(SignatureHex::parse("30zz").is_err());
        assert!(SignatureHex::parse("").is_err());
        assert!(SignatureHex::parse(&"ab".repeat(1025)).is_err());
    }

    #[test]
    fn otps_are_six_digits_and_never_printed() {
        let otp = Otp::parse("212212").unwrap();
        assert_eq!(format!("{otp:?} {otp}"), "Otp(<redacted>) <redacted>");
        assert!(Otp::parse("21221").is_err());
        assert!(Otp::parse("21221a").is_err());
        assert!(!Otp::parse("212213").unwrap().matches(&otp));
        assert!(!ValueError::Otp.to_string().contains("212"));
    }

    #[test]
    fn values_are_written_as_their_text_and_read_back() {
        fn round_trip<T>(v: &T, text: &str)
        where
            T: Serialize + serde::de::DeserializeOwned + PartialEq + fmt::Debug,
        {
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("{text:?}"));
            assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), v);
        }
        round_trip(&PublicKeyHex::parse("04ab").unwrap(), "04ab");
        round_trip(
            &SignatureHex::parse("3006020101020101").unwrap(),
            "3006020101020101",
        );
        round_trip(&Otp::parse("212212").unwrap(), "212212");
        round_trip(&PhoneNumber::parse("+15550101").unwrap(), "+15550101");
        round_trip(&crate::api::AccessToken::new("t0ken".into()), "t0ken");
        round_trip(&crate::api::DeviceId::from_user("d-1").unwrap(), "d-1");
        // Reading still checks: a refused value is an error, not a value.
        assert!(serde_json::from_str::<PublicKeyHex>("\"04AB\"").is_err());
        assert!(serde_json::from_str::<Otp>("\"2122\"").is_err());
    }

    #[test]
    fn phone_numbers_are_e164() {
        assert!(PhoneNumber::parse("+15550101").is_ok());
        assert!(PhoneNumber::parse("+4915112345678").is_ok());
        assert!(PhoneNumber::parse("015550101").is_err());
        assert!(PhoneNumber::parse("+0155501").is_err());
        assert!(PhoneNumber::parse("+1555 0101").is_err());
    }
}
