//! One error type for every refusal, rendered in the bank's `errors` shape; and the request
//! extractors whose failures (wrong content type, malformed JSON, oversize body, bad query)
//! answer in the same shape.

use crate::api::{ApiErrorBody, ErrorCode, ErrorObject, ErrorSource};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

/// A refused request: HTTP status, machine code, title and a detail saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable code, e.g. `invalid_signature`.
    pub code: ErrorCode,
    /// A short title.
    pub title: &'static str,
    /// What was wrong and what to do. Never contains OTPs, keys or tokens.
    pub detail: String,
    /// The offending request field, if one.
    pub field: Option<String>,
    /// Seconds to wait before retrying, sent as `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $fn:ident => $status:ident, $code:ident, $title:literal;)+) => {
        /// The one place a refusal of the bank's rules ([`super::core`]) becomes the bank's error.
impl From<super::core::Refusal> for ApiError {
    fn from(r: super::core::Refusal) -> Self {
        use super::core::Reason;
        let detail = r.detail;
        let mut e = match r.reason {
            Reason::NotFound => ApiError::not_found(detail),
            Reason::Validation => ApiError::validation_error(detail),
            Reason::NoVerifiedNumber => ApiError::telephone_number_not_found(detail),
            Reason::DeviceLimitReached => ApiError::device_limit_reached(detail),
            Reason::KeyAlreadyBound => ApiError::key_already_bound(detail),
            Reason::KeyPurposeTaken => ApiError::key_purpose_taken(detail),
            Reason::KeyNotFound => ApiError::key_not_found(detail),
            Reason::RestrictedKeyRequired => ApiError::restricted_key_required(detail),
            Reason::DeviceDeleted => ApiError::device_deleted(detail),
            Reason::InvalidSignatureEncoding => ApiError::invalid_signature_encoding(detail),
            Reason::InvalidSignature => ApiError::invalid_signature(detail),
            Reason::InvalidOtp => ApiError::invalid_otp(detail),
            Reason::ChallengeExpired => ApiError::challenge_expired(detail),
            Reason::ChallengeAlreadyUsed => ApiError::challenge_already_used(detail),
            Reason::ChallengeFailed => ApiError::challenge_failed(detail),
            Reason::MobileNumberChanged => ApiError::mobile_number_changed(detail),
            Reason::MobileNumberExists => ApiError::mobile_number_exists(detail),
            Reason::MobileNumberMismatch => ApiError::mobile_number_mismatch(detail),
            Reason::MobileNumberAlreadyVerified => ApiError::mobile_number_already_verified(detail),
            Reason::AuthorizationRequired => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AuthorizationRequired,
                "Authorization Required",
                detail,
            ),
            Reason::PersonMismatch => ApiError::person_mismatch(detail),
            Reason::ChangeRequestState => ApiError::change_request_state(detail),
            Reason::TooManyRequests { retry_after } => {
                ApiError::too_many_requests(detail, retry_after)
            }
        };
        e.field = r.field;
        e
    }
}

impl ApiError {
            $(
                $(#[$doc])*
                pub fn $fn(detail: impl Into<String>) -> Self {
                    ApiError::new(StatusCode::$status, ErrorCode::$code, $title, detail)
                }
            )+
        }
    };
}

