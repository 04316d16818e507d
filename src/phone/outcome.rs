//! What each flow returns: typed results with per-step timings.

use crate::api::{
    ChallengeId, ChangeRequestId, ChangeRequestStatus, DeliveryMethod, DeviceId, KeyId, KeyPurpose,
    MobileNumber, Person,
};
use serde::{Serialize, Serializer};
use std::time::{Duration, Instant};
use vphone_keystore::KeyLabel;

/// How long each step of a flow took.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// The steps in order.
    pub steps: Vec<StepTime>,
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepTime {
    /// What was done, e.g. `create device`.
    pub step: &'static str,
    /// How long it took.
    #[serde(rename = "ms", serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

impl StepTime {
    /// A step that took `elapsed`.
    pub fn new(step: &'static str, elapsed: Duration) -> StepTime {
        StepTime { step, elapsed }
    }
}

impl Timings {
    /// The sum of all steps.
    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.elapsed).sum()
    }

    /// The time of the step named `step`, if it ran.
    pub fn get(&self, step: &str) -> Option<Duration> {
        self.steps
            .iter()
            .find(|s| s.step == step)
            .map(|s| s.elapsed)
    }
}

/// Records step times as a flow runs.
#[derive(Debug)]
pub(crate) struct Stopwatch {
    timings: Timings,
    last: Instant,
}

impl Stopwatch {
    pub(crate) fn start() -> Stopwatch {
        Stopwatch {
            timings: Timings::default(),
            last: Instant::now(),
        }
    }

    /// Ends the current step.
    pub(crate) fn lap(&mut self, step: &'static str) {
        let now = Instant::now();
        self.timings.steps.push(StepTime {
            step,
            elapsed: now - self.last,
        });
        self.last = now;
    }

    pub(crate) fn finish(self) -> Timings {
        self.timings
    }
}

/// A person created and its number verified.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterOutcome {
    /// The person as the bank stored it.
    pub person: Person,
    /// Whether this run created the person; `false` when an earlier, unfinished run had
    /// created it and this one read it back to finish the setup.
    pub person_created: bool,
    /// The verified number.
    pub mobile_number: MobileNumber,
    /// Step times.
    pub timings: Timings,
}

/// A number verified by SMS.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    /// The number as the bank now stores it.
    pub mobile_number: MobileNumber,
    /// Step times.
    pub timings: Timings,
}

/// A device bound.
#[derive(Debug, Clone, Serialize)]
pub struct BindOutcome {
    /// The bank's id of the new device.
    pub device_id: DeviceId,
    /// The binding challenge that was answered.
    pub challenge_id: ChallengeId,
    /// The bank's id of the bound key, when the bank said.
    pub key_id: Option<KeyId>,
    /// The bound key's purpose.
    pub key_purpose: KeyPurpose,
    /// The bound key's fingerprint.
    pub fingerprint: String,
    /// The bound key, named as every command names it.
    pub key: Option<KeyLabel>,
    /// The bank's answer to the binding challenge was lost (the connection closed unanswered,
    /// or the resend found the challenge already used); the phone read the device back and
    /// found it bound.
    pub answer_lost: bool,
    /// Step times.
    pub timings: Timings,
}

/// A key added to the bound device.
#[derive(Debug, Clone, Serialize)]
pub struct AddKeyOutcome {
    /// The bank's id of the new key.
    pub key_id: KeyId,
    /// Its purpose.
    pub key_purpose: KeyPurpose,
    /// The purpose of the key that vouched for it.
    pub signed_with: KeyPurpose,
    /// The new key, named as every command names it.
    pub key: Option<KeyLabel>,
    /// Step times.
    pub timings: Timings,
}

/// A device-signing challenge answered.
#[derive(Debug, Clone, Serialize)]
pub struct SignOutcome {
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// The key that signed.
    pub key_purpose: KeyPurpose,
    /// Whether the user was asked (restricted keys).
    pub user_confirmed: bool,
    /// The key that signed, named as every command names it.
    pub key: Option<KeyLabel>,
    /// Step times.
    pub timings: Timings,
}

/// An SMS challenge answered.
#[derive(Debug, Clone, Serialize)]
pub struct SmsOutcome {
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// Step times.
    pub timings: Timings,
}

/// A change request carried out.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeOutcome {
    /// The change request.
    pub change_request_id: ChangeRequestId,
    /// Its final status (`COMPLETED`).
    pub status: ChangeRequestStatus,
    /// How it was confirmed.
    pub delivery_method: DeliveryMethod,
    /// The status code of the held request, now carried out.
    pub response_code: Option<u16>,
    /// Step times.
    pub timings: Timings,
}

/// What changing the person came to.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PersonChange {
    /// Held as a change request (as API.md documents), then authorized and confirmed.
    Confirmed(ChangeOutcome),
    /// The server applied the change at once and answered the person: there was nothing
    /// to confirm. Not a failure, but not a confirmed change either.
    AppliedWithoutConfirmation {
        /// The person as the server answered it.
        person: Person,
        /// Step times.
        timings: Timings,
    },
}

impl PersonChange {
    /// Step times, whichever way the change went.
    pub fn timings(&self) -> &Timings {
        match self {
            PersonChange::Confirmed(out) => &out.timings,
            PersonChange::AppliedWithoutConfirmation { timings, .. } => timings,
        }
    }
}

/// A device deleted.
#[derive(Debug, Clone, Serialize)]
pub struct DeleteOutcome {
    /// The deleted device.
    pub device_id: DeviceId,
    /// The bank had already deleted it (elsewhere); the phone only forgot it.
    pub already_deleted: bool,
    /// Step times.
    pub timings: Timings,
}
