//! The control API's one error type and its one JSON shape:
//!
//! ```json
//! {"error": {"message": "...", "exit_code": 1, "kind": "refused", "status": 403, "code": "invalid_signature"}}
//! ```
//!
//! `exit_code` is the category `vphone phone` would exit with (0 ok, 1 refused by the bank or
//! the user, 2 usage, 3 unreachable or timed out, 4 local state); `status` and `code` are the
//! bank's, when the bank refused. The HTTP status follows the category.

use crate::phone::{PhoneError, ProfileError};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a control-API request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A phone flow failed (the bank refused, could not be reached, or local state).
    #[error(transparent)]
    Phone(#[from] PhoneError),
    /// No phone of this name is hosted.
    #[error("no phone named {0:?}; create it with POST /phones")]
    NoPhone(String),
    /// The request is malformed or its values do not make sense.
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the phone's state.
    #[error("{0}")]
    Conflict(String),
    /// No pending approval or push of this id.
    #[error("{0}")]
    NotFound(String),
    /// The bearer token is missing or wrong.
    #[error("this server needs `Authorization: Bearer <token>` with the token of its --token-file")]
    Unauthorized,
    /// Unknown route or method.
    #[error("{0}")]
    NoRoute(String),
    /// The server failed inside (a task died); the message says where.
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// The exit-code category, as `vphone phone` uses them.
    pub fn exit_code(&self) -> u8 {
        match self {
            ControlError::Phone(PhoneError::Profile(ProfileError::BadName(_))) => 2,
            ControlError::Phone(e) => e.exit_code(),
            ControlError::NoPhone(_) | ControlError::Conflict(_) | ControlError::Internal(_) => 4,
            ControlError::BadRequest(_)
            | ControlError::NotFound(_)
            | ControlError::Unauthorized
            | ControlError::NoRoute(_) => 2,
        }
    }

    /// The HTTP status of the error response.
    pub fn http_status(&self) -> StatusCode {
        match self {
            ControlError::Phone(PhoneError::Profile(ProfileError::NotFound { .. }))
            | ControlError::NoPhone(_)
            | ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Phone(PhoneError::Profile(ProfileError::Exists { .. })) => {
                StatusCode::CONFLICT
            }
            ControlError::Phone(PhoneError::Profile(ProfileError::BadName(_))) => {
                StatusCode::BAD_REQUEST
            }
            ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ControlError::NoRoute(_) => StatusCode::NOT_FOUND,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Unauthorized => StatusCode::UNAUTHORIZED,
            ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ControlError::Phone(e) => match e.exit_code() {
                1 => StatusCode::UNPROCESSABLE_ENTITY,
                3 => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::CONFLICT,
            },
        }
    }

    /// A short word for the category: `refused`, `usage`, `unavailable`, `state`.
    pub fn kind(&self) -> &'static str {
        kind_of(self.exit_code())
    }

    /// The error as `{"error": {...}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let error = match self {
            ControlError::Phone(e) => {
                let mut error = phone_error_json(e);
                // A bad name in a request is a usage error here, not local state.
                error["exit_code"] = self.exit_code().into();
                error["kind"] = self.kind().into();
                error
            }
            other => serde_json::json!({
                "message": other.to_string(),
                "exit_code": other.exit_code(),
                "kind": other.kind(),
            }),
        };
        serde_json::json!({ "error": error })
    }
}

fn kind_of(exit_code: u8) -> &'static str {
    match exit_code {
        1 => "refused",
        2 => "usage",
        3 => "unavailable",
        _ => "state",
    }
}

/// The inner object of the error shape for a failed flow: message, exit code, kind, and
/// the bank's status and code and the failed step when known.
pub fn phone_error_json(e: &PhoneError) -> serde_json::Value {
    let mut error = serde_json::json!({
        "message": e.to_string(),
        "exit_code": e.exit_code(),
        "kind": kind_of(e.exit_code()),
    });
    let client = e.client_error();
    if let Some(status) = client.and_then(crate::client::ClientError::status) {
        error["status"] = status.into();
    }
    if let Some(code) = client.and_then(crate::client::ClientError::code) {
        error["code"] = code.into();
    }
    if let Some(step) = step_of(e) {
        error["step"] = step.into();
    }
    error
}

/// The step a flow failed in, when the error names one.
fn step_of(e: &PhoneError) -> Option<&'static str> {
    match e {
        PhoneError::Bank { step, .. }
        | PhoneError::Inbox { step, .. }
        | PhoneError::Unexpected { step, .. }
        | PhoneError::Value { step, .. } => Some(step),
        _ => None,
    }
}

impl From<ProfileError> for ControlError {
    fn from(e: ProfileError) -> Self {
        ControlError::Phone(PhoneError::Profile(e))
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.http_status(), Json(self.to_json())).into_response()
    }
}

/// Unknown routes answer in the same shape.
pub async fn no_route(uri: axum::http::Uri) -> ControlError {
    ControlError::NoRoute(format!(
        "no route {}; see /openapi.json for the routes",
        uri.path()
    ))
}

/// Known routes with another method answer in the same shape (405).
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let e = ControlError::NoRoute(format!(
        "{} does not take {method}; see /openapi.json",
        uri.path()
    ));
    (StatusCode::METHOD_NOT_ALLOWED, Json(e.to_json())).into_response()
}

/// A JSON request body; an empty body reads as `{}`. Malformed JSON answers in the
/// control API's error shape, naming what is wrong.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ControlError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ControlError> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| ControlError::BadRequest(format!("cannot read the body: {e}")))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let de = &mut serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ControlError::BadRequest(format!("the body is not valid: {inner}"))
            } else {
                ControlError::BadRequest(format!("the body's field {path} is not valid: {inner}"))
            }
        })
    }
}

/// A query string, refused in the control API's error shape.
#[derive(Debug)]
pub struct QueryArgs<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryArgs<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ControlError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryArgs)
            .map_err(|e| ControlError::BadRequest(format!("the query is not valid: {e}")))
    }
}