constructors! {
    /// 401: no bearer token was sent.
    unauthorized => UNAUTHORIZED, Unauthorized, "Unauthorized";
    /// 401: the bearer token is unknown or expired.
    invalid_token => UNAUTHORIZED, InvalidToken, "Invalid Token";
    /// 401: wrong client id or secret at the token endpoint.
    invalid_client => UNAUTHORIZED, InvalidClient, "Invalid Client";
    /// 400: the token request is not a client-credentials grant for scope `partners`.
    invalid_grant => BAD_REQUEST, InvalidRequest, "Invalid Token Request";
    /// 404: no such resource for this partner.
    not_found => NOT_FOUND, NotFound, "Not Found";
    /// 404: no such route.
    route_not_found => NOT_FOUND, RouteNotFound, "Route Not Found";
    /// 405: the route exists with other methods.
    method_not_allowed => METHOD_NOT_ALLOWED, MethodNotAllowed, "Method Not Allowed";
    /// 400: the body is not JSON.
    invalid_json => BAD_REQUEST, InvalidJson, "Invalid JSON";
    /// 415: the body is not `application/json`.
    unsupported_media_type => UNSUPPORTED_MEDIA_TYPE, UnsupportedMediaType, "Unsupported Media Type";
    /// 413: the body is over 64 KiB.
    payload_too_large => PAYLOAD_TOO_LARGE, PayloadTooLarge, "Payload Too Large";
    /// 400: a field is missing, unknown or out of range.
    validation_error => BAD_REQUEST, ValidationError, "Validation Error";
    /// 400: the public key is not a valid uncompressed P-256 point.
    invalid_key => BAD_REQUEST, InvalidKey, "Invalid Key";
    /// 400: only `ecdsa-p256` keys are accepted.
    unsupported_key_type => BAD_REQUEST, UnsupportedKeyType, "Unsupported Key Type";
    /// 400: the signature is not lowercase hex of strict DER.
    invalid_signature_encoding => BAD_REQUEST, InvalidSignatureEncoding, "Invalid Signature Encoding";
    /// 403: the signature does not verify.
    invalid_signature => FORBIDDEN, InvalidSignature, "Invalid Signature";
    /// 403: wrong OTP or TAN.
    invalid_otp => FORBIDDEN, InvalidOtp, "Invalid OTP";
    /// 403: the challenge's lifetime is over.
    challenge_expired => FORBIDDEN, ChallengeExpired, "Challenge Expired";
    /// 403: the challenge was already completed.
    challenge_already_used => FORBIDDEN, ChallengeAlreadyUsed, "Challenge Already Used";
    /// 403: the challenge's failed attempts are spent.
    challenge_failed => FORBIDDEN, ChallengeFailed, "Challenge Failed";
    /// 400: the person has no verified mobile number.
    telephone_number_not_found => BAD_REQUEST, TelephoneNumberNotFound, "Telephone Number Not Found";
    /// 409: the person already has the maximum of bound devices.
    device_limit_reached => CONFLICT, DeviceLimitReached, "Device Limit Reached";
    /// 409: the public key is already bound.
    key_already_bound => CONFLICT, KeyAlreadyBound, "Key Already Bound";
    /// 409: the device already has a key of this purpose.
    key_purpose_taken => CONFLICT, KeyPurposeTaken, "Key Purpose Taken";
    /// 409: the person already has a mobile number.
    mobile_number_exists => CONFLICT, MobileNumberExists, "Mobile Number Exists";
    /// 403: the device was deleted and signs nothing.
    device_deleted => FORBIDDEN, DeviceDeleted, "Device Deleted";
    /// 403: a restricted-key challenge needs the device's restricted key.
    restricted_key_required => FORBIDDEN, RestrictedKeyRequired, "Restricted Key Required";
    /// 403: the device has no key of the purpose asked for.
    key_not_found => FORBIDDEN, KeyNotFound, "Key Not Found";
    /// 403: a person or device does not belong to the change request's person.
    person_mismatch => FORBIDDEN, PersonMismatch, "Person Mismatch";
    /// 409: the change request is not in a state that allows this call.
    change_request_state => CONFLICT, InvalidChangeRequestState, "Invalid Change Request State";
    /// 400: the number in the request is not the person's number.
    mobile_number_mismatch => BAD_REQUEST, MobileNumberMismatch, "Mobile Number Mismatch";
    /// 403: the OTP or TAN went to a number that is no longer the person's verified number.
    mobile_number_changed => FORBIDDEN, MobileNumberChanged, "Mobile Number Changed";
    /// 409: the mobile number is already verified.
    mobile_number_already_verified => CONFLICT, MobileNumberAlreadyVerified, "Mobile Number Already Verified";
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(
        status: StatusCode,
        code: ErrorCode,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 429 `too_many_requests`: a rate limit is reached; retry in `retry_after_secs`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            crate::api::ErrorCode::TooManyRequests,
            "Too Many Requests",
            detail,
        );
        e.retry_after = Some(retry_after_secs);
        e
    }

    /// 408 `request_timeout`: the request body stalled longer than the body-read timeout.
    pub fn request_timeout(detail: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            crate::api::ErrorCode::RequestTimeout,
            "Request Timeout",
            detail,
        )
    }

    /// Names the offending request field.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The wire body.
    pub fn body(&self) -> ApiErrorBody {
        ApiErrorBody {
            errors: vec![ErrorObject {
                id: uuid::Uuid::new_v4().to_string(),
                status: self.status.as_u16(),
                code: self.code.as_str().to_owned(),
                title: self.title.to_owned(),
                detail: self.detail.clone(),
                source: self.field.as_ref().map(|f| ErrorSource {
                    field: Some(f.clone()),
                    message: Some(self.detail.clone()),
                }),
            }],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        // Lets the logging middleware record the code without parsing the body.
        response.extensions_mut().insert(LoggedCode(self.code));
        response
    }
}

