//! Scenarios: what one iteration does to one phone, request by request, with each request
//! and each step timed into the recorder.
//!
//! A step whose prerequisites are missing does them first (signing on a phone that is not
//! bound onboards and binds it), each prerequisite recorded under its own name, so every
//! scenario runs on a fresh fleet as well as on a saved one. Rows never overlap: the first
//! row of an iteration is timed from the iteration's start (the intended start in the open
//! model, so queueing is never hidden), each later row from the end of the one before; a
//! step's row never includes its prerequisites.
//!
//! One rule for one-time steps (`onboard`, `bind`, `add_key`) on a phone that has already
//! taken them: nothing is sent and nothing recorded, and the iteration is not counted (it
//! shows as `skipped` in the report).

use super::clock::Clock;
use super::recorder::{Failure, Recorder};
use super::{Fleet, FleetError, Op, PhoneState};
use crate::api::{
    AddKeyRequest, AnswerDeviceChallenge, AnswerSignatureChallenge, AnswerSmsChallenge,
    AuthorizeChangeRequest, ConfirmChangeRequest, ConfirmMobileNumber, CreateDeviceChallenge,
    CreateDeviceRequest, CreatePerson, CreateSmsChallenge, DeliveryMethod, DeviceSignature,
    KeyPurpose, KeyType, MobileNumberRequest, Otp, PersonUpdate, PhoneNumber, PublicKeyHex,
    SignatureHex, UpdatePerson,
};
use crate::client::{ApiClient, ClientError, retries_in, retry_scope};
use crate::phone::{OtpCommand, SmsKind};
use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How long an OTP command may take for one SMS.
const OTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One kind of step a phone can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Create the person and verify its mobile number.
    Onboard,
    /// Bind the device (unrestricted key) by signing the SMS OTP.
    Bind,
    /// Add the restricted key, signed by the unrestricted one.
    AddKey,
    /// Create and answer a device-signing challenge.
    Sign,
    /// Create and answer an SMS challenge.
    Sms,
    /// Change the person's e-mail, confirmed by device signing.
    Change,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Onboard,
        Step::Bind,
        Step::AddKey,
        Step::Sign,
        Step::Sms,
        Step::Change,
    ];

    /// The step's report row.
    pub fn op(self) -> Op {
        match self {
            Step::Onboard => Op::Onboard,
            Step::Bind => Op::Bind,
            Step::AddKey => Op::AddKey,
            Step::Sign => Op::Sign,
            Step::Sms => Op::Sms,
            Step::Change => Op::Change,
        }
    }

    /// Whether the step changes a phone once and for all (and so is done at most once per
    /// phone), as opposed to one that can repeat.
    pub fn is_once_per_phone(self) -> bool {
        matches!(self, Step::Onboard | Step::Bind | Step::AddKey)
    }

    fn done(self, s: &PhoneState) -> bool {
        match self {
            Step::Onboard => s.is_verified(),
            Step::Bind => s.is_bound(),
            Step::AddKey => s.has_restricted_key(),
            _ => false,
        }
    }
}

impl FromStr for Step {
    type Err = FleetError;
    fn from_str(s: &str) -> Result<Step, FleetError> {
        Step::ALL
            .into_iter()
            .find(|step| step.op().name() == s)
            .ok_or_else(|| {
                FleetError::Usage(format!(
                    "unknown scenario step {s:?}: use onboard, bind, add_key, sign, sms or change"
                ))
            })
    }
}

/// What each iteration of a run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scenario {
    /// The same step every iteration.
    Single(Step),
    /// A step drawn per iteration with these relative weights.
    Mix(Vec<(Step, u32)>),
}

impl Scenario {
    /// The step of iteration `n`: fixed, or drawn deterministically from `n` by weight, so
    /// the same run makes the same draws.
    pub fn step(&self, n: u64) -> Step {
        match self {
            Scenario::Single(step) => *step,
            Scenario::Mix(weights) => {
                let total: u64 = weights.iter().map(|(_, w)| u64::from(*w)).sum();
                let mut pick = splitmix64(n) % total.max(1);
                for (step, w) in weights {
                    if pick < u64::from(*w) {
                        return *step;
                    }
                    pick -= u64::from(*w);
                }
                weights.first().map_or(Step::Sign, |(s, _)| *s)
            }
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl FromStr for Scenario {
    type Err = FleetError;

    /// `bind`, `sign`, ... or `mix:bind=1,sign=8,sms=1`.
    fn from_str(s: &str) -> Result<Scenario, FleetError> {
        let Some(spec) = s.strip_prefix("mix:") else {
            return Ok(Scenario::Single(s.parse()?));
        };
        let mut weights = Vec::new();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
            let weight: u32 = weight.parse().map_err(|_| {
                FleetError::Usage(format!("mix weight {weight:?} of {name} is not a number"))
            })?;
            if weight > 0 {
                weights.push((name.parse()?, weight));
            }
        }
        if weights.is_empty() {
            return Err(FleetError::Usage(
                "a mix needs at least one step with a weight above 0, e.g. mix:bind=1,sign=8"
                    .into(),
            ));
        }
        Ok(Scenario::Mix(weights))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scenario::Single(step) => f.write_str(step.op().name()),
            Scenario::Mix(weights) => {
                f.write_str("mix:")?;
                for (i, (step, w)) in weights.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    write!(f, "{sep}{}={w}", step.op().name())?;
                }
                Ok(())
            }
        }
    }
}

