//! The phone's one error type. Each variant says what happened and carries the data a caller
//! needs to suggest the next step; naming commands is the CLI's business (`phone::cli`).

use super::inbox::InboxError;
use super::logic::ChallengeProblem;
use super::profile::{PhoneName, ProfileError};
use crate::api::{KeyPurpose, ValueError};
use crate::client::ClientError;
use vphone_keystore::{KeystoreError, PresenceError};

/// Why a phone flow failed.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    /// The bank refused a step, or could not be reached.
    #[error("{step}: {source}")]
    Bank {
        /// The step, e.g. "bind: create device".
        step: &'static str,
        /// The phone (the CLI names it in the commands it suggests).
        phone: String,
        /// What went wrong on the wire.
        #[source]
        source: ClientError,
    },
    /// No code arrived, or the inbox could not be read.
    #[error("{step}: {source}")]
    Inbox {
        /// The step that waited.
        step: &'static str,
        /// Why no code was obtained.
        #[source]
        source: InboxError,
    },
    /// The user did not approve the use of the restricted key.
    #[error("the {purpose} key needs the user's approval and {source}")]
    Presence {
        /// The key that would have signed.
        purpose: KeyPurpose,
        /// What the prompt answered.
        #[source]
        source: PresenceError,
    },
    /// The phone refuses to answer a challenge (expired, or needs a key it lacks).
    #[error("{problem}")]
    Challenge {
        /// The phone (the CLI names it in the command it suggests).
        phone: String,
        /// Why it will not answer.
        #[source]
        problem: ChallengeProblem,
    },
    /// The phone's profile or vault file could not be used.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The vault refused (e.g. no key of a purpose).
    #[error("key vault: {0}")]
    Keystore(KeystoreError),
    /// The phone has no person yet.
    #[error("phone {name:?} belongs to no person yet")]
    NoPerson {
        /// The phone.
        name: String,
    },
    /// The phone has no mobile number yet.
    #[error("phone {name:?} has no mobile number")]
    NoNumber {
        /// The phone.
        name: String,
    },
    /// Setup already finished: the phone has a person and a verified number.
    #[error(
        "phone {name:?} already belongs to person {person} with a verified number; pick another name for a new phone"
    )]
    AlreadyRegistered {
        /// The phone.
        name: String,
        /// Its person.
        person: String,
    },
    /// Setup is being resumed with another number than the one it started with.
    #[error("phone {name:?} was being set up with number {saved}, not {given}")]
    NumberMismatch {
        /// The phone.
        name: String,
        /// The number in its profile.
        saved: String,
        /// The number given now.
        given: String,
    },
    /// The flow needs a bound device.
    #[error("phone {name:?} is not bound to a device")]
    NotBound {
        /// The phone.
        name: String,
    },
    /// Binding again would orphan the bound device.
    #[error("phone {name:?} is already bound as device {device}")]
    AlreadyBound {
        /// The phone.
        name: String,
        /// The bound device.
        device: String,
    },
    /// The device already has a key of this purpose.
    #[error("phone {name:?} already holds a {purpose} key")]
    KeyExists {
        /// The phone.
        name: String,
        /// The purpose.
        purpose: KeyPurpose,
    },
    /// The key a signature needs is still pending: the bank never confirmed adding it.
    #[error(
        "phone {name:?} does not sign with its {purpose} key yet: the bank never confirmed adding it, so it is pending until the phone asks the bank again"
    )]
    KeyUnconfirmed {
        /// The phone.
        name: String,
        /// The purpose of the pending key.
        purpose: KeyPurpose,
    },
    /// The answer to adding a key was lost: the bank may or may not have the key. The
    /// phone keeps it, marked pending, until a later command asks the bank.
    #[error(
        "add key: {source}\nthe bank's answer was lost, so it is not known whether it added the {purpose} key; phone {name:?} keeps the key as pending until it next asks the bank, which keeps the key if the bank has it and forgets it otherwise"
    )]
    KeyPending {
        /// The phone.
        name: String,
        /// The purpose of the pending key.
        purpose: KeyPurpose,
        /// Why the outcome is not known.
        #[source]
        source: ClientError,
    },
    /// The bank answered success but not in the documented state.
    #[error("{step}: the bank answered {got}, expected {expected}")]
    Unexpected {
        /// The step.
        step: &'static str,
        /// What came back.
        got: String,
        /// What the API documents.
        expected: &'static str,
    },
    /// A value given by the caller or received from the bank is invalid.
    #[error("{step}: {source}")]
    Value {
        /// The step.
        step: &'static str,
        /// What is wrong.
        #[source]
        source: ValueError,
    },
}

impl PhoneError {
    /// The bank's refusal or transport failure, if that is what this is.
    pub fn client_error(&self) -> Option<&ClientError> {
        match self {
            PhoneError::Bank { source, .. } | PhoneError::KeyPending { source, .. } => Some(source),
            PhoneError::Inbox {
                source: InboxError::Outbox(source),
                ..
            } => Some(source),
            _ => None,
        }
    }