/// The `code` of an error response, for the request log.
#[derive(Debug, Clone)]
pub struct LoggedCode(pub ErrorCode);

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body: `application/json`, at most 64 KiB, parsed strictly with the failing field named.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

fn is_json(parts_ct: Option<&header::HeaderValue>) -> bool {
    let Some(ct) = parts_ct.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().as_bytes();
    let (kind, rest) = essence.split_at(essence.len().min(12));
    kind.eq_ignore_ascii_case(b"application/")
        && (rest.eq_ignore_ascii_case(b"json")
            || (rest.len() >= 5 && rest[rest.len() - 5..].eq_ignore_ascii_case(b"+json")))
}

/// Reads the body, mapping the limit to 413 and a stalled body to 408.
pub async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), BODY_LIMIT)
        .await
        .map_err(|e| {
            if caused_by_timeout(&e) {
                return ApiError::request_timeout(
                    "the request body stopped arriving before the body-read timeout; send the whole body at once",
                );
            }
            ApiError::payload_too_large(format!(
                "the request body is larger than {} KiB; send less",
                BODY_LIMIT / 1024
            ))
        })
}

/// Whether the body-read timeout (set by the server around every request body) is among the
/// causes of `e`.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<super::serve::BodyTimedOut>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A request body type [`ApiJson`] reads.
pub trait Body: DeserializeOwned {
    /// True when `Self` refuses by itself any key repeated in its top-level object: a
    /// struct whose `Deserialize` is derived with `deny_unknown_fields` and no `flatten`
    /// (the derive refuses a known field twice, `deny_unknown_fields` any other key). A body
    /// of such a type with no nested object then needs no separate duplicate-key pass.
    const REFUSES_REPEATED_TOP_LEVEL_KEYS: bool;
}

/// Every body the sandbox reads. All are derived with `deny_unknown_fields` and no
/// `flatten` but `CreatePerson`, which keeps the fields it does not model.
macro_rules! bodies {
    ($($ty:ident: $refuses:expr),* $(,)?) => {
        $(impl Body for crate::api::$ty {
            const REFUSES_REPEATED_TOP_LEVEL_KEYS: bool = $refuses;
        })*

        /// Runs `check` on the name of every body type that claims to refuse repeated
        /// keys by itself, and the parses of `body` as that type: `parse_body`'s (which
        /// may skip the duplicate-key pass) and `parse_json`'s (which never does).
        #[cfg(test)]
        fn each_claiming_body(
            body: &[u8],
            mut check: impl FnMut(&str, Result<(), ApiError>, Result<(), ApiError>),
        ) {
            $(if <crate::api::$ty as Body>::REFUSES_REPEATED_TOP_LEVEL_KEYS {
                check(
                    stringify!($ty),
                    parse_body::<crate::api::$ty>(body).map(|_| ()),
                    parse_json::<crate::api::$ty>(body).map(|_| ()),
                );
            })*
        }
    };
}

