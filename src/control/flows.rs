//! The flows of a hosted phone over HTTP: bind, add key, approve, sign a challenge by id,
//! SMS challenge, change the person, delete the device; plus the bank's view of the
//! phone's devices and keys. Each answers the library's typed outcome (with its per-step
//! timings) plus `total_ms`, and raises `flow_finished` and the event of what changed.

use super::error::{Body, ControlError, QueryArgs};
use super::events::EventHub;
use super::phones::Hosted;
use super::{ControlState, Routes, run_blocking};
use crate::api::{ChallengeId, KeyPurpose, Otp, UpdatePerson};
use crate::phone::{Confirmation, PersonChange, PhoneError, PhoneName, Timings};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A flow's outcome as answered: the library's outcome, flattened, plus the total time.
#[derive(Debug, Serialize)]
pub struct Done<T> {
    /// The library's outcome.
    #[serde(flatten)]
    pub outcome: T,
    /// The sum of the outcome's step times, in milliseconds.
    pub total_ms: f64,
}

fn ms(t: &Timings) -> f64 {
    (t.total().as_secs_f64() * 1e6).round() / 1e3
}

/// Raises `flow_finished` with `ok: false` and the error in the API's error shape.
pub(super) fn publish_failure(events: &EventHub, phone: &PhoneName, flow: &str, e: &PhoneError) {
    events.publish(
        Some(phone.as_str()),
        "flow_finished",
        serde_json::json!({"flow": flow, "ok": false, "error": super::error::phone_error_json(e)}),
    );
}

/// Renders a finished flow: the response, `flow_finished`, and `extra` (the event of what
/// changed, if any).
fn finish<T: Serialize>(
    state: &ControlState,
    h: &Hosted,
    flow: &'static str,
    result: Result<T, PhoneError>,
    timings: impl Fn(&T) -> &Timings,
    extra: impl Fn(&T) -> Option<(&'static str, serde_json::Value)>,
) -> Result<Json<Done<T>>, ControlError> {
    let events = state.events();
    match result {
        Ok(outcome) => {
            let total_ms = ms(timings(&outcome));
            if let Some((kind, data)) = extra(&outcome) {
                events.publish(Some(h.name.as_str()), kind, data);
            }
            events.publish(
                Some(h.name.as_str()),
                "flow_finished",
                serde_json::json!({"flow": flow, "ok": true, "total_ms": total_ms, "outcome": outcome}),
            );
            Ok(Json(Done { outcome, total_ms }))
        }
        Err(e) => {
            publish_failure(events, &h.name, flow, &e);
            Err(e.into())
        }
    }
}

async fn hosted(state: &ControlState, name: &str) -> Result<Arc<Hosted>, ControlError> {
    let h = state.phones().get(name).await?;
    h.ensure_here()?;
    Ok(h)
}

/// `POST /phones/{name}/bind`.
async fn bind(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Done<crate::phone::BindOutcome>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result = run_blocking(async move {
        let mut phone = run.phone.write().await;
        let r = phone.bind().await;
        run.refresh(&phone);
        r
    })
    .await?;
    finish(
        &state,
        &h,
        "bind",
        result,
        |o| &o.timings,
        |o| {
            Some((
                "device_bound",
                serde_json::json!({"device_id": o.device_id, "key_purpose": o.key_purpose}),
            ))
        },
    )
}

/// Body of `POST /phones/{name}/keys` and `POST /phones/{name}/approve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeArg {
    /// `unrestricted` or `restricted` (default: add-key adds the one the phone lacks;
    /// approve lets the bank choose).
    pub purpose: Option<KeyPurpose>,
}

/// `POST /phones/{name}/keys`: adds a key to the bound device.
async fn add_key(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(arg): Body<PurposeArg>,
) -> Result<Json<Done<crate::phone::AddKeyOutcome>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result = run_blocking(async move {
        let mut phone = run.phone.write().await;
        let r = phone.add_key(arg.purpose).await;
        run.refresh(&phone);
        r
    })
    .await?;
    finish(
        &state,
        &h,
        "add_key",
        result,
        |o| &o.timings,
        |o| {
            Some((
                "key_added",
                serde_json::json!({"key_id": o.key_id, "key_purpose": o.key_purpose}),
            ))
        },
    )
}

/// `GET /phones/{name}/keys`: the bound device's keys as the bank lists them (settles a
/// pending key).
async fn keys(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<crate::api::DeviceKeys>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result = run_blocking(async move {
        let mut phone = run.phone.write().await;
        let r = phone.keys().await;
        run.refresh(&phone);
        r
    })
    .await?;
    Ok(Json(result?))
}

/// Query of `GET /phones/{name}/devices`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesArgs {
    /// Include deleted devices.
    pub include_deleted: Option<bool>,
}

/// `GET /phones/{name}/devices`: the person's bound devices as the bank lists them.
async fn devices(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<DevicesArgs>,
) -> Result<Json<Vec<crate::api::Device>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let phone = h.phone.read().await;
    Ok(Json(
        phone.devices(q.include_deleted.unwrap_or(false)).await?,
    ))
}

