//! Change requests: a sensitive write (`PATCH /v1/persons/{id}`, `DELETE .../mobile_number`)
//! is held, authorized by SMS TAN, device signature or the static TAN, and carried out only
//! when confirmed. Each step is in two parts: a plan that checks the request against the
//! change request's state and says which entity the step needs, and the step itself over
//! that entity, so the caller can look the entity up and lock it in between.

use super::attempts::{Attempts, Status};
use super::devices::{DeviceEntry, der_of};
use super::persons::{MobileEntry, PersonEntry};
use super::preverify::ToVerify;
use super::retention::{finished_longer_than, seconds};
use super::{Env, Reason, Refusal, SendOtp, mint, purpose_word};
use crate::api::{
    AuthorizeChangeRequest, ChangeRequest, ChangeRequestId, ChangeRequestStatus,
    ConfirmChangeRequest, DeliveryMethod, DeviceId, KeyPurpose, MobileNumberId, Otp, Person,
    PersonId, PhoneNumber, Timestamp, UpdatePerson,
};
use crate::sandbox::config::SandboxConfig;
use crate::sandbox::sms::STATIC_OTP;
use rand::RngCore;
use std::time::Duration;

/// The write a change request holds.
#[derive(Debug, Clone)]
pub enum HeldChange {
    /// `PATCH /v1/persons/{id}`.
    UpdatePerson(UpdatePerson),
    /// `DELETE /v1/persons/{id}/mobile_number`, of the number that was there when it was asked
    /// for: a number added later is not deleted by an older change request.
    DeleteMobileNumber(MobileNumberId),
}

/// How the confirmation is proven.
#[derive(Clone)]
pub enum Proof {
    /// A TAN: by SMS (`sent_to`) or the static one (`sent_to: None`).
    Tan {
        /// The person who confirms.
        person_id: PersonId,
        /// The TAN.
        tan: Otp,
        /// The number an SMS TAN went to (`None` for the static TAN); it must still be the
        /// person's verified number when the TAN is confirmed.
        sent_to: Option<PhoneNumber>,
    },
    /// A device's signature over `string_to_sign` with its key of `purpose`.
    Signature {
        /// The device that signs.
        device_id: DeviceId,
        /// Its key that signs.
        purpose: KeyPurpose,
        /// What it signs.
        string_to_sign: String,
    },
}

/// An authorization waiting for its confirmation.
#[derive(Clone)]
pub struct Confirmation {
    /// How it is proven.
    pub proof: Proof,
    /// Its attempts.
    pub attempts: Attempts,
}

/// A change request as the bank holds it.
#[derive(Clone)]
pub struct ChangeRequestEntry {
    /// Its id.
    pub id: ChangeRequestId,
    /// Whose data it changes.
    pub person_id: PersonId,
    /// The held write.
    pub change: HeldChange,
    /// Where it stands.
    pub status: ChangeRequestStatus,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The authorization, once asked for.
    pub confirmation: Option<Confirmation>,
    /// The held call's answer, once carried out: HTTP status and body.
    pub response: Option<(u16, serde_json::Value)>,
}

/// Holds `change` to `person_id`'s data until it is confirmed.
pub fn hold(
    person_id: PersonId,
    change: HeldChange,
    now: Timestamp,
    rng: &mut dyn RngCore,
) -> ChangeRequestEntry {
    ChangeRequestEntry {
        id: mint::change_request_id(rng),
        person_id,
        change,
        status: ChangeRequestStatus::AuthorizationRequired,
        updated_at: now,
        confirmation: None,
        response: None,
    }
}

const TAN_START_AGAIN: &str =
    "authorize the change request again (POST /v1/change_requests/{id}/authorize) for a new TAN";

fn missing(field: &str, method: &str) -> Refusal {
    Refusal::new(
        Reason::Validation,
        format!("`{field}` is required for {method}"),
    )
    .field(field)
}

fn person_mismatch(detail: &str, field: &str) -> Refusal {
    Refusal::new(Reason::PersonMismatch, detail).field(field)
}

/// The entity a step needs, to be looked up and locked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Needs {
    /// Nothing (the static TAN).
    Nothing,
    /// This person (an SMS TAN).
    Person(PersonId),
    /// This device (device signing).
    Device(DeviceId),
}