bodies! {
    CreatePerson: false,
    UpdatePerson: true,
    MobileNumberRequest: true,
    ConfirmMobileNumber: true,
    CreateDeviceRequest: true,
    AnswerSignatureChallenge: true,
    AddKeyRequest: true,
    CreateDeviceChallenge: true,
    AnswerDeviceChallenge: true,
    CreateSmsChallenge: true,
    AnswerSmsChallenge: true,
    AuthorizeChangeRequest: true,
    ConfirmChangeRequest: true,
}

/// Parses a request body into `T` as [`parse_json`] does, skipping the duplicate-key pass
/// when `T` refuses top-level repeats itself and the body's only object is the top-level
/// one (it starts with `{` and has no other `{`, inside strings or out): the pass could
/// then find nothing that the parse did not refuse.
pub fn parse_body<T: Body>(bytes: &[u8]) -> Result<T, ApiError> {
    let flat = T::REFUSES_REPEATED_TOP_LEVEL_KEYS
        && bytes.trim_ascii_start().first() == Some(&b'{')
        && bytes.iter().filter(|&&b| b == b'{').count() == 1;
    parse_json_checking(bytes, !flat)
}

/// Parses JSON text into `T`, naming the failing field. The body must be exactly one JSON
/// value (nothing after it) with no key twice in any object.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json_checking(bytes, true)
}

/// [`parse_json`], with the pass that looks for a key twice in any object when
/// `every_object` (the caller knows otherwise that no object can have one).
fn parse_json_checking<T: DeserializeOwned>(
    bytes: &[u8],
    every_object: bool,
) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    // The success path parses once without tracking the path; a failure parses again with
    // it, which gives the same error with the failing field's path to name.
    let value = match T::deserialize(&mut *de) {
        Ok(value) => value,
        Err(_) => return Err(json_failure::<T>(bytes)),
    };
    de.end().map_err(|e| {
        ApiError::invalid_json(format!(
            "the body is not valid JSON ({e}); send exactly one JSON object and nothing after it"
        ))
    })?;
    if !every_object {
        return Ok(value);
    }
    // serde's derive misses duplicates under `#[serde(flatten)]`; this pass sees every object.
    if let Err(e) = serde_json::from_slice::<NoDuplicateKeys>(bytes) {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        return Err(ApiError::validation_error(format!(
            "the body is refused: {message}; send every key once"
        )));
    }
    Ok(value)
}

/// The refusal of a body that `T` failed to parse, naming the failing field: parses again,
/// tracking the path.
#[cold]
fn json_failure<T: DeserializeOwned>(bytes: &[u8]) -> ApiError {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut *de);
    let failure = result.map(|_| ()).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::invalid_json(format!(
                "the body is not valid JSON ({inner}); send one JSON object"
            ));
        }
        // serde_json appends " at line L column C"; the field path says more. The value
        // itself is never repeated: it may be an OTP or TAN sent as a number.
        let message = inner.to_string();
        let message = redact_value(message.split(" at line ").next().unwrap_or(&message));
        let last = path.rsplit('.').next().unwrap_or("");
        let error = match last {
            "signature" if !message.starts_with("missing") => {
                ApiError::invalid_signature_encoding(format!(
                    "`{path}`: {message}; send the ASN.1 DER signature as lowercase hex"
                ))
            }
            "key" if !message.starts_with("missing") => ApiError::invalid_key(format!(
                "`{path}`: {message}; send the 65-byte uncompressed SEC1 point (04||X||Y) as 130 lowercase hex characters"
            )),
            "key_type" => ApiError::unsupported_key_type(format!(
                "`{path}`: {message}; only `ecdsa-p256` is accepted"
            )),
            _ if path == "." || path.is_empty() => {
                ApiError::validation_error(format!("the body is refused: {message}"))
            }
            _ => ApiError::validation_error(format!("`{path}`: {message}")),
        };
        if path == "." || path.is_empty() {
            // "missing field `x`" names the field only in the message.
            match message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                Some(field) => error.field(field),
                None => error,
            }
        } else {
            error.field(path)
        }
    });
    // Parsing is deterministic: the second parse fails as the first did.
    failure.err().unwrap_or_else(|| {
        ApiError::invalid_json("the body is not valid JSON; send one JSON object")
    })
}

