//! What the sandbox queues for its state file comes in the order the bank changed, and
//! nothing a request sees is missing from the queue: a restart serves what was acknowledged
//! even when the commit after an answer fails. Deterministic: each test stops a request
//! where a race would interleave (inside a verification, or at a lock the test holds).

use super::auth::Caller;
use super::core::testing::{PlainVerifier, TestKey, rng, t0, verified_person};
use super::core::{KeyIndex, Verifier};
use super::devices::{add_key_to, answer_binding, start_binding};
use super::error::ApiError;
use super::state::{Inner, Owned, SandboxState, Swept};
use super::store::{SqliteStore, SyncMode};
use super::test_binding::restricted_key;
use super::verify::VerifyingKey;
use crate::api::{
    AnswerSignatureChallenge, ChallengeId, CreateDeviceRequest, DeviceId, KeyType, PersonId,
};
use crate::clock::ManualClock;
use crate::sandbox::config::SandboxConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CALLER: Caller = Caller(0);

/// A sandbox keeping its bank in the SQLite file at `path`, on `clock`.
fn durable(path: &Path, clock: &Arc<ManualClock>) -> SandboxState {
    let store = SqliteStore::open(path, SyncMode::Normal).expect("the file opens");
    SandboxState::with_store(SandboxConfig::default(), clock.clone(), Box::new(store))
        .expect("the sandbox starts on the file")
}

/// A binding started with `key` for a new person with a verified number, queued for the
/// file as `POST /v1/mfa/devices` queues it.
struct Binding {
    id: ChallengeId,
    otp: String,
    device: DeviceId,
}

fn binding(state: &SandboxState, key: &TestKey, seed: u64) -> Binding {
    let started = super::test_binding::start(&state.0, CALLER, key, seed);
    Binding {
        id: started.id,
        otp: started.otp,
        device: started.device,
    }
}

/// A person with a verified number, of its own.
fn person(state: &SandboxState, seed: u64) -> PersonId {
    let person = verified_person(&mut rng(seed));
    let id = person.person.id.clone();
    Inner::insert(&state.0.persons, CALLER.0, id.clone(), person);
    id
}

fn answer(key: &TestKey, otp: &str) -> AnswerSignatureChallenge {
    AnswerSignatureChallenge {
        signature: key.sign(otp.as_bytes()),
        device_data: None,
    }
}

/// Runs `during` in the middle of the verification (no entity lock is held then), then
/// verifies for real.
struct Hooked<F>(F);

impl<F: Fn()> Verifier for Hooked<F> {
    fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
        (self.0)();
        key.verify(message, der)
    }
}

/// Whether the sandbox knows the binding's challenge and device.
fn knows(state: &SandboxState, b: &Binding) -> (bool, bool) {
    (
        state.challenge_status(&b.id).is_some(),
        state.0.devices.contains_key(&b.device),
    )
}

/// Finding: a sweep forgot a challenge (and its unverified device) that a request had looked
/// up and was verifying an answer to; the request then queued the entities' new versions
/// after their Forget rows, and the file had them back.
#[test]
fn a_sweep_leaves_what_a_request_holds_so_the_file_never_gets_a_forgotten_entity_back() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bank.sqlite");
    let clock = Arc::new(ManualClock::at(t0()));
    let key = TestKey::new();
    let (b, in_memory, swept) = {
        let state = durable(&file, &clock);
        let b = binding(&state, &key, 5);
        let config = state.config().clone();
        let swept = std::cell::Cell::new(None);
        // While the right answer is verified, the challenge expires and outlives its
        // retention, and a sweep runs.
        let hooked = Hooked(|| {
            clock.advance(config.challenge_lifetime + config.retention + Duration::from_secs(1));
            swept.set(Some(state.sweep()));
        });
        let refused = answer_binding(
            &state.0,
            CALLER,
            b.id.as_str(),
            answer(&key, &b.otp),
            &hooked,
        )
        .expect_err("expired under the locks");
        assert_eq!(refused.code, "challenge_expired");
        let in_memory = knows(&state, &b);
        // The state is dropped here: its group commits everything queued.
        (b, in_memory, swept.get())
    };
    let restarted = durable(&file, &clock);
    assert_eq!(
        knows(&restarted, &b),
        in_memory,
        "a restart serves the challenge and device as memory held them"
    );
    assert_eq!(
        swept,
        Some(Swept::default()),
        "held by the request: left for the next sweep"
    );
    // The next sweep forgets both, in memory and in the file.
    let swept = restarted.sweep();
    assert_eq!((swept.challenges, swept.devices), (1, 1));
    drop(restarted);
    assert_eq!(knows(&durable(&file, &clock), &b), (false, false));
}

