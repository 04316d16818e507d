//! Typed identifiers. Each id knows its canonical shape so the sandbox can mint ids.
//!
//! Two rules, for two sides:
//! - the *sandbox* checks what it receives strictly, as the bank does: 1-64 letters, digits,
//!   `-` or `_` ([`PersonId::strict`], [`TypedId::strict`], the [`strict`] serde helpers on
//!   request types, and the sandbox's path extraction);
//! - the *phone* treats every id as an opaque string: any non-empty text up to 1,024 bytes
//!   without control characters. Servers we did not write mint ids like
//!   `mobileNumberId-<32 hex>-<32 hex>`, and every id the phone is given came from a server
//!   in the end, whether the server sent it ([`PersonId::from_server`], `Deserialize`) or a
//!   user or rig hands it back ([`PersonId::from_user`], `FromStr`, so command-line
//!   arguments): typed on the command line, saved in a phone's profile, sent to the control
//!   API. The client percent-encodes an id as one path segment, so any such id is safe to
//!   send back.
//!
//! `FromStr` is the opaque rule so that it reads back whatever `Display` wrote.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An id that breaks the rule it was checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {problem} ({rule})")]
pub struct IdError {
    /// Which kind of id was expected.
    pub kind: &'static str,
    /// What was given (ids are not secret), cut to 80 characters, control characters left
    /// out.
    pub value: String,
    /// What is wrong with it.
    pub problem: IdProblem,
    /// The rule it breaks.
    pub rule: &'static str,
}

/// What is wrong with an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdProblem {
    /// Nothing was given.
    #[error("it is empty")]
    Empty,
    /// Longer than the rule allows.
    #[error("it is {len} {unit} long, more than {max}")]
    TooLong {
        /// Its length in `unit`s.
        len: usize,
        /// The most the rule allows.
        max: usize,
        /// `characters` (the strict rule, ASCII only) or `bytes` (the opaque rule).
        unit: &'static str,
    },
    /// A control character (a newline, a tab, NUL...), which no rule allows.
    #[error("it contains the control character U+{:04X}", u32::from(*.0))]
    ControlCharacter(char),
    /// A character the strict rule does not allow (anything but letters, digits, `-`, `_`).
    #[error("it contains {0:?}")]
    NotUrlSafe(char),
}

/// The longest id the phone accepts (from a server, a user or a rig), in bytes.
pub const MAX_SERVER_ID: usize = 1024;

/// The longest id the sandbox accepts, in characters.
const MAX_TOKEN: usize = 64;

const TOKEN_RULE: &str = "the sandbox takes ids of 1-64 letters, digits, '-' or '_'";
const OPAQUE_RULE: &str = "ids are 1-1024 bytes of text without control characters";