/// Drops the echoed value from serde's "invalid type: integer `212212`, expected ..." and
/// "invalid value: ..." messages, keeping what kind of value it was.
pub(crate) fn redact_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            let (unexpected, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let kind = unexpected
                .split(['`', '"'])
                .next()
                .unwrap_or(unexpected)
                .trim_end();
            let expected = if expected.is_empty() {
                String::new()
            } else {
                format!(", expected{expected}")
            };
            return format!("{prefix}{kind}{expected}");
        }
    }
    message.to_owned()
}

/// Any JSON value, refused if an object in it has a key twice.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeysVisitor)
    }
}

struct NoDuplicateKeysVisitor;

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeysVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_unit<E>(self) -> Result<NoDuplicateKeys, E> {
        Ok(NoDuplicateKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<NoDuplicateKeys, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<NoDuplicateKeys, A::Error> {
        // Keys borrowed from the body where they have no escapes; a short list is searched
        // in order, a long one moves to a hash set (so a body of many keys stays linear).
        let mut few: Vec<Key<'de>> = Vec::new();
        let mut many: Option<std::collections::HashSet<Key<'de>>> = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let twice = match &mut many {
                Some(set) => set.contains(&key),
                None => few.contains(&key),
            };
            if twice {
                return Err(serde::de::Error::custom(format!(
                    "the key `{}` appears twice",
                    key.as_str()
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
            match &mut many {
                Some(set) => {
                    set.insert(key);
                }
                None if few.len() < 16 => few.push(key),
                None => {
                    let mut set: std::collections::HashSet<Key<'de>> = few.drain(..).collect();
                    set.insert(key);
                    many = Some(set);
                }
            }
        }
        Ok(NoDuplicateKeys)
    }
}

/// An object's key: borrowed from the body, or owned when it had escapes. Keys compare by
/// their text (`"a"` and `"\u0061"` are the same key).
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key<'_> {}

impl std::hash::Hash for Key<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<T: Body, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::unsupported_media_type(
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = read_body(req).await?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// A query string parsed into `T`; failures are `validation_error`s.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                let message = redact_value(&e.into_inner().to_string());
                // "unknown field `x`" and "duplicate field `x`" name the parameter only in the
                // message.
                let field = if path == "." || path.is_empty() {
                    message
                        .split('`')
                        .nth(1)
                        .map_or_else(String::new, str::to_owned)
                } else {
                    path
                };
                let error = ApiError::validation_error(format!("query parameter: {message}"));
                if field.is_empty() {
                    error
                } else {
                    error.field(field)
                }
            })
    }
}

/// Path parameters; a segment that cannot be read (e.g. percent-encoded bytes that are not
/// UTF-8) cannot name anything, so it is `not_found`, in the errors shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| {
                ApiError::not_found(format!(
                    "there is nothing at this path ({}); ids are letters, digits, '-' or '_'",
                    e.body_text()
                ))
            })
    }
}

/// Parses an id from the path with the strict rule, as the bank does; a malformed one
/// cannot exist, so it is `not_found`.
pub fn path_id<T: crate::api::TypedId>(raw: &str, what: &str) -> Result<T, ApiError> {
    T::strict(raw).map_err(|_| {
        ApiError::not_found(format!(
            "there is no {what} with this id; ids are letters, digits, '-' or '_'"
        ))
    })
}

/// Fallback for unknown routes.
pub async fn route_not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::route_not_found(format!(
        "no route {}; see API.md for the routes the sandbox serves",
        uri.path()
    ))
}