/// Finding: the sweep forgets a binding's challenge and then its unverified device, in two
/// commits, and keeps a busy device in memory for the next sweep. A restart in between (or
/// with the device kept) left a device no challenge reaches: no sweep looked at it again,
/// and it counted in `live_devices` for ever. A restart now hands such devices to the next
/// sweep.
#[test]
fn an_unverified_device_whose_challenge_was_forgotten_before_a_restart_is_swept_after_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("bank.sqlite");
    let clock = Arc::new(ManualClock::at(t0()));
    let key = TestKey::new();
    let (orphaned, bound) = {
        let state = durable(&file, &clock);
        let orphaned = binding(&state, &key, 5);
        // Only the challenge's Forget reaches the file, as when the process ends between
        // the sweep's two commits.
        state
            .0
            .commit(&[super::store::Write::ForgetChallenge(&orphaned.id)])
            .expect("queued");
        // A binding still open: its device is reached through its challenge and stays.
        let bound = binding(&state, &TestKey::new(), 6);
        (orphaned, bound)
    };
    let restarted = durable(&file, &clock);
    assert_eq!(
        knows(&restarted, &orphaned),
        (false, true),
        "the file holds the device alone"
    );
    assert_eq!(
        restarted.0.orphans.lock().as_slice(),
        std::slice::from_ref(&orphaned.device)
    );
    let swept = restarted.sweep();
    assert_eq!((swept.challenges, swept.devices), (0, 1));
    assert_eq!(
        knows(&restarted, &bound),
        (true, true),
        "an open binding is left alone"
    );
    drop(restarted);
    let again = durable(&file, &clock);
    assert_eq!(
        knows(&again, &orphaned),
        (false, false),
        "the file forgot the device"
    );
    assert_eq!(knows(&again, &bound), (true, true));
    assert!(again.0.orphans.lock().is_empty());
}

/// Finding: a sweep removed entries from memory and queued their Forget rows only after
/// walking every map, so a request could find an entry gone, and be answered, before the
/// Forget was queued (and committed).
#[test]
fn a_swept_challenge_is_missing_from_memory_only_once_its_forget_is_queued() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = Arc::new(ManualClock::at(t0()));
    let state = durable(&dir.path().join("bank.sqlite"), &clock);
    let b = binding(&state, &TestKey::new(), 5);
    let config = state.config().clone();
    clock.advance(config.challenge_lifetime + config.retention + Duration::from_secs(1));
    let group = state.0.group.as_ref().expect("kept in a file");
    let before = group.last_queued();
    std::thread::scope(|s| {
        // The sweep takes the list of busy orphans right after walking the challenges:
        // holding it stops the sweep there.
        let held = state.0.orphans.lock();
        let sweep = s.spawn(|| state.sweep());
        // Bounded: the sweep walks one small map.
        let gone = (0..10_000).any(|_| {
            let gone = state.0.challenges.get(&b.id).is_none();
            if !gone {
                std::thread::sleep(Duration::from_millis(1));
            }
            gone
        });
        assert!(gone, "the sweep forgot the challenge");
        let queued = group.last_queued();
        drop(held);
        let swept = sweep.join().expect("the sweep ends");
        assert_eq!((swept.challenges, swept.devices), (1, 1));
        assert!(
            queued > before,
            "the challenge was missing from memory before its Forget was queued"
        );
    });
}