/// 16 random bytes as 32 lowercase hex characters: the random part of the ids the sandbox
/// mints.
pub(crate) fn random_hex32() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is wrong with `value` under the strict rule, if anything.
fn token_problem(value: &str) -> Option<IdProblem> {
    if value.is_empty() {
        return Some(IdProblem::Empty);
    }
    if let Some(c) = value
        .chars()
        .find(|&c| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
    {
        return Some(if c.is_control() {
            IdProblem::ControlCharacter(c)
        } else {
            IdProblem::NotUrlSafe(c)
        });
    }
    // Only ASCII is left, so bytes are characters.
    (value.len() > MAX_TOKEN).then_some(IdProblem::TooLong {
        len: value.len(),
        max: MAX_TOKEN,
        unit: "characters",
    })
}

/// What is wrong with `value` under the opaque rule, if anything.
fn opaque_problem(value: &str) -> Option<IdProblem> {
    if value.is_empty() {
        return Some(IdProblem::Empty);
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Some(IdProblem::ControlCharacter(c));
    }
    (value.len() > MAX_SERVER_ID).then_some(IdProblem::TooLong {
        len: value.len(),
        max: MAX_SERVER_ID,
        unit: "bytes",
    })
}

fn check(
    kind: &'static str,
    value: &str,
    problem: fn(&str) -> Option<IdProblem>,
    rule: &'static str,
) -> Result<(), IdError> {
    match problem(value) {
        None => Ok(()),
        Some(problem) => Err(IdError {
            kind,
            value: value.chars().filter(|c| !c.is_control()).take(80).collect(),
            problem,
            rule,
        }),
    }
}

fn check_token(kind: &'static str, value: &str) -> Result<(), IdError> {
    check(kind, value, token_problem, TOKEN_RULE)
}

fn check_opaque(kind: &'static str, value: &str) -> Result<(), IdError> {
    check(kind, value, opaque_problem, OPAQUE_RULE)
}

/// Ids up to this many bytes are kept inline: every id the bank and the sandbox mint fits
/// (32 hex digits, 32 hex digits and a 4-letter suffix, a hyphenated UUID).
const INLINE: usize = 36;

/// An id's text: inline up to [`INLINE`] bytes, so minting, cloning or reading an id
/// allocates nothing and a table keyed by ids finds the key's bytes in its own entry; a
/// longer id (servers we did not write mint some) is kept on the heap.
#[derive(Clone)]
enum Text {
    Inline(arrayvec::ArrayString<INLINE>),
    Heap(Box<str>),
}

impl Text {
    fn new(s: &str) -> Text {
        match arrayvec::ArrayString::from(s) {
            Ok(inline) => Text::Inline(inline),
            Err(_) => Text::Heap(s.into()),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Text::Inline(s) => s.as_str(),
            Text::Heap(s) => s,
        }
    }
}

// Equality, order and hash are the text's, whichever way it is kept.
impl PartialEq for Text {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Deserializes a string (or UTF-8 bytes) and hands it to `make` where the deserializer
/// holds it, with no `String` in between (serde's `Cow<str>` is always owned); `make`'s
/// refusal becomes the error once the string has been read, where a `String` read first
/// would have raised it, so serde_json's "at line L column C" is the same as it was.
pub(crate) fn read_text<'de, D, T, E>(
    d: D,
    make: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: fmt::Display,
{
    struct Visit<F>(F);

    impl<'de, T, E, F> serde::de::Visitor<'de> for Visit<F>
    where
        E: fmt::Display,
        F: FnOnce(&str) -> Result<T, E>,
    {
        type Value = Result<T, E>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            // What serde's own `String` says, so messages stay as they were.
            f.write_str("a string")
        }

        fn visit_str<R: serde::de::Error>(self, v: &str) -> Result<Result<T, E>, R> {
            Ok((self.0)(v))
        }

        fn visit_bytes<R: serde::de::Error>(self, v: &[u8]) -> Result<Result<T, E>, R> {
            match std::str::from_utf8(v) {
                Ok(text) => self.visit_str(text),
                Err(_) => Err(R::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
            }
        }
    }

    d.deserialize_str(Visit(make))?
        .map_err(serde::de::Error::custom)
}

/// An id type with both rules; see the module doc.
pub trait TypedId: Sized {
    /// Checks `value` against the strict rule: what the sandbox receives.
    fn strict(value: &str) -> Result<Self, IdError>;
}

/// Serde helpers that read an id field with the strict rule, for request types the
/// sandbox receives: `#[serde(deserialize_with = "strict::one")]`.
pub mod strict {
    use super::TypedId;
    use serde::{Deserialize, Deserializer};

    /// A required id, strict.
    pub fn one<'de, D: Deserializer<'de>, T: TypedId>(d: D) -> Result<T, D::Error> {
        super::read_text(d, T::strict)
    }

    /// An optional id, strict.
    pub fn option<'de, D: Deserializer<'de>, T: TypedId>(d: D) -> Result<Option<T>, D::Error> {
        struct Strict<T>(T);

        impl<'de, T: TypedId> Deserialize<'de> for Strict<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                one(d).map(Strict)
            }
        }

        Ok(Option::<Strict<T>>::deserialize(d)?.map(|s| s.0))
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $mint:expr, $canonical:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Text);

        /// Written from where the text is (no copy into a `String` first).
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.0.as_str())
            }
        }

        /// Deserializing reads what a server sent, so the opaque rule applies.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                read_text(d, Self::from_server)
            }
        }

        impl $name {
            /// Checks an id the sandbox received (in a request's path or body) as the bank
            /// would: a URL-safe token of 1-64 characters.
            pub fn strict(value: &str) -> Result<Self, IdError> {
                check_token($kind, value)?;
                Ok($name(Text::new(value)))
            }

            /// Reads an id a server sent: any opaque text (see the module doc).
            pub fn from_server(value: &str) -> Result<Self, IdError> {
                check_opaque($kind, value)?;
                Ok($name(Text::new(value)))
            }

            /// Reads an id a user or a rig hands the phone (a command-line argument, a saved
            /// profile, a control API request): it came from a server, so it is opaque too.
            pub fn from_user(value: &str) -> Result<Self, IdError> {
                Self::from_server(value)
            }

            /// Whether this id is also a URL-safe token of 1-64 characters.
            pub fn is_token(&self) -> bool {
                check_token($kind, self.0.as_str()).is_ok()
            }

            /// Mints a fresh random id in the bank's canonical shape.
            pub fn generate() -> Self {
                let mint: fn() -> String = $mint;
                $name(Text::new(&mint()))
            }

            /// Whether this id has the bank's canonical shape.
            pub fn is_canonical(&self) -> bool {
                let check: fn(&str) -> bool = $canonical;
                check(self.0.as_str())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.as_str())
            }
        }

        /// An id a user or rig gives (command-line arguments): [`Self::from_user`].
        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::from_user(s)
            }
        }

        impl TypedId for $name {
            fn strict(s: &str) -> Result<Self, IdError> {
                $name::strict(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.as_str().to_owned()
            }
        }
    };
}

