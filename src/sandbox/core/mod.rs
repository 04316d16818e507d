//! The bank's rules, free of I/O: plain functions over the sandbox's entities that take the
//! time (`now`) and randomness (an [`RngCore`]) as inputs and return a domain outcome or a
//! [`Refusal`]. Nothing here knows HTTP, locks, sockets or storage; the handlers in
//! `sandbox::{persons, devices, challenges, change_requests}` extract the request, take the
//! entities' locks, call one rule here, store what changed and render the outcome (a refusal
//! becomes an `ApiError` in one place, `ApiError::from(Refusal)`).
//!
//! One file per rule area, so each rule is found in one place:
//!
//! - [`persons`]: persons and their mobile numbers (add, authorize by SMS, confirm);
//! - [`devices`]: devices and binding (start, answer the signature challenge, delete);
//! - [`keys`]: adding a key to a bound device, signed by one it has;
//! - [`device_challenges`]: challenges a bound device answers with a signature;
//! - [`sms_challenges`]: challenges a person answers with the OTP of an SMS;
//! - [`change_requests`]: held changes, their authorization and confirmation;
//! - [`preverify`]: signatures checked before the entities' locks are taken;
//! - [`attempts`] and [`retention`]: the life of anything answerable, and when the bank
//!   forgets it.
//!
//! Like `phone::logic` on the other side of the wire, and like rustls' protocol core, the
//! outputs tell the caller what to do (e.g. [`SendOtp`]: deliver this code to this number).

pub mod attempts;
pub mod challenges;
pub mod change_requests;
pub mod device_challenges;
pub mod devices;
pub mod keys;
pub mod persons;
pub mod preverify;
pub mod retention;
pub mod sms_challenges;

use super::verify::{Point, VerifyingKey};
use crate::api::{
    ChallengeId, ChangeRequestId, DeviceId, KeyId, KeyPurpose, MobileNumberId, Otp, PersonId,
    PhoneNumber, Timestamp,
};
use crate::sandbox::config::SandboxConfig;
use rand::RngCore;

/// Why the bank refuses a request: the rule that was broken. Each maps to one error code of
/// the bank's `errors` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No such entity for this partner (or not in the state the call needs).
    NotFound,
    /// A field's value breaks a rule (missing, or belongs to another method).
    Validation,
    /// The person has no verified number to send a code to.
    NoVerifiedNumber,
    /// The person already has the maximum of bound devices.
    DeviceLimitReached,
    /// The public key is already bound to a device of this partner.
    KeyAlreadyBound,
    /// The device already has a key of this purpose.
    KeyPurposeTaken,
    /// The device has no key of the purpose asked for.
    KeyNotFound,
    /// The challenge needs the device's restricted key.
    RestrictedKeyRequired,
    /// The device was deleted and signs nothing.
    DeviceDeleted,
    /// The signature is not strict DER.
    InvalidSignatureEncoding,
    /// The signature does not verify.
    InvalidSignature,
    /// The OTP or TAN is wrong.
    InvalidOtp,
    /// The challenge's lifetime is over.
    ChallengeExpired,
    /// The challenge was already completed.
    ChallengeAlreadyUsed,
    /// The challenge's failed attempts are spent.
    ChallengeFailed,
    /// The code went to a number that is no longer the person's verified number.
    MobileNumberChanged,
    /// The person already has a mobile number.
    MobileNumberExists,
    /// The number given is not the person's number.
    MobileNumberMismatch,
    /// The number is already verified.
    MobileNumberAlreadyVerified,
    /// No OTP was sent for the number yet.
    AuthorizationRequired,
    /// A person or device does not belong to the change request's person.
    PersonMismatch,
    /// The change request is not in a state that allows the call.
    ChangeRequestState,
    /// Too many SMS with a code to this person lately; retry after this many seconds.
    TooManyRequests {
        /// Seconds until one more is admitted.
        retry_after: u64,
    },
}

/// A refusal: the broken rule, what was wrong and what to do (`detail`), and the request
/// field at fault, if one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that was broken.
    pub reason: Reason,
    /// What was wrong, and the next step.
    pub detail: String,
    /// The request field at fault.
    pub field: Option<String>,
}

impl Refusal {
    /// A refusal for `reason` saying `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Refusal {
            reason,
            detail: detail.into(),
            field: None,
        }
    }

    /// The same refusal, naming the request field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// What a rule's caller must deliver: an SMS with `otp` to `number`.
#[derive(Debug, Clone)]
pub struct SendOtp {
    /// Where to.
    pub number: PhoneNumber,
    /// The code (prints redacted).
    pub otp: Otp,
}

/// Checks an ECDSA signature; the sandbox's implementation counts its work.
pub trait Verifier {
    /// Whether `der` is a valid signature of `message` by `key`.
    fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool;
}

/// The public keys bound to devices of one partner: a key is bound at most once.
pub trait KeyIndex {
    /// Whether `point` is bound now.
    fn is_bound(&self, point: &Point) -> bool;
    /// Binds `point` to `device`; false (and nothing changes) if it was bound already.
    fn claim(&self, point: &Point, device: &DeviceId) -> bool;
    /// Releases `point`.
    fn release(&self, point: &Point);
}

