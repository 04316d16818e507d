//! The phone's decisions without I/O: what to sign, which key answers a challenge, whether a
//! challenge can still be answered. Time is passed in, so these are deterministic.

use crate::api::{DeviceChallenge, KeyId, KeyPurpose, KeySummary, Otp, PublicKeyHex, Timestamp};

/// Why the phone will not answer a challenge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeProblem {
    /// The challenge's `expires_at` has passed.
    #[error(
        "challenge {id} expired at {expires_at} (now {now}); challenges live 5 minutes, start a new one"
    )]
    Expired {
        /// The challenge.
        id: String,
        /// When it expired.
        expires_at: Timestamp,
        /// The phone's clock.
        now: Timestamp,
    },
    /// The challenge asks for a key purpose this phone does not hold.
    #[error("challenge {id} needs the {needed} key, but this phone holds only {held}")]
    NoSuchKey {
        /// The challenge.
        id: String,
        /// The purpose the bank asks for.
        needed: KeyPurpose,
        /// What the phone has.
        held: String,
    },
    /// The bank chose another key than the one the user asked for.
    #[error(
        "challenge {id} asks for the {got} key, but the {asked} key was requested; not signed (the bank may not support choosing the key: retry without --purpose)"
    )]
    PurposeMismatch {
        /// The challenge.
        id: String,
        /// What the user asked for.
        asked: KeyPurpose,
        /// What the bank's challenge names.
        got: KeyPurpose,
    },
    /// The challenge has nothing to sign.
    #[error(
        "challenge {id} has an empty string_to_sign, so there is nothing to approve; not signed (ask the bank for a new challenge)"
    )]
    NothingToSign {
        /// The challenge or change request.
        id: String,
    },
}

/// Refuses a challenge whose bank-chosen key differs from the one the user asked for: a
/// restricted request answered with an unrestricted challenge would skip the biometric prompt.
pub fn check_requested_purpose(
    challenge: &DeviceChallenge,
    requested: Option<KeyPurpose>,
) -> Result<(), ChallengeProblem> {
    match (requested, challenge.key_purpose) {
        (Some(asked), Some(got)) if asked != got => Err(ChallengeProblem::PurposeMismatch {
            id: challenge.id.to_string(),
            asked,
            got,
        }),
        _ => Ok(()),
    }
}

/// The purpose of the key that must answer `challenge`: the one it names; when a server
/// leaves `key_purpose` out, the one the phone asked for, else the phone's only key, else
/// (both held) `restricted`, the API's documented default for a challenge without purpose.
pub fn challenge_purpose(
    challenge: &DeviceChallenge,
    asked: Option<KeyPurpose>,
    held: &[KeyPurpose],
) -> KeyPurpose {
    challenge
        .key_purpose
        .or(asked)
        .or_else(|| change_request_key(held))
        .unwrap_or(KeyPurpose::Unrestricted)
}

/// Refuses an empty `string_to_sign`: a signature over nothing approves nothing the user
/// could have seen, and a real phone shows the text before signing.
pub fn check_string_to_sign(id: &str, string_to_sign: &str) -> Result<(), ChallengeProblem> {
    if string_to_sign.is_empty() {
        Err(ChallengeProblem::NothingToSign { id: id.to_owned() })
    } else {
        Ok(())
    }
}

/// The bytes signed to complete binding: the ASCII digits of the SMS OTP.
pub fn binding_message(otp: &Otp) -> &[u8] {
    otp.expose().as_bytes()
}

/// The bytes signed to add a key: the ASCII of the new key's lowercase hex.
pub fn add_key_message(new_key: &PublicKeyHex) -> &[u8] {
    new_key.as_str().as_bytes()
}

/// The bytes signed to answer a device or change-request challenge: `string_to_sign`
/// exactly as the server sent it.
pub fn challenge_message(string_to_sign: &str) -> &[u8] {
    string_to_sign.as_bytes()
}

/// Refuses a challenge whose `expires_at` is not after `now`. A challenge without
/// `expires_at` is left to the server to judge.
pub fn check_not_expired(
    id: &str,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), ChallengeProblem> {
    match expires_at {
        Some(expires_at) if now >= expires_at => Err(ChallengeProblem::Expired {
            id: id.to_owned(),
            expires_at,
            now,
        }),
        _ => Ok(()),
    }
}