/// What a change request's held call answered, before it is rendered.
pub enum Applied {
    /// The person after the update.
    Person(Person),
    /// The mobile number that was deleted.
    MobileDeleted(MobileNumberId, PhoneNumber, bool),
    /// The held call was refused.
    Refused(Refusal),
}

impl ChangeRequestEntry {
    fn finished_by(&self, now: Timestamp, lifetime: Duration) -> Option<Timestamp> {
        match (self.status, &self.confirmation) {
            (ChangeRequestStatus::Completed | ChangeRequestStatus::Failed, _) => {
                Some(self.updated_at)
            }
            (ChangeRequestStatus::ConfirmationRequired, Some(c)) => c.attempts.finished_by(now),
            _ => {
                // Never authorized: finished once it has idled for a challenge's lifetime.
                let idle_until = self.updated_at.plus_seconds(seconds(lifetime));
                (now >= idle_until).then_some(idle_until)
            }
        }
    }

    /// Whether the sweep may forget it: finished for longer than `retention`.
    pub fn forgettable(&self, now: Timestamp, lifetime: Duration, retention: Duration) -> bool {
        self.finished_by(now, lifetime)
            .is_some_and(|at| finished_longer_than(at, now, retention))
    }

    /// The change request as the API shows it.
    pub fn view(&self) -> ChangeRequest {
        let string_to_sign = match (&self.status, &self.confirmation) {
            (
                ChangeRequestStatus::ConfirmationRequired,
                Some(Confirmation {
                    proof: Proof::Signature { string_to_sign, .. },
                    ..
                }),
            ) => Some(string_to_sign.clone()),
            _ => None,
        };
        ChangeRequest {
            id: self.id.clone(),
            status: self.status,
            updated_at: Some(self.updated_at),
            url: (self.status == ChangeRequestStatus::AuthorizationRequired)
                .then(|| format!("/v1/change_requests/{}/authorize", self.id)),
            string_to_sign,
            response_code: self.response.as_ref().map(|r| r.0),
            response_body: self.response.as_ref().map(|r| r.1.clone()),
        }
    }

    /// Checks an authorization request against the state and its fields; says what it needs.
    pub fn plan_authorization(&self, body: &AuthorizeChangeRequest) -> Result<Needs, Refusal> {
        if !matches!(
            self.status,
            ChangeRequestStatus::AuthorizationRequired | ChangeRequestStatus::ConfirmationRequired
        ) {
            return Err(Refusal::new(
                Reason::ChangeRequestState,
                format!(
                    "the change request is {}; it can no longer be authorized",
                    self.status
                ),
            ));
        }
        let method = body.delivery_method;
        match method {
            DeliveryMethod::MobileNumber | DeliveryMethod::Static => {
                let person_id = body
                    .person_id
                    .as_ref()
                    .ok_or_else(|| missing("person_id", method.as_str()))?;
                if body.device_id.is_some() {
                    return Err(Refusal::new(
                        Reason::Validation,
                        format!("`device_id` is for device_signing, not {method}"),
                    )
                    .field("device_id"));
                }
                if *person_id != self.person_id {
                    return Err(person_mismatch(
                        "person_id is not the person this change request is for",
                        "person_id",
                    ));
                }
                Ok(if method == DeliveryMethod::Static {
                    Needs::Nothing
                } else {
                    Needs::Person(person_id.clone())
                })
            }
            DeliveryMethod::DeviceSigning => {
                let device_id = body
                    .device_id
                    .as_ref()
                    .ok_or_else(|| missing("device_id", method.as_str()))?;
                if body.person_id.is_some() {
                    return Err(Refusal::new(
                        Reason::Validation,
                        "`person_id` is for mobile_number and static, not device_signing",
                    )
                    .field("person_id"));
                }
                Ok(Needs::Device(device_id.clone()))
            }
        }
    }

    fn await_confirmation(&mut self, proof: Proof, config: &SandboxConfig, now: Timestamp) {
        self.confirmation = Some(Confirmation {
            proof,
            attempts: Attempts::new(now, config.challenge_lifetime),
        });
        self.status = ChangeRequestStatus::ConfirmationRequired;
        self.updated_at = now;
    }