/// How an error is grouped in the report; an answer a vphone sandbox's fault rule made up
/// (see [`crate::api::INJECTED_FAULT_HEADER`]) is grouped apart, its code marked `(injected)`.
pub fn failure_of(e: &ClientError) -> Failure {
    match e {
        ClientError::Api { remote, .. } => {
            let code = remote.code.as_ref().map_or("-", |c| c.as_str());
            Failure {
                status: remote.status,
                // Kept apart from the bank's own refusals of the same code.
                code: if remote.injected {
                    format!("{code} (injected)")
                } else {
                    code.to_owned()
                },
            }
        }
        ClientError::Timeout { .. } => Failure {
            status: 0,
            code: "timeout".into(),
        },
        ClientError::Unreachable { .. } => Failure {
            status: 0,
            code: "unreachable".into(),
        },
        ClientError::Transport { .. } => Failure {
            status: 0,
            code: "transport".into(),
        },
        ClientError::Decode { status, .. } => Failure {
            status: *status,
            code: "unexpected_body".into(),
        },
        _ => Failure {
            status: 0,
            code: "client".into(),
        },
    }
}

/// An iteration ended early; the failure is already recorded, and this is its cause (the
/// failed request's status and code), which the step rows record too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted(pub Failure);

impl Aborted {
    /// A step found the phone without something the bank should have given it earlier
    /// (e.g. no device id on a bound phone): the fleet's state is inconsistent.
    fn missing(what: &str) -> Aborted {
        Aborted(Failure {
            status: 0,
            code: format!("no_{what}"),
        })
    }
}

/// What [`Steps::run`] did with an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The step (and any missing prerequisites) succeeded.
    Done,
    /// A one-time step the phone had already taken: nothing sent, nothing recorded.
    Skipped,
}

/// What the steps need: the shared client, the fleet, where to record, and the test
/// number with the OTP the target always sends to it.
pub struct Steps<'a> {
    /// The shared API client.
    pub client: &'a ApiClient,
    /// The fleet.
    pub fleet: &'a Fleet,
    /// The recorder.
    pub recorder: &'a Recorder,
    /// The worker (chooses the recorder stripe).
    pub worker: usize,
    /// The number every fleet person uses.
    pub number: &'a PhoneNumber,
    /// The OTP the target sends to `number` (`212212` for the sandbox's test number).
    pub otp: &'a Otp,
    /// Where rows read the time ([`super::SYSTEM_CLOCK`] in runs).
    pub clock: &'a Clock,
    /// A command that prints each code instead (`--otp command:CMD`), run once per SMS.
    pub otp_command: Option<&'a OtpCommand>,
}