/// `POST /phones/{name}/approve`: creates a device-signing challenge and answers it.
async fn approve(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(arg): Body<PurposeArg>,
) -> Result<Json<Done<crate::phone::SignOutcome>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result =
        run_blocking(async move { run.phone.read().await.approve(arg.purpose).await }).await?;
    finish(&state, &h, "approve", result, |o| &o.timings, |_| None)
}

/// Body of `POST /phones/{name}/sign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignArg {
    /// The device-signing challenge to answer.
    pub challenge_id: ChallengeId,
}

/// `POST /phones/{name}/sign`: answers device-signing challenge `challenge_id` now.
async fn sign(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(arg): Body<SignArg>,
) -> Result<Json<Done<crate::phone::SignOutcome>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result = run_blocking(async move {
        run.phone
            .read()
            .await
            .sign_challenge(&arg.challenge_id)
            .await
    })
    .await?;
    finish(&state, &h, "sign", result, |o| &o.timings, |_| None)
}

/// `POST /phones/{name}/sms-challenge`: asks for an SMS challenge and answers it.
async fn sms_challenge(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Done<crate::phone::SmsOutcome>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result = run_blocking(async move { run.phone.read().await.sms_challenge().await }).await?;
    finish(
        &state,
        &h,
        "sms_challenge",
        result,
        |o| &o.timings,
        |_| None,
    )
}

/// How a change is confirmed.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Signed by the bound device.
    #[default]
    Device,
    /// A TAN by SMS.
    Sms,
    /// The static TAN 212212.
    Static,
}

/// Body of `POST /phones/{name}/change`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeArg {
    /// New first name.
    pub first_name: Option<String>,
    /// New last name.
    pub last_name: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// `device` (default), `sms` or `static`.
    #[serde(default)]
    pub via: Via,
}

/// `POST /phones/{name}/change`: changes the person, confirmed as `via` says.
async fn change(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(arg): Body<ChangeArg>,
) -> Result<Json<Done<PersonChange>>, ControlError> {
    if arg.first_name.is_none() && arg.last_name.is_none() && arg.email.is_none() {
        return Err(ControlError::BadRequest(
            "name a change: first_name, last_name or email".into(),
        ));
    }
    let h = hosted(&state, &name).await?;
    let via = match arg.via {
        Via::Device => Confirmation::DeviceSigning,
        Via::Sms => Confirmation::Sms,
        Via::Static => Confirmation::Static(
            Otp::parse(crate::sandbox::sms::STATIC_OTP)
                .map_err(|e| ControlError::Internal(format!("static TAN: {e}")))?,
        ),
    };
    let update = UpdatePerson {
        first_name: arg.first_name,
        last_name: arg.last_name,
        email: arg.email,
    };
    let run = h.clone();
    let result =
        run_blocking(async move { run.phone.read().await.change_person(&update, &via).await })
            .await?;
    finish(
        &state,
        &h,
        "change",
        result,
        |o| o.timings(),
        |o| match o {
            PersonChange::Confirmed(o) => Some((
                "person_changed",
                serde_json::json!({"change_request_id": o.change_request_id, "delivery_method": o.delivery_method}),
            )),
            PersonChange::AppliedWithoutConfirmation { .. } => Some((
                "person_changed",
                serde_json::json!({"applied_without_confirmation": true}),
            )),
        },
    )
}

/// `DELETE /phones/{name}/device`: deletes the phone's device at the bank; the phone
/// forgets its keys.
async fn delete_device(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Done<crate::phone::DeleteOutcome>>, ControlError> {
    let h = hosted(&state, &name).await?;
    let run = h.clone();
    let result = run_blocking(async move {
        let mut phone = run.phone.write().await;
        let r = phone.delete_device().await;
        run.refresh(&phone);
        r
    })
    .await?;
    finish(
        &state,
        &h,
        "delete_device",
        result,
        |o| &o.timings,
        |o| {
            Some((
                "device_deleted",
                serde_json::json!({"device_id": o.device_id, "already_deleted": o.already_deleted}),
            ))
        },
    )
}

/// The flow routes.
pub fn routes(r: Routes) -> Routes {
    r.add(Method::POST, "/phones/{name}/bind", post(bind))
        .add(Method::POST, "/phones/{name}/keys", post(add_key))
        .add(Method::GET, "/phones/{name}/keys", get(keys))
        .add(Method::GET, "/phones/{name}/devices", get(devices))
        .add(
            Method::DELETE,
            "/phones/{name}/device",
            delete(delete_device),
        )
        .add(Method::POST, "/phones/{name}/approve", post(approve))
        .add(Method::POST, "/phones/{name}/sign", post(sign))
        .add(
            Method::POST,
            "/phones/{name}/sms-challenge",
            post(sms_challenge),
        )
        .add(Method::POST, "/phones/{name}/change", post(change))
}