    /// Authorizes with the static TAN (after [`Self::plan_authorization`] said `Nothing`).
    pub fn authorize_static(&mut self, config: &SandboxConfig, now: Timestamp) {
        let tan = Otp::parse(STATIC_OTP).expect("the static TAN is six digits");
        let person_id = self.person_id.clone();
        self.await_confirmation(
            Proof::Tan {
                person_id,
                tan,
                sent_to: None,
            },
            config,
            now,
        );
    }

    /// Authorizes with a TAN sent by SMS to `person`'s verified number; the caller sends it.
    pub fn authorize_sms(
        &mut self,
        person: &mut PersonEntry,
        config: &SandboxConfig,
        now: Timestamp,
        rng: &mut dyn RngCore,
    ) -> Result<SendOtp, Refusal> {
        let number = person.verified_number("TAN", "use another delivery method")?;
        person.admit_sms(config, now)?;
        let tan = mint::otp(rng, &number, config.static_otp);
        self.await_confirmation(
            Proof::Tan {
                person_id: person.person.id.clone(),
                tan: tan.clone(),
                sent_to: Some(number.clone()),
            },
            config,
            now,
        );
        Ok(SendOtp { number, otp: tan })
    }

    /// Authorizes with a signature of `device`, bound to the change request's person.
    pub fn authorize_device(
        &mut self,
        device: &DeviceEntry,
        config: &SandboxConfig,
        now: Timestamp,
        rng: &mut dyn RngCore,
    ) -> Result<(), Refusal> {
        if !device.verified {
            return Err(Refusal::new(
                Reason::NotFound,
                format!(
                    "there is no device {} for this partner; check the id",
                    device.id
                ),
            ));
        }
        if device.deleted_at.is_some() {
            return Err(Refusal::new(
                Reason::DeviceDeleted,
                "the device was deleted and can sign nothing; use a bound device",
            ));
        }
        if device.person_id != self.person_id {
            return Err(person_mismatch(
                "the device belongs to another person than this change request",
                "device_id",
            ));
        }
        let string_to_sign = format!(
            "vphone change request {}: {}",
            self.id,
            mint::nonce_hex(rng, 16)
        );
        self.await_confirmation(
            Proof::Signature {
                device_id: device.id.clone(),
                purpose: device.default_purpose(),
                string_to_sign,
            },
            config,
            now,
        );
        Ok(())
    }

    /// Checks a confirmation request against the state and its fields; says what it needs:
    /// the person an SMS TAN went to, or the device that signs.
    pub fn plan_confirmation(
        &self,
        body: &ConfirmChangeRequest,
        now: Timestamp,
    ) -> Result<Needs, Refusal> {
        match self.status {
            ChangeRequestStatus::ConfirmationRequired => {}
            ChangeRequestStatus::Completed => {
                return Err(Refusal::new(
                    Reason::ChallengeAlreadyUsed,
                    "the change request was already confirmed and carried out",
                ));
            }
            ChangeRequestStatus::Failed => {
                return Err(Refusal::new(
                    Reason::ChallengeFailed,
                    "the change request failed after too many wrong answers; make the change again",
                ));
            }
            other => {
                return Err(Refusal::new(
                    Reason::ChangeRequestState,
                    format!(
                        "the change request is {other}; authorize it first with POST /v1/change_requests/{{id}}/authorize"
                    ),
                ));
            }
        }
        let Some(confirmation) = self.confirmation.as_ref() else {
            return Err(Refusal::new(
                Reason::ChangeRequestState,
                "authorize the change request first",
            ));
        };
        // The proof must be the one the change request was authorized for, and only that one:
        // a field of the other method is refused rather than ignored.
        let (extras, authorized_for): (&[(&str, bool)], &str) = match &confirmation.proof {
            Proof::Tan { .. } => (
                &[
                    ("device_id", body.device_id.is_some()),
                    ("signature", body.signature.is_some()),
                ],
                "a TAN (mobile_number or static); send person_id and tan only",
            ),
            Proof::Signature { .. } => (
                &[
                    ("person_id", body.person_id.is_some()),
                    ("tan", body.tan.is_some()),
                ],
                "device_signing; send device_id and signature only",
            ),
        };
        if let Some((field, _)) = extras.iter().find(|(_, sent)| *sent) {
            return Err(Refusal::new(
                Reason::Validation,
                format!(
                    "`{field}` does not belong to this confirmation: the change request was authorized for {authorized_for}"
                ),
            )
            .field(*field));
        }
        confirmation
            .attempts
            .check_open(now, "change request confirmation")?;
        match &confirmation.proof {
            Proof::Tan {
                person_id, sent_to, ..
            } => {
                let given = body
                    .person_id
                    .as_ref()
                    .ok_or_else(|| missing("person_id", "a TAN confirmation"))?;
                if body.tan.is_none() {
                    return Err(missing("tan", "a TAN confirmation"));
                }
                if given != person_id {
                    return Err(person_mismatch(
                        "person_id is not the person this change request is for",
                        "person_id",
                    ));
                }
                Ok(match sent_to {
                    Some(_) => Needs::Person(person_id.clone()),
                    None => Needs::Nothing,
                })
            }
            Proof::Signature { device_id, .. } => {
                let given = body
                    .device_id
                    .as_ref()
                    .ok_or_else(|| missing("device_id", "a device-signing confirmation"))?;
                if body.signature.is_none() {
                    return Err(missing("signature", "a device-signing confirmation"));
                }
                if given != device_id {
                    return Err(person_mismatch(
                        "device_id is not the device the change request was authorized for",
                        "device_id",
                    ));
                }
                Ok(Needs::Device(device_id.clone()))
            }
        }
    }