/// Whether `s` is exactly 32 lowercase hex digits, the bank's canonical id (or its stem).
pub fn is_hex32(s: &str) -> bool {
    s.len() == 32 && super::values::is_lowercase_hex(s.as_bytes())
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
        KeyId(Text::new(
            id.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        ))
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
    fn the_phone_reads_any_id_a_server_may_send_and_the_sandbox_only_tokens() {
        let long = format!("mobileNumberId-{}-{}", "a".repeat(32), "b".repeat(32));
        let e = MobileNumberId::strict(&long).unwrap_err().to_string();
        assert!(e.contains("it is 80 characters long, more than 64"), "{e}");
        // What a user types or a rig sends came from a server: the same opaque rule.
        assert_eq!(MobileNumberId::from_user(&long).unwrap().as_str(), long);
        assert_eq!(long.parse::<MobileNumberId>().unwrap().as_str(), long);
        let json = format!("\"{long}\"");
        let read: MobileNumberId = serde_json::from_str(&json).unwrap();
        assert_eq!(read.as_str(), long);
        assert!(!read.is_token());
        let spaced: DeviceId = serde_json::from_str("\"device 7/a\"").unwrap();
        assert_eq!(spaced.as_str(), "device 7/a");
        for bad in ["\"\"", "\"a\\nb\"", &format!("\"{}\"", "x".repeat(1025))] {
            assert!(serde_json::from_str::<DeviceId>(bad).is_err(), "{bad}");
        }
        let strict: Result<DeviceId, _> = <DeviceId as TypedId>::strict(&long);
        assert!(strict.is_err());
    }

    #[test]
    fn a_refused_id_says_what_is_wrong_with_it() {
        let err = |r: Result<DeviceId, IdError>| r.unwrap_err().to_string();
        assert_eq!(
            err(DeviceId::from_user("")),
            "invalid device id \"\": it is empty \
             (ids are 1-1024 bytes of text without control characters)"
        );
        assert_eq!(
            err(DeviceId::from_user("a\nb")),
            "invalid device id \"ab\": it contains the control character U+000A \
             (ids are 1-1024 bytes of text without control characters)"
        );
        let e = err(DeviceId::from_user(&"x".repeat(1025)));
        assert!(
            e.contains(": it is 1025 bytes long, more than 1024 ("),
            "{e}"
        );
        assert!(e.starts_with(&format!("invalid device id \"{}\"", "x".repeat(80))));
        assert_eq!(
            err(DeviceId::strict("a/b")),
            "invalid device id \"a/b\": it contains '/' \
             (the sandbox takes ids of 1-64 letters, digits, '-' or '_')"
        );
        assert!(err(DeviceId::strict("")).contains(": it is empty ("));
        assert!(err(DeviceId::strict("a\tb")).contains("control character U+0009"));
        assert!(err(DeviceId::strict("é")).contains("it contains 'é'"));
    }

    #[test]
    fn an_id_reads_back_what_it_displays() {
        let sent = DeviceId::from_server("device 7/a,b").unwrap();
        assert_eq!(sent.to_string().parse::<DeviceId>().unwrap(), sent);
    }

    fn hash_of<T: std::hash::Hash>(v: &T) -> u64 {
        use std::hash::{BuildHasher, BuildHasherDefault};
        BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(v)
    }

    proptest::proptest! {
        /// Short ids are kept inline and long ones on the heap; either way an id is its
        /// text: the same equality, order, hash (a `str`'s), text and JSON.
        #[test]
        fn an_id_is_its_text_however_it_is_kept(
            a in "[^\\p{Cc}]{1,80}",
            b in "[^\\p{Cc}]{1,80}",
        ) {
            let (x, y) = (DeviceId::from_server(&a).unwrap(), DeviceId::from_server(&b).unwrap());
            proptest::prop_assert_eq!(x.as_str(), a.as_str());
            proptest::prop_assert_eq!(x.to_string(), a.clone());
            proptest::prop_assert_eq!(x == y, a == b);
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            proptest::prop_assert_eq!(hash_of(&x), hash_of(&a.as_str()));
            let json = serde_json::to_string(&x).unwrap();
            proptest::prop_assert_eq!(&json, &serde_json::to_string(&a).unwrap());
            proptest::prop_assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), x);
            proptest::prop_assert_eq!(String::from(y), b);
        }
    }

    #[test]
    fn ids_up_to_36_bytes_are_inline_and_longer_ones_on_the_heap() {
        let inline = |id: &PersonId| matches!(id.0, Text::Inline(_));
        assert!(inline(&PersonId::generate()), "32 hex and a suffix");
        assert!(inline(&PersonId::strict(&"a".repeat(36)).unwrap()));
        let long = PersonId::strict(&"a".repeat(37)).unwrap();
        assert!(!inline(&long));
        assert_eq!(long.as_str(), "a".repeat(37));
        // Multi-byte text is cut nowhere: 12 three-byte characters fit, 13 do not.
        let wide = DeviceId::from_server(&"€".repeat(13)).unwrap();
        assert_eq!(wide.as_str(), "€".repeat(13));
        assert!(matches!(
            DeviceId::from_server(&"€".repeat(12)).unwrap().0,
            Text::Inline(_)
        ));
    }

    #[test]
    fn reading_an_id_keeps_serdes_messages_and_the_strict_rule() {
        // The old way, as a reference: a `String` first, the rule after.
        fn old_strict<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DeviceId, D::Error> {
            DeviceId::strict(&String::deserialize(d)?).map_err(serde::de::Error::custom)
        }
        #[derive(Debug, Deserialize)]
        #[serde(try_from = "String")]
        struct OldOpaque(#[allow(dead_code)] DeviceId);
        impl TryFrom<String> for OldOpaque {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                DeviceId::from_server(&s).map(OldOpaque)
            }
        }
        #[derive(Debug, Deserialize)]
        struct Body {
            #[serde(deserialize_with = "strict::one")]
            id: DeviceId,
            #[serde(default, deserialize_with = "strict::option")]
            other: Option<ChallengeId>,
        }
        #[derive(Debug, Deserialize)]
        struct OldBody {
            #[serde(deserialize_with = "old_strict")]
            #[allow(dead_code)]
            id: DeviceId,
        }
        #[derive(Debug, Deserialize)]
        struct Server {
            #[allow(dead_code)]
            id: DeviceId,
        }
        #[derive(Debug, Deserialize)]
        struct OldServer {
            #[allow(dead_code)]
            id: OldOpaque,
        }
        let ok: Body = serde_json::from_str(r#"{"id":"d-1","other":"c_2"}"#).unwrap();
        assert_eq!((ok.id.as_str(), ok.other.unwrap().as_str()), ("d-1", "c_2"));
        let null: Body = serde_json::from_str(r#"{"id":"d-1","other":null}"#).unwrap();
        assert!(null.other.is_none());
        let absent: Body = serde_json::from_str(r#"{"id":"d-1"}"#).unwrap();
        assert!(absent.other.is_none());
        let e = serde_json::from_str::<Body>(r#"{"id":"d","other":"a b"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("invalid challenge id \"a b\""), "{e}");
        // Whole messages, positions included, as the old way gave them: compact and
        // pretty-printed bodies, a top-level id, a refused value and a wrong type.
        fn same_errors<New, Old>(inputs: &[&str])
        where
            New: serde::de::DeserializeOwned + fmt::Debug,
            Old: serde::de::DeserializeOwned + fmt::Debug,
        {
            for input in inputs {
                assert_eq!(
                    serde_json::from_str::<New>(input).unwrap_err().to_string(),
                    serde_json::from_str::<Old>(input).unwrap_err().to_string(),
                    "{input}"
                );
            }
        }
        same_errors::<Body, OldBody>(&[
            r#"{"id":"../x"}"#,
            "{\n  \"id\": \"../x\"\n}",
            r#"{"id":"" , "x":1}"#,
            r#"{"id":5}"#,
        ]);
        same_errors::<Server, OldServer>(&[
            "{\n  \"id\": \"\"\n}",
            r#"{"id":"" , "x":1}"#,
            r#"{"id":[1]}"#,
        ]);
        same_errors::<DeviceId, OldOpaque>(&["\"\"", "[1]", "\"a\\u0000b\""]);
        use serde::de::IntoDeserializer;
        use serde::de::value::{BytesDeserializer, Error};
        let bytes: Result<DeviceId, Error> = DeviceId::deserialize(BytesDeserializer::new(b"d-1"));
        assert_eq!(bytes.unwrap().as_str(), "d-1");
        let not_utf8: Result<DeviceId, Error> =
            DeviceId::deserialize(BytesDeserializer::new(&[0xff]));
        assert!(not_utf8.is_err());
        let from_str: Result<DeviceId, Error> = DeviceId::deserialize("d-2".into_deserializer());
        assert_eq!(from_str.unwrap().as_str(), "d-2");
    }

    #[test]
    fn the_sandbox_refuses_ids_with_path_characters_or_too_long() {
        assert!(DeviceId::strict("../etc").is_err());
        assert!(DeviceId::strict("").is_err());
        assert!(DeviceId::strict(&"a".repeat(65)).is_err());
        assert!(DeviceId::strict(&"a".repeat(64)).is_ok());
        assert!(DeviceId::strict("abc").is_ok_and(|d| !d.is_canonical()));
    }
}
