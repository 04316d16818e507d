//! The core checked against a small reference model: random sequences of commands (create a
//! person, add/authorize/confirm a number, bind, answer right/wrong/late, add a key, device
//! and SMS challenges, delete, advance the clock) run against the core's rules and against
//! the model written here; every outcome must agree. Each sequence runs twice: with the
//! memory store, and with every change committed to a SQLite store, which is then loaded
//! back and must hold exactly what the core holds.

use super::challenges::{ChallengeEntry, ChallengeWhat};
use super::devices::{self, DeviceEntry, NewDevice};
use super::keys::{NewKey, add_key};
use super::persons::PersonEntry;
use super::testing::{Keys, PlainVerifier, TestKey, config, person, rng, t0};
use super::{Env, Reason, device_challenges, sms_challenges};
use crate::api::{ChallengeId, KeyPurpose, Otp, PhoneNumber, Timestamp};
use crate::sandbox::store::{SqliteStore, Store, SyncMode, Write};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Answer {
    Right,
    Wrong,
    Late,
}

#[derive(Debug, Clone)]
enum Cmd {
    CreatePerson,
    AddNumber(usize),
    Authorize(usize),
    Confirm(usize, bool),
    StartBinding(usize),
    AnswerBinding(usize, Answer),
    AddRestrictedKey(usize),
    DeviceChallenge(usize),
    AnswerDevice(usize, Answer),
    SmsChallenge(usize),
    AnswerSms(usize, Answer),
    Delete(usize),
    Advance(u16),
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![2 => Just(Answer::Right), 3 => Just(Answer::Wrong), 1 => Just(Answer::Late)]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let i = any::<usize>();
    prop_oneof![
        1 => Just(Cmd::CreatePerson),
        1 => i.prop_map(Cmd::AddNumber),
        1 => i.prop_map(Cmd::Authorize),
        1 => (i, any::<bool>()).prop_map(|(p, r)| Cmd::Confirm(p, r)),
        3 => i.prop_map(Cmd::StartBinding),
        3 => (i, answer()).prop_map(|(c, a)| Cmd::AnswerBinding(c, a)),
        1 => i.prop_map(Cmd::AddRestrictedKey),
        2 => i.prop_map(Cmd::DeviceChallenge),
        2 => (i, answer()).prop_map(|(c, a)| Cmd::AnswerDevice(c, a)),
        1 => i.prop_map(Cmd::SmsChallenge),
        1 => (i, answer()).prop_map(|(c, a)| Cmd::AnswerSms(c, a)),
        1 => i.prop_map(Cmd::Delete),
        1 => (1u16..200).prop_map(Cmd::Advance),
    ]
}

/// The model's view of an answerable thing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MStatus {
    Open,
    Completed,
    Spent,
}

#[derive(Debug, Clone)]
struct MAnswerable {
    expires: i64,
    failed: u32,
    status: MStatus,
}

impl MAnswerable {
    fn new(now: i64) -> Self {
        MAnswerable {
            expires: now + 300,
            failed: 0,
            status: MStatus::Open,
        }
    }

    /// The refusal an answer at `now` gets before its content is looked at.
    fn closed(&self, now: i64) -> Option<Reason> {
        match self.status {
            MStatus::Completed => Some(Reason::ChallengeAlreadyUsed),
            MStatus::Spent => Some(Reason::ChallengeFailed),
            MStatus::Open if now >= self.expires => Some(Reason::ChallengeExpired),
            MStatus::Open => None,
        }
    }

    fn fail(&mut self) {
        self.failed += 1;
        if self.failed >= 3 {
            self.status = MStatus::Spent;
        }
    }
}

#[derive(Default)]
struct MPerson {
    number: bool,
    verified: bool,
    otp: Option<MAnswerable>,
    bound: usize,
    /// When SMS with a code went out (the rate limit: 5 per 10 minutes).
    sms_sent: Vec<i64>,
}

impl MPerson {
    /// Admits one more SMS at `now` like the bank's sliding window, or says how long to wait.
    fn admit_sms(&mut self, now: i64) -> Result<(), Reason> {
        self.sms_sent.retain(|t| now < t + 600);
        if self.sms_sent.len() >= 5 {
            let retry_after = u64::try_from(self.sms_sent[0] + 600 - now).unwrap();
            return Err(Reason::TooManyRequests { retry_after });
        }
        self.sms_sent.push(now);
        Ok(())
    }
}

struct MDevice {
    person: usize,
    verified: bool,
    deleted: bool,
    restricted: bool,
}