/// The key that must answer `challenge` (see [`challenge_purpose`]), if the phone has it.
pub fn key_for_challenge(
    challenge: &DeviceChallenge,
    asked: Option<KeyPurpose>,
    held: &[KeyPurpose],
) -> Result<KeyPurpose, ChallengeProblem> {
    let needed = challenge_purpose(challenge, asked, held);
    if held.contains(&needed) {
        Ok(needed)
    } else {
        Err(ChallengeProblem::NoSuchKey {
            id: challenge.id.to_string(),
            needed,
            held: if held.is_empty() {
                "no keys".to_owned()
            } else {
                held.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(" and ")
            },
        })
    }
}

/// Checks a device challenge and picks its key in one step; `asked` is the purpose the
/// phone asked for when it created the challenge.
pub fn plan_device_answer(
    challenge: &DeviceChallenge,
    asked: Option<KeyPurpose>,
    held: &[KeyPurpose],
    now: Timestamp,
) -> Result<KeyPurpose, ChallengeProblem> {
    check_not_expired(challenge.id.as_str(), challenge.expires_at, now)?;
    check_string_to_sign(challenge.id.as_str(), &challenge.string_to_sign)?;
    key_for_challenge(challenge, asked, held)
}

/// Whether signing with `purpose` needs the user's biometric approval.
pub fn needs_presence(purpose: KeyPurpose) -> bool {
    purpose == KeyPurpose::Restricted
}

/// The purpose of a key to add next: the one the phone does not hold yet.
pub fn missing_purpose(held: &[KeyPurpose]) -> Option<KeyPurpose> {
    [KeyPurpose::Unrestricted, KeyPurpose::Restricted]
        .into_iter()
        .find(|p| !held.contains(p))
}

/// The key the bank added for a request whose answer was lost: one of `purpose` whose id
/// was not on the device before the request (`known`). A key of that purpose that was
/// already there (an orphan from an earlier attempt, or another app's) is never it.
pub fn new_key_id(listed: &[KeySummary], purpose: KeyPurpose, known: &[KeyId]) -> Option<KeyId> {
    listed
        .iter()
        .find(|k| k.key_purpose == purpose && !known.contains(&k.key_id))
        .map(|k| k.key_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ChallengeId, ChallengeKind};

    fn challenge(purpose: KeyPurpose, created: i64) -> DeviceChallenge {
        let created_at = Timestamp::from_unix(created).unwrap();
        DeviceChallenge {
            id: ChallengeId::generate(),
            kind: Some(ChallengeKind::Device),
            string_to_sign: "sign me".into(),
            key_purpose: Some(purpose),
            created_at: Some(created_at),
            expires_at: Some(created_at.plus_seconds(300)),
        }
    }

    fn at(c: &DeviceChallenge, seconds: i64) -> Timestamp {
        c.created_at.unwrap().plus_seconds(seconds)
    }

    #[test]
    fn a_challenge_without_purpose_is_answered_by_the_asked_or_the_only_key() {
        let mut c = challenge(KeyPurpose::Restricted, 1_800_000_000);
        c.key_purpose = None;
        let both = [KeyPurpose::Unrestricted, KeyPurpose::Restricted];
        let only = [KeyPurpose::Unrestricted];
        assert_eq!(
            challenge_purpose(&c, Some(KeyPurpose::Unrestricted), &both),
            KeyPurpose::Unrestricted
        );
        assert_eq!(challenge_purpose(&c, None, &only), KeyPurpose::Unrestricted);
        assert_eq!(challenge_purpose(&c, None, &both), KeyPurpose::Restricted);
        assert_eq!(
            check_requested_purpose(&c, Some(KeyPurpose::Restricted)),
            Ok(())
        );
        c.expires_at = None;
        assert_eq!(
            plan_device_answer(
                &c,
                None,
                &only,
                Timestamp::from_unix(1_900_000_000).unwrap()
            ),
            Ok(KeyPurpose::Unrestricted),
            "no expires_at: the server judges expiry"
        );
    }

    #[test]
    fn the_challenge_picks_the_key_it_names() {
        let c = challenge(KeyPurpose::Restricted, 1_800_000_000);
        let both = [KeyPurpose::Unrestricted, KeyPurpose::Restricted];
        let now = at(&c, 10);
        assert_eq!(
            plan_device_answer(&c, None, &both, now),
            Ok(KeyPurpose::Restricted)
        );
    }

    #[test]
    fn a_restricted_challenge_is_refused_without_a_restricted_key() {
        let c = challenge(KeyPurpose::Restricted, 1_800_000_000);
        let err = key_for_challenge(&c, None, &[KeyPurpose::Unrestricted]).unwrap_err();
        assert!(err.to_string().contains("holds only unrestricted"), "{err}");
    }

    #[test]
    fn an_expired_challenge_is_not_answered() {
        let c = challenge(KeyPurpose::Unrestricted, 1_800_000_000);
        let at_expiry = c.expires_at.unwrap();
        let err = plan_device_answer(&c, None, &[KeyPurpose::Unrestricted], at_expiry).unwrap_err();
        assert!(matches!(err, ChallengeProblem::Expired { .. }));
        assert!(err.to_string().contains("5 minutes"));
    }

    #[test]
    fn a_challenge_for_another_key_than_requested_is_refused() {
        let c = challenge(KeyPurpose::Unrestricted, 1_800_000_000);
        let err = check_requested_purpose(&c, Some(KeyPurpose::Restricted)).unwrap_err();
        assert!(matches!(err, ChallengeProblem::PurposeMismatch { .. }));
        assert!(
            err.to_string().contains("restricted key was requested"),
            "{err}"
        );
        assert_eq!(check_requested_purpose(&c, None), Ok(()));
        assert_eq!(
            check_requested_purpose(&c, Some(KeyPurpose::Unrestricted)),
            Ok(())
        );
    }

    #[test]
    fn an_empty_string_to_sign_is_refused() {
        let mut c = challenge(KeyPurpose::Unrestricted, 1_800_000_000);
        c.string_to_sign.clear();
        let now = at(&c, 1);
        let err = plan_device_answer(&c, None, &[KeyPurpose::Unrestricted], now).unwrap_err();
        assert!(
            matches!(err, ChallengeProblem::NothingToSign { .. }),
            "{err}"
        );
    }

    #[test]
    fn binding_signs_the_otp_digits_and_add_key_signs_the_hex() {
        let otp = Otp::parse("212212").unwrap();
        assert_eq!(binding_message(&otp), b"212212");
        let key = PublicKeyHex::parse("04ab").unwrap();
        assert_eq!(add_key_message(&key), b"04ab");
        assert_eq!(challenge_message("a b\n"), b"a b\n");
    }

    #[test]
    fn only_restricted_keys_need_the_user_and_the_missing_purpose_is_found() {
        assert!(needs_presence(KeyPurpose::Restricted));
        assert!(!needs_presence(KeyPurpose::Unrestricted));
        assert_eq!(
            missing_purpose(&[KeyPurpose::Unrestricted]),
            Some(KeyPurpose::Restricted)
        );
        assert_eq!(
            missing_purpose(&[KeyPurpose::Restricted, KeyPurpose::Unrestricted]),
            None
        );
    }
}