    /// What [`Self::check_proof`] would verify for a device-signing proof by `device`, read
    /// under the change request's and the device's locks so the verification can run with
    /// no lock held (see [`super::preverify`]); `None` for another kind of proof, or when
    /// the rule would refuse before verifying (the rule then says why, under the locks).
    pub fn proof_to_verify(
        &self,
        body: &ConfirmChangeRequest,
        device: &DeviceEntry,
    ) -> Option<ToVerify> {
        let Proof::Signature {
            purpose,
            string_to_sign,
            ..
        } = &self.confirmation.as_ref()?.proof
        else {
            return None;
        };
        if device.deleted_at.is_some() {
            return None;
        }
        let key = device.key(*purpose)?;
        let der = der_of(body.signature.as_ref()?, "signature").ok()?;
        Some(ToVerify {
            keys: vec![key.key.clone()],
            message: string_to_sign.as_bytes().to_vec(),
            der,
        })
    }

    /// Checks the proof of a planned confirmation: the TAN (with `person`, the one an SMS
    /// TAN went to), or the signature of `device`. A wrong proof counts as a failed attempt
    /// and may fail the change request.
    pub fn check_proof(
        &mut self,
        body: &ConfirmChangeRequest,
        person: Option<&PersonEntry>,
        device: Option<&DeviceEntry>,
        env: Env<'_>,
    ) -> Result<(), Refusal> {
        let Some(confirmation) = self.confirmation.as_mut() else {
            return Err(Refusal::new(
                Reason::ChangeRequestState,
                "authorize the change request first",
            ));
        };
        let ok = match &confirmation.proof {
            Proof::Tan { tan, sent_to, .. } => {
                if let (Some(sent_to), Some(person)) = (sent_to, person) {
                    person.check_still_verified(sent_to, "TAN", TAN_START_AGAIN)?;
                }
                let given = body
                    .tan
                    .as_ref()
                    .ok_or_else(|| missing("tan", "a TAN confirmation"))?;
                tan.matches(given)
            }
            Proof::Signature {
                purpose,
                string_to_sign,
                ..
            } => {
                let device = device.ok_or_else(|| {
                    Refusal::new(Reason::NotFound, "the device to sign with is unknown")
                })?;
                if device.deleted_at.is_some() {
                    return Err(Refusal::new(
                        Reason::DeviceDeleted,
                        "the device was deleted and can sign nothing",
                    ));
                }
                let key = device.key(*purpose).ok_or_else(|| {
                    Refusal::new(
                        Reason::DeviceDeleted,
                        "the device no longer has the key to sign with",
                    )
                })?;
                let signature = body
                    .signature
                    .as_ref()
                    .ok_or_else(|| missing("signature", "a device-signing confirmation"))?;
                let der = der_of(signature, "signature")?;
                env.verifier
                    .verify(&key.key, string_to_sign.as_bytes(), &der)
            }
        };
        if ok {
            return Ok(());
        }
        let left = confirmation
            .attempts
            .record_failure(env.config.max_failed_attempts, env.now);
        if confirmation.attempts.status == Status::Failed {
            self.status = ChangeRequestStatus::Failed;
            self.updated_at = env.now;
        }
        Err(match confirmation.proof {
            Proof::Tan { .. } => {
                Refusal::new(Reason::InvalidOtp, format!("the TAN is wrong; {left}")).field("tan")
            }
            Proof::Signature { purpose, .. } => Refusal::new(
                Reason::InvalidSignature,
                format!(
                    "the signature does not verify over string_to_sign with the device's {} key; {left}",
                    purpose_word(purpose)
                ),
            )
            .field("signature"),
        })
    }

