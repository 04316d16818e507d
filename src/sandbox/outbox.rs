//! The sandbox-only routes, standing for the phone's SIM rather than the bank: the SMS outbox,
//! health and counters. They need no bearer token and live under `/sandbox`, apart from `/v1`.

use super::error::{ApiError, ApiQuery};
use super::state::{SandboxState, SandboxStats};
use crate::api::{SmsMessage, SmsQuery};
use axum::Json;
use axum::extract::State;
use std::time::Duration;

/// `GET /sandbox/sms?number=...&after=<seq>&wait_ms=<ms>`: messages with `seq > after`,
/// oldest first; with none yet and `wait_ms > 0`, waits up to `min(wait_ms, 60000)` ms.
pub async fn sms(
    State(state): State<SandboxState>,
    ApiQuery(query): ApiQuery<SmsQuery>,
) -> Result<Json<Vec<SmsMessage>>, ApiError> {
    let messages = if query.wait_ms == 0 {
        state.sms_since(&query.number, query.after)
    } else {
        state
            .wait_sms(
                &query.number,
                query.after,
                Duration::from_millis(query.wait_ms),
            )
            .await
    };
    Ok(Json(messages))
}

/// What `GET /sandbox/health` names as its service, so a phone can tell a vphone sandbox
/// (whose SMS outbox it may read) from any other server.
pub const HEALTH_SERVICE: &str = "vphone-sandbox";

/// `GET /sandbox/health`: `{"status": "ok", "service": "vphone-sandbox", "version"}`.
pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "service": HEALTH_SERVICE,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `GET /sandbox/stats`: the work counters.
pub async fn stats(State(state): State<SandboxState>) -> Json<SandboxStats> {
    Json(state.stats())
}