/// The key that signs a change-request confirmation: `restricted` when the device has both
/// keys, else the only one (the same rule as a device challenge without `key_purpose`;
/// API.md, *decided*).
pub fn change_request_key(held: &[KeyPurpose]) -> Option<KeyPurpose> {
    if held.contains(&KeyPurpose::Restricted) {
        Some(KeyPurpose::Restricted)
    } else {
        held.first().copied()
    }
}

#[cfg(test)]
mod change_request_tests {
    use super::*;

    #[test]
    fn change_requests_are_signed_with_the_restricted_key_when_there_is_one() {
        let both = [KeyPurpose::Unrestricted, KeyPurpose::Restricted];
        assert_eq!(change_request_key(&both), Some(KeyPurpose::Restricted));
        assert_eq!(
            change_request_key(&[KeyPurpose::Unrestricted]),
            Some(KeyPurpose::Unrestricted)
        );
        assert_eq!(change_request_key(&[]), None);
    }

    #[test]
    fn a_lost_add_key_is_matched_by_a_new_key_id_not_by_purpose() {
        let summary = |id: &KeyId, purpose| KeySummary {
            key_id: id.clone(),
            key_purpose: purpose,
            used_at: None,
        };
        let (old, orphan, new) = (KeyId::generate(), KeyId::generate(), KeyId::generate());
        let known = [old.clone(), orphan.clone()];
        let before = [
            summary(&old, KeyPurpose::Unrestricted),
            summary(&orphan, KeyPurpose::Restricted),
        ];
        // Only the orphan of the purpose is listed: the new key was not added.
        assert_eq!(new_key_id(&before, KeyPurpose::Restricted, &known), None);
        let mut after = before.to_vec();
        after.push(summary(&new, KeyPurpose::Restricted));
        assert_eq!(
            new_key_id(&after, KeyPurpose::Restricted, &known),
            Some(new.clone())
        );
        // A new id of another purpose is not it either.
        assert_eq!(new_key_id(&after, KeyPurpose::Unrestricted, &known), None);
    }
}