/// The real entities, side by side with the model's.
struct World {
    now: Timestamp,
    rng: rand::rngs::StdRng,
    keys: Keys,
    persons: Vec<(PersonEntry, MPerson)>,
    numbers: Vec<Option<(Otp, PhoneNumber)>>,
    devices: Vec<(DeviceEntry, TestKey, Option<TestKey>, MDevice)>,
    /// Binding, device and SMS challenges: the entry, what answers it, the model.
    challenges: Vec<(ChallengeId, ChallengeEntry, Option<Otp>, MAnswerable)>,
    store: Option<SqliteStore>,
}

fn wrong_otp(otp: &Otp) -> Otp {
    Otp::parse(if otp.expose() == "000000" {
        "000001"
    } else {
        "000000"
    })
    .unwrap()
}

impl World {
    fn secs(&self) -> i64 {
        self.now.unix()
    }

    fn commit(&self, writes: &[Write<'_>]) {
        if let Some(store) = &self.store {
            store.commit(writes).unwrap();
        }
    }

    /// The command with its indices taken modulo what exists, so it acts on something.
    fn resolve(&self, cmd: &Cmd) -> Cmd {
        let (p, d, c) = (
            self.persons.len().max(1),
            self.devices.len().max(1),
            self.challenges.len().max(1),
        );
        match *cmd {
            Cmd::AddNumber(i) => Cmd::AddNumber(i % p),
            Cmd::Authorize(i) => Cmd::Authorize(i % p),
            Cmd::Confirm(i, r) => Cmd::Confirm(i % p, r),
            Cmd::StartBinding(i) => Cmd::StartBinding(i % p),
            Cmd::SmsChallenge(i) => Cmd::SmsChallenge(i % p),
            Cmd::AnswerBinding(i, a) => Cmd::AnswerBinding(i % c, a),
            Cmd::AnswerDevice(i, a) => Cmd::AnswerDevice(i % c, a),
            Cmd::AnswerSms(i, a) => Cmd::AnswerSms(i % c, a),
            Cmd::AddRestrictedKey(i) => Cmd::AddRestrictedKey(i % d),
            Cmd::DeviceChallenge(i) => Cmd::DeviceChallenge(i % d),
            Cmd::Delete(i) => Cmd::Delete(i % d),
            ref other => other.clone(),
        }
    }

    fn run(&mut self, cmd: &Cmd) {
        let cmd = &self.resolve(cmd);
        let config = config();
        let now = self.now;
        let secs = self.secs();
        let verifier = PlainVerifier;
        match *cmd {
            Cmd::CreatePerson => {
                let p = person(&mut self.rng);
                self.commit(&[Write::Person("p", &p)]);
                self.persons.push((p, MPerson::default()));
                self.numbers.push(None);
            }
            Cmd::AddNumber(i) => {
                let Some((p, m)) = self.persons.get_mut(i) else {
                    return;
                };
                let number = PhoneNumber::parse(&format!("+4915100000{i:03}")).unwrap();
                let got = p.add_number(number.clone(), &mut self.rng).map(|_| ());
                let want = if m.number {
                    Err(Reason::MobileNumberExists)
                } else {
                    Ok(())
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                m.number = true;
                self.commit(&[Write::Person("p", &self.persons[i].0)]);
            }
            Cmd::Authorize(i) => {
                let Some((p, m)) = self.persons.get_mut(i) else {
                    return;
                };
                let Some(number) = p.mobile.as_ref().map(|m| m.number.clone()) else {
                    return;
                };
                let got = p.authorize_number(&number, &config, now, &mut self.rng);
                let want = if m.verified {
                    Err(Reason::MobileNumberAlreadyVerified)
                } else {
                    m.admit_sms(secs)
                };
                assert_eq!(got.as_ref().map(|_| ()).map_err(|r| r.reason), want);
                if let Ok(sent) = got {
                    m.otp = Some(MAnswerable::new(secs));
                    self.numbers[i] = Some((sent.otp, number));
                }
                self.commit(&[Write::Person("p", &self.persons[i].0)]);
            }
            Cmd::Confirm(i, right) => {
                let Some((p, m)) = self.persons.get_mut(i) else {
                    return;
                };
                let Some((otp, number)) = self.numbers[i].clone() else {
                    return;
                };
                let token = if right { otp } else { wrong_otp(&otp) };
                let got = p.confirm_number(&number, &token, &config, now).map(|_| ());
                let want = if m.verified {
                    Err(Reason::MobileNumberAlreadyVerified)
                } else {
                    let a = m.otp.as_mut().unwrap();
                    match a.closed(secs) {
                        Some(r) => Err(r),
                        None if right => {
                            a.status = MStatus::Completed;
                            m.verified = true;
                            Ok(())
                        }
                        None => {
                            a.fail();
                            Err(Reason::InvalidOtp)
                        }
                    }
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                self.commit(&[Write::Person("p", &self.persons[i].0)]);
            }
            Cmd::StartBinding(i) => {
                let Some((p, m)) = self.persons.get(i) else {
                    return;
                };
                let key = TestKey::new();
                let new = NewDevice {
                    person_id: p.person.id.clone(),
                    name: "phone".into(),
                    key: key.verifying(),
                    purpose: KeyPurpose::Unrestricted,
                    device_data: None,
                };
                let got = devices::start_binding(p, new, &self.keys, &config, now, &mut self.rng);
                let want = if !m.verified {
                    Err(Reason::NoVerifiedNumber)
                } else if m.bound >= config.max_devices_per_person {
                    Err(Reason::DeviceLimitReached)
                } else {
                    Ok(())
                };
                assert_eq!(got.as_ref().map(|_| ()).map_err(|r| r.reason), want);
                if let Ok(s) = got {
                    self.commit(&[
                        Write::Device("p", &s.device),
                        Write::Challenge("p", &s.challenge_id, &s.challenge),
                    ]);
                    let model = MDevice {
                        person: i,
                        verified: false,
                        deleted: false,
                        restricted: false,
                    };
                    self.devices.push((s.device, key, None, model));
                    self.challenges.push((
                        s.challenge_id,
                        s.challenge,
                        Some(s.send.otp),
                        MAnswerable::new(secs),
                    ));
                }
            }
            Cmd::AnswerBinding(c, how) => {
                let Some((id, entry, Some(otp), _)) = self.challenges.get(c) else {
                    return;
                };
                let ChallengeWhat::Binding { device_id, .. } = &entry.what else {
                    return;
                };
                let (id, otp) = (id.clone(), otp.clone());
                let d = self
                    .devices
                    .iter()
                    .position(|d| d.0.id == *device_id)
                    .unwrap();
                let pi = self.devices[d].3.person;
                let when = if matches!(how, Answer::Late) {
                    now.plus_seconds(300)
                } else {
                    now
                };
                let message = if matches!(how, Answer::Wrong) {
                    wrong_otp(&otp)
                } else {
                    otp
                };
                let sig = self.devices[d].1.sign(message.expose().as_bytes());
                let env = Env {
                    config: &config,
                    now: when,
                    keys: &self.keys,
                    verifier: &verifier,
                };
                let (device, person, challenge) = (
                    &mut self.devices[d],
                    &mut self.persons[pi],
                    &mut self.challenges[c],
                );
                let got = devices::answer_binding(
                    &mut challenge.1,
                    &mut device.0,
                    &mut person.0,
                    &sig,
                    None,
                    env,
                );
                let model = &mut challenge.3;
                let want = match model.closed(when.unix()) {
                    Some(r) => Err(r),
                    None if !person.1.verified => Err(Reason::MobileNumberChanged),
                    None if matches!(how, Answer::Wrong) => {
                        model.fail();
                        Err(Reason::InvalidSignature)
                    }
                    None if person.1.bound >= config.max_devices_per_person => {
                        Err(Reason::DeviceLimitReached)
                    }
                    None => {
                        model.status = MStatus::Completed;
                        person.1.bound += 1;
                        device.3.verified = true;
                        Ok(())
                    }
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                self.commit(&[
                    Write::Challenge("p", &id, &self.challenges[c].1),
                    Write::Device("p", &self.devices[d].0),
                    Write::Person("p", &self.persons[pi].0),
                ]);
            }
            Cmd::AddRestrictedKey(d) => {
                let Some((device, key, restricted, m)) = self.devices.get_mut(d) else {
                    return;
                };
                if !m.verified {
                    return; // the handler answers 404 before the rule runs
                }
                let new_key = TestKey::new();
                let hex = new_key.hex();
                let der = key.sign(hex.as_str().as_bytes()).to_bytes();
                let new = NewKey {
                    key: new_key.verifying(),
                    hex: &hex,
                    purpose: KeyPurpose::Restricted,
                    signer: KeyPurpose::Unrestricted,
                    der: &der,
                };
                let env = Env {
                    config: &config,
                    now,
                    keys: &self.keys,
                    verifier: &verifier,
                };
                let got = add_key(device, new, env, &mut self.rng).map(|_| ());
                let want = if m.deleted {
                    Err(Reason::DeviceDeleted)
                } else if m.restricted {
                    Err(Reason::KeyPurposeTaken)
                } else {
                    m.restricted = true;
                    *restricted = Some(new_key);
                    Ok(())
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                self.commit(&[Write::Device("p", &self.devices[d].0)]);
            }
            Cmd::DeviceChallenge(d) => {
                let Some((device, _, _, m)) = self.devices.get(d) else {
                    return;
                };
                let got = device_challenges::create(device, None, &config, now, &mut self.rng);
                let want = if !m.verified {
                    Err(Reason::NotFound)
                } else if m.deleted {
                    Err(Reason::DeviceDeleted)
                } else {
                    Ok(())
                };
                assert_eq!(got.as_ref().map(|_| ()).map_err(|r| r.reason), want);
                if let Ok((id, entry)) = got {
                    self.commit(&[Write::Challenge("p", &id, &entry)]);
                    self.challenges
                        .push((id, entry, None, MAnswerable::new(secs)));
                }
            }
            Cmd::AnswerDevice(c, how) => {
                let Some((id, entry, None, _)) = self.challenges.get(c) else {
                    return;
                };
                let ChallengeWhat::Device {
                    device_id,
                    purpose,
                    string_to_sign,
                } = &entry.what
                else {
                    return;
                };
                let (id, purpose, message) = (id.clone(), *purpose, string_to_sign.clone());
                let d = self
                    .devices
                    .iter()
                    .position(|d| d.0.id == *device_id)
                    .unwrap();
                let signer = match purpose {
                    KeyPurpose::Restricted => self.devices[d].2.as_ref().unwrap(),
                    _ => &self.devices[d].1,
                };
                let message = if matches!(how, Answer::Wrong) {
                    format!("{message}x")
                } else {
                    message
                };
                let sig = signer.sign(message.as_bytes());
                let when = if matches!(how, Answer::Late) {
                    now.plus_seconds(300)
                } else {
                    now
                };
                let env = Env {
                    config: &config,
                    now: when,
                    keys: &self.keys,
                    verifier: &verifier,
                };
                let (device, challenge) = (&mut self.devices[d], &mut self.challenges[c]);
                let got =
                    device_challenges::answer(&mut challenge.1, &mut device.0, &sig, None, env);
                let model = &mut challenge.3;
                let want = match model.closed(when.unix()) {
                    Some(r) => Err(r),
                    None if device.3.deleted => Err(Reason::DeviceDeleted),
                    None if matches!(how, Answer::Wrong) => {
                        model.fail();
                        Err(Reason::InvalidSignature)
                    }
                    None => {
                        model.status = MStatus::Completed;
                        Ok(())
                    }
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                self.commit(&[
                    Write::Challenge("p", &id, &self.challenges[c].1),
                    Write::Device("p", &self.devices[d].0),
                ]);
            }
            Cmd::SmsChallenge(i) => {
                let Some((p, m)) = self.persons.get_mut(i) else {
                    return;
                };
                let got = sms_challenges::create(p, &config, now, &mut self.rng);
                let want = if m.verified {
                    m.admit_sms(secs)
                } else {
                    Err(Reason::NoVerifiedNumber)
                };
                assert_eq!(got.as_ref().map(|_| ()).map_err(|r| r.reason), want);
                if let Ok((id, entry, send)) = got {
                    self.commit(&[Write::Challenge("p", &id, &entry)]);
                    self.challenges
                        .push((id, entry, Some(send.otp), MAnswerable::new(secs)));
                }
            }
            Cmd::AnswerSms(c, how) => {
                let Some((id, entry, Some(otp), _)) = self.challenges.get(c) else {
                    return;
                };
                let ChallengeWhat::Sms { person_id, .. } = &entry.what else {
                    return;
                };
                let (id, otp) = (id.clone(), otp.clone());
                let pi = self
                    .persons
                    .iter()
                    .position(|p| p.0.person.id == *person_id)
                    .unwrap();
                let code = if matches!(how, Answer::Wrong) {
                    wrong_otp(&otp)
                } else {
                    otp
                };
                let when = if matches!(how, Answer::Late) {
                    now.plus_seconds(300)
                } else {
                    now
                };
                let challenge = &mut self.challenges[c];
                let got = sms_challenges::answer(
                    &mut challenge.1,
                    &self.persons[pi].0,
                    &code,
                    &config,
                    when,
                );
                let model = &mut challenge.3;
                let want = match model.closed(when.unix()) {
                    Some(r) => Err(r),
                    None if matches!(how, Answer::Wrong) => {
                        model.fail();
                        Err(Reason::InvalidOtp)
                    }
                    None => {
                        model.status = MStatus::Completed;
                        Ok(())
                    }
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                self.commit(&[Write::Challenge("p", &id, &self.challenges[c].1)]);
            }
            Cmd::Delete(d) => {
                let Some((_, _, _, m)) = self.devices.get(d) else {
                    return;
                };
                if !m.verified {
                    return; // the handler answers 404 before the rule runs
                }
                let pi = m.person;
                let (device, person) = (&mut self.devices[d], &mut self.persons[pi]);
                let got = devices::delete(&mut person.0, &mut device.0, &self.keys, now);
                let want = if device.3.deleted {
                    Err(Reason::NotFound)
                } else {
                    device.3.deleted = true;
                    person.1.bound -= 1;
                    Ok(())
                };
                assert_eq!(got.map_err(|r| r.reason), want);
                self.commit(&[
                    Write::Person("p", &self.persons[pi].0),
                    Write::Device("p", &self.devices[d].0),
                ]);
            }
            Cmd::Advance(s) => self.now = self.now.plus_seconds(i64::from(s)),
        }
    }

    /// The visible state agrees with the model, and a store holds exactly the same.
    fn check(&self) {
        for (p, m) in &self.persons {
            assert_eq!(
                (p.bound, p.mobile.as_ref().is_some_and(|n| n.verified)),
                (m.bound, m.verified)
            );
        }
        for (d, _, _, m) in &self.devices {
            assert_eq!(
                (d.verified, d.deleted_at.is_some()),
                (m.verified, m.deleted)
            );
            assert_eq!(
                d.key(KeyPurpose::Restricted).is_some(),
                m.restricted && !m.deleted
            );
        }
        for (_, c, _, m) in &self.challenges {
            let status = match c.attempts.status {
                super::attempts::Status::Open => MStatus::Open,
                super::attempts::Status::Completed => MStatus::Completed,
                super::attempts::Status::Failed => MStatus::Spent,
            };
            assert_eq!((status, c.attempts.failed), (m.status, m.failed));
        }
        let Some(store) = &self.store else { return };
        let loaded = store.load().unwrap();
        assert_eq!(loaded.persons.len(), self.persons.len());
        for (_, p) in &loaded.persons {
            let (live, _) = self
                .persons
                .iter()
                .find(|(l, _)| l.person.id == p.person.id)
                .unwrap();
            assert_eq!(
                (p.bound, &p.devices, p.mobile.as_ref().map(|m| m.verified)),
                (
                    live.bound,
                    &live.devices,
                    live.mobile.as_ref().map(|m| m.verified)
                )
            );
        }
        assert_eq!(loaded.devices.len(), self.devices.len());
        for (_, d) in &loaded.devices {
            let live = &self.devices.iter().find(|l| l.0.id == d.id).unwrap().0;
            let points = |d: &DeviceEntry| {
                d.keys
                    .iter()
                    .map(|k| k.key.point().to_vec())
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                (d.verified, d.deleted_at, points(d)),
                (live.verified, live.deleted_at, points(live))
            );
        }
        assert_eq!(loaded.challenges.len(), self.challenges.len());
        for (_, id, c) in &loaded.challenges {
            let live = &self.challenges.iter().find(|l| l.0 == *id).unwrap().1;
            assert_eq!(
                (c.attempts.status, c.attempts.failed),
                (live.attempts.status, live.attempts.failed)
            );
        }
    }
}

fn run(commands: &[Cmd], sqlite: bool) {
    let mut world = World {
        now: t0(),
        rng: rng(5),
        keys: Keys::default(),
        persons: Vec::new(),
        numbers: Vec::new(),
        devices: Vec::new(),
        challenges: Vec::new(),
        store: sqlite.then(|| {
            SqliteStore::open(std::path::Path::new(":memory:"), SyncMode::Normal).unwrap()
        }),
    };
    // Two persons with verified numbers to start with, so bindings happen early.
    let setup = [0, 1].into_iter().flat_map(|i| {
        [
            Cmd::CreatePerson,
            Cmd::AddNumber(i),
            Cmd::Authorize(i),
            Cmd::Confirm(i, true),
        ]
    });
    for cmd in setup.chain(commands.iter().cloned()) {
        world.run(&cmd);
    }
    world.check();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_core_agrees_with_the_model_in_memory(commands in proptest::collection::vec(cmd(), 1..60)) {
        run(&commands, false);
    }

    #[test]
    fn the_core_agrees_with_the_model_and_sqlite_holds_the_same(commands in proptest::collection::vec(cmd(), 1..60)) {
        run(&commands, true);
    }
}
