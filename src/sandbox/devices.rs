//! Device binding, device listing and deletion, and device keys.
//!
//! Binding: `POST /v1/mfa/devices` stores an unverified device and sends an OTP; the phone
//! signs the OTP with the new key and `PUT`s it to the signature challenge, which binds the
//! device. The device limit counts bound devices only. It is checked when the binding starts
//! (so a caller learns early) and again, atomically under the person's lock, when the
//! signature is accepted: of several bindings racing for the last free place, the first to
//! answer wins and the others get 409 `device_limit_reached` with their challenge left open.

use super::auth::Caller;
use super::core::devices::{self as rules, NewDevice};
use super::core::keys::{self as keys_rules, NewKey, add_key as add_key_rule};
use super::core::{Env, KeyIndex, Reason, Verifier};
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, path_id};
use super::sms::has_six_digit_run;
use super::state::{DeviceEntry, Inner, PartnerIdx, PartnerKeys, SandboxState, restore};
use super::store::Write;
use super::text::{check_device_data, check_text};
use super::verify::{KeyError, Point, VerifyingKey};
use crate::api::{
    AddKeyRequest, AddKeyResponse, AnswerSignatureChallenge, ChallengeId, ChallengeKind,
    CreateDeviceRequest, CreateDeviceResponse, Device, DeviceId, DeviceKeys, DeviceListQuery,
    KeyDetail, KeyId, KeyPurpose, KeySummary, KeyType, PublicKeyHex, SignatureChallenge,
    SignatureHex,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::atomic::Ordering;

fn check_key_type(key_type: KeyType) -> Result<(), ApiError> {
    if key_type == KeyType::EcdsaP256 {
        Ok(())
    } else {
        Err(ApiError::unsupported_key_type("only `ecdsa-p256` keys are accepted").field("key_type"))
    }
}

/// Validates a public key field.
pub(crate) fn parse_key(key: &PublicKeyHex, field: &str) -> Result<VerifyingKey, ApiError> {
    VerifyingKey::from_uncompressed(&key.to_bytes())
        .map_err(|e: KeyError| ApiError::invalid_key(e.to_string()).field(field))
}

/// Decodes and checks a signature field's DER before any verification.
pub(crate) fn der_of(signature: &SignatureHex, field: &str) -> Result<Vec<u8>, ApiError> {
    Ok(rules::der_of(signature, field)?)
}

/// What the core needs to verify for `partner` now.
pub(crate) fn env(
    inner: &Inner,
    partner: PartnerIdx,
) -> (crate::api::Timestamp, super::state::PartnerKeys<'_>) {
    (inner.clock.now(), inner.keys(partner))
}

/// The core's view of the bank at `now`, with the partner's `keys` (from [`env`]).
pub(crate) fn rules_env<'a>(
    inner: &'a Inner,
    now: crate::api::Timestamp,
    keys: &'a super::state::PartnerKeys<'_>,
) -> Env<'a> {
    Env {
        config: &inner.config,
        now,
        keys,
        verifier: inner,
    }
}

fn device_view(d: &DeviceEntry) -> Device {
    Device {
        id: d.id.clone(),
        name: d.name.clone(),
        person_id: Some(d.person_id.clone()),
        created_at: Some(d.created_at),
        deleted_at: d.deleted_at,
    }
}

/// A bound (verified) device of the caller; unverified devices do not exist to the API.
fn bound_device(
    inner: &Inner,
    caller: Caller,
    id: &DeviceId,
) -> Result<std::sync::Arc<super::state::Owned<DeviceEntry>>, ApiError> {
    let entry = inner.owned(&inner.devices, caller.0, id, "device")?;
    entry.data.lock().check_bound()?;
    Ok(entry)
}

/// Cap of a device's `name`, in characters.
const MAX_DEVICE_NAME: usize = 100;

