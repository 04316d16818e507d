//! The variant bank: the real, strict sandbox behind a thin layer that answers every call
//! the way other implementations of the API do (see API.md, Conventions), so tests can show
//! that the phone, the demo and the fleet work against servers we did not write.
//!
//! Every request is mapped back (variant ids to real ids) and handed to the real sandbox
//! router ([`super::router`]), which validates it and verifies every signature as always;
//! only its answer is reshaped. The variants, by name (tests and `vphone probe` may name
//! them):
//!
//! - **`opaque-ids`**: every id the sandbox mints is shown as `<kind>Id-<32 hex>-<32 hex>`
//!   (70-80 characters, e.g. `mobileNumberId-<32 hex>-<32 hex>`); the bank accepts them
//!   back in paths, queries and bodies.
//! - **`unknown-fields`**: every answer object carries fields the API does not document
//!   (`_links`, `meta`).
//! - **`missing-unused-fields`**: `created_at`, `updated_at`, `verified` and `used_at` are
//!   left out of every answer.
//! - **`status-200`**: 201 and 202 are answered as 200; challenge answers (`PUT`) as 200
//!   with a small JSON body instead of 204.
//! - **`lowercase-status`**: status words in lowercase (`completed`,
//!   `authorization_required`).
//! - **`keys-as-device-wrappers`**: `GET /v1/mfa/devices/{id}/keys` answers
//!   `[{person_id, device_id, name, keys:[{key_id, key_purpose}]}]`.
//! - **`challenge-without-purpose`**: device-signing challenges come without `key_purpose`.
//! - **`confirmation-202`**: `POST /v1/change_requests/{id}/confirm` answers 202
//!   `{id, status:"completed", response_code, response_body}` (no `updated_at`).
//! - **`patch-applied`**: `PATCH /v1/persons/{id}` is carried out at once (the layer
//!   authorizes and confirms the sandbox's change request with the static TAN) and answered
//!   200 with the updated person, no change request.
//! - **`flat-errors`**: errors in Solaris' flat shape `{id, status, code, title, detail,
//!   error_code}` instead of the `errors` array.
//! - **`html-404`**: calls it does not offer (SMS challenges, `/v1/mfa/challenges/sms...`,
//!   and unknown routes) answer 404 with an Express-style HTML page
//!   (`<pre>Cannot POST /v1/mfa/challenges/sms</pre>`).
//!
//! The token endpoints answer as the sandbox does. The sandbox's own `/sandbox/*` routes
//! (SMS outbox, health) are served unless [`VariantOptions::outbox`] is off, in which case
//! they answer the HTML 404 too, as a foreign server would: then only the test number
//! `+15550101` (OTP `212212`) can bind.

mod ids;
mod shape;

use super::sms::STATIC_OTP;
use super::{SandboxConfig, SandboxHandle, SandboxState};
use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ids::IdMap;
use serde_json::{Value, json};
use shape::Call;
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

/// The largest body the layer reads (the sandbox itself refuses bodies over 64 KiB).
const MAX_BODY: usize = 1 << 20;

/// What the variant bank serves besides the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantOptions {
    /// Serve the sandbox's `/sandbox/*` routes (SMS outbox, health). On by default so tests
    /// can read OTPs; off, the bank looks like a server that is not a vphone sandbox.
    pub outbox: bool,
}

impl Default for VariantOptions {
    fn default() -> Self {
        VariantOptions { outbox: true }
    }
}

#[derive(Clone)]
struct Variant {
    inner: Router,
    ids: Arc<IdMap>,
    options: VariantOptions,
}

/// The variant bank's router over a sandbox with `state`.
pub fn router(state: SandboxState, options: VariantOptions) -> Router {
    let variant = Variant {
        inner: super::router(state),
        ids: Arc::new(IdMap::default()),
        options,
    };
    Router::new().fallback(answer).with_state(variant)
}

/// Serves a fresh variant bank with `config` on `127.0.0.1:0`; its
/// [`SandboxHandle::base_url`] is the address to point a phone at.
pub async fn spawn(config: SandboxConfig) -> std::io::Result<SandboxHandle> {
    spawn_with(
        SandboxState::new(config),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        VariantOptions::default(),
    )
    .await
}

/// Serves a variant bank over `state` on `addr`, with the sandbox's background sweep.
pub async fn spawn_with(
    state: SandboxState,
    addr: SocketAddr,
    options: VariantOptions,
) -> std::io::Result<SandboxHandle> {
    let app = router(state.clone(), options);
    super::serve(state, addr, app).await
}

