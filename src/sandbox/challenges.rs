//! Device-signing challenges and SMS challenges.

use super::auth::Caller;
use super::change_requests::{default_purpose, purpose_word};
use super::devices::der_of;
use super::error::{ApiError, ApiJson, ApiPath, path_id};
use super::state::{ChallengeEntry, ChallengeWhat, Inner, SandboxState};
use super::text::check_device_data;
use crate::api::{
    AnswerDeviceChallenge, AnswerSmsChallenge, ChallengeId, ChallengeKind, CreateDeviceChallenge,
    CreateSmsChallenge, DeviceChallenge, KeyPurpose, SmsChallenge,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rand::RngCore;

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

fn wrong_kind(id: &ChallengeId, kind: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no {kind} challenge {id}; it is another kind of challenge"
    ))
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
    let purpose = {
        let d = device.data.lock();
        if !d.verified {
            return Err(ApiError::not_found(format!(
                "there is no bound device {} for this partner; finish its binding first",
                body.device_id
            )));
        }
        if d.deleted_at.is_some() {
            return Err(ApiError::device_deleted(
                "the device was deleted and can sign nothing; bind a new one",
            ));
        }
        match body.key_purpose {
            Some(p) if d.key(p).is_none() => {
                return Err(if p == KeyPurpose::Restricted {
                    ApiError::restricted_key_required(
                        "the device has no restricted key; add one with POST /v1/mfa/devices/{id}/keys",
                    )
                } else {
                    ApiError::key_not_found(format!(
                        "the device has no {} key",
                        purpose_word(p)
                    ))
                }
                .field("key_purpose"));
            }
            Some(p) => p,
            None => default_purpose(&d.keys),
        }
    };
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut nonce);
    let id = ChallengeId::generate();
    let entry = ChallengeEntry {
        what: ChallengeWhat::Device {
            device_id: body.device_id,
            purpose,
            string_to_sign: hex::encode(nonce),
        },
        attempts: inner.new_attempts(),
    };
    let view = device_view(&id, &entry);
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
    view.map(Json).ok_or_else(|| wrong_kind(&id, "device"))
}

/// `PUT /v1/mfa/challenges/devices/{id}`: the device's signature of `string_to_sign`.
pub async fn answer_device(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerDeviceChallenge>,
) -> Result<StatusCode, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let inner = &state.0;
    let id: ChallengeId = path_id(&id, "device challenge")?;
    let entry = inner.answerable(&inner.challenges, caller.0, &id, "device challenge")?;
    let now = inner.clock.now();
    let mut guard = entry.data.lock();
    let challenge = &mut *guard;
    let ChallengeWhat::Device {
        device_id,
        purpose,
        string_to_sign,
    } = &challenge.what
    else {
        return Err(wrong_kind(&id, "device"));
    };
    challenge.attempts.check_open(now, "device challenge")?;
    let der = der_of(&body.signature, "signature")?;
    let device = inner.owned(&inner.devices, caller.0, device_id, "device")?;
    let (key, other_key) = {
        let d = device.data.lock();
        if d.deleted_at.is_some() {
            return Err(ApiError::device_deleted(
                "the device was deleted after this challenge was made; it signs nothing",
            ));
        }
        let key = d.key(*purpose).map(|k| k.key.clone()).ok_or_else(|| {
            ApiError::device_deleted("the device no longer has the key this challenge needs")
        })?;
        let other = (*purpose == KeyPurpose::Restricted)
            .then(|| d.key(KeyPurpose::Unrestricted).map(|k| k.key.clone()))
            .flatten();
        (key, other)
    };
    let message = string_to_sign.as_bytes();
    if !inner.verify(&key, message, &der) {
        // A restricted challenge signed with the unrestricted key deserves a precise answer.
        let used_unrestricted = other_key.is_some_and(|k| inner.verify(&k, message, &der));
        let left = challenge
            .attempts
            .record_failure(inner.config.max_failed_attempts, now);
        return Err(if used_unrestricted {
            ApiError::restricted_key_required(format!(
                "this challenge needs the restricted key, but it was signed with the unrestricted key; {left}"
            ))
        } else {
            ApiError::invalid_signature(format!(
                "the signature does not verify over string_to_sign with the device's {} key; {left}",
                purpose_word(*purpose)
            ))
        }
        .field("signature"));
    }
    let purpose = *purpose;
    challenge.attempts.complete(now);
    drop(guard);
    let mut d = device.data.lock();
    if let Some(k) = d.keys.iter_mut().find(|k| k.purpose == purpose) {
        k.used_at = Some(now);
    }
    if let Some(data) = body.device_data {
        d.device_data = Some(data);
    }
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
    let number = {
        let mut person = person.data.lock();
        let number = person.verified_number("OTP", "add and confirm one first")?;
        inner.admit_sms(&mut person)?;
        number
    };
    let otp = inner.send_otp(&number, body.language, None);
    let id = ChallengeId::generate();
    let entry = ChallengeEntry {
        what: ChallengeWhat::Sms {
            person_id: body.person_id,
            otp,
            sent_to: number,
        },
        attempts: inner.new_attempts(),
    };
    let view = sms_view(&id, &entry);
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
    view.map(Json).ok_or_else(|| wrong_kind(&id, "SMS"))
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
    let now = inner.clock.now();
    let mut guard = entry.data.lock();
    let challenge = &mut *guard;
    let ChallengeWhat::Sms {
        person_id,
        otp,
        sent_to,
    } = &challenge.what
    else {
        return Err(wrong_kind(&id, "SMS"));
    };
    challenge.attempts.check_open(now, "SMS challenge")?;
    inner
        .owned(&inner.persons, caller.0, person_id, "person")?
        .data
        .lock()
        .check_still_verified(sent_to, "OTP", "start a new SMS challenge")?;
    if !otp.matches(&body.code) {
        let left = challenge
            .attempts
            .record_failure(inner.config.max_failed_attempts, now);
        return Err(ApiError::invalid_otp(format!("the code is wrong; {left}")).field("code"));
    }
    challenge.attempts.complete(now);
    Ok(StatusCode::NO_CONTENT)
}
