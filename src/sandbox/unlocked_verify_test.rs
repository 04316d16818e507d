//! The handlers that answer signed challenges verify with no entity lock held, and check the
//! entities again before they commit. Deterministic: the verifier below runs on the
//! request's own thread, in the middle of the request, and looks at the locks (or changes the
//! bank) from there.

use super::auth::Caller;
use super::challenges::answer_device_challenge;
use super::change_requests::{confirm_change, hold_change};
use super::core::attempts::Status;
use super::core::challenges::ChallengeWhat;
use super::core::change_requests::HeldChange;
use super::core::testing::{PlainVerifier, TestKey, rng};
use super::core::{Verifier, device_challenges};
use super::devices::{add_key_to, answer_binding};
use super::state::{Inner, Owned, SandboxState};
use super::test_binding::restricted_key;
use super::verify::VerifyingKey;
use crate::api::{
    AnswerDeviceChallenge, AnswerSignatureChallenge, ChallengeId, ChangeRequestStatus,
    ConfirmChangeRequest, SignatureHex, UpdatePerson,
};
use crate::sandbox::config::SandboxConfig;
use axum::http::StatusCode;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

const CALLER: Caller = Caller(0);

/// A sandbox with a person (verified number) and one binding started with `key`: the
/// challenge's id, the OTP, and the entries of the challenge, person and device.
struct Binding {
    state: SandboxState,
    id: ChallengeId,
    otp: String,
    challenge: Arc<Owned<super::state::ChallengeEntry>>,
    person: Arc<Owned<super::state::PersonEntry>>,
    device: Arc<Owned<super::state::DeviceEntry>>,
}

fn start_binding(key: &TestKey) -> Binding {
    let state = SandboxState::new(SandboxConfig::default());
    let inner = &*state.0;
    let started = super::test_binding::start(inner, CALLER, key, 5);
    fn get<K: std::hash::Hash + Eq, T>(table: &super::state::Table<K, T>, k: &K) -> Arc<Owned<T>> {
        table.get(k).map(|e| e.clone()).expect("inserted")
    }
    Binding {
        challenge: get(&inner.challenges, &started.id),
        person: get(&inner.persons, &started.person),
        device: get(&inner.devices, &started.device),
        otp: started.otp,
        id: started.id,
        state,
    }
}

/// Calls `during` in the middle of every verification, then verifies for real.
struct Hooked<'a> {
    during: RefCell<Box<dyn FnMut() + 'a>>,
    calls: Cell<u32>,
}

impl<'a> Hooked<'a> {
    fn new(during: impl FnMut() + 'a) -> Self {
        Hooked {
            during: RefCell::new(Box::new(during)),
            calls: Cell::new(0),
        }
    }
}

impl Verifier for Hooked<'_> {
    fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
        self.calls.set(self.calls.get() + 1);
        (self.during.borrow_mut())();
        key.verify(message, der)
    }
}

fn binding_answer(signature: SignatureHex) -> AnswerSignatureChallenge {
    AnswerSignatureChallenge {
        signature,
        device_data: None,
    }
}

#[test]
fn a_binding_is_verified_with_no_lock_held_and_binds_once_verified() {
    let key = TestKey::new();
    let b = start_binding(&key);
    let free = Cell::new(0);
    let hooked = Hooked::new(|| {
        // `try_lock` fails on a lock this thread holds: all three are free here.
        assert!(b.challenge.data.try_lock().is_some(), "challenge locked");
        assert!(b.person.data.try_lock().is_some(), "person locked");
        assert!(b.device.data.try_lock().is_some(), "device locked");
        free.set(free.get() + 1);
    });
    let answer = binding_answer(key.sign(b.otp.as_bytes()));
    let done = answer_binding(&b.state.0, CALLER, b.id.as_str(), answer, &hooked);
    assert_eq!(done.expect("binds"), StatusCode::NO_CONTENT);
    assert_eq!((hooked.calls.get(), free.get()), (1, 1), "verified once");
    assert!(b.device.data.lock().verified);
    assert_eq!(b.person.data.lock().bound, 1);
    assert_eq!(b.challenge.data.lock().attempts.status, Status::Completed);
}

#[test]
fn an_answer_that_completes_while_another_is_verified_leaves_the_other_refused_and_uncounted() {
    let key = TestKey::new();
    let b = start_binding(&key);
    let signature = key.sign(b.otp.as_bytes());
    let inner = &*b.state.0;
    // While the first answer is being verified, a second one arrives and binds the device.
    let hooked = Hooked::new(|| {
        let second = answer_binding(
            inner,
            CALLER,
            b.id.as_str(),
            binding_answer(signature.clone()),
            &PlainVerifier,
        );
        assert_eq!(second.expect("the second binds"), StatusCode::NO_CONTENT);
    });
    let first = answer_binding(
        inner,
        CALLER,
        b.id.as_str(),
        binding_answer(signature.clone()),
        &hooked,
    );
    let refused = first.expect_err("checked again under the locks");
    assert_eq!(refused.code, "challenge_already_used");
    assert_eq!(b.person.data.lock().bound, 1, "bound once, not twice");
    let c = b.challenge.data.lock();
    assert_eq!(
        (c.attempts.status, c.attempts.failed),
        (Status::Completed, 0)
    );
}

