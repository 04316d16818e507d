//! The core checked against a small reference model: random sequences of commands (create a
//! person, add/authorize/confirm a number, bind, answer right/wrong/late, add a key, device
//! and SMS challenges, delete, change requests held, authorized by static TAN, SMS TAN or
//! device signature and confirmed right/wrong/late, sweep after advancing the clock, advance
//! the clock) run against the core's rules and against the model written here; every outcome
//! must agree. Each sequence runs twice: with the memory store, and with every change
//! committed to a SQLite store, which is then loaded back and must hold exactly what the core
//! holds.

use super::challenges::{ChallengeEntry, ChallengeWhat};
use super::change_requests::{self, Applied, ChangeRequestEntry, HeldChange, Needs, Proof};
use super::devices::{self, DeviceEntry, NewDevice};
use super::keys::{NewKey, add_key};
use super::persons::PersonEntry;
use super::testing::{Keys, PlainVerifier, TestKey, config, person, rng, t0};
use super::{Env, Reason, device_challenges, sms_challenges};
use crate::api::{
    AuthorizeChangeRequest, ChallengeId, ChangeRequestStatus, ConfirmChangeRequest, DeliveryMethod,
    DeviceId, KeyPurpose, Otp, PhoneNumber, Timestamp, UpdatePerson,
};
use crate::sandbox::sms::STATIC_OTP;
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
    /// Holds an update of a person's first name.
    HoldUpdate(usize),
    AuthorizeChange(usize, Via),
    ConfirmChange(usize, Answer),
    /// Advances the clock by this many seconds, then sweeps.
    Sweep(u16),
}

/// How a change request is authorized.
#[derive(Debug, Clone, Copy)]
enum Via {
    Static,
    Sms,
    /// Any device (often unbound, deleted or another person's).
    AnyDevice(usize),
    /// One of the change request's person's bound devices, if any.
    OwnDevice(usize),
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![
        1 => Just(Via::Static),
        1 => Just(Via::Sms),
        1 => any::<usize>().prop_map(Via::AnyDevice),
        2 => any::<usize>().prop_map(Via::OwnDevice),
    ]
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
        1 => i.prop_map(Cmd::HoldUpdate),
        3 => (i, via()).prop_map(|(c, v)| Cmd::AuthorizeChange(c, v)),
        5 => (i, answer()).prop_map(|(c, a)| Cmd::ConfirmChange(c, a)),
        1 => (0u16..1500).prop_map(Cmd::Sweep),
    ]
}

/// The model's view of an answerable thing.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MStatus {
    Open,
    Completed,
    Spent,
}

/// How long anything finished is kept before the sweep forgets it (15 minutes).
const RETENTION: i64 = 900;

/// How long an answerable thing (and an unauthorized change request) stays open.
const LIFETIME: i64 = 300;

#[derive(Debug, Clone)]
struct MAnswerable {
    expires: i64,
    failed: u32,
    status: MStatus,
    /// When it was completed or spent.
    finished: Option<i64>,
}

impl MAnswerable {
    fn new(now: i64) -> Self {
        MAnswerable {
            expires: now + LIFETIME,
            failed: 0,
            status: MStatus::Open,
            finished: None,
        }
    }

    /// When it finished (completed, spent, or expired), if it has by `now`.
    fn finished_by(&self, now: i64) -> Option<i64> {
        match self.status {
            MStatus::Open => (now >= self.expires).then_some(self.expires),
            _ => self.finished,
        }
    }

    /// Whether the sweep at `now` forgets it.
    fn forgotten(&self, now: i64) -> bool {
        self.finished_by(now).is_some_and(|at| now - at > RETENTION)
    }

    fn complete(&mut self, at: i64) {
        self.status = MStatus::Completed;
        self.finished = Some(at);
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

    fn fail(&mut self, at: i64) {
        self.failed += 1;
        if self.failed >= 3 {
            self.status = MStatus::Spent;
            self.finished = Some(at);
        }
    }
}

/// The model's change request status.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MCrStatus {
    AuthorizationRequired,
    ConfirmationRequired,
    Completed,
    Failed,
}

