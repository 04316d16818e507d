//! The sandbox-only routes, standing for the phone's SIM rather than the bank: the SMS outbox,
//! health and counters. They need no bearer token and live under `/sandbox`, apart from `/v1`.

use super::error::{ApiError, ApiQuery};
use super::state::{SandboxState, SandboxStats};
use crate::api::{SmsMessage, SmsQuery};
use axum::Json;
use axum::extract::State;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// `GET /sandbox/sms?number=...&after=<seq>&wait_ms=<ms>`: messages with `seq > after`,
/// oldest first; with none yet and `wait_ms > 0`, waits up to `min(wait_ms, 60000)` ms, unless
/// [`max_long_polls`](super::SandboxConfig::max_long_polls) calls are waiting already: then it
/// answers at once with what there is.
pub async fn sms(
    State(state): State<SandboxState>,
    ApiQuery(query): ApiQuery<SmsQuery>,
) -> Result<Json<Vec<SmsMessage>>, ApiError> {
    let inner = &state.0;
    let slot = (query.wait_ms > 0)
        .then(|| LongPoll::enter(&inner.long_polls, inner.config.max_long_polls));
    let messages = match slot {
        Some(Some(_slot)) => {
            state
                .wait_sms(
                    &query.number,
                    query.after,
                    Duration::from_millis(query.wait_ms),
                )
                .await
        }
        Some(None) => {
            inner
                .counters
                .long_polls_capped
                .fetch_add(1, Ordering::Relaxed);
            state.sms_since(&query.number, query.after)
        }
        None => state.sms_since(&query.number, query.after),
    };
    Ok(Json(messages))
}

/// One of the `max_long_polls` waiting slots, given back when dropped (also when the client
/// goes away and the handler is cancelled).
struct LongPoll<'a>(&'a AtomicUsize);

impl<'a> LongPoll<'a> {
    /// Takes a slot, or `None` when all are taken.
    fn enter(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| LongPoll(count))
    }
}

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What `GET /sandbox/health` names as its service, so a phone can tell a vphone sandbox
/// (whose SMS outbox it may read) from any other server.
pub const HEALTH_SERVICE: &str = "vphone-sandbox";

/// `GET /sandbox/health`: `{"status": "ok", "service": "vphone-sandbox", "version"}`, with
/// `"state_file": "ok"` when the bank is kept in a file. Once that file has failed a commit
/// (the sandbox then refuses changes until restarted), 503 with `"status": "failed"` and
/// `"state_file": "failed"`, so a supervisor's health check restarts it.
pub async fn health(State(state): State<SandboxState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = serde_json::json!({
        "status": "ok",
        "service": HEALTH_SERVICE,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let Some(group) = &state.0.group else {
        return Json(body).into_response();
    };
    if group.failed() {
        body["status"] = "failed".into();
        body["state_file"] = "failed".into();
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        body["state_file"] = "ok".into();
        Json(body).into_response()
    }
}

/// What `GET /sandbox/stats` answers: the work counters and the faults injected per rule.
#[derive(Debug, serde::Serialize)]
pub struct StatsBody {
    /// The work counters.
    #[serde(flatten)]
    pub stats: SandboxStats,
    /// This sandbox process's random id, made when it started: counters with the same id
    /// come from one counter set (see [`SandboxState::instance`]).
    pub instance: String,
    /// Every fault rule in force with the faults it injected (empty without rules); the
    /// counts start over when the rules are replaced.
    pub faults: Vec<super::faults::FaultCount>,
    /// How many times the rules were replaced (`PUT` or `DELETE /sandbox/faults`) since the
    /// sandbox started.
    pub faults_generation: u64,
    /// Faults injected per rule text since the sandbox started, through every replacement:
    /// the rules in force and the last [`RETIRED_TOTALS_KEPT`](super::faults::RETIRED_TOTALS_KEPT)
    /// texts that left them.
    pub faults_total: std::collections::BTreeMap<String, u64>,
    /// Faults injected by older retired rule texts, which `faults_total` no longer lists.
    pub faults_total_retired: u64,
}

/// `GET /sandbox/stats`: the work counters and the faults injected per rule.
pub async fn stats(State(state): State<SandboxState>) -> Json<StatsBody> {
    let totals = state.fault_totals();
    Json(StatsBody {
        stats: state.stats(),
        instance: state.instance().to_owned(),
        faults: state.fault_counts(),
        faults_generation: totals.generation,
        faults_total: totals.by_text,
        faults_total_retired: totals.retired,
    })
}