#[test]
fn a_wrong_signature_counts_one_attempt_and_none_once_the_challenge_is_spent_meanwhile() {
    let key = TestKey::new();
    let b = start_binding(&key);
    let inner = &*b.state.0;
    let wrong = || binding_answer(key.sign(b"000000"));
    // A wrong signature counts one failed attempt, as before.
    let refused = answer_binding(inner, CALLER, b.id.as_str(), wrong(), &PlainVerifier)
        .expect_err("wrong signature");
    assert_eq!(refused.code, "invalid_signature");
    assert_eq!(b.challenge.data.lock().attempts.failed, 1);
    // While the next wrong answer is verified, two more spend the challenge: the late one
    // finds it spent and counts nothing.
    let hooked = Hooked::new(|| {
        for _ in 0..2 {
            let _ = answer_binding(inner, CALLER, b.id.as_str(), wrong(), &PlainVerifier);
        }
    });
    let late = answer_binding(inner, CALLER, b.id.as_str(), wrong(), &hooked)
        .expect_err("spent meanwhile");
    assert_eq!(late.code, "challenge_failed");
    let c = b.challenge.data.lock();
    assert_eq!((c.attempts.status, c.attempts.failed), (Status::Failed, 3));
    assert!(!b.device.data.lock().verified);
}

#[test]
fn a_device_challenge_is_verified_with_no_lock_held() {
    let key = TestKey::new();
    let b = start_binding(&key);
    let inner = &*b.state.0;
    answer_binding(
        inner,
        CALLER,
        b.id.as_str(),
        binding_answer(key.sign(b.otp.as_bytes())),
        &PlainVerifier,
    )
    .expect("binds");
    let (id, entry) = device_challenges::create(
        &b.device.data.lock(),
        None,
        &inner.config,
        inner.clock.now(),
        &mut rng(6),
    )
    .expect("a bound device");
    let ChallengeWhat::Device { string_to_sign, .. } = &entry.what else {
        panic!("a device challenge");
    };
    let message = string_to_sign.clone();
    Inner::insert(&inner.challenges, CALLER.0, id.clone(), entry);
    let challenge = inner.challenges.get(&id).map(|e| e.clone()).expect("there");
    let hooked = Hooked::new(|| {
        assert!(challenge.data.try_lock().is_some(), "challenge locked");
        assert!(b.device.data.try_lock().is_some(), "device locked");
    });
    let answer = AnswerDeviceChallenge {
        signature: key.sign(message.as_bytes()),
        device_data: None,
    };
    let done = answer_device_challenge(inner, CALLER, id.as_str(), answer, &hooked);
    assert_eq!(done.expect("answered"), StatusCode::NO_CONTENT);
    assert_eq!(hooked.calls.get(), 1);
    assert_eq!(challenge.data.lock().attempts.status, Status::Completed);
    assert!(b.device.data.lock().keys[0].used_at.is_some());
}

/// A binding of `key`, answered right: the device is bound.
fn bound(key: &TestKey) -> Binding {
    let b = start_binding(key);
    answer_binding(
        &b.state.0,
        CALLER,
        b.id.as_str(),
        binding_answer(key.sign(b.otp.as_bytes())),
        &PlainVerifier,
    )
    .expect("binds");
    b
}

#[test]
fn a_new_key_is_verified_with_no_lock_held_and_added_once_verified() {
    let key = TestKey::new();
    let b = bound(&key);
    let device_id = b.device.data.lock().id.clone();
    let hooked = Hooked::new(|| {
        assert!(b.device.data.try_lock().is_some(), "device locked");
    });
    let new = TestKey::new();
    let added = add_key_to(
        &b.state.0,
        CALLER,
        device_id.as_str(),
        restricted_key(&key, &new),
        &hooked,
    );
    added.expect("added");
    assert_eq!(hooked.calls.get(), 1, "verified once");
    let d = b.device.data.lock();
    assert_eq!(d.keys.len(), 2);
    assert_eq!(d.keys[1].key.point(), new.verifying().point());
}

