//! Typed identifiers. Each id knows its canonical shape so the sandbox can mint ids; parsing
//! is tolerant (any short URL-safe token) so the phone keeps working if a server's ids differ.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An id that is empty, too long or holds characters that cannot appear in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: ids are 1-64 characters of letters, digits, '-' or '_'")]
pub struct IdError {
    /// Which kind of id was expected.
    pub kind: &'static str,
    /// What was given (ids are not secret).
    pub value: String,
}

fn random_hex32() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn check_token(kind: &'static str, value: &str) -> Result<(), IdError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(IdError {
            kind,
            value: value.chars().take(80).collect(),
        })
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $mint:expr, $canonical:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses an id, accepting any URL-safe token of 1-64 characters.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_token($kind, value)?;
                Ok($name(value.to_owned()))
            }

            /// Mints a fresh random id in the bank's canonical shape.
            pub fn generate() -> Self {
                let mint: fn() -> String = $mint;
                $name(mint())
            }

            /// Whether this id has the bank's canonical shape.
            pub fn is_canonical(&self) -> bool {
                let check: fn(&str) -> bool = $canonical;
                check(&self.0)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
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
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_token($kind, &s)?;
                Ok($name(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

typed_id!(
    /// A person: `<32 hex>cper`.
    PersonId,
    "person id",
    || format!("{}cper", random_hex32()),
    |s| s.strip_suffix("cper").is_some_and(is_hex32)
);
typed_id!(
    /// A mobile number record: `<32 hex>cmno`.
    MobileNumberId,
    "mobile number id",
    || format!("{}cmno", random_hex32()),
    |s| s.strip_suffix("cmno").is_some_and(is_hex32)
);
typed_id!(
    /// A device: 32 lowercase hex.
    DeviceId,
    "device id",
    random_hex32,
    is_hex32
);
typed_id!(
    /// A challenge of any kind: 32 lowercase hex.
    ChallengeId,
    "challenge id",
    random_hex32,
    is_hex32
);
typed_id!(
    /// A change request: 32 lowercase hex.
    ChangeRequestId,
    "change request id",
    random_hex32,
    is_hex32
);
typed_id!(
    /// A device key: a UUID.
    KeyId,
    "key id",
    || uuid::Uuid::new_v4().to_string(),
    |s| uuid::Uuid::parse_str(s).is_ok_and(|u| u.hyphenated().to_string() == s)
);

impl From<uuid::Uuid> for KeyId {
    fn from(id: uuid::Uuid) -> Self {
        KeyId(id.hyphenated().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_have_the_canonical_shape() {
        assert!(PersonId::generate().is_canonical());
        assert!(PersonId::generate().as_str().ends_with("cper"));
        assert!(MobileNumberId::generate().is_canonical());
        assert!(DeviceId::generate().is_canonical());
        assert!(ChallengeId::generate().is_canonical());
        assert!(ChangeRequestId::generate().is_canonical());
        assert!(KeyId::generate().is_canonical());
    }

    #[test]
    fn ids_with_path_characters_are_refused() {
        assert!(DeviceId::parse("../etc").is_err());
        assert!(DeviceId::parse("").is_err());
        assert!(DeviceId::parse(&"a".repeat(65)).is_err());
        assert!(DeviceId::parse("abc").is_ok_and(|d| !d.is_canonical()));
    }
}