impl Steps<'_> {
    /// The code of the SMS `kind` just sent: from the OTP command if there is one (a failure
    /// is recorded against `op`, the call that needed the code), else the static code.
    async fn code(&self, op: Op, kind: SmsKind) -> Result<Cow<'_, Otp>, Aborted> {
        let Some(command) = self.otp_command else {
            return Ok(Cow::Borrowed(self.otp));
        };
        // Boxed: a command's future is large, and every step that needs a code would
        // otherwise keep room for it, command or not.
        Box::pin(command.run(self.number, kind, OTP_COMMAND_TIMEOUT))
            .await
            .map(Cow::Owned)
            .map_err(|_| {
                let failure = Failure {
                    status: 0,
                    code: "otp_command".into(),
                };
                self.recorder
                    .failed(self.worker, op, &failure, self.clock.now());
                Aborted(failure)
            })
    }

    async fn timed<T, F>(&self, op: Op, call: impl FnOnce() -> F) -> Result<T, Aborted>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let started = self.clock.now();
        match self.counted(op, call).await {
            Ok(v) => {
                self.recorder.ok(self.worker, op, started, self.clock.now());
                Ok(v)
            }
            Err(e) => {
                let failure = failure_of(&e);
                self.recorder
                    .failed(self.worker, op, &failure, self.clock.now());
                Err(Aborted(failure))
            }
        }
    }

    /// Runs the request `call` makes, recording against `op` the retries the client made.
    /// The request's future is made here, inside the retry scope pinned in this future, so
    /// an iteration's future holds it once: passed by value through `timed`, this function
    /// and `counting_retries`, each kept a copy (the request's future is about 600 bytes,
    /// and each was copied as it moved in).
    async fn counted<F: Future>(&self, op: Op, call: impl FnOnce() -> F) -> F::Output {
        let mut scope = pin!(retry_scope(call()));
        let out = scope.as_mut().await;
        let retries = retries_in(scope);
        if retries > 0 {
            self.recorder.retried(self.worker, op, retries);
        }
        out
    }

    fn step_failed(&self, step: Step, cause: &Aborted) {
        self.recorder
            .failed(self.worker, step.op(), &cause.0, self.clock.now());
    }

    /// Runs `step` on phone `i`, doing missing prerequisites first, each in its own row (see
    /// the module documentation for what each row's time spans). The first row is timed
    /// from `since` (the intended start in the open model).
    pub async fn run(&self, step: Step, i: usize, since: Instant) -> Result<Ran, Aborted> {
        let fleet = self.fleet;
        let mut state = fleet.slot(i).lock().await;
        if step.is_once_per_phone() && step.done(&state) {
            return Ok(Ran::Skipped);
        }
        let mut from = since;
        let needs: &[Step] = match step {
            Step::Onboard => &[],
            Step::Bind | Step::Sms => &[Step::Onboard],
            Step::AddKey | Step::Sign | Step::Change => &[Step::Onboard, Step::Bind],
        };
        for &need in needs {
            if !need.done(&state) {
                if let Err(cause) = self.once(need, i, &mut state).await {
                    // The failed request is recorded; the prerequisite and the step it was
                    // for failed too, for the same cause, so their rows count every attempt.
                    self.step_failed(need, &cause);
                    self.step_failed(step, &cause);
                    return Err(cause);
                }
                let done = self.clock.now();
                self.recorder.ok(self.worker, need.op(), from, done);
                from = done;
            }
        }
        let result = if step.is_once_per_phone() {
            self.once(step, i, &mut state).await
        } else {
            let snapshot = *state;
            // Repeatable steps need no exclusive use of the phone.
            drop(state);
            self.repeat(step, i, &snapshot).await
        };
        match result {
            Ok(()) => {
                self.recorder
                    .ok(self.worker, step.op(), from, self.clock.now());
                Ok(Ran::Done)
            }
            Err(cause) => {
                self.step_failed(step, &cause);
                Err(cause)
            }
        }
    }

    async fn once(&self, step: Step, i: usize, state: &mut PhoneState) -> Result<(), Aborted> {
        let fleet = self.fleet;
        let c = self.client;
        match step {
            Step::Onboard => {
                let person = match fleet.person_id(state) {
                    Some(p) => p,
                    None => {
                        let req = CreatePerson {
                            first_name: "Fleet".into(),
                            last_name: format!("Phone {}", fleet.device_index(i)),
                            email: None,
                            salutation: None,
                            birth_date: None,
                            extra: Default::default(),
                        };
                        let p = self
                            .timed(Op::CreatePerson, || c.create_person(&req))
                            .await?;
                        fleet.set_person(state, &p.id);
                        p.id
                    }
                };
                let number = MobileNumberRequest {
                    number: self.number.clone(),
                };
                let started = self.clock.now();
                match self
                    .counted(Op::CreateMobileNumber, || {
                        c.create_mobile_number(&person, &number)
                    })
                    .await
                {
                    Ok(_) => {
                        let ended = self.clock.now();
                        self.recorder
                            .ok(self.worker, Op::CreateMobileNumber, started, ended);
                    }
                    // Already there from an earlier, interrupted run: go on verifying it.
                    Err(e) if e.status() == Some(409) => {}
                    Err(e) => {
                        let failure = failure_of(&e);
                        self.recorder.failed(
                            self.worker,
                            Op::CreateMobileNumber,
                            &failure,
                            self.clock.now(),
                        );
                        return Err(Aborted(failure));
                    }
                }
                self.timed(Op::AuthorizeMobileNumber, || {
                    c.authorize_mobile_number(&person, &number)
                })
                .await?;
                let confirm = ConfirmMobileNumber {
                    number: self.number.clone(),
                    token: self
                        .code(Op::ConfirmMobileNumber, SmsKind::VerifyNumber)
                        .await?
                        .into_owned(),
                };
                self.timed(Op::ConfirmMobileNumber, || {
                    c.confirm_mobile_number(&person, &confirm)
                })
                .await?;
                fleet.set_verified(state);
            }
            Step::Bind => {
                let Some(person) = fleet.person_id(state) else {
                    return Err(Aborted::missing("person"));
                };
                let key = fleet.key(i, KeyPurpose::Unrestricted);
                let req = CreateDeviceRequest {
                    person_id: person,
                    key_type: KeyType::EcdsaP256,
                    key: public_key(&key),
                    key_purpose: Some(KeyPurpose::Unrestricted),
                    name: format!("vphone fleet {}", fleet.device_index(i)),
                    challenge_type: None,
                    language: None,
                    sms_challenge: None,
                    device_data: None,
                };
                let created = self
                    .timed(Op::CreateDevice, || c.create_device(&req))
                    .await?;
                let answer = AnswerSignatureChallenge {
                    signature: signature(
                        key.sign_hex(
                            self.code(Op::AnswerSignatureChallenge, SmsKind::Binding)
                                .await?
                                .expose()
                                .as_bytes(),
                        ),
                    ),
                    device_data: None,
                };
                self.timed(Op::AnswerSignatureChallenge, || {
                    c.answer_signature_challenge(&created.challenge.id, &answer)
                })
                .await?;
                fleet.set_device(state, &created.id);
            }
            Step::AddKey => {
                let Some(device) = fleet.device_id(state) else {
                    return Err(Aborted::missing("device"));
                };
                let new_key = public_key(&fleet.key(i, KeyPurpose::Restricted));
                let proof = fleet
                    .key(i, KeyPurpose::Unrestricted)
                    .sign_hex(new_key.as_str().as_bytes());
                let req = AddKeyRequest {
                    key: new_key,
                    key_type: KeyType::EcdsaP256,
                    key_purpose: KeyPurpose::Restricted,
                    device_signature: DeviceSignature {
                        signature_key_purpose: KeyPurpose::Unrestricted,
                        signature: signature(proof),
                    },
                };
                self.timed(Op::AddKeyRequest, || c.add_key(&device, &req))
                    .await?;
                fleet.set_restricted(state);
            }
            Step::Sign | Step::Sms | Step::Change => {
                let snapshot = *state;
                // Boxed: `run` takes these steps through `repeat` itself, and every one-time
                // step would otherwise keep room for the largest repeatable one.
                Box::pin(self.repeat(step, i, &snapshot)).await?;
            }
        }
        Ok(())
    }

    async fn repeat(&self, step: Step, i: usize, state: &PhoneState) -> Result<(), Aborted> {
        let fleet = self.fleet;
        let c = self.client;
        match step {
            Step::Sign => {
                let Some(device) = fleet.device_id(state) else {
                    return Err(Aborted::missing("device"));
                };
                let req = CreateDeviceChallenge {
                    device_id: device,
                    key_purpose: Some(KeyPurpose::Unrestricted),
                    device_data: None,
                };
                let ch = self
                    .timed(Op::CreateDeviceChallenge, || {
                        c.create_device_challenge(&req)
                    })
                    .await?;
                let sig = fleet
                    // It asked for the unrestricted key: a server that leaves the purpose
                    // out means that one.
                    .key(i, ch.key_purpose.unwrap_or(KeyPurpose::Unrestricted))
                    .sign_hex(ch.string_to_sign.as_bytes());
                let answer = AnswerDeviceChallenge {
                    signature: signature(sig),
                    device_data: None,
                };
                self.timed(Op::AnswerDeviceChallenge, || {
                    c.answer_device_challenge(&ch.id, &answer)
                })
                .await
            }
            Step::Sms => {
                let Some(person) = fleet.person_id(state) else {
                    return Err(Aborted::missing("person"));
                };
                let req = CreateSmsChallenge {
                    person_id: person,
                    language: None,
                };
                let ch = self
                    .timed(Op::CreateSmsChallenge, || c.create_sms_challenge(&req))
                    .await?;
                let answer = AnswerSmsChallenge {
                    code: self
                        .code(Op::AnswerSmsChallenge, SmsKind::SmsChallenge)
                        .await?
                        .into_owned(),
                };
                self.timed(Op::AnswerSmsChallenge, || {
                    c.answer_sms_challenge(&ch.id, &answer)
                })
                .await
            }
            // Boxed: its three requests make the largest future of all steps, and the
            // others would keep room for it.
            Step::Change => Box::pin(self.change(i, state)).await,
            Step::Onboard | Step::Bind | Step::AddKey => Err(Aborted(Failure {
                status: 0,
                code: "not_repeatable".into(),
            })),
        }
    }

    /// The `change` step: a person update held for confirmation, authorized and confirmed
    /// with a device signature.
    async fn change(&self, i: usize, state: &PhoneState) -> Result<(), Aborted> {
        let fleet = self.fleet;
        let c = self.client;
        let (Some(person), Some(device)) = (fleet.person_id(state), fleet.device_id(state)) else {
            return Err(Aborted::missing("device"));
        };
        let update = UpdatePerson {
            email: Some(format!(
                "fleet-{}-{:06}@example.invalid",
                fleet.device_index(i),
                rand::random::<u32>() % 1_000_000
            )),
            ..UpdatePerson::default()
        };
        let cr = match self
            .timed(Op::UpdatePerson, || c.update_person(&person, &update))
            .await?
        {
            PersonUpdate::Held(cr) => cr,
            // The server applied the change at once: nothing to confirm.
            PersonUpdate::Applied(_) => return Ok(()),
        };
        let auth = AuthorizeChangeRequest {
            delivery_method: DeliveryMethod::DeviceSigning,
            person_id: None,
            device_id: Some(device.clone()),
            device_data: None,
        };
        let authorized = self
            .timed(Op::AuthorizeChangeRequest, || {
                c.authorize_change_request(&cr.id, &auth)
            })
            .await?;
        let purpose = if state.has_restricted_key() {
            KeyPurpose::Restricted
        } else {
            KeyPurpose::Unrestricted
        };
        let text = authorized.string_to_sign.unwrap_or_default();
        let confirm = ConfirmChangeRequest {
            person_id: None,
            tan: None,
            device_id: Some(device),
            signature: Some(signature(fleet.key(i, purpose).sign_hex(text.as_bytes()))),
            device_data: None,
        };
        self.timed(Op::ConfirmChangeRequest, || {
            c.confirm_change_request(&cr.id, &confirm)
        })
        .await
        .map(|_| ())
    }
}