/// What a rule that verifies signatures needs from its caller.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    /// The rules in force.
    pub config: &'a SandboxConfig,
    /// Now.
    pub now: Timestamp,
    /// The partner's bound keys.
    pub keys: &'a dyn KeyIndex,
    /// The signature check.
    pub verifier: &'a dyn Verifier,
}

/// The word for a key purpose in messages.
pub fn purpose_word(purpose: KeyPurpose) -> &'static str {
    if purpose == KeyPurpose::Restricted {
        "restricted"
    } else {
        "unrestricted"
    }
}

/// Mints ids and codes from an injected generator, so a seeded generator makes a run
/// reproducible.
pub mod mint {
    use super::*;
    use rand::Rng;

    /// 32 random hex digits, written into `out` (no allocation).
    fn hex32<'a>(rng: &mut dyn RngCore, out: &'a mut [u8; 36]) -> &'a str {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let _ = hex::encode_to_slice(bytes, &mut out[..32]);
        std::str::from_utf8(&out[..32]).unwrap_or_default()
    }

    /// 32 random hex digits and `suffix` (4 letters), written into `out`.
    fn hex32_and<'a>(rng: &mut dyn RngCore, suffix: &[u8; 4], out: &'a mut [u8; 36]) -> &'a str {
        hex32(rng, out);
        out[32..].copy_from_slice(suffix);
        std::str::from_utf8(&out[..]).unwrap_or_default()
    }

    // The `expect`s below cannot fail: 32 hex digits (with a 4-letter suffix) are a token of
    // at most 64 URL-safe characters, which is all `strict` checks.

    /// A person id, `<32 hex>cper`.
    pub fn person_id(rng: &mut dyn RngCore) -> PersonId {
        PersonId::strict(hex32_and(rng, b"cper", &mut [0; 36])).expect("a canonical id is a token")
    }

    /// A mobile number id, `<32 hex>cmno`.
    pub fn mobile_number_id(rng: &mut dyn RngCore) -> MobileNumberId {
        MobileNumberId::strict(hex32_and(rng, b"cmno", &mut [0; 36]))
            .expect("a canonical id is a token")
    }

    /// A device id, 32 hex.
    pub fn device_id(rng: &mut dyn RngCore) -> DeviceId {
        DeviceId::strict(hex32(rng, &mut [0; 36])).expect("a canonical id is a token")
    }

    /// A challenge id, 32 hex.
    pub fn challenge_id(rng: &mut dyn RngCore) -> ChallengeId {
        ChallengeId::strict(hex32(rng, &mut [0; 36])).expect("a canonical id is a token")
    }

    /// A change request id, 32 hex.
    pub fn change_request_id(rng: &mut dyn RngCore) -> ChangeRequestId {
        ChangeRequestId::strict(hex32(rng, &mut [0; 36])).expect("a canonical id is a token")
    }

    /// A key id, a version-4 UUID.
    pub fn key_id(rng: &mut dyn RngCore) -> KeyId {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        KeyId::from(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// `n` random bytes as hex, a nonce for a string to sign.
    pub fn nonce_hex(rng: &mut dyn RngCore, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        rng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// A six-digit OTP for `number`: `212212` for the test number or with `static_otp`.
    pub fn otp(rng: &mut dyn RngCore, number: &PhoneNumber, static_otp: bool) -> Otp {
        if static_otp || number.as_str() == PhoneNumber::TEST {
            return Otp::parse(crate::sandbox::sms::STATIC_OTP).expect("six ASCII digits");
        }
        // Wiped when dropped, as the `Otp` made from it is.
        let digits = zeroize::Zeroizing::new(format!("{:06}", rng.gen_range(0..1_000_000u32)));
        Otp::parse(&digits).expect("six ASCII digits by construction")
    }
}

#[cfg(test)]
mod model_test;
#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod mint_tests {
    use super::mint;
    use crate::api::PhoneNumber;
    use rand::SeedableRng;

    #[test]
    fn minted_ids_have_the_banks_shapes_and_differ() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let person = mint::person_id(&mut rng);
        assert!(person.is_canonical(), "{person}");
        assert!(person.as_str().ends_with("cper"));
        assert!(mint::mobile_number_id(&mut rng).is_canonical());
        let (a, b) = (mint::device_id(&mut rng), mint::device_id(&mut rng));
        assert!(a.is_canonical() && b.is_canonical());
        assert_ne!(a, b);
        assert!(mint::challenge_id(&mut rng).is_canonical());
        assert!(mint::change_request_id(&mut rng).is_canonical());
        assert!(mint::key_id(&mut rng).is_canonical());
    }

    #[test]
    fn the_test_number_and_static_mode_get_the_static_code_and_others_a_random_one() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let test = PhoneNumber::test_number();
        let other = PhoneNumber::parse("+4915112345678").unwrap();
        let code = |n: &PhoneNumber, fixed: bool, rng: &mut rand::rngs::StdRng| {
            mint::otp(rng, n, fixed).expose().to_owned()
        };
        assert_eq!(code(&test, false, &mut rng), "212212");
        assert_eq!(code(&other, true, &mut rng), "212212");
        let drawn: std::collections::HashSet<_> =
            (0..20).map(|_| code(&other, false, &mut rng)).collect();
        assert!(drawn.len() > 1, "{drawn:?}");
        assert!(drawn.iter().all(|c| c.len() == 6));
    }
}