async fn answer(State(v): State<Variant>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    if path.starts_with("/oauth") || (v.options.outbox && path.starts_with("/sandbox/")) {
        return forward(&v.inner, req).await.into_response();
    }
    let real_path = v.ids.real_path(&path);
    let call = Call::of(method.as_str(), &real_path);
    if call == Call::NotOffered {
        return html_404(method.as_str(), &path);
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large");
    };
    let bytes = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut json) => {
            v.ids.make_real(&mut json);
            Bytes::from(serde_json::to_vec(&json).unwrap_or_else(|_| bytes.to_vec()))
        }
        Err(_) => bytes,
    };
    let real_uri = match parts.uri.query() {
        Some(q) => format!("{real_path}?{}", v.ids.real_query(q)),
        None => real_path.clone(),
    };
    parts.uri = match real_uri.parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => return html_404(method.as_str(), &path),
    };
    if parts.headers.contains_key(header::CONTENT_LENGTH) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    let auth = parts.headers.get(header::AUTHORIZATION).cloned();
    let real = forward(&v.inner, Request::from_parts(parts, Body::from(bytes))).await;
    if call == Call::PatchPerson && real.status == StatusCode::ACCEPTED {
        return apply_at_once(&v, auth, &real_path, &real).await;
    }
    reshape(&v, call, &path, real)
}

/// One answer of the real sandbox, read whole.
struct Real {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Real {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        *resp.headers_mut() = self.headers;
        resp
    }
}

async fn forward(inner: &Router, req: Request) -> Real {
    // A Router's error type is Infallible.
    let resp = match inner.clone().oneshot(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    let body = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let mut headers = parts.headers;
    headers.remove(header::CONTENT_LENGTH);
    Real {
        status: parts.status,
        headers,
        body,
    }
}

fn reshape(v: &Variant, call: Call, shown_path: &str, real: Real) -> Response {
    let request_id = real.headers.get("x-request-id").cloned();
    let (status, body) = if real.status.is_success() {
        let status = call.success_status(real.status.as_u16());
        if real.body.is_empty() {
            if call != Call::AnswerChallenge {
                return real.into_response();
            }
            let id = shown_path.rsplit('/').next();
            (status, shape::answered_body(id))
        } else {
            let Ok(mut json) = serde_json::from_slice::<Value>(&real.body) else {
                return real.into_response();
            };
            v.ids.make_shown(&mut json);
            (status, shape::reshape_success(call, json))
        }
    } else {
        let Ok(json) = serde_json::from_slice::<Value>(&real.body) else {
            return real.into_response();
        };
        (real.status.as_u16(), shape::flatten_error(json))
    };
    let status = StatusCode::from_u16(status).unwrap_or(real.status);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(id) = request_id {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

/// Carries out a held `PATCH /v1/persons/{id}` at once: authorizes its change request with
/// the static TAN, confirms it, and answers the updated person.
async fn apply_at_once(
    v: &Variant,
    auth: Option<HeaderValue>,
    person_path: &str,
    held: &Real,
) -> Response {
    let cr_id = serde_json::from_slice::<Value>(&held.body)
        .ok()
        .and_then(|cr| cr.get("id").and_then(Value::as_str).map(str::to_owned));
    let Some(cr_id) = cr_id else {
        return plain(StatusCode::BAD_GATEWAY, "Bad Gateway");
    };
    let person_id = person_path.rsplit('/').next().unwrap_or_default();
    let steps = [
        (
            format!("/v1/change_requests/{cr_id}/authorize"),
            json!({"delivery_method": "static", "person_id": person_id}),
        ),
        (
            format!("/v1/change_requests/{cr_id}/confirm"),
            json!({"person_id": person_id, "tan": STATIC_OTP}),
        ),
    ];
    for (path, body) in steps {
        let real = forward(
            &v.inner,
            inner_request(Method::POST, &path, &auth, Some(body)),
        )
        .await;
        if !real.status.is_success() {
            return reshape(v, Call::Other, &path, real);
        }
    }
    let person = forward(
        &v.inner,
        inner_request(Method::GET, person_path, &auth, None),
    )
    .await;
    reshape(v, Call::Other, person_path, person)
}

fn inner_request(
    method: Method,
    path: &str,
    auth: &Option<HeaderValue>,
    body: Option<Value>,
) -> Request {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(auth) = auth {
        builder = builder.header(header::AUTHORIZATION, auth.clone());
    }
    let body = match body {
        Some(json) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    // Method, path and headers above are valid by construction (paths are ids the sandbox
    // minted), so the builder cannot fail; answer 502 rather than panic if it ever did.
    builder.body(body).unwrap_or_else(|_| {
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = Uri::from_static("/variant-bank/invalid");
        req
    })
}

fn html_404(method: &str, path: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        shape::html_not_found(method, path),
    )
        .into_response()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}
