//! The phone's parts over HTTP, for rigs whose backend sits between the phone and the bank
//! (the routes of `vphone phone new-key|public-key|sign-message|otp|adopt`): make a key
//! without telling any bank, read its public key in the format a backend wants, sign a
//! message (the phone's policy answers a restricted key's prompt), read the newest SMS code,
//! and record the device a backend bound so the flow routes work on it.

use super::error::{Body, ControlError, QueryArgs};
use super::phones::Hosted;
use super::{ControlState, Routes, run_blocking};
use crate::api::{DeviceId, KeyId, KeyPurpose, PersonId, PhoneNumber};
use crate::phone::{Adoption, Inbox, Marker, PhoneName, ReceivedOtp, SavedPhone};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use vphone_keystore::{KeyLabel, PublicKeyFormat, SignatureFormat};

/// How long `GET .../otp` waits when `wait_ms` is not given.
const DEFAULT_OTP_WAIT: Duration = Duration::from_secs(30);

fn bad(what: &str, e: impl std::fmt::Display) -> ControlError {
    ControlError::BadRequest(format!("{what}: {e}"))
}

fn key_format(s: Option<&str>) -> Result<PublicKeyFormat, ControlError> {
    s.map_or(Ok(PublicKeyFormat::Hex), |f| {
        f.parse().map_err(|e| bad("format", e))
    })
}

/// `{"key", "format", "public_key"}`; a JWK is embedded as an object.
fn key_answer(label: Option<KeyLabel>, format: PublicKeyFormat, public_key: &str) -> Value {
    let key = match format {
        PublicKeyFormat::Jwk => {
            serde_json::from_str(public_key).unwrap_or_else(|_| Value::from(public_key))
        }
        _ => Value::from(public_key),
    };
    json!({"key": label, "format": format.as_str(), "public_key": key})
}

/// Body of `POST /phones/{name}/new-key`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKeyArg {
    /// `unrestricted` or `restricted`.
    pub purpose: KeyPurpose,
    /// Where the phone's codes arrive; recorded when the phone has no number yet.
    pub number: Option<String>,
    /// hex (default), spki-base64, pem or jwk.
    pub format: Option<String>,
}

/// `POST /phones/{name}/new-key`: makes and saves a key without telling any bank; creates
/// the phone (no person, no device) if it does not exist.
async fn new_key(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(req): Body<NewKeyArg>,
) -> Result<(StatusCode, Json<Value>), ControlError> {
    let format = key_format(req.format.as_deref())?;
    let number = req
        .number
        .as_deref()
        .map(PhoneNumber::parse)
        .transpose()
        .map_err(|e| bad("number", e))?;
    let phones = state.phones();
    let phone_name = PhoneName::parse(&name)?;
    if !phones.home().exists(&phone_name) {
        let (home, passphrase) = (phones.home().clone(), phones.passphrase());
        let api_base = Some(state.bank().client.base_url().to_owned());
        let first_number = number.clone();
        // Sealing a new file runs Argon2id: not on an async worker.
        run_blocking(async move {
            SavedPhone::create(&home, phone_name, passphrase, first_number, api_base).map(|_| ())
        })
        .await??;
    }
    let h = phones.get(&name).await?;
    let run = h.clone();
    let label = run_blocking(async move {
        let mut phone = run.phone.write().await;
        if let Some(number) = number {
            match &phone.profile().number {
                Some(old) if old != &number => {
                    return Err(ControlError::Conflict(format!(
                        "phone {} already has number {old}; leave out number, or pick another phone name",
                        run.name
                    )));
                }
                Some(_) => {}
                None => phone.set_number(number),
            }
        }
        let label = phone.new_key(req.purpose);
        run.refresh(&phone);
        Ok(label?)
    })
    .await??;
    let public_key = h.phone.read().await.public_key(label.purpose, format)?;
    Ok((
        StatusCode::CREATED,
        Json(key_answer(Some(label), format, &public_key)),
    ))
}

/// Query of `GET /phones/{name}/public-key`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyQuery {
    /// The key (default: unrestricted).
    pub purpose: Option<KeyPurpose>,
    /// hex (default), spki-base64, pem or jwk.
    pub format: Option<String>,
}

/// `GET /phones/{name}/public-key`.
async fn public_key(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<PublicKeyQuery>,
) -> Result<Json<Value>, ControlError> {
    let format = key_format(q.format.as_deref())?;
    let purpose = q.purpose.unwrap_or(KeyPurpose::Unrestricted);
    let h = state.phones().get(&name).await?;
    let phone = h.phone.read().await;
    let public_key = phone.public_key(purpose, format)?;
    Ok(Json(key_answer(
        phone.key_label(purpose),
        format,
        &public_key,
    )))
}

/// Body of `POST /phones/{name}/sign-message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignMessageArg {
    /// The key that signs.
    pub purpose: KeyPurpose,
    /// The message; its UTF-8 bytes are signed (SHA256withECDSA).
    pub message: String,
    /// hex (DER, default), base64 (DER) or raw-base64 (r||s).
    pub format: Option<String>,
}

