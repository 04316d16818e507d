//! `GET/PUT/DELETE /sandbox/faults`: the fault rules at run time, behind the admin token of
//! the sandbox's config ([`AdminToken`]), never a partner's token.
//!
//! - `GET` lists the rules with the faults each injected and the seed:
//!   `{"seed": 7, "rules": [{"rule": "...", "injected": 3}]}`.
//! - `PUT` with `{"rules": ["PUT /v1/mfa/challenges/*: status=503 p=0.05"], "seed": 7}`
//!   replaces every rule (their counts start at zero); `seed` is optional and restarts the
//!   generator. Every rule is checked first: one bad rule refuses the call and changes
//!   nothing.
//! - `DELETE` removes every rule.
//!
//! The token goes in `Authorization: Bearer <admin token>`. Without one: 401 `unauthorized`;
//! a wrong one: 401 `invalid_token`; a partner's access token: 403 `forbidden`; no admin token
//! configured: 403 `admin_disabled`, saying how to turn it on.

use super::{FaultCount, FaultRule};
use crate::api::ErrorCode;
use crate::sandbox::error::{ApiError, parse_json};
use crate::sandbox::state::SandboxState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// The secret that opens `/sandbox/faults`. Compared in constant time; `Debug` hides it and
/// it is wiped when dropped.
#[derive(Clone)]
pub struct AdminToken(zeroize::Zeroizing<String>);

impl AdminToken {
    /// A token from its text (surrounding whitespace, such as a file's final newline, is
    /// dropped); refused when shorter than [`MIN_ADMIN_TOKEN_LEN`] or holding whitespace.
    pub fn new(text: &str) -> Result<AdminToken, String> {
        let text = text.trim();
        if text.len() < MIN_ADMIN_TOKEN_LEN {
            return Err(format!(
                "the admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters"
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the admin token cannot contain spaces or control characters".into());
        }
        Ok(AdminToken(zeroize::Zeroizing::new(text.to_owned())))
    }

    /// Whether `offered` is this token, in time that does not depend on where they differ
    /// nor on their lengths ([`crate::api::same_secret`]).
    pub fn matches(&self, offered: &str) -> bool {
        crate::api::same_secret(self.0.as_bytes(), offered.as_bytes())
    }

    /// Whether the token is this text (for refusing a config whose admin token is also a
    /// partner's secret).
    pub fn is(&self, text: &str) -> bool {
        self.matches(text)
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// What `GET /sandbox/faults` (and `PUT`, `DELETE`) answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultsBody {
    /// The seed fault decisions draw from.
    pub seed: u64,
    /// Every rule with the faults it injected.
    pub rules: Vec<FaultCount>,
}

/// The body of `PUT /sandbox/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutFaults {
    rules: Vec<String>,
    #[serde(default)]
    seed: Option<u64>,
}

/// Lets the call through only with the admin token.
fn authorize(state: &SandboxState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(admin) = &state.config().admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Other("admin_disabled".to_owned()),
            "Admin Disabled",
            "the fault admin endpoint is off because no admin token is configured; set admin_token or admin_token_file in the sandbox config (see sandbox.example.toml), then send it as Authorization: Bearer <token>",
        ));
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "send the sandbox's admin token as Authorization: Bearer <token>",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be Bearer <admin token>")
        })?;
    if admin.matches(token) {
        return Ok(());
    }
    if state.0.tokens.contains_key(token) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Other("forbidden".to_owned()),
            "Forbidden",
            "a partner's access token cannot manage fault rules; use the sandbox's admin token",
        ));
    }
    Err(ApiError::invalid_token(
        "the admin token is wrong; use the one in the sandbox config",
    ))
}

fn listing(state: &SandboxState) -> Json<FaultsBody> {
    Json(FaultsBody {
        seed: state.faults_seed(),
        rules: state.fault_counts(),
    })
}

/// `GET /sandbox/faults`: the rules with their counts and the seed.
pub async fn get(
    State(state): State<SandboxState>,
    headers: HeaderMap,
) -> Result<Json<FaultsBody>, ApiError> {
    authorize(&state, &headers)?;
    Ok(listing(&state))
}

/// `PUT /sandbox/faults`: replaces every rule, all checked first.
pub async fn put(
    State(state): State<SandboxState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<FaultsBody>, ApiError> {
    authorize(&state, &headers)?;
    let put: PutFaults = parse_json(&body)?;
    let rules = put
        .rules
        .iter()
        .enumerate()
        .map(|(i, text)| {
            FaultRule::parse(text)
                .map_err(|e| ApiError::validation_error(e.to_string()).field(format!("rules[{i}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    tracing::warn!(
        rules = rules.len(),
        seed = ?put.seed,
        "fault rules replaced through /sandbox/faults"
    );
    for rule in &rules {
        tracing::info!(rule = %rule, "fault rule");
    }
    state.0.faults.replace(rules, put.seed);
    Ok(listing(&state))
}

/// `DELETE /sandbox/faults`: removes every rule.
pub async fn delete(
    State(state): State<SandboxState>,
    headers: HeaderMap,
) -> Result<Json<FaultsBody>, ApiError> {
    authorize(&state, &headers)?;
    state.0.faults.replace(Vec::new(), None);
    tracing::warn!("fault rules cleared through /sandbox/faults");
    Ok(listing(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_token_matches_only_itself_and_never_prints() {
        let t = AdminToken::new("correct-horse-battery\n").unwrap();
        assert!(t.matches("correct-horse-battery"));
        assert!(!t.matches("correct-horse-batterY"));
        assert!(!t.matches("correct-horse-battery-staple"));
        assert!(!t.matches(""));
        assert!(!format!("{t:?}").contains("horse"));
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("has a space inside it").is_err());
    }
}
