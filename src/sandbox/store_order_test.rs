//! What the sandbox queues for its state file comes in the order the bank changed, and
//! nothing a request sees is missing from the queue: a restart serves what was acknowledged
//! even when the commit after an answer fails. Deterministic: each test stops a request
//! where a race would interleave (inside a verification, or at a lock the test holds).

use super::auth::Caller;
use super::core::Verifier;
use super::core::devices::{self as rules, NewDevice};
use super::core::testing::{TestKey, rng, t0, verified_person};
use super::devices::answer_binding;
use super::state::{Inner, SandboxState, Swept};
use super::store::{SqliteStore, SyncMode, Write};
use super::verify::VerifyingKey;
use crate::api::{AnswerSignatureChallenge, ChallengeId, DeviceId, KeyPurpose};
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
    let inner = &*state.0;
    let mut rng = rng(seed);
    let person = verified_person(&mut rng);
    let person_id = person.person.id.clone();
    let started = rules::start_binding(
        &person,
        NewDevice {
            person_id: person_id.clone(),
            name: "phone".into(),
            key: key.verifying(),
            purpose: KeyPurpose::Unrestricted,
            device_data: None,
        },
        &inner.keys(CALLER.0),
        &inner.config,
        inner.clock.now(),
        &mut rng,
    )
    .expect("a verified person may bind");
    let partner = inner.partner_name(CALLER.0);
    inner
        .commit(&[
            Write::Person(partner, &person),
            Write::Device(partner, &started.device),
            Write::Challenge(partner, &started.challenge_id, &started.challenge),
        ])
        .expect("queued");
    let b = Binding {
        id: started.challenge_id.clone(),
        otp: started.send.otp.expose().to_owned(),
        device: started.device.id.clone(),
    };
    Inner::insert(&inner.persons, CALLER.0, person_id, person);
    Inner::insert(&inner.devices, CALLER.0, b.device.clone(), started.device);
    Inner::insert(&inner.challenges, CALLER.0, b.id.clone(), started.challenge);
    b
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