    /// The flow's step whose call to the bank failed, when a call failed.
    pub fn bank_step(&self) -> Option<&'static str> {
        match self {
            PhoneError::Bank { step, .. } => Some(step),
            _ => None,
        }
    }

    /// The HTTP status of a bank refusal.
    pub fn status(&self) -> Option<u16> {
        self.client_error().and_then(ClientError::status)
    }

    /// The command-line exit code: 1 refused (by the bank or the user), 3 unreachable or
    /// timed out, 4 local state (profile, vault, missing setup, an OTP source the server
    /// does not offer).
    pub fn exit_code(&self) -> u8 {
        match self {
            PhoneError::Bank { source, .. } if source.is_unavailable() => 3,
            PhoneError::Bank { source, .. } => match source {
                ClientError::Config(_) | ClientError::Credentials(_) => 4,
                _ => 1,
            },
            PhoneError::KeyPending { .. } => 3,
            PhoneError::Inbox { source, .. } => match source {
                InboxError::NoOutbox { .. } | InboxError::Command(_) => 4,
                InboxError::Outbox(c) if !c.is_unavailable() => 1,
                _ => 3,
            },
            PhoneError::Presence { .. }
            | PhoneError::Challenge { .. }
            | PhoneError::Unexpected { .. }
            | PhoneError::Value { .. } => 1,
            PhoneError::Profile(_)
            | PhoneError::Keystore(_)
            | PhoneError::NoPerson { .. }
            | PhoneError::NoNumber { .. }
            | PhoneError::AlreadyRegistered { .. }
            | PhoneError::NumberMismatch { .. }
            | PhoneError::NotBound { .. }
            | PhoneError::AlreadyBound { .. }
            | PhoneError::KeyExists { .. }
            | PhoneError::KeyUnconfirmed { .. } => 4,
        }
    }
}

impl From<KeystoreError> for PhoneError {
    fn from(e: KeystoreError) -> Self {
        match e {
            KeystoreError::Presence(source) => PhoneError::Presence {
                purpose: KeyPurpose::Restricted,
                source,
            },
            other => PhoneError::Keystore(other),
        }
    }
}

/// Attaches the phone and a step name to a client or inbox result.
pub(crate) trait StepContext<T> {
    fn step(self, phone: &PhoneName, step: &'static str) -> Result<T, PhoneError>;
}

impl<T> StepContext<T> for Result<T, ClientError> {
    fn step(self, phone: &PhoneName, step: &'static str) -> Result<T, PhoneError> {
        self.map_err(|source| PhoneError::Bank {
            step,
            phone: phone.to_string(),
            source,
        })
    }
}

impl<T> StepContext<T> for Result<T, InboxError> {
    fn step(self, _phone: &PhoneName, step: &'static str) -> Result<T, PhoneError> {
        self.map_err(|source| PhoneError::Inbox { step, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChallengeId, ChallengeKind, DeviceChallenge, Timestamp};

    /// One of every variant that can be built without the network, with a real source.
    fn samples() -> Vec<PhoneError> {
        let at = Timestamp::from_unix(1_800_000_000).unwrap();
        let challenge = DeviceChallenge {
            id: ChallengeId::generate(),
            kind: Some(ChallengeKind::Device),
            string_to_sign: "pay".into(),
            key_purpose: Some(KeyPurpose::Restricted),
            created_at: Some(at),
            expires_at: Some(at.plus_seconds(300)),
        };
        let problem =
            super::super::logic::key_for_challenge(&challenge, None, &[KeyPurpose::Unrestricted])
                .unwrap_err();
        let name = || "alice".to_owned();
        vec![
            PhoneError::Challenge {
                phone: name(),
                problem,
            },
            PhoneError::NoPerson { name: name() },
            PhoneError::NoNumber { name: name() },
            PhoneError::AlreadyRegistered {
                name: name(),
                person: "p1".into(),
            },
            PhoneError::NumberMismatch {
                name: name(),
                saved: "+15550101".into(),
                given: "+15550102".into(),
            },
            PhoneError::NotBound { name: name() },
            PhoneError::AlreadyBound {
                name: name(),
                device: "d1".into(),
            },
            PhoneError::KeyExists {
                name: name(),
                purpose: KeyPurpose::Restricted,
            },
            PhoneError::KeyUnconfirmed {
                name: name(),
                purpose: KeyPurpose::Restricted,
            },
            PhoneError::Profile(ProfileError::NotFound {
                name: name(),
                home: "/tmp/h".into(),
            }),
            PhoneError::Profile(ProfileError::BadName("a b".into())),
        ]
    }

    #[test]
    fn no_library_error_names_a_vphone_command() {
        let errors = samples();
        assert!(errors.len() >= 11);
        for err in errors {
            let text = err.to_string();
            assert!(!text.contains("vphone "), "{text}");
            assert!(!text.contains('`'), "{text}");
        }
    }

    #[test]
    fn a_challenge_needing_a_missing_key_carries_the_purpose_it_needs() {
        let err = samples().remove(0);
        let PhoneError::Challenge { phone, problem } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(phone, "alice");
        assert!(matches!(
            problem,
            ChallengeProblem::NoSuchKey {
                needed: KeyPurpose::Restricted,
                ..
            }
        ));
    }
}
