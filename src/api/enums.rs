//! The API's closed sets of words.

use serde::{Deserialize, Serialize};
use std::fmt;

pub use vphone_keystore::KeyAlgorithm as KeyType;
pub use vphone_keystore::KeyPurpose;

macro_rules! wire_enum {
    // Words the sandbox receives: read exactly as documented.
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }
        wire_enum!(@common $name { $($variant = $text),+ });
    };
    // Words only servers send: read in any case (`completed`, `Completed`, `COMPLETED`).
    (answer $(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::api::ids::read_text(d, |word| {
                    $(if word.eq_ignore_ascii_case($text) {
                        return Ok($name::$variant);
                    })+
                    Err(format!("{word:?} is not one of: {}", [$($text),+].join(", ")))
                })
            }
        }
        wire_enum!(@common $name { $($variant = $text),+ });
    };
    (@common $name:ident { $($variant:ident = $text:literal),+ }) => {

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word used on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{other:?} is not one of: {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

wire_enum!(
    /// How a new device proves possession of its key.
    BindingChallengeType {
        /// An SMS OTP, signed with the new key.
        Sms = "sms",
    }
);

wire_enum!(
    answer
    /// The `type` field of a challenge.
    ChallengeKind {
        /// The device-binding challenge.
        Signature = "signature",
        /// A device-signing challenge.
        Device = "device",
        /// An SMS challenge.
        Sms = "sms",
    }
);

wire_enum!(
    /// How a change request is authorized.
    DeliveryMethod {
        /// An SMS TAN to the person's verified number.
        MobileNumber = "mobile_number",
        /// A signature by a bound device.
        DeviceSigning = "device_signing",
        /// The static sandbox TAN `212212`.
        Static = "static",
    }
);

wire_enum!(
    answer
    /// Where a change request stands.
    ChangeRequestStatus {
        /// Accepted without further action.
        Accepted = "ACCEPTED",
        /// Waiting for `authorize`.
        AuthorizationRequired = "AUTHORIZATION_REQUIRED",
        /// Waiting for `confirm`.
        ConfirmationRequired = "CONFIRMATION_REQUIRED",
        /// The held change was carried out.
        Completed = "COMPLETED",
        /// Spent by failed attempts or expiry.
        Failed = "FAILED",
    }
);

wire_enum!(
    /// The language of an SMS.
    Language {
        /// German.
        De = "de",
        /// English, the default.
        En = "en",
        /// French.
        Fr = "fr",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_words_round_trip() {
        for s in ChangeRequestStatus::ALL {
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(
                &serde_json::from_str::<ChangeRequestStatus>(&json).unwrap(),
                s
            );
            assert_eq!(&s.as_str().parse::<ChangeRequestStatus>().unwrap(), s);
        }
        for word in ["completed", "Completed", "COMPLETED"] {
            let read: ChangeRequestStatus = serde_json::from_str(&format!("\"{word}\"")).unwrap();
            assert_eq!(read, ChangeRequestStatus::Completed);
        }
        assert!(serde_json::from_str::<DeliveryMethod>("\"STATIC\"").is_err());
        assert!(
            "sms2"
                .parse::<DeliveryMethod>()
                .unwrap_err()
                .contains("mobile_number")
        );
    }

    #[test]
    fn a_word_no_server_should_send_is_named_with_the_words_allowed() {
        let e = serde_json::from_str::<ChallengeKind>("\"push\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"push\" is not one of: signature, device, sms"),
            "{e}"
        );
        let e = serde_json::from_str::<ChallengeKind>("7")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a string"), "{e}");
        let escaped: ChallengeKind = serde_json::from_str("\"D\\u0065vice\"").unwrap();
        assert_eq!(escaped, ChallengeKind::Device);
    }
}