#[test]
fn a_key_added_while_another_is_verified_leaves_the_other_refused_and_the_device_unchanged() {
    let key = TestKey::new();
    let b = bound(&key);
    let inner = &*b.state.0;
    let device_id = b.device.data.lock().id.clone();
    let (first, second) = (TestKey::new(), TestKey::new());
    // While the first key's signature is verified, a second request adds another
    // restricted key: the first is checked again under the lock and refused.
    let hooked = Hooked::new(|| {
        // Free (else the request below would wait for it for ever).
        assert!(b.device.data.try_lock().is_some(), "device locked");
        let other = add_key_to(
            inner,
            CALLER,
            device_id.as_str(),
            restricted_key(&key, &second),
            &PlainVerifier,
        );
        other.expect("the second is added");
    });
    let refused = add_key_to(
        inner,
        CALLER,
        device_id.as_str(),
        restricted_key(&key, &first),
        &hooked,
    )
    .expect_err("checked again under the lock");
    assert_eq!(refused.code, "key_purpose_taken");
    let d = b.device.data.lock();
    assert_eq!(d.keys.len(), 2, "one restricted key, the second");
    assert_eq!(d.keys[1].key.point(), second.verifying().point());
    // The refused key was never claimed: another device could still bind it.
    let point = *first.verifying().point();
    assert!(!inner.bound_keys.contains_key(&(CALLER.0, point)));
}

/// A bound device and a change of its person's first name to `name`, authorized for
/// signing with the device: the change request's entry and the string to sign.
fn change_signed_by_device(
    b: &Binding,
    name: &str,
) -> (Arc<Owned<super::state::ChangeRequestEntry>>, String) {
    let inner = &*b.state.0;
    let person_id = b.person.data.lock().person.id.clone();
    let held = hold_change(
        inner,
        CALLER.0,
        person_id,
        HeldChange::UpdatePerson(UpdatePerson {
            first_name: Some(name.into()),
            last_name: None,
            email: None,
        }),
    )
    .expect("held");
    let entry = inner
        .change_requests
        .get(&held.id)
        .map(|e| e.clone())
        .expect("there");
    let mut cr = entry.data.lock();
    cr.authorize_device(
        &b.device.data.lock(),
        &inner.config,
        inner.clock.now(),
        &mut rng(7),
    )
    .expect("authorized with the bound device");
    let to_sign = cr.view().string_to_sign.expect("a string to sign");
    drop(cr);
    (entry, to_sign)
}

fn signed_confirmation(b: &Binding, key: &TestKey, to_sign: &str) -> ConfirmChangeRequest {
    ConfirmChangeRequest {
        person_id: None,
        tan: None,
        device_id: Some(b.device.data.lock().id.clone()),
        signature: Some(key.sign(to_sign.as_bytes())),
        device_data: None,
    }
}

#[test]
fn a_change_request_signature_is_verified_with_no_lock_held_and_the_change_made_once_verified() {
    let key = TestKey::new();
    let b = bound(&key);
    let (cr, to_sign) = change_signed_by_device(&b, "Signed");
    let hooked = Hooked::new(|| {
        assert!(cr.data.try_lock().is_some(), "change request locked");
        assert!(b.device.data.try_lock().is_some(), "device locked");
        assert!(b.person.data.try_lock().is_some(), "person locked");
    });
    let id = cr.data.lock().id.clone();
    let view = confirm_change(
        &b.state.0,
        CALLER,
        id.as_str(),
        signed_confirmation(&b, &key, &to_sign),
        &hooked,
    )
    .expect("confirmed");
    assert_eq!(view.status, ChangeRequestStatus::Completed);
    assert_eq!(hooked.calls.get(), 1, "verified once");
    assert_eq!(b.person.data.lock().person.first_name, "Signed");
}

#[test]
fn a_change_request_confirmed_while_another_confirmation_is_verified_is_carried_out_once() {
    let key = TestKey::new();
    let b = bound(&key);
    let inner = &*b.state.0;
    let (cr, to_sign) = change_signed_by_device(&b, "Once");
    let id = cr.data.lock().id.clone();
    let hooked = Hooked::new(|| {
        // Free (else the request below would wait for it for ever).
        assert!(cr.data.try_lock().is_some(), "change request locked");
        let second = confirm_change(
            inner,
            CALLER,
            id.as_str(),
            signed_confirmation(&b, &key, &to_sign),
            &PlainVerifier,
        );
        assert_eq!(
            second.expect("confirmed").status,
            ChangeRequestStatus::Completed
        );
    });
    let first = confirm_change(
        inner,
        CALLER,
        id.as_str(),
        signed_confirmation(&b, &key, &to_sign),
        &hooked,
    )
    .expect_err("checked again under the lock");
    assert_eq!(first.code, "challenge_already_used");
    assert_eq!(cr.data.lock().status, ChangeRequestStatus::Completed);
    assert_eq!(b.person.data.lock().person.first_name, "Once");
}
