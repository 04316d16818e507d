//! Signatures checked before the entities' locks are taken.
//!
//! An ECDSA verification costs about 50 µs; done under a person's and a device's locks it
//! makes every other request about that person wait. So a handler that answers a signed
//! challenge works in two steps:
//!
//! 1. under the locks, briefly, it asks the rule what it would verify ([`ToVerify`]: the
//!    key or keys, the message and the DER), refusing at once what the rule would refuse
//!    before verifying (wrong kind, finished or expired, malformed DER, no key);
//! 2. with no lock held it verifies ([`ToVerify::check`]), then takes the locks again and runs
//!    the whole rule with the verdicts as its [`Verifier`] ([`Preverified`]).
//!
//! The rule in step 2 checks everything again (still open, not expired, attempts left, the
//! same key), so the outcome is the one the rule gives at that moment: a wrong signature
//! counts one failed attempt exactly as before, and a refusal changes nothing. The verdicts
//! only stand in for a verification of the same key, message and DER; anything else the
//! rule asks (a key replaced meanwhile) is verified there and then by the live verifier.

use super::Verifier;
use crate::sandbox::verify::VerifyingKey;

/// What a rule would verify: a signature (`der`) of `message`, by the first key that the
/// rule checks and, if that one refuses it, the others in order.
pub struct ToVerify {
    /// The keys, in the order the rule tries them.
    pub keys: Vec<VerifyingKey>,
    /// The signed bytes.
    pub message: Vec<u8>,
    /// The signature, strict DER (already checked).
    pub der: Vec<u8>,
}

impl ToVerify {
    /// Verifies with `verifier`, as the rule would: key after key until one accepts.
    pub fn check(self, verifier: &dyn Verifier) -> Preverified<'_> {
        let mut verdicts = Vec::with_capacity(self.keys.len());
        for key in self.keys {
            let ok = verifier.verify(&key, &self.message, &self.der);
            verdicts.push((key, ok));
            if ok {
                break;
            }
        }
        Preverified {
            message: self.message,
            der: self.der,
            verdicts,
            live: verifier,
        }
    }
}

/// Verdicts reached before the locks were taken, answering as a [`Verifier`] for the same
/// key, message and DER; any other question goes to the live verifier.
pub struct Preverified<'a> {
    message: Vec<u8>,
    der: Vec<u8>,
    verdicts: Vec<(VerifyingKey, bool)>,
    live: &'a dyn Verifier,
}

impl Verifier for Preverified<'_> {
    fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
        if message == self.message.as_slice() && der == self.der.as_slice() {
            let known = self.verdicts.iter().find(|(k, _)| k.point() == key.point());
            if let Some((_, ok)) = known {
                return *ok;
            }
        }
        self.live.verify(key, message, der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::core::testing::TestKey;
    use std::cell::Cell;

    /// Counts verifications.
    #[derive(Default)]
    struct Counting(Cell<u32>);

    impl Verifier for Counting {
        fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
            self.0.set(self.0.get() + 1);
            key.verify(message, der)
        }
    }

    #[test]
    fn verdicts_answer_for_the_same_question_and_the_live_verifier_for_any_other() {
        let (a, b) = (TestKey::new(), TestKey::new());
        let der = b.sign(b"hello").to_bytes();
        let live = Counting::default();
        let pre = ToVerify {
            keys: vec![a.verifying(), b.verifying()],
            message: b"hello".to_vec(),
            der: der.clone(),
        }
        .check(&live);
        assert_eq!(live.0.get(), 2, "a refused, so b was tried");
        assert!(!pre.verify(&a.verifying(), b"hello", &der));
        assert!(pre.verify(&b.verifying(), b"hello", &der));
        assert_eq!(live.0.get(), 2, "both answered from the verdicts");
        // Another message, or a key it did not check: verified live.
        assert!(!pre.verify(&b.verifying(), b"hellO", &der));
        assert!(!pre.verify(&TestKey::new().verifying(), b"hello", &der));
        assert_eq!(live.0.get(), 4);
    }

    #[test]
    fn keys_after_the_first_that_accepts_are_not_verified() {
        let (a, b) = (TestKey::new(), TestKey::new());
        let der = a.sign(b"x").to_bytes();
        let live = Counting::default();
        let pre = ToVerify {
            keys: vec![a.verifying(), b.verifying()],
            message: b"x".to_vec(),
            der: der.clone(),
        }
        .check(&live);
        assert_eq!(live.0.get(), 1);
        assert!(pre.verify(&a.verifying(), b"x", &der));
        assert_eq!(live.0.get(), 1);
    }
}
