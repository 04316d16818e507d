//! Change requests: a sensitive write (`PATCH /v1/persons/{id}`, `DELETE .../mobile_number`)
//! is held, authorized by SMS TAN, device signature or the static TAN, and carried out only
//! when confirmed. The rules are in `core::change_requests`; these handlers look up and lock
//! what a step needs (lock order, see `state`: change request, person, device) and render.

use super::auth::Caller;
use super::core::Verifier;
use super::core::change_requests::{self as rules, Applied, HeldChange, Needs};
use super::devices::{env, rules_env};
use super::error::{ApiError, ApiJson, ApiPath, path_id};
use super::persons::mobile_view;
use super::state::{Inner, PartnerIdx, SandboxState, restore};
use super::store::Write;
use super::text::check_device_data;
use crate::api::{
    AuthorizeChangeRequest, ChangeRequest, ChangeRequestId, ConfirmChangeRequest, MobileNumber,
    PersonId,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

/// Holds `change` to a person's data as a new change request of `partner`.
pub(crate) fn hold_change(
    inner: &Inner,
    partner: PartnerIdx,
    person_id: PersonId,
    change: HeldChange,
) -> Result<ChangeRequest, ApiError> {
    let entry = rules::hold(person_id, change, inner.clock.now(), &mut inner.rng());
    let view = entry.view();
    inner.commit(&[Write::ChangeRequest(inner.partner_name(partner), &entry)])?;
    Inner::insert(&inner.change_requests, partner, entry.id.clone(), entry);
    Ok(view)
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

/// `POST /v1/change_requests/{id}/authorize`: sends the TAN, or makes the string to sign.
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
    let saved = inner.saved(&*cr);
    let (config, now) = (&inner.config, inner.clock.now());
    let partner = inner.partner_name(caller.0);
    let committed = match cr.plan_authorization(&body)? {
        Needs::Nothing => {
            cr.authorize_static(config, now);
            inner.commit(&[Write::ChangeRequest(partner, &cr)])
        }
        Needs::Person(person_id) => {
            let person = inner.owned(&inner.persons, caller.0, &person_id, "person")?;
            let mut person = person.data.lock();
            let send = cr
                .authorize_sms(&mut person, config, now, &mut inner.rng())
                .map_err(|r| inner.refused(r))?;
            let seq = inner.send_otp(&send, None, None);
            inner.commit(&[Write::ChangeRequest(partner, &cr), Write::SmsSeq(seq)])
        }
        Needs::Device(device_id) => {
            let device = inner.owned(&inner.devices, caller.0, &device_id, "device")?;
            cr.authorize_device(&device.data.lock(), config, now, &mut inner.rng())?;
            inner.commit(&[Write::ChangeRequest(partner, &cr)])
        }
    };
    if committed.is_err() {
        restore(&mut *cr, saved);
    }
    committed?;
    Ok((StatusCode::CREATED, Json(cr.view())))
}

/// `POST /v1/change_requests/{id}/confirm`: the TAN or signature; carries the change out.
pub async fn confirm(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ConfirmChangeRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let view = confirm_change(&state.0, caller, &id, body, &*state.0)?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Confirms change request `id` and carries the change out. A device signature is verified
/// with `verifier` while no entity lock is held (see `core::preverify`): what to verify is
/// read under the change request's and the device's locks, and the rule checks everything
/// again under them with the verdict.
pub(crate) fn confirm_change(
    inner: &Inner,
    caller: Caller,
    id: &str,
    body: ConfirmChangeRequest,
    verifier: &dyn Verifier,
) -> Result<ChangeRequest, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let id: ChangeRequestId = path_id(id, "change request")?;
    let entry = inner.answerable(&inner.change_requests, caller.0, &id, "change request")?;
    let to_verify = {
        let cr = entry.data.lock();
        match cr.plan_confirmation(&body, inner.clock.now()) {
            Ok(Needs::Device(device_id)) => inner
                .owned(&inner.devices, caller.0, &device_id, "device")
                .ok()
                .and_then(|device| cr.proof_to_verify(&body, &device.data.lock())),
            // Refused, or no signature: the rule below says so under the lock.
            _ => None,
        }
    };
    let verdicts = to_verify.map(|v| v.check(verifier));
    let mut cr = entry.data.lock();
    let saved = inner.saved(&*cr);
    let (now, keys) = env(inner, caller.0);
    let mut env = rules_env(inner, now, &keys);
    if let Some(verdicts) = &verdicts {
        env.verifier = verdicts;
    }
    let partner = inner.partner_name(caller.0);
    let checked = match cr.plan_confirmation(&body, now)? {
        Needs::Nothing => cr.check_proof(&body, None, None, env),
        Needs::Person(person_id) => {
            let person = inner.owned(&inner.persons, caller.0, &person_id, "person")?;
            cr.check_proof(&body, Some(&person.data.lock()), None, env)
        }
        Needs::Device(device_id) => {
            let device = inner.owned(&inner.devices, caller.0, &device_id, "device")?;
            cr.check_proof(&body, None, Some(&device.data.lock()), env)
        }
    };
    if let Err(refusal) = checked {
        // A wrong proof counts as a failed attempt (and may fail the change request).
        let committed = inner.commit(&[Write::ChangeRequest(partner, &cr)]);
        if committed.is_err() {
            restore(&mut *cr, saved);
        }
        committed?;
        return Err(refusal.into());
    }
    let committed = match inner.owned(&inner.persons, caller.0, &cr.person_id, "person") {
        Ok(person) => {
            let mut person = person.data.lock();
            let saved_person = inner.saved(&*person);
            let response = render(cr.apply(&mut person)?);
            cr.complete(response, now);
            let committed = inner.commit(&[
                Write::ChangeRequest(partner, &cr),
                Write::Person(partner, &person),
            ]);
            if committed.is_err() {
                restore(&mut *person, saved_person);
            }
            committed
        }
        Err(e) => {
            cr.complete(
                (404, serde_json::to_value(e.body()).unwrap_or_default()),
                now,
            );
            inner.commit(&[Write::ChangeRequest(partner, &cr)])
        }
    };
    if committed.is_err() {
        restore(&mut *cr, saved);
    }
    committed?;
    Ok(cr.view())
}

/// The held call's answer as the API shows it in `response_code` and `response_body`.
fn render(applied: Applied) -> (u16, serde_json::Value) {
    match applied {
        Applied::Person(person) => (200, serde_json::to_value(person).unwrap_or_default()),
        Applied::MobileDeleted(id, number, verified) => {
            let view: MobileNumber = mobile_view(&super::core::persons::MobileEntry {
                id,
                number,
                verified,
                otp: None,
            });
            (200, serde_json::to_value(view).unwrap_or_default())
        }
        Applied::Refused(refusal) => {
            let error = ApiError::from(refusal);
            (
                error.status.as_u16(),
                serde_json::to_value(error.body()).unwrap_or_default(),
            )
        }
    }
}