/// Runs `request` on a thread of its own while the test acts as a binding that claimed `key`
/// for `claimer` and has not queued its rows yet (it holds the device's lock from the claim
/// until they are queued). Once the request has answered or waits for the claimer, the
/// claim is undone (`undo`: its commit was refused) or kept (queued); then the request's
/// answer.
fn while_claimed<T: Send>(
    inner: &Inner,
    claimer: &Arc<Owned<super::state::DeviceEntry>>,
    key: &TestKey,
    undo: bool,
    request: impl FnOnce() -> Result<T, ApiError> + Send,
) -> Result<T, ApiError> {
    let point = key.verifying();
    let point = point.point();
    let unshared = Arc::strong_count(claimer);
    std::thread::scope(|s| {
        let held = claimer.data.lock();
        assert!(inner.keys(CALLER.0).claim(point, &held.id));
        let request = s.spawn(request);
        // Bounded: until it answered, or it waits for the claimer's lock (holding its entry).
        for _ in 0..10_000 {
            if request.is_finished() || Arc::strong_count(claimer) > unshared {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if undo {
            inner.keys(CALLER.0).release(point);
        }
        drop(held);
        request.join().expect("the request ends")
    })
}

fn entry<T>(table: &super::state::Table<DeviceId, T>, id: &DeviceId) -> Arc<Owned<T>> {
    table.get(id).map(|e| e.clone()).expect("stored")
}

/// Finding: a binding refused a key as bound on the strength of another binding's claim
/// that was not queued yet; had that claim's commit failed, the refusal would have been
/// acknowledged for a binding no restart serves.
#[test]
fn a_binding_refused_for_a_claimed_key_is_answered_once_the_claim_is_queued() {
    let state = SandboxState::with_clock(SandboxConfig::default(), Arc::new(ManualClock::at(t0())));
    let inner = &*state.0;
    let key = TestKey::new();
    let claimer = entry(&inner.devices, &binding(&state, &key, 5).device);
    let other = person(&state, 6);
    let create = || {
        start_binding(
            inner,
            CALLER,
            CreateDeviceRequest {
                person_id: other.clone(),
                key_type: KeyType::EcdsaP256,
                key: key.hex(),
                key_purpose: None,
                name: "second phone".into(),
                challenge_type: None,
                language: None,
                sms_challenge: None,
                device_data: None,
            },
        )
    };
    // The claim is undone: the key was never bound, and the binding starts.
    let started = while_claimed(inner, &claimer, &key, true, create);
    assert!(started.is_ok(), "{:?}", started.err());
    // The claim is queued: refused.
    let refused = while_claimed(inner, &claimer, &key, false, create).expect_err("bound");
    assert_eq!(refused.code, "key_already_bound");
}

/// The same for an answer to a binding challenge whose key another device claimed meanwhile.
#[test]
fn an_answer_refused_for_a_claimed_key_is_answered_once_the_claim_is_queued() {
    let state = SandboxState::with_clock(SandboxConfig::default(), Arc::new(ManualClock::at(t0())));
    let inner = &*state.0;
    let key = TestKey::new();
    let claimer = entry(&inner.devices, &binding(&state, &key, 5).device);
    let b = binding(&state, &key, 6);
    let bind = || {
        answer_binding(
            inner,
            CALLER,
            b.id.as_str(),
            answer(&key, &b.otp),
            &PlainVerifier,
        )
    };
    // The claim is queued: refused (the challenge stays open).
    let refused = while_claimed(inner, &claimer, &key, false, bind).expect_err("claimed");
    assert_eq!(refused.code, "key_already_bound");
    inner.keys(CALLER.0).release(key.verifying().point());
    // The claim is undone: the answer binds.
    let bound = while_claimed(inner, &claimer, &key, true, bind);
    assert!(bound.is_ok(), "{:?}", bound.err());
    assert!(entry(&inner.devices, &b.device).data.lock().verified);
}

/// The same for a key added to a bound device.
#[test]
fn a_key_refused_as_claimed_is_answered_once_the_claim_is_queued() {
    let state = SandboxState::with_clock(SandboxConfig::default(), Arc::new(ManualClock::at(t0())));
    let inner = &*state.0;
    let (key, added) = (TestKey::new(), TestKey::new());
    let b = binding(&state, &key, 5);
    answer_binding(
        inner,
        CALLER,
        b.id.as_str(),
        answer(&key, &b.otp),
        &PlainVerifier,
    )
    .expect("binds");
    let claimer = entry(&inner.devices, &binding(&state, &added, 6).device);
    let add = || {
        add_key_to(
            inner,
            CALLER,
            b.device.as_str(),
            restricted_key(&key, &added),
            &PlainVerifier,
        )
    };
    // The claim is queued: refused.
    let refused = while_claimed(inner, &claimer, &added, false, add).expect_err("claimed");
    assert_eq!(refused.code, "key_already_bound");
    inner.keys(CALLER.0).release(added.verifying().point());
    // The claim is undone: the key is added.
    let added_key = while_claimed(inner, &claimer, &added, true, add);
    assert!(added_key.is_ok(), "{:?}", added_key.err());
}