/// What confirms an authorized change request.
#[derive(Debug, Clone)]
enum MProof {
    /// A TAN (static or by SMS), wrong or right by comparison.
    Tan(Otp),
    /// A signature of this device with its restricted key (or else its unrestricted one).
    Device(DeviceId, bool),
}

#[derive(Debug, Clone)]
struct MChange {
    person: usize,
    first_name: String,
    status: MCrStatus,
    updated: i64,
    confirmation: Option<(MAnswerable, MProof)>,
}

impl MChange {
    /// Whether the sweep at `now` forgets it.
    fn forgotten(&self, now: i64) -> bool {
        let finished = match (self.status, &self.confirmation) {
            (MCrStatus::Completed | MCrStatus::Failed, _) => Some(self.updated),
            (MCrStatus::ConfirmationRequired, Some((a, _))) => a.finished_by(now),
            _ => (now >= self.updated + LIFETIME).then_some(self.updated + LIFETIME),
        };
        finished.is_some_and(|at| now - at > RETENTION)
    }
}

struct MPerson {
    first_name: String,
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
    /// Change requests: the entry, the model.
    changes: Vec<(ChangeRequestEntry, MChange)>,
    /// How many updates were held (names each one apart).
    held: usize,
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
            store
                .commit(&crate::sandbox::store::rows(writes).unwrap())
                .unwrap();
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
            Cmd::HoldUpdate(i) => Cmd::HoldUpdate(i % p),
            Cmd::AuthorizeChange(i, v) => {
                let k = self.recent_change(i);
                let v = match v {
                    Via::AnyDevice(j) => Via::AnyDevice(j % d),
                    Via::OwnDevice(j) => match self.changes.get(k) {
                        // One of the person's bound devices, if there is one.
                        Some((_, m)) => {
                            let own: Vec<usize> = (0..self.devices.len())
                                .filter(|&x| {
                                    let dm = &self.devices[x].3;
                                    dm.person == m.person && dm.verified
                                })
                                .collect();
                            if own.is_empty() {
                                Via::AnyDevice(j % d)
                            } else {
                                Via::AnyDevice(own[j % own.len()])
                            }
                        }
                        None => Via::AnyDevice(j % d),
                    },
                    other => other,
                };
                Cmd::AuthorizeChange(k, v)
            }
            Cmd::ConfirmChange(i, a) => Cmd::ConfirmChange(self.recent_change(i), a),
            ref other => other.clone(),
        }
    }

    /// One of the three most recent change requests, so that one is held, authorized and
    /// answered several times within a sequence.
    fn recent_change(&self, i: usize) -> usize {
        let n = self.changes.len();
        n.saturating_sub(1 + i % n.clamp(1, 3))
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
                let model = MPerson {
                    first_name: "Ada".into(),
                    number: false,
                    verified: false,
                    otp: None,
                    bound: 0,
                    sms_sent: Vec::new(),
                };
                self.persons.push((p, model));
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
                            a.complete(secs);
                            m.verified = true;
                            Ok(())
                        }
                        None => {
                            a.fail(secs);
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
                        model.fail(when.unix());
                        Err(Reason::InvalidSignature)
                    }
                    None if person.1.bound >= config.max_devices_per_person => {
                        Err(Reason::DeviceLimitReached)
                    }
                    None => {
                        model.complete(when.unix());
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
                        model.fail(when.unix());
                        Err(Reason::InvalidSignature)
                    }
                    None => {
                        model.complete(when.unix());
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
                        model.fail(when.unix());
                        Err(Reason::InvalidOtp)
                    }
                    None => {
                        model.complete(when.unix());
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
            Cmd::HoldUpdate(i) => {
                let Some((p, _)) = self.persons.get(i) else {
                    return;
                };
                self.held += 1;
                let first_name = format!("Name{}", self.held);
                let update = UpdatePerson {
                    first_name: Some(first_name.clone()),
                    last_name: None,
                    email: None,
                };
                let entry = change_requests::hold(
                    p.person.id.clone(),
                    HeldChange::UpdatePerson(update),
                    now,
                    &mut self.rng,
                );
                self.commit(&[Write::ChangeRequest("p", &entry)]);
                let model = MChange {
                    person: i,
                    first_name,
                    status: MCrStatus::AuthorizationRequired,
                    updated: secs,
                    confirmation: None,
                };
                self.changes.push((entry, model));
            }
            Cmd::AuthorizeChange(k, via) => self.authorize_change(k, via),
            Cmd::ConfirmChange(k, how) => self.confirm_change(k, how),
            Cmd::Sweep(s) => {
                self.now = self.now.plus_seconds(i64::from(s));
                self.sweep();
            }
        }
    }

    /// Authorizes change request `k` as the handler does: plan, then the step over the
    /// entity the plan names.
    fn authorize_change(&mut self, k: usize, via: Via) {
        let config = config();
        let (now, secs) = (self.now, self.secs());
        let Some((entry, m)) = self.changes.get_mut(k) else {
            return;
        };
        let person_id = self.persons[m.person].0.person.id.clone();
        let (method, device) = match via {
            Via::Static => (DeliveryMethod::Static, None),
            Via::Sms => (DeliveryMethod::MobileNumber, None),
            Via::AnyDevice(d) | Via::OwnDevice(d) => {
                if d >= self.devices.len() {
                    return;
                }
                (DeliveryMethod::DeviceSigning, Some(d))
            }
        };
        let body = AuthorizeChangeRequest {
            delivery_method: method,
            person_id: device.is_none().then(|| person_id.clone()),
            device_id: device.map(|d| self.devices[d].0.id.clone()),
            device_data: None,
        };
        let got = match entry.plan_authorization(&body) {
            Err(r) => Err(r),
            Ok(Needs::Nothing) => {
                entry.authorize_static(&config, now);
                Ok(None)
            }
            Ok(Needs::Person(id)) => {
                assert_eq!(id, person_id);
                let person = &mut self.persons[m.person].0;
                entry
                    .authorize_sms(person, &config, now, &mut self.rng)
                    .map(|send| Some(send.otp))
            }
            Ok(Needs::Device(id)) => {
                let d = device.unwrap();
                assert_eq!(id, self.devices[d].0.id);
                entry
                    .authorize_device(&self.devices[d].0, &config, now, &mut self.rng)
                    .map(|()| None)
            }
        };
        let want = if !matches!(
            m.status,
            MCrStatus::AuthorizationRequired | MCrStatus::ConfirmationRequired
        ) {
            Err(Reason::ChangeRequestState)
        } else {
            match device {
                None if method == DeliveryMethod::Static => {
                    Ok(MProof::Tan(Otp::parse(STATIC_OTP).unwrap()))
                }
                None => {
                    let pm = &mut self.persons[m.person].1;
                    if pm.verified {
                        pm.admit_sms(secs).map(|()| {
                            MProof::Tan(got.clone().ok().flatten().expect("the core sent a TAN"))
                        })
                    } else {
                        Err(Reason::NoVerifiedNumber)
                    }
                }
                Some(d) => {
                    let dm = &self.devices[d].3;
                    if !dm.verified {
                        Err(Reason::NotFound)
                    } else if dm.deleted {
                        Err(Reason::DeviceDeleted)
                    } else if dm.person != m.person {
                        Err(Reason::PersonMismatch)
                    } else {
                        Ok(MProof::Device(self.devices[d].0.id.clone(), dm.restricted))
                    }
                }
            }
        };
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(|r| r.reason),
            want.as_ref().map(|_| ()).map_err(|r| *r)
        );
        if let Ok(proof) = want {
            m.status = MCrStatus::ConfirmationRequired;
            m.updated = secs;
            m.confirmation = Some((MAnswerable::new(secs), proof));
        }
        let pi = m.person;
        self.commit(&[
            Write::ChangeRequest("p", &self.changes[k].0),
            Write::Person("p", &self.persons[pi].0),
        ]);
    }

    /// Confirms change request `k` as the handler does: plan, check the proof, carry out the
    /// held change, complete.
    fn confirm_change(&mut self, k: usize, how: Answer) {
        let config = config();
        let verifier = PlainVerifier;
        let when = if matches!(how, Answer::Late) {
            self.now.plus_seconds(LIFETIME)
        } else {
            self.now
        };
        let Some((entry, m)) = self.changes.get_mut(k) else {
            return;
        };
        let wrong = matches!(how, Answer::Wrong);
        let person_id = self.persons[m.person].0.person.id.clone();
        let tan_body = |tan: Otp| ConfirmChangeRequest {
            person_id: Some(person_id.clone()),
            tan: Some(if wrong { wrong_otp(&tan) } else { tan }),
            device_id: None,
            signature: None,
            device_data: None,
        };
        let body = match &m.confirmation {
            None => tan_body(Otp::parse(STATIC_OTP).unwrap()),
            Some((_, MProof::Tan(tan))) => tan_body(tan.clone()),
            Some((_, MProof::Device(id, restricted))) => {
                let Some(Proof::Signature { string_to_sign, .. }) =
                    entry.confirmation.as_ref().map(|c| &c.proof)
                else {
                    panic!("the core holds no signature to confirm with");
                };
                let message = if wrong {
                    format!("{string_to_sign}x")
                } else {
                    string_to_sign.clone()
                };
                let device = self.devices.iter().find(|d| d.0.id == *id).unwrap();
                let signer = if *restricted {
                    device.2.as_ref().unwrap()
                } else {
                    &device.1
                };
                ConfirmChangeRequest {
                    person_id: None,
                    tan: None,
                    device_id: Some(id.clone()),
                    signature: Some(signer.sign(message.as_bytes())),
                    device_data: None,
                }
            }
        };
        let env = Env {
            config: &config,
            now: when,
            keys: &self.keys,
            verifier: &verifier,
        };
        let persons = &mut self.persons;
        let devices = &self.devices;
        let got = (|| {
            let checked = match entry.plan_confirmation(&body, when)? {
                Needs::Nothing => entry.check_proof(&body, None, None, env),
                Needs::Person(id) => {
                    let p = persons.iter().find(|p| p.0.person.id == id).unwrap();
                    entry.check_proof(&body, Some(&p.0), None, env)
                }
                Needs::Device(id) => {
                    let d = devices.iter().find(|d| d.0.id == id).unwrap();
                    entry.check_proof(&body, None, Some(&d.0), env)
                }
            };
            checked?;
            let Applied::Person(_) = entry.apply(&mut persons[m.person].0)? else {
                panic!("an update applies to the person");
            };
            entry.complete((200, serde_json::Value::Null), when);
            Ok(())
        })();
        let at = when.unix();
        let want = match m.status {
            MCrStatus::Completed => Err(Reason::ChallengeAlreadyUsed),
            MCrStatus::Failed => Err(Reason::ChallengeFailed),
            MCrStatus::AuthorizationRequired => Err(Reason::ChangeRequestState),
            MCrStatus::ConfirmationRequired => {
                let (a, proof) = m.confirmation.as_mut().unwrap();
                let deleted = match proof {
                    MProof::Device(id, _) => {
                        devices.iter().find(|d| d.0.id == *id).unwrap().3.deleted
                    }
                    MProof::Tan(_) => false,
                };
                match a.closed(at) {
                    Some(r) => Err(r),
                    None if deleted => Err(Reason::DeviceDeleted),
                    None if wrong => {
                        a.fail(at);
                        if a.status == MStatus::Spent {
                            m.status = MCrStatus::Failed;
                            m.updated = at;
                        }
                        Err(match proof {
                            MProof::Tan(_) => Reason::InvalidOtp,
                            MProof::Device(..) => Reason::InvalidSignature,
                        })
                    }
                    None => {
                        a.complete(at);
                        m.status = MCrStatus::Completed;
                        m.updated = at;
                        persons[m.person].1.first_name.clone_from(&m.first_name);
                        Ok(())
                    }
                }
            }
        };
        assert_eq!(got.map_err(|r: super::Refusal| r.reason), want);
        let pi = m.person;
        self.commit(&[
            Write::ChangeRequest("p", &self.changes[k].0),
            Write::Person("p", &self.persons[pi].0),
        ]);
    }

    /// Forgets what has been finished for longer than the retention window, as the
    /// sandbox's sweep does with the core's rule, and the model says what must go.
    fn sweep(&mut self) {
        let config = config();
        let (now, secs) = (self.now, self.secs());
        let mut forgotten = Vec::new();
        let mut orphans = Vec::new();
        self.challenges.retain(|(id, entry, _, m)| {
            let forget = entry.attempts.forgettable(now, config.retention);
            assert_eq!(forget, m.forgotten(secs), "challenge {id} forgotten");
            if forget {
                if let ChallengeWhat::Binding { device_id, .. } = &entry.what {
                    orphans.push(device_id.clone());
                }
                forgotten.push(id.clone());
            }
            !forget
        });
        let mut gone_devices = Vec::new();
        self.devices.retain(|(d, _, _, m)| {
            let gone = orphans.contains(&d.id) && !d.verified;
            assert_eq!(gone, orphans.contains(&d.id) && !m.verified);
            if gone {
                gone_devices.push(d.id.clone());
            }
            !gone
        });
        let mut gone_changes = Vec::new();
        self.changes.retain(|(entry, m)| {
            let forget = entry.forgettable(now, config.challenge_lifetime, config.retention);
            assert_eq!(
                forget,
                m.forgotten(secs),
                "change request {} forgotten",
                entry.id
            );
            if forget {
                gone_changes.push(entry.id.clone());
            }
            !forget
        });
        let writes: Vec<Write<'_>> = forgotten
            .iter()
            .map(Write::ForgetChallenge)
            .chain(gone_devices.iter().map(Write::ForgetDevice))
            .chain(gone_changes.iter().map(Write::ForgetChangeRequest))
            .collect();
        self.commit(&writes);
    }

    /// The visible state agrees with the model, and a store holds exactly the same.
    fn check(&self) {
        for (p, m) in &self.persons {
            assert_eq!(
                (
                    p.bound,
                    p.mobile.as_ref().is_some_and(|n| n.verified),
                    &p.person.first_name
                ),
                (m.bound, m.verified, &m.first_name)
            );
        }
        for (c, m) in &self.changes {
            let status = match c.status {
                ChangeRequestStatus::AuthorizationRequired => MCrStatus::AuthorizationRequired,
                ChangeRequestStatus::ConfirmationRequired => MCrStatus::ConfirmationRequired,
                ChangeRequestStatus::Completed => MCrStatus::Completed,
                ChangeRequestStatus::Failed => MCrStatus::Failed,
                other => panic!("a held change is never {other}"),
            };
            let failed = c.confirmation.as_ref().map(|c| c.attempts.failed);
            assert_eq!(
                (status, c.updated_at.unix(), failed),
                (
                    m.status,
                    m.updated,
                    m.confirmation.as_ref().map(|c| c.0.failed)
                )
            );
            let view = c.view();
            assert_eq!(
                (view.url.is_some(), view.string_to_sign.is_some()),
                (
                    m.status == MCrStatus::AuthorizationRequired,
                    m.status == MCrStatus::ConfirmationRequired
                        && matches!(m.confirmation, Some((_, MProof::Device(..))))
                )
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
                (
                    p.bound,
                    &p.devices,
                    p.mobile.as_ref().map(|m| m.verified),
                    &p.person.first_name
                ),
                (
                    live.bound,
                    &live.devices,
                    live.mobile.as_ref().map(|m| m.verified),
                    &live.person.first_name
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
        assert_eq!(loaded.change_requests.len(), self.changes.len());
        for (_, c) in &loaded.change_requests {
            let live = &self.changes.iter().find(|l| l.0.id == c.id).unwrap().0;
            let attempts = |c: &ChangeRequestEntry| {
                c.confirmation
                    .as_ref()
                    .map(|c| (c.attempts.status, c.attempts.failed, c.attempts.expires_at))
            };
            assert_eq!(
                (c.status, c.updated_at, attempts(c)),
                (live.status, live.updated_at, attempts(live))
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
        changes: Vec::new(),
        held: 0,
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
    fn the_core_agrees_with_the_model_in_memory(commands in proptest::collection::vec(cmd(), 1..80)) {
        run(&commands, false);
    }

    #[test]
    fn the_core_agrees_with_the_model_and_sqlite_holds_the_same(commands in proptest::collection::vec(cmd(), 1..80)) {
        run(&commands, true);
    }
}