/// An SMS retriever's app hash, if given: 1-32 characters of A-Z a-z 0-9 + / = and no six
/// digits in a row (which a phone could take for the code).
fn check_app_signature(app_signature: Option<&str>) -> Result<(), ApiError> {
    match app_signature {
        Some(sig)
            if sig.is_empty()
                || sig.len() > 32
                || has_six_digit_run(sig)
                || !sig
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) =>
        {
            Err(ApiError::validation_error(
                "`sms_challenge.app_signature` must be 1-32 characters of A-Z a-z 0-9 + / = without six digits in a row",
            )
            .field("sms_challenge.app_signature"))
        }
        _ => Ok(()),
    }
}

/// `POST /v1/mfa/devices`: starts a binding.
pub async fn create(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateDeviceRequest>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(start_binding(&state.0, caller, body)?),
    ))
}

/// Starts a binding: stores the unverified device and its challenge and sends the OTP.
pub(crate) fn start_binding(
    inner: &Inner,
    caller: Caller,
    body: CreateDeviceRequest,
) -> Result<CreateDeviceResponse, ApiError> {
    check_key_type(body.key_type)?;
    let key = parse_key(&body.key, "key")?;
    let name = body.name.trim();
    check_text("name", name, MAX_DEVICE_NAME)?;
    check_device_data(body.device_data.as_deref())?;
    let app_signature = body
        .sms_challenge
        .as_ref()
        .and_then(|s| s.app_signature.as_deref());
    check_app_signature(app_signature)?;
    let person = inner.owned(&inner.persons, caller.0, &body.person_id, "person")?;
    let new = NewDevice {
        person_id: body.person_id,
        name: name.to_owned(),
        key,
        purpose: body.key_purpose.unwrap_or(KeyPurpose::Unrestricted),
        device_data: body.device_data,
    };
    let started = loop {
        let started = rules::start_binding(
            &person.data.lock(),
            new.clone(),
            &inner.keys(caller.0),
            &inner.config,
            inner.clock.now(),
            &mut inner.rng(),
        );
        match started {
            // Refused for a key another binding claimed: answered once that claim is queued
            // (its device's lock is taken, so the person's is released first), and tried
            // again if the claim was undone meanwhile.
            Err(refusal)
                if refusal.reason == Reason::KeyAlreadyBound
                    && !inner.bound_once_queued(caller.0, new.key.point()) => {}
            started => break started?,
        }
    };
    let device_id = started.device.id.clone();
    let seq = inner.send_otp(&started.send, body.language, app_signature);
    let partner = inner.partner_name(caller.0);
    inner.commit(&[
        Write::Device(partner, &started.device),
        Write::Challenge(partner, &started.challenge_id, &started.challenge),
        Write::SmsSeq(seq),
    ])?;
    Inner::insert(&inner.devices, caller.0, device_id.clone(), started.device);
    let challenge = SignatureChallenge {
        id: started.challenge_id.clone(),
        kind: Some(ChallengeKind::Signature),
        created_at: Some(started.challenge.attempts.created_at),
        expires_at: Some(started.challenge.attempts.expires_at),
    };
    Inner::insert(
        &inner.challenges,
        caller.0,
        started.challenge_id,
        started.challenge,
    );
    Ok(CreateDeviceResponse {
        id: device_id,
        challenge,
    })
}