    /// Carries out the held change on `person` (after [`Self::check_proof`] passed). An SMS
    /// TAN's number must still be the person's verified number.
    pub fn apply(&self, person: &mut PersonEntry) -> Result<Applied, Refusal> {
        if let Some(Confirmation {
            proof:
                Proof::Tan {
                    sent_to: Some(sent_to),
                    ..
                },
            ..
        }) = &self.confirmation
        {
            person.check_still_verified(sent_to, "TAN", TAN_START_AGAIN)?;
        }
        Ok(match &self.change {
            HeldChange::UpdatePerson(update) => {
                let p = &mut person.person;
                if let Some(v) = &update.first_name {
                    p.first_name.clone_from(v);
                }
                if let Some(v) = &update.last_name {
                    p.last_name.clone_from(v);
                }
                if let Some(v) = &update.email {
                    p.email = Some(v.clone());
                }
                Applied::Person(p.clone())
            }
            HeldChange::DeleteMobileNumber(id) => match person.mobile.take_if(|m| m.id == *id) {
                Some(MobileEntry {
                    id,
                    number,
                    verified,
                    ..
                }) => Applied::MobileDeleted(id, number, verified),
                None => Applied::Refused(Refusal::new(
                    Reason::NotFound,
                    "the mobile number this change request was made for is gone; the person's current number is kept",
                )),
            },
        })
    }

    /// Completes the change request with the held call's rendered answer.
    pub fn complete(&mut self, response: (u16, serde_json::Value), now: Timestamp) {
        if let Some(c) = self.confirmation.as_mut() {
            c.attempts.complete(now);
        }
        self.response = Some(response);
        self.status = ChangeRequestStatus::Completed;
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::core::testing::{Keys, PlainVerifier, config, rng, t0, verified_person};

    fn body(json: &str) -> ConfirmChangeRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_held_update_is_carried_out_only_after_the_right_tan() {
        let (config, mut rng, keys) = (config(), rng(31), Keys::default());
        let mut person = verified_person(&mut rng);
        let update: UpdatePerson = serde_json::from_str(r#"{"first_name":"Augusta"}"#).unwrap();
        let mut cr = hold(
            person.person.id.clone(),
            HeldChange::UpdatePerson(update),
            t0(),
            &mut rng,
        );
        let pid = person.person.id.to_string();
        let early = body(&format!(r#"{{"person_id":"{pid}","tan":"212212"}}"#));
        assert_eq!(
            cr.plan_confirmation(&early, t0()).unwrap_err().reason,
            Reason::ChangeRequestState
        );
        let authorize: AuthorizeChangeRequest = serde_json::from_str(&format!(
            r#"{{"delivery_method":"static","person_id":"{pid}"}}"#
        ))
        .unwrap();
        assert_eq!(cr.plan_authorization(&authorize).unwrap(), Needs::Nothing);
        cr.authorize_static(&config, t0());
        let env = Env {
            config: &config,
            now: t0(),
            keys: &keys,
            verifier: &PlainVerifier,
        };
        let wrong = body(&format!(r#"{{"person_id":"{pid}","tan":"000000"}}"#));
        assert_eq!(cr.plan_confirmation(&wrong, t0()).unwrap(), Needs::Nothing);
        assert_eq!(
            cr.check_proof(&wrong, None, None, env).unwrap_err().reason,
            Reason::InvalidOtp
        );
        assert_eq!(person.person.first_name, "Ada", "nothing applied");
        cr.check_proof(&early, None, None, env).unwrap();
        let Applied::Person(p) = cr.apply(&mut person).unwrap() else {
            panic!("an update")
        };
        assert_eq!(p.first_name, "Augusta");
        cr.complete((200, serde_json::Value::Null), t0());
        assert_eq!(
            cr.plan_confirmation(&early, t0()).unwrap_err().reason,
            Reason::ChallengeAlreadyUsed
        );
    }
}