fn public_key(key: &vphone_keystore::SigningKey) -> PublicKeyHex {
    // The keystore writes 130 lowercase hex characters, which always parse.
    PublicKeyHex::try_from(key.public_key_hex()).expect("keystore public keys are valid hex")
}

fn signature(hex: String) -> SignatureHex {
    // The keystore writes lowercase DER hex well inside the allowed length.
    SignatureHex::try_from(hex).expect("keystore signatures are valid hex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_draw_by_weight() {
        let mix: Scenario = "mix:bind=1,sign=8,sms=1".parse().unwrap();
        assert_eq!(mix.to_string(), "mix:bind=1,sign=8,sms=1");
        let signs = (0..10_000).filter(|&n| mix.step(n) == Step::Sign).count();
        assert!((7_600..8_400).contains(&signs), "{signs}");
        assert_eq!(mix.step(17), mix.step(17));
        assert!("mix:".parse::<Scenario>().is_err());
        assert!("mix:fly=2".parse::<Scenario>().is_err());
        assert_eq!(
            "change".parse::<Scenario>().unwrap(),
            Scenario::Single(Step::Change)
        );
    }

    /// Every iteration's future is copied into a box of its own, and all its steps' requests
    /// live in it: it stays small when each request's future is kept once (see
    /// `Steps::counted`) and the rare large steps are boxed. It was 4.9 KB before that; this
    /// bound catches a step that brings the copies back.
    #[test]
    fn an_iteration_future_stays_small() {
        let url = url::Url::parse("http://127.0.0.1:9").unwrap();
        let config =
            crate::client::ClientConfig::local(url, crate::client::Credentials::sandbox_default())
                .with_lean_http(true);
        let client = ApiClient::new(config).unwrap();
        let fleet = Fleet::new("1", 1, 0..1).unwrap();
        let recorder = Recorder::default();
        let number = PhoneNumber::test_number();
        let otp = Otp::parse("212212").unwrap();
        let steps = Steps {
            client: &client,
            fleet: &fleet,
            recorder: &recorder,
            worker: 0,
            number: &number,
            otp: &otp,
            clock: &super::super::SYSTEM_CLOCK,
            otp_command: None,
        };
        let size = std::mem::size_of_val(&steps.run(Step::Sign, 0, Instant::now()));
        assert!(size <= 2048, "an iteration's future takes {size} bytes");
    }
}