/// `GET /v1/mfa/challenges/signatures/{id}`.
pub async fn get_signature_challenge(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<SignatureChallenge>, ApiError> {
    let id: ChallengeId = path_id(&id, "signature challenge")?;
    let entry = state
        .0
        .answerable(&state.0.challenges, caller.0, &id, "signature challenge")?;
    let c = entry.data.lock();
    c.binding_device(&id)?;
    Ok(Json(SignatureChallenge {
        id,
        kind: Some(ChallengeKind::Signature),
        created_at: Some(c.attempts.created_at),
        expires_at: Some(c.attempts.expires_at),
    }))
}

/// `PUT /v1/mfa/challenges/signatures/{id}`: the signed OTP; binds the device.
pub async fn answer_signature_challenge(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AnswerSignatureChallenge>,
) -> Result<StatusCode, ApiError> {
    answer_binding(&state.0, caller, &id, body, &*state.0)
}

/// Answers a binding challenge, verifying with `verifier` while no entity lock is held (see
/// `core::preverify`).
pub(crate) fn answer_binding(
    inner: &Inner,
    caller: Caller,
    id: &str,
    body: AnswerSignatureChallenge,
    verifier: &dyn Verifier,
) -> Result<StatusCode, ApiError> {
    loop {
        match answer_binding_once(inner, caller, id, &body, verifier)? {
            Answered::Bound => {
                inner.counters.bindings.fetch_add(1, Ordering::Relaxed);
                return Ok(StatusCode::NO_CONTENT);
            }
            // Answered once that claim is queued, and answered again if it was undone
            // meanwhile.
            Answered::KeyClaimed(refusal, point) => {
                if inner.bound_once_queued(caller.0, &point) {
                    return Err(refusal.into());
                }
            }
        }
    }
}

/// How one try at answering a binding ended, short of an error.
enum Answered {
    /// The device is bound.
    Bound,
    /// Refused because another device claimed its key (this point): the caller answers once
    /// that claim is queued, with no lock held.
    KeyClaimed(super::core::Refusal, Point),
}

/// [`answer_binding`], once.
fn answer_binding_once(
    inner: &Inner,
    caller: Caller,
    id: &str,
    body: &AnswerSignatureChallenge,
    verifier: &dyn Verifier,
) -> Result<Answered, ApiError> {
    check_device_data(body.device_data.as_deref())?;
    let id: ChallengeId = path_id(id, "signature challenge")?;
    let entry = inner.answerable(&inner.challenges, caller.0, &id, "signature challenge")?;
    let (device, to_verify) = inner.to_verify(
        caller.0,
        &entry,
        |c| c.binding_device(&id),
        |c, d, now| rules::binding_to_verify(c, d, &body.signature, now),
    )?;
    // Lock order (see `state`): challenge, person, device, bound_keys. A device's person
    // never changes, so it is read first.
    // No lock is held while the signature is verified.
    let verdicts = to_verify.check(verifier);
    let mut challenge = entry.data.lock();
    let person_id = device.data.lock().person_id.clone();
    let person = inner.owned(&inner.persons, caller.0, &person_id, "person")?;
    let mut person = person.data.lock();
    let mut device = device.data.lock();
    // The rule checks everything again under the locks (still open, same key, attempts
    // left, the number still verified, the device limit) and takes the verdict from
    // `verdicts`; the limit check, the key's registration and the device's verification
    // happen as one step under all three locks.
    let (now, keys) = env(inner, caller.0);
    let mut env = rules_env(inner, now, &keys);
    env.verifier = &verdicts;
    let saved = (
        inner.saved(&*challenge),
        inner.saved(&*device),
        inner.saved(&*person),
    );
    let bound = rules::answer_binding(
        &mut challenge,
        &mut device,
        &mut person,
        &body.signature,
        // Usually absent; cloned only for the try that stores it.
        body.device_data.clone(),
        env,
    );
    // Kept whatever the outcome: a wrong signature counts as a failed attempt.
    let partner = inner.partner_name(caller.0);
    let committed = inner.commit(&[
        Write::Challenge(partner, &id, &challenge),
        Write::Device(partner, &device),
        Write::Person(partner, &person),
    ]);
    if committed.is_err() {
        restore(&mut *challenge, saved.0);
        inner.restore_device(caller.0, &mut device, saved.1);
        restore(&mut *person, saved.2);
    }
    committed?;
    match bound {
        Ok(()) => Ok(Answered::Bound),
        Err(refusal) if refusal.reason == Reason::KeyAlreadyBound => match device.keys.first() {
            Some(key) => Ok(Answered::KeyClaimed(refusal, *key.key.point())),
            None => Err(refusal.into()),
        },
        Err(refusal) => Err(refusal.into()),
    }
}

/// `GET /v1/mfa/devices`: a person's bound devices, by page.
pub async fn list(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeviceListQuery>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let inner = &state.0;
    let person_id = query.person_id.ok_or_else(|| {
        ApiError::validation_error("`filter[person_id]` is required").field("filter[person_id]")
    })?;
    let size = query.page_size.unwrap_or(10);
    if !(1..=100).contains(&size) {
        return Err(ApiError::validation_error("`page[size]` must be 1-100").field("page[size]"));
    }
    let number = query.page_number.unwrap_or(1);
    if number == 0 {
        return Err(ApiError::validation_error("`page[number]` starts at 1").field("page[number]"));
    }
    let include_deleted = query.include_deleted.unwrap_or(false);
    let ids = {
        let person = inner.owned(&inner.persons, caller.0, &person_id, "person")?;
        let person = person.data.lock();
        person.devices.clone()
    };
    let devices: Vec<Device> = ids
        .iter()
        .filter_map(|id| inner.devices.get(id).map(|d| d.clone()))
        .map(|d| device_view(&d.data.lock()))
        .filter(|d| include_deleted || d.deleted_at.is_none())
        .skip((number as usize - 1) * size as usize)
        .take(size as usize)
        .collect();
    Ok(Json(devices))
}

/// `GET /v1/mfa/devices/{id}`.
pub async fn get(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Device>, ApiError> {
    let id: DeviceId = path_id(&id, "device")?;
    let entry = bound_device(&state.0, caller, &id)?;
    let view = device_view(&entry.data.lock());
    Ok(Json(view))
}

/// `DELETE /v1/mfa/devices/{id}`: deletes the device and all its keys.
pub async fn delete(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let inner = &state.0;
    let id: DeviceId = path_id(&id, "device")?;
    let entry = bound_device(inner, caller, &id)?;
    // A device's person never changes; read it first so the person's lock can be taken
    // before the device's (lock order, see `state`: person, device, bound_keys). The
    // deletion, its keys' release and the person's count then change as one step.
    let person_id = entry.data.lock().person_id.clone();
    let person = inner.owned(&inner.persons, caller.0, &person_id, "person")?;
    let mut person = person.data.lock();
    let mut d = entry.data.lock();
    let saved = (inner.saved(&*person), inner.saved(&*d));
    let keys = ReleaseAfterQueued::new(inner.keys(caller.0));
    rules::delete(&mut person, &mut d, &keys, inner.clock.now())?;
    let partner = inner.partner_name(caller.0);
    let committed = inner.commit(&[Write::Person(partner, &person), Write::Device(partner, &d)]);
    if committed.is_err() {
        restore(&mut *person, saved.0);
        inner.restore_device(caller.0, &mut d, saved.1);
    } else {
        keys.release_now();
    }
    committed?;
    Ok(StatusCode::NO_CONTENT)
}

/// A partner's bound keys whose releases wait until [`release_now`](Self::release_now): a
/// deletion releases its keys only once its rows are queued. Released first, a key could be
/// claimed by another device's binding, queued and committed before the deletion, and a
/// restart between the two commits would find the key bound to both devices.
struct ReleaseAfterQueued<'a> {
    keys: PartnerKeys<'a>,
    released: std::cell::RefCell<Vec<Point>>,
}

impl<'a> ReleaseAfterQueued<'a> {
    fn new(keys: PartnerKeys<'a>) -> Self {
        ReleaseAfterQueued {
            keys,
            released: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Releases the keys the rule released.
    fn release_now(self) {
        for point in self.released.into_inner() {
            self.keys.release(&point);
        }
    }
}

impl KeyIndex for ReleaseAfterQueued<'_> {
    fn is_bound(&self, point: &Point) -> bool {
        self.keys.is_bound(point)
    }
    fn claim(&self, point: &Point, device: &DeviceId) -> bool {
        self.keys.claim(point, device)
    }
    fn release(&self, point: &Point) {
        self.released.borrow_mut().push(*point);
    }
}

/// `POST /v1/mfa/devices/{id}/keys`: adds a key, signed by an existing one.
pub async fn add_key(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let id = add_key_to(&state.0, caller, &id, body, &*state.0)?;
    Ok((StatusCode::CREATED, Json(AddKeyResponse { id })))
}

/// Adds a key to the bound device `id`, verifying its signature with `verifier` while no
/// entity lock is held (see `core::preverify`): returns the new key's id.
pub(crate) fn add_key_to(
    inner: &Inner,
    caller: Caller,
    id: &str,
    body: AddKeyRequest,
    verifier: &dyn Verifier,
) -> Result<KeyId, ApiError> {
    let id: DeviceId = path_id(id, "device")?;
    check_key_type(body.key_type)?;
    let new_key = parse_key(&body.key, "key")?;
    let der = der_of(
        &body.device_signature.signature,
        "device_signature.signature",
    )?;
    let entry = bound_device(inner, caller, &id)?;
    let new = || NewKey {
        key: new_key.clone(),
        hex: &body.key,
        purpose: body.key_purpose,
        signer: body.device_signature.signature_key_purpose,
        der: &der,
    };
    // What to verify is read under the device's lock; the verification runs with no lock
    // held, and the rule below checks everything again under the lock (the signing key may
    // have changed meanwhile: then it is verified there and then).
    let to_verify = keys_rules::add_key_to_verify(&entry.data.lock(), &new())?;
    let verdicts = to_verify.check(verifier);
    let key_id = loop {
        let mut d = entry.data.lock();
        let (now, keys) = env(inner, caller.0);
        let mut env = rules_env(inner, now, &keys);
        env.verifier = &verdicts;
        let saved = inner.saved(&*d);
        match add_key_rule(&mut d, new(), env, &mut inner.rng()) {
            // Refused for a key another device claimed: answered once that claim is queued
            // (its device's lock is taken, so this one's is released first), and tried again
            // if the claim was undone meanwhile.
            Err(refusal) if refusal.reason == Reason::KeyAlreadyBound => {
                drop(d);
                if inner.bound_once_queued(caller.0, new_key.point()) {
                    return Err(refusal.into());
                }
            }
            added => {
                let key_id = added?;
                let committed = inner.commit(&[Write::Device(inner.partner_name(caller.0), &d)]);
                if committed.is_err() {
                    inner.restore_device(caller.0, &mut d, saved);
                }
                committed?;
                break key_id;
            }
        }
    };
    Ok(key_id)
}

/// `GET /v1/mfa/devices/{id}/keys`.
pub async fn list_keys(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DeviceKeys>, ApiError> {
    let id: DeviceId = path_id(&id, "device")?;
    let entry = bound_device(&state.0, caller, &id)?;
    let d = entry.data.lock();
    Ok(Json(DeviceKeys {
        device_id: Some(d.id.clone()),
        person_id: Some(d.person_id.clone()),
        name: Some(d.name.clone()),
        created_at: Some(d.created_at),
        deleted_at: d.deleted_at,
        keys: d
            .keys
            .iter()
            .map(|k| KeySummary {
                key_id: k.id.clone(),
                key_purpose: k.purpose,
                used_at: Some(k.used_at),
            })
            .collect(),
    }))
}

/// `GET /v1/mfa/devices/{id}/keys/{key_id}`.
pub async fn get_key(
    State(state): State<SandboxState>,
    caller: Caller,
    ApiPath((id, key_id)): ApiPath<(String, String)>,
) -> Result<Json<KeyDetail>, ApiError> {
    let id: DeviceId = path_id(&id, "device")?;
    let key_id: KeyId = path_id(&key_id, "key")?;
    let entry = bound_device(&state.0, caller, &id)?;
    let d = entry.data.lock();
    let k = d
        .keys
        .iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| ApiError::not_found(format!("device {id} has no key {key_id}")))?;
    Ok(Json(KeyDetail {
        key_id: k.id.clone(),
        key_purpose: k.purpose,
        created_at: Some(k.created_at),
        used_at: k.used_at,
    }))
}
