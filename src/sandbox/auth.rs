//! The OAuth2 client-credentials token endpoint and the bearer-token check of `/v1` calls.

use super::error::{ApiError, read_body};
use super::state::{PartnerIdx, SandboxState, TokenEntry};
use crate::api::{AccessToken, TokenResponse};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::RngCore;

/// The partner whose bearer token authorized the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller(pub(crate) PartnerIdx);

/// Tokens kept before expired ones are swept.
const SWEEP_ABOVE: usize = 10_000;

fn basic_credentials(parts: &axum::http::HeaderMap) -> Option<(String, String)> {
    let value = parts.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `POST /oauth2/token` and `POST /oauth/token`.
pub async fn token(State(state): State<SandboxState>, req: Request) -> Result<Response, ApiError> {
    let inner = &state.0;
    let Some((client_id, secret)) = basic_credentials(req.headers()) else {
        return Err(ApiError::invalid_client(
            "send the client id and secret with HTTP Basic authentication",
        ));
    };
    let partner = inner
        .config
        .partners
        .iter()
        .position(|p| {
            p.client_id == client_id
                && crate::api::same_secret(p.client_secret.as_bytes(), secret.as_bytes())
        })
        .ok_or_else(|| {
            ApiError::invalid_client("unknown client id or wrong secret; check the credentials")
        })?;
    let form_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(ApiError::unsupported_media_type(
            "send the token request as `application/x-www-form-urlencoded`",
        ));
    }
    let body = read_body(req).await?;
    let mut grant = None;
    let mut scope = None;
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "grant_type" => grant = Some(v.into_owned()),
            "scope" => scope = Some(v.into_owned()),
            _ => {}
        }
    }
    if grant.as_deref() != Some("client_credentials") {
        return Err(
            ApiError::invalid_grant("send `grant_type=client_credentials`").field("grant_type"),
        );
    }
    if scope.as_deref().is_some_and(|s| s != "partners") {
        return Err(ApiError::invalid_grant("the only scope is `partners`").field("scope"));
    }
    // Validated: at most u16::MAX partners.
    let partner = PartnerIdx::try_from(partner).unwrap_or(PartnerIdx::MAX);
    inner.admit_token(partner)?;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let now = inner.clock.now();
    let lifetime = inner.config.token_lifetime.as_secs();
    if inner.tokens.len() > SWEEP_ABOVE {
        inner.tokens.retain(|_, t| t.expires_at > now);
    }
    inner.tokens.insert(
        token.clone(),
        TokenEntry {
            partner,
            expires_at: now.plus_seconds(i64::try_from(lifetime).unwrap_or(i64::MAX / 2)),
        },
    );
    let body = TokenResponse {
        access_token: AccessToken::new(token),
        token_type: "bearer".to_owned(),
        // One second of slack, as the bank does (3599 for an hour).
        expires_in: Some(lifetime.saturating_sub(1)),
        scope: Some("partners".to_owned()),
    };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

impl FromRequestParts<SandboxState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SandboxState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::unauthorized(
                "send `Authorization: Bearer <token>`; get a token from POST /oauth2/token",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
            })?;
        let now = state.0.clock.now();
        match state.0.tokens.get(token) {
            Some(entry) if entry.expires_at > now => Ok(Caller(entry.partner)),
            Some(_) => Err(ApiError::invalid_token(
                "the access token expired; get a new one from POST /oauth2/token",
            )),
            None => Err(ApiError::invalid_token(
                "the access token is unknown; get one from POST /oauth2/token",
            )),
        }
    }
}
