//! Change requests: a sensitive write (`PATCH /v1/persons/{id}`, `DELETE .../mobile_number`)
//! is held, authorized by SMS TAN, device signature or the static TAN, and carried out only
//! when confirmed.

use super::attempts::Attempts;
use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, path_id};
use super::persons::apply;
use super::sms::STATIC_OTP;
use super::state::{Inner, PartnerIdx, SandboxState};
use super::text::check_device_data;
use super::verify::{VerifyingKey, check_der_signature};
use crate::api::{
    AuthorizeChangeRequest, ChangeRequest, ChangeRequestId, ChangeRequestStatus,
    ConfirmChangeRequest, DeliveryMethod, DeviceId, KeyPurpose, MobileNumberId, Otp, PersonId,
    PhoneNumber, Timestamp, UpdatePerson,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rand::RngCore;

/// The write a change request holds.
#[derive(Debug, Clone)]
pub(crate) enum HeldChange {
    /// `PATCH /v1/persons/{id}`.
    UpdatePerson(UpdatePerson),
    /// `DELETE /v1/persons/{id}/mobile_number`, of the number that was there when it was asked
    /// for: a number added later is not deleted by an older change request.
    DeleteMobileNumber(MobileNumberId),
}

enum Proof {
    Tan {
        person_id: PersonId,
        tan: Otp,
        /// The number an SMS TAN went to (`None` for the static TAN); it must still be the
        /// person's verified number when the TAN is confirmed.
        sent_to: Option<PhoneNumber>,
    },
    Signature {
        device_id: DeviceId,
        purpose: KeyPurpose,
        string_to_sign: String,
    },
}

struct Confirmation {
    proof: Proof,
    attempts: Attempts,
}

/// A held write and how far it got.
pub(crate) struct ChangeRequestEntry {
    id: ChangeRequestId,
    person_id: PersonId,
    change: HeldChange,
    status: ChangeRequestStatus,
    updated_at: Timestamp,
    confirmation: Option<Confirmation>,
    response: Option<(u16, serde_json::Value)>,
}

impl ChangeRequestEntry {
    /// When it finished, if it has by `now`: completed or failed (its last update); its
    /// confirmation expired unanswered; or, not yet authorized, left alone for a challenge
    /// `lifetime` since its last update. Until forgotten, a merely expired one can still be
    /// authorized again.
    fn finished_by(&self, now: Timestamp, lifetime: std::time::Duration) -> Option<Timestamp> {
        match (self.status, &self.confirmation) {
            (ChangeRequestStatus::Completed | ChangeRequestStatus::Failed, _) => {
                Some(self.updated_at)
            }
            (ChangeRequestStatus::ConfirmationRequired, Some(c)) => c.attempts.finished_by(now),
            _ => {
                let idle_until = self
                    .updated_at
                    .plus_seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2));
                (now >= idle_until).then_some(idle_until)
            }
        }
    }

    /// Whether it has been finished for longer than `retention` at `now`.
    pub(crate) fn forgettable(
        &self,
        now: Timestamp,
        lifetime: std::time::Duration,
        retention: std::time::Duration,
    ) -> bool {
        self.finished_by(now, lifetime)
            .is_some_and(|at| super::attempts::finished_longer_than(at, now, retention))
    }

    fn view(&self) -> ChangeRequest {
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
}

/// Holds a write; the answer for the call that asked for it.
pub(crate) fn hold_change(
    inner: &Inner,
    partner: PartnerIdx,
    person_id: PersonId,
    change: HeldChange,
) -> ChangeRequest {
    let entry = ChangeRequestEntry {
        id: ChangeRequestId::generate(),
        person_id,
        change,
        status: ChangeRequestStatus::AuthorizationRequired,
        updated_at: inner.clock.now(),
        confirmation: None,
        response: None,
    };
    let view = entry.view();
    Inner::insert(&inner.change_requests, partner, entry.id.clone(), entry);
    view
}

const TAN_START_AGAIN: &str =
    "authorize the change request again (POST /v1/change_requests/{id}/authorize) for a new TAN";

fn missing(field: &str, method: &str) -> ApiError {
    ApiError::validation_error(format!("`{field}` is required for {method}")).field(field)
}

/// The key a device signs with when no purpose is named: restricted if it has one.
pub(crate) fn default_purpose(keys: &[super::state::KeyEntry]) -> KeyPurpose {
    if keys.iter().any(|k| k.purpose == KeyPurpose::Restricted) {
        KeyPurpose::Restricted
    } else {
        KeyPurpose::Unrestricted
    }
}

