//! Typed identifiers. Each id knows its canonical shape so the sandbox can mint ids.
//!
//! Two rules, for two audiences: what a user types and what the sandbox receives is checked
//! strictly ([`PersonId::parse`], `FromStr`, and the [`strict`] serde helpers on request
//! types: 1-64 letters, digits, `-` or `_`); what a server sends is an opaque string
//! (`Deserialize`: any non-empty text up to 1,024 bytes without control characters), because
//! servers we did not write mint ids like `mobileNumberId-<32 hex>-<32 hex>`.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An id that breaks the rule it was checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct IdError {
    /// Which kind of id was expected.
    pub kind: &'static str,
    /// What was given (ids are not secret), cut to 80 characters.
    pub value: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// The longest id accepted from a server, in bytes.
pub const MAX_SERVER_ID: usize = 1024;

const TOKEN_RULE: &str = "ids are 1-64 characters of letters, digits, '-' or '_'";
const OPAQUE_RULE: &str = "ids from a server are 1-1024 bytes of text without control characters";

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
            rule: TOKEN_RULE,
        })
    }
}

fn check_opaque(kind: &'static str, value: &str) -> Result<(), IdError> {
    let ok =
        !value.is_empty() && value.len() <= MAX_SERVER_ID && !value.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(IdError {
            kind,
            value: value.chars().filter(|c| !c.is_control()).take(80).collect(),
            rule: OPAQUE_RULE,
        })
    }
}

/// An id type with both rules; see the module doc.
pub trait TypedId: Sized {
    /// Checks `value` against the strict rule (user input, sandbox requests).
    fn strict(value: String) -> Result<Self, IdError>;
}

/// Serde helpers that read an id field with the strict rule, for request types the
/// sandbox receives: `#[serde(deserialize_with = "strict::one")]`.
pub mod strict {
    use super::TypedId;
    use serde::{Deserialize, Deserializer};

    /// A required id, strict.
    pub fn one<'de, D: Deserializer<'de>, T: TypedId>(d: D) -> Result<T, D::Error> {
        T::strict(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// An optional id, strict.
    pub fn option<'de, D: Deserializer<'de>, T: TypedId>(d: D) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(T::strict)
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $mint:expr, $canonical:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        /// Written from where the text is (no copy into a `String` first).
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Parses an id a user typed: a URL-safe token of 1-64 characters.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                check_token($kind, value)?;
                Ok($name(value.to_owned()))
            }

            /// Reads an id a server sent: any opaque text (see the module doc).
            pub fn from_server(value: &str) -> Result<Self, IdError> {
                check_opaque($kind, value)?;
                Ok($name(value.to_owned()))
            }

            /// Whether this id is also a URL-safe token of 1-64 characters.
            pub fn is_token(&self) -> bool {
                check_token($kind, &self.0).is_ok()
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

        /// Deserializing reads what a server sent, so the opaque rule applies.
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_opaque($kind, &s)?;
                Ok($name(s))
            }
        }

        impl TypedId for $name {
            fn strict(s: String) -> Result<Self, IdError> {
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
    fn ids_from_a_server_are_opaque_but_typed_ones_are_tokens() {
        let long = format!("mobileNumberId-{}-{}", "a".repeat(32), "b".repeat(32));
        assert!(MobileNumberId::parse(&long).is_err(), "a user types tokens");
        let json = format!("\"{long}\"");
        let read: MobileNumberId = serde_json::from_str(&json).unwrap();
        assert_eq!(read.as_str(), long);
        assert!(!read.is_token());
        let spaced: DeviceId = serde_json::from_str("\"device 7/a\"").unwrap();
        assert_eq!(spaced.as_str(), "device 7/a");
        for bad in ["\"\"", "\"a\\nb\"", &format!("\"{}\"", "x".repeat(1025))] {
            assert!(serde_json::from_str::<DeviceId>(bad).is_err(), "{bad}");
        }
        let strict: Result<DeviceId, _> = DeviceId::strict(long);
        assert!(strict.is_err());
    }

    #[test]
    fn ids_with_path_characters_are_refused() {
        assert!(DeviceId::parse("../etc").is_err());
        assert!(DeviceId::parse("").is_err());
        assert!(DeviceId::parse(&"a".repeat(65)).is_err());
        assert!(DeviceId::parse("abc").is_ok_and(|d| !d.is_canonical()));
    }
}