/// `POST /phones/{name}/sign-message`: a restricted key asks the phone's prompt first (its
/// policy, or a pending approval in manual mode), as the flows do.
async fn sign_message(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(req): Body<SignMessageArg>,
) -> Result<Json<Value>, ControlError> {
    let format: SignatureFormat = req
        .format
        .as_deref()
        .map_or(Ok(SignatureFormat::Hex), str::parse)
        .map_err(|e| bad("format", e))?;
    let h = state.phones().get(&name).await?;
    let run = h.clone();
    // The prompt may wait for a decision made through the API: not on an async worker.
    let (signature, label) = run_blocking(async move {
        let phone = run.phone.read().await;
        let signature = phone.sign_message(req.purpose, req.message.as_bytes(), format);
        signature.map(|s| (s, phone.key_label(req.purpose)))
    })
    .await??;
    Ok(Json(
        json!({"key": label, "format": format.as_str(), "signature": signature}),
    ))
}

/// Query of `GET /phones/{name}/otp`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtpQuery {
    /// Only a code that arrived after this marker (from `GET .../otp/marker`).
    pub since: Option<u64>,
    /// How long to wait for a code when none is there (default 30000, at most 60000).
    pub wait_ms: Option<u64>,
}

/// The phone's inbox, apart from the phone, so waiting for a code holds no lock a flow needs.
fn inbox_of(state: &ControlState, h: &Hosted) -> Result<Inbox, ControlError> {
    let number = h.number().ok_or_else(|| {
        ControlError::Conflict(format!(
            "phone {} has no number; give it one with POST /phones/{}/new-key {{\"number\": ...}}",
            h.name, h.name
        ))
    })?;
    Ok(Inbox::new(number, state.bank().source.clone()))
}

fn otp_failed(source: crate::phone::InboxError) -> ControlError {
    ControlError::Phone(crate::phone::PhoneError::Inbox {
        step: "otp: read inbox",
        source,
    })
}

/// `GET /phones/{name}/otp`: the newest code that reached the phone's number after `since`
/// (any time, without it), waiting up to `wait_ms` if none has.
async fn otp(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<OtpQuery>,
) -> Result<Json<ReceivedOtp>, ControlError> {
    let h = state.phones().get(&name).await?;
    let inbox = inbox_of(&state, &h)?;
    let wait = q
        .wait_ms
        .map_or(DEFAULT_OTP_WAIT, Duration::from_millis)
        .min(super::events::MAX_WAIT);
    let code = inbox
        .newest_otp(Marker(q.since.unwrap_or(0)), wait)
        .await
        .map_err(otp_failed)?;
    Ok(Json(ReceivedOtp {
        code,
        marker: inbox.seen(),
    }))
}

/// `GET /phones/{name}/otp/marker`: the inbox's end now; take it before the SMS is sent.
async fn otp_marker(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ControlError> {
    let h = state.phones().get(&name).await?;
    let inbox = inbox_of(&state, &h)?;
    let marker = inbox.marker().await.map_err(otp_failed)?;
    Ok(Json(json!({"marker": marker.0})))
}

/// Body of `POST /phones/{name}/adopt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdoptArg {
    /// The bank's id of the device the backend bound.
    pub device_id: String,
    /// The bank's ids of the phone's keys, by purpose (the rest are read by `GET .../keys`).
    #[serde(default)]
    pub key_ids: BTreeMap<KeyPurpose, String>,
    /// The person the device belongs to (needed by `GET .../devices`).
    pub person_id: Option<String>,
}

/// `POST /phones/{name}/adopt`: records what the backend did at the bank.
async fn adopt(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(req): Body<AdoptArg>,
) -> Result<Json<Value>, ControlError> {
    let device_id = DeviceId::from_user(&req.device_id).map_err(|e| bad("device_id", e))?;
    let mut key_ids = Vec::new();
    for (purpose, id) in req.key_ids {
        let id = KeyId::from_user(&id).map_err(|e| bad("key_ids", e))?;
        key_ids.push((purpose, id));
    }
    let person_id = req
        .person_id
        .as_deref()
        .map(PersonId::from_user)
        .transpose()
        .map_err(|e| bad("person_id", e))?;
    let h = state.phones().get(&name).await?;
    let run: Arc<Hosted> = h.clone();
    run_blocking(async move {
        let mut phone = run.phone.write().await;
        let r = phone.adopt(Adoption {
            device_id: Some(device_id),
            key_ids,
            person_id,
        });
        run.refresh(&phone);
        r
    })
    .await??;
    Ok(Json(json!({"phone": h.view()})))
}

/// The toolkit routes.
pub fn routes(r: Routes) -> Routes {
    r.add(Method::POST, "/phones/{name}/new-key", post(new_key))
        .add(Method::GET, "/phones/{name}/public-key", get(public_key))
        .add(
            Method::POST,
            "/phones/{name}/sign-message",
            post(sign_message),
        )
        .add(Method::GET, "/phones/{name}/otp", get(otp))
        .add(Method::GET, "/phones/{name}/otp/marker", get(otp_marker))
        .add(Method::POST, "/phones/{name}/adopt", post(adopt))
}