/// `GET /v1/change_requests/{id}`.
pub async fn get(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<ChangeRequest>, ApiError> {
    let id: ChangeRequestId = path_id(&id, "change request")?;
    let entry = state
        .0
        .answerable(&state.0.change_requests, caller.0, &id, "change request")?;
    let view = entry.data.lock().view();
    Ok(Json(view))
}

/// `POST /v1/change_requests/{id}/authorize`.
pub async fn authorize(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AuthorizeChangeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let inner = &state.0;
    let id: ChangeRequestId = path_id(&id, "change request")?;
    let entry = inner.answerable(&inner.change_requests, caller.0, &id, "change request")?;
    let mut cr = entry.data.lock();
    if !matches!(
        cr.status,
        ChangeRequestStatus::AuthorizationRequired | ChangeRequestStatus::ConfirmationRequired
    ) {
        return Err(ApiError::change_request_state(format!(
            "the change request is {}; it can no longer be authorized",
            cr.status
        )));
    }
    let method = body.delivery_method;
    let proof = match method {
        DeliveryMethod::MobileNumber | DeliveryMethod::Static => {
            let person_id = body
                .person_id
                .ok_or_else(|| missing("person_id", method.as_str()))?;
            if body.device_id.is_some() {
                return Err(ApiError::validation_error(format!(
                    "`device_id` is for device_signing, not {method}"
                ))
                .field("device_id"));
            }
            if person_id != cr.person_id {
                return Err(ApiError::person_mismatch(
                    "person_id is not the person this change request is for",
                )
                .field("person_id"));
            }
            let (tan, sent_to) = if method == DeliveryMethod::Static {
                let tan = Otp::parse(STATIC_OTP).expect("the static TAN is six digits");
                (tan, None)
            } else {
                let person = inner.owned(&inner.persons, caller.0, &person_id, "person")?;
                let mut person = person.data.lock();
                let number = person.verified_number("TAN", "use another delivery method")?;
                inner.admit_sms(&mut person)?;
                drop(person);
                (inner.send_otp(&number, None, None), Some(number))
            };
            Proof::Tan {
                person_id,
                tan,
                sent_to,
            }
        }
        DeliveryMethod::DeviceSigning => {
            let device_id = body
                .device_id
                .ok_or_else(|| missing("device_id", method.as_str()))?;
            if body.person_id.is_some() {
                return Err(ApiError::validation_error(
                    "`person_id` is for mobile_number and static, not device_signing",
                )
                .field("person_id"));
            }
            let device = inner.owned(&inner.devices, caller.0, &device_id, "device")?;
            let device = device.data.lock();
            if !device.verified {
                return Err(ApiError::not_found(format!(
                    "there is no device {device_id} for this partner; check the id"
                )));
            }
            if device.deleted_at.is_some() {
                return Err(ApiError::device_deleted(
                    "the device was deleted and can sign nothing; use a bound device",
                ));
            }
            if device.person_id != cr.person_id {
                return Err(ApiError::person_mismatch(
                    "the device belongs to another person than this change request",
                )
                .field("device_id"));
            }
            let mut nonce = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut nonce);
            Proof::Signature {
                device_id,
                purpose: default_purpose(&device.keys),
                string_to_sign: format!("vphone change request {}: {}", cr.id, hex::encode(nonce)),
            }
        }
    };
    cr.confirmation = Some(Confirmation {
        proof,
        attempts: inner.new_attempts(),
    });
    cr.status = ChangeRequestStatus::ConfirmationRequired;
    cr.updated_at = inner.clock.now();
    Ok((StatusCode::CREATED, Json(cr.view())))
}

