//! Device-signing challenges and SMS challenges: the handlers extract, look up and lock,
//! call the rule in `core::{device_challenges, sms_challenges}`, and render.

use super::auth::Caller;
use super::core::challenges::wrong_kind;
use super::core::{Verifier, device_challenges, sms_challenges};
use super::devices::{env, rules_env};
use super::error::{ApiError, ApiJson, ApiPath, path_id};
use super::state::{ChallengeEntry, ChallengeWhat, Inner, SandboxState, restore};
use super::store::Write;
use super::text::check_device_data;
use crate::api::{
    AnswerDeviceChallenge, AnswerSmsChallenge, ChallengeId, ChallengeKind, CreateDeviceChallenge,
    CreateSmsChallenge, DeviceChallenge, SmsChallenge,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;

fn device_view(id: &ChallengeId, c: &ChallengeEntry) -> Option<DeviceChallenge> {
    match &c.what {
        ChallengeWhat::Device {
            purpose,
            string_to_sign,
            ..
        } => Some(DeviceChallenge {
            id: id.clone(),
            kind: Some(ChallengeKind::Device),
            string_to_sign: string_to_sign.clone(),
            key_purpose: Some(*purpose),
            created_at: Some(c.attempts.created_at),
            expires_at: Some(c.attempts.expires_at),
        }),
        _ => None,
    }
}
/// `POST /v1/mfa/challenges/devices`.
pub async fn create_device(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateDeviceChallenge>,
) -> Result<impl IntoResponse, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let inner = &state.0;
    let device = inner.owned(&inner.devices, caller.0, &body.device_id, "device")?;
    let (id, entry) = device_challenges::create(
        &device.data.lock(),
        body.key_purpose,
        &inner.config,
        inner.clock.now(),
        &mut inner.rng(),
    )?;
    let view = device_view(&id, &entry);
    inner.commit(&[Write::Challenge(inner.partner_name(caller.0), &id, &entry)])?;
    Inner::insert(&inner.challenges, caller.0, id, entry);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/mfa/challenges/devices/{id}`.
pub async fn get_device(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceChallenge>, ApiError> {
    let id: ChallengeId = path_id(&id, "device challenge")?;
    let entry = state
        .0
        .answerable(&state.0.challenges, caller.0, &id, "device challenge")?;
    let view = device_view(&id, &entry.data.lock());
    view.map(Json)
        .ok_or_else(|| wrong_kind(&id, "device").into())
}

/// `PUT /v1/mfa/challenges/devices/{id}`: the device's signature of `string_to_sign`.
pub async fn answer_device(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerDeviceChallenge>,
) -> Result<StatusCode, ApiError> {
    answer_device_challenge(&state.0, caller, &id, body, &*state.0)
}

/// Answers a device challenge, verifying with `verifier` while no entity lock is held (see
/// `core::preverify`).
pub(crate) fn answer_device_challenge(
    inner: &Inner,
    caller: Caller,
    id: &str,
    body: AnswerDeviceChallenge,
    verifier: &dyn Verifier,
) -> Result<StatusCode, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let id: ChallengeId = path_id(id, "device challenge")?;
    let entry = inner.answerable(&inner.challenges, caller.0, &id, "device challenge")?;
    let (device, to_verify) = inner.to_verify(
        caller.0,
        &entry,
        |c| c.signing_device(&id),
        |c, d, now| device_challenges::to_verify(c, d, &body.signature, now),
    )?;
    // No lock is held while the signature is verified.
    let verdicts = to_verify.check(verifier);
    let mut challenge = entry.data.lock();
    let mut device = device.data.lock();
    // The rule checks everything again under the locks (still open, the same key, attempts
    // left) and takes the verdict from `verdicts`.
    let (now, keys) = env(inner, caller.0);
    let mut env = rules_env(inner, now, &keys);
    env.verifier = &verdicts;
    let saved = (inner.saved(&*challenge), inner.saved(&*device));
    let answered = device_challenges::answer(
        &mut challenge,
        &mut device,
        &body.signature,
        body.device_data,
        env,
    );
    // Kept whatever the outcome: a wrong signature counts as a failed attempt.
    let partner = inner.partner_name(caller.0);
    let committed = inner.commit(&[
        Write::Challenge(partner, &id, &challenge),
        Write::Device(partner, &device),
    ]);
    if committed.is_err() {
        restore(&mut *challenge, saved.0);
        inner.restore_device(caller.0, &mut device, saved.1);
    }
    committed?;
    answered?;
    Ok(StatusCode::NO_CONTENT)
}

fn sms_view(id: &ChallengeId, c: &ChallengeEntry) -> Option<SmsChallenge> {
    matches!(c.what, ChallengeWhat::Sms { .. }).then(|| SmsChallenge {
        id: id.clone(),
        kind: Some(ChallengeKind::Sms),
        created_at: Some(c.attempts.created_at),
        expires_at: Some(c.attempts.expires_at),
    })
}
/// `POST /v1/mfa/challenges/sms`: sends an OTP to the person's verified number.
pub async fn create_sms(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSmsChallenge>,
) -> Result<impl IntoResponse, ApiError> {
    let inner = &state.0;
    let person = inner.owned(&inner.persons, caller.0, &body.person_id, "person")?;
    let (id, entry, send) = sms_challenges::create(
        &mut person.data.lock(),
        &inner.config,
        inner.clock.now(),
        &mut inner.rng(),
    )
    .map_err(|r| inner.refused(r))?;
    let seq = inner.send_otp(&send, body.language, None);
    let view = sms_view(&id, &entry);
    inner.commit(&[
        Write::Challenge(inner.partner_name(caller.0), &id, &entry),
        Write::SmsSeq(seq),
    ])?;
    Inner::insert(&inner.challenges, caller.0, id, entry);
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/mfa/challenges/sms/{id}`.
pub async fn get_sms(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SmsChallenge>, ApiError> {
    let id: ChallengeId = path_id(&id, "SMS challenge")?;
    let entry = state
        .0
        .answerable(&state.0.challenges, caller.0, &id, "SMS challenge")?;
    let view = sms_view(&id, &entry.data.lock());
    view.map(Json).ok_or_else(|| wrong_kind(&id, "SMS").into())
}

/// `PUT /v1/mfa/challenges/sms/{id}`: the OTP the person received.
pub async fn answer_sms(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerSmsChallenge>,
) -> Result<StatusCode, ApiError> {
    let inner = &state.0;
    let id: ChallengeId = path_id(&id, "SMS challenge")?;
    let entry = inner.answerable(&inner.challenges, caller.0, &id, "SMS challenge")?;
    // Lock order (see `state`): challenge, then person.
    let mut challenge = entry.data.lock();
    let person = inner.owned(
        &inner.persons,
        caller.0,
        challenge.sms_person(&id)?,
        "person",
    )?;
    let saved = inner.saved(&*challenge);
    let answered = sms_challenges::answer(
        &mut challenge,
        &person.data.lock(),
        &body.code,
        &inner.config,
        inner.clock.now(),
    );
    // Kept whatever the outcome: a wrong code counts as a failed attempt.
    let committed = inner.commit(&[Write::Challenge(
        inner.partner_name(caller.0),
        &id,
        &challenge,
    )]);
    if committed.is_err() {
        restore(&mut *challenge, saved);
    }
    committed?;
    answered?;
    Ok(StatusCode::NO_CONTENT)
}