/// Fallback for a known route called with a method it does not serve.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::method_not_allowed(format!(
        "{} is not served on {}; see API.md for the methods of this route",
        method,
        uri.path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::AnswerSignatureChallenge;

    #[test]
    fn json_media_types_are_recognised_in_any_case() {
        let ct = |v: &'static str| is_json(Some(&header::HeaderValue::from_static(v)));
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            " application/json ",
            "application/problem+json",
            "application/vnd.api+JSON",
            "application/+json",
        ] {
            assert!(ct(yes), "{yes}");
        }
        for no in [
            "application/",
            "application/jsonx",
            "text/json",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            assert!(!ct(no), "{no}");
        }
        assert!(!is_json(None));
    }

    #[test]
    fn json_failures_name_the_field_and_pick_a_specific_code() {
        let e = parse_json::<AnswerSignatureChallenge>(br#"{"signature":"30ZZ"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_signature_encoding");
        assert_eq!(e.field.as_deref(), Some("signature"));
        let e =
            parse_json::<AnswerSignatureChallenge>(br#"{"signature":"3044","x":1}"#).unwrap_err();
        assert_eq!(e.code, "validation_error");
        let e = parse_json::<AnswerSignatureChallenge>(br#"{"signature":"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse_json::<AnswerSignatureChallenge>(br#"{}"#).unwrap_err();
        assert_eq!(e.code, "validation_error");
        assert_eq!(e.field.as_deref(), Some("signature"));
        assert!(e.detail.contains("signature"), "{}", e.detail);
    }

    /// The claim behind `REFUSES_REPEATED_TOP_LEVEL_KEYS`: serde's derive refuses a known
    /// field twice, and `deny_unknown_fields` any other key. The second part is checked here
    /// for every type that makes the claim (a type without it would skip the unknown key).
    #[test]
    fn bodies_that_skip_the_duplicate_pass_refuse_unknown_keys() {
        let mut claiming = 0;
        each_claiming_body(br#"{"not_a_field_of_it":1}"#, |name, parsed, _| {
            let e = parsed.unwrap_err();
            assert!(e.detail.contains("unknown field"), "{name}: {}", e.detail);
            claiming += 1;
        });
        assert_eq!(claiming, 12, "every body but CreatePerson makes the claim");
        // `CreatePerson` keeps unknown keys, so it never skips the pass.
        const { assert!(!crate::api::CreatePerson::REFUSES_REPEATED_TOP_LEVEL_KEYS) };
        let e = parse_body::<crate::api::CreatePerson>(
            br#"{"first_name":"A","last_name":"B","x":1,"x":2}"#,
        )
        .unwrap_err();
        assert!(e.detail.contains("`x` appears twice"), "{}", e.detail);
    }

    /// Keys of the body types (and spellings of them), for flat bodies made at random.
    const KEYS: &[&str] = &[
        "signature",
        "\\u0073ignature",
        "device_data",
        "person_id",
        "device_id",
        "key",
        "key_type",
        "key_purpose",
        "name",
        "language",
        "code",
        "number",
        "token",
        "tan",
        "delivery_method",
        "first_name",
        "last_name",
        "email",
        "challenge_type",
        "not_a_field",
    ];

    /// A key whose signatures and public key the bodies below carry.
    fn test_key() -> vphone_keystore::SigningKey {
        vphone_keystore::SigningKey::derive(
            &vphone_keystore::Seed::from_u64(1),
            0,
            crate::api::KeyPurpose::Unrestricted,
        )
    }

    /// JSON values, valid for some of those keys; made once for all the proptest's cases.
    static VALUES: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let key = test_key();
        let quoted = |s: &str| format!("{s:?}");
        vec![
            quoted(&key.sign_hex(b"212212")),
            quoted(&key.public_key_hex()),
            quoted(crate::api::PersonId::generate().as_str()),
            quoted(crate::api::DeviceId::generate().as_str()),
            quoted("212212"),
            quoted("+4915112345678"),
            quoted("unrestricted"),
            quoted("ecdsa-p256"),
            quoted("en"),
            quoted("device_signing"),
            quoted("a name"),
            quoted("{"),
            "null".into(),
            "212212".into(),
            "true".into(),
            "[1, 2]".into(),
        ]
    });

    proptest::proptest! {
        /// Skipping the duplicate-key pass changes no answer: for flat bodies of keys drawn
        /// (and repeated) at random, every claiming type's fast parse and full parse agree
        /// on success and, failing, on the code and the message.
        #[test]
        fn skipping_the_duplicate_pass_changes_no_answer(
            pairs in proptest::collection::vec((0..KEYS.len(), 0..16usize), 0..6),
            lead in proptest::sample::select(vec!["", " ", "\n\t "]),
        ) {
            let fields: Vec<String> = pairs
                .iter()
                .map(|&(k, v)| format!("\"{}\":{}", KEYS[k], VALUES[v % VALUES.len()]))
                .collect();
            let body = format!("{lead}{{{}}}", fields.join(","));
            each_claiming_body(body.as_bytes(), |name, fast, full| {
                match (&fast, &full) {
                    (Ok(()), Ok(())) => {}
                    (Err(a), Err(b)) => {
                        assert_eq!((&a.code, &a.detail), (&b.code, &b.detail), "{name}: {body}");
                    }
                    _ => panic!("{name}: {body}: fast {fast:?}, full {full:?}"),
                }
            });
        }
    }

    #[test]
    fn a_flat_body_with_a_key_twice_is_refused_without_the_duplicate_pass() {
        let sig = test_key().sign_hex(b"212212");
        let once = format!(r#"{{"signature":"{sig}"}}"#);
        assert!(parse_body::<AnswerSignatureChallenge>(once.as_bytes()).is_ok());
        for body in [
            format!(r#"{{"signature":"{sig}","signature":"{sig}"}}"#),
            format!(r#" {{"signature":"{sig}","\u0073ignature":"{sig}"}}"#),
            format!(r#"{{"device_data":"a","signature":"{sig}","device_data":"b"}}"#),
        ] {
            let e = parse_body::<AnswerSignatureChallenge>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, "validation_error", "{body}");
            assert!(e.detail.contains("duplicate field"), "{body}: {}", e.detail);
            // The full pass refuses it as well (the derive's refusal comes first).
            assert!(parse_json::<AnswerSignatureChallenge>(body.as_bytes()).is_err());
        }
        // A `{` anywhere else (here in a string) makes it take the full pass: same answer.
        let braced = format!(r#"{{"device_data":"{{","signature":"{sig}"}}"#);
        assert!(parse_body::<AnswerSignatureChallenge>(braced.as_bytes()).is_ok());
    }

    #[test]
    fn a_key_twice_is_refused_however_it_is_spelled_and_however_many_keys_there_are() {
        type Any = serde_json::Value;
        assert!(parse_json::<Any>(br#"{"a":1,"b":{"a":2}}"#).is_ok());
        let e = parse_json::<Any>(br#"{"a":1,"\u0061":2}"#).unwrap_err();
        assert_eq!(e.code, "validation_error");
        assert!(e.detail.contains("`a` appears twice"), "{}", e.detail);
        // Past the short list's length the check goes on in a set.
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let body = format!("{{{}}}", many.join(","));
        assert!(parse_json::<Any>(body.as_bytes()).is_ok());
        let body = format!("{{{},\"k3\":0}}", many.join(","));
        let e = parse_json::<Any>(body.as_bytes()).unwrap_err();
        assert!(e.detail.contains("`k3` appears twice"), "{}", e.detail);
        let body = format!("{{\"k39\":0,{}}}", many.join(","));
        assert!(parse_json::<Any>(body.as_bytes()).is_err());
        // Trailing data is refused after a good value.
        let e = parse_json::<Any>(br#"{"a":1} x"#).unwrap_err();
        assert_eq!(e.code, "invalid_json");
    }

    #[test]
    fn an_id_in_the_path_is_held_to_the_strict_rule_the_phone_does_not_apply() {
        use crate::api::{DeviceId, PersonId};
        // The phone reads and hands back ids like this one; the sandbox, like the bank,
        // has none of them.
        let long = format!("personId-{}-{}", "a".repeat(32), "b".repeat(32));
        assert_eq!(long.len(), 74);
        assert!(PersonId::from_user(&long).is_ok());
        let e = path_id::<PersonId>(&long, "person").unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        for bad in ["a b", "", "a\u{7f}"] {
            assert!(path_id::<DeviceId>(bad, "device").is_err(), "{bad:?}");
        }
        let canonical = PersonId::generate();
        assert_eq!(
            path_id::<PersonId>(canonical.as_str(), "person").unwrap(),
            canonical
        );
    }
}