/// `POST /v1/change_requests/{id}/confirm`: checks the proof, then carries out the change.
pub async fn confirm(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ConfirmChangeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let inner = &state.0;
    let id: ChangeRequestId = path_id(&id, "change request")?;
    let entry = inner.answerable(&inner.change_requests, caller.0, &id, "change request")?;
    let now = inner.clock.now();
    let max = inner.config.max_failed_attempts;
    let mut guard = entry.data.lock();
    let cr = &mut *guard;
    match cr.status {
        ChangeRequestStatus::ConfirmationRequired => {}
        ChangeRequestStatus::Completed => {
            return Err(ApiError::challenge_already_used(
                "the change request was already confirmed and carried out",
            ));
        }
        ChangeRequestStatus::Failed => {
            return Err(ApiError::challenge_failed(
                "the change request failed after too many wrong answers; make the change again",
            ));
        }
        other => {
            return Err(ApiError::change_request_state(format!(
                "the change request is {other}; authorize it first with POST /v1/change_requests/{{id}}/authorize"
            )));
        }
    }
    let Some(confirmation) = cr.confirmation.as_mut() else {
        return Err(ApiError::change_request_state(
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
        return Err(ApiError::validation_error(format!(
            "`{field}` does not belong to this confirmation: the change request was authorized for {authorized_for}"
        ))
        .field(*field));
    }
    confirmation
        .attempts
        .check_open(now, "change request confirmation")?;
    let ok = match &confirmation.proof {
        Proof::Tan {
            person_id,
            tan,
            sent_to,
        } => {
            let given_person = body
                .person_id
                .as_ref()
                .ok_or_else(|| missing("person_id", "a TAN confirmation"))?;
            let given_tan = body
                .tan
                .as_ref()
                .ok_or_else(|| missing("tan", "a TAN confirmation"))?;
            if given_person != person_id {
                return Err(ApiError::person_mismatch(
                    "person_id is not the person this change request is for",
                )
                .field("person_id"));
            }
            if let Some(sent_to) = sent_to {
                inner
                    .owned(&inner.persons, caller.0, person_id, "person")?
                    .data
                    .lock()
                    .check_still_verified(sent_to, "TAN", TAN_START_AGAIN)?;
            }
            tan.matches(given_tan)
        }
        Proof::Signature {
            device_id,
            purpose,
            string_to_sign,
        } => {
            let given_device = body
                .device_id
                .as_ref()
                .ok_or_else(|| missing("device_id", "a device-signing confirmation"))?;
            let signature = body
                .signature
                .as_ref()
                .ok_or_else(|| missing("signature", "a device-signing confirmation"))?;
            if given_device != device_id {
                return Err(ApiError::person_mismatch(
                    "device_id is not the device the change request was authorized for",
                )
                .field("device_id"));
            }
            let key: VerifyingKey = {
                let device = inner.owned(&inner.devices, caller.0, device_id, "device")?;
                let device = device.data.lock();
                if device.deleted_at.is_some() {
                    return Err(ApiError::device_deleted(
                        "the device was deleted and can sign nothing",
                    ));
                }
                device.key(*purpose).map(|k| k.key.clone()).ok_or_else(|| {
                    ApiError::device_deleted("the device no longer has the key to sign with")
                })?
            };
            let der = signature.to_bytes();
            check_der_signature(&der).map_err(|e| {
                ApiError::invalid_signature_encoding(e.to_string()).field("signature")
            })?;
            inner.verify(&key, string_to_sign.as_bytes(), &der)
        }
    };
    if !ok {
        let left = confirmation.attempts.record_failure(max, now);
        if confirmation.attempts.status == super::attempts::Status::Failed {
            cr.status = ChangeRequestStatus::Failed;
            cr.updated_at = now;
        }
        return Err(match confirmation.proof {
            Proof::Tan { .. } => ApiError::invalid_otp(format!("the TAN is wrong; {left}")).field("tan"),
            Proof::Signature { .. } => ApiError::invalid_signature(format!(
                "the signature does not verify over string_to_sign with the device's {} key; {left}",
                match confirmation.proof {
                    Proof::Signature { purpose, .. } => purpose_word(purpose),
                    Proof::Tan { .. } => "",
                }
            ))
            .field("signature"),
        });
    }
    let person = inner.owned(&inner.persons, caller.0, &cr.person_id, "person");
    let response = match person {
        Ok(person) => {
            let mut person = person.data.lock();
            // Again under the lock the change is made under: the number may have gone meanwhile.
            if let Proof::Tan {
                sent_to: Some(sent_to),
                ..
            } = &confirmation.proof
            {
                person.check_still_verified(sent_to, "TAN", TAN_START_AGAIN)?;
            }
            apply(&mut person, &cr.change)
        }
        Err(e) => (404, serde_json::to_value(e.body()).unwrap_or_default()),
    };
    confirmation.attempts.complete(now);
    cr.response = Some(response);
    cr.status = ChangeRequestStatus::Completed;
    cr.updated_at = now;
    Ok((StatusCode::CREATED, Json(cr.view())))
}

/// The wire word of a key purpose.
pub(crate) fn purpose_word(purpose: KeyPurpose) -> &'static str {
    if purpose == KeyPurpose::Restricted {
        "restricted"
    } else {
        "unrestricted"
    }
}
