//! One error type for every API call. Messages hold the request line, status, code and
//! detail, never credentials, tokens, OTPs or signatures. What to do next is typed
//! ([`Hint`], chosen by status and code only); the commands that do it are the CLI's business.

use crate::api::{ErrorCode, RemoteError};
use std::time::Duration;

use super::credentials::CredentialsError;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; the bank refused the request.
    #[error(
        "{request} refused: {remote}{}{}",
        retries_suffix(*retries),
        hint_suffix(request, remote)
    )]
    Api {
        /// The request, e.g. `POST /v1/mfa/devices`.
        request: String,
        /// What the server said, in whichever error shape it used.
        remote: Box<RemoteError>,
        /// Retries the client made before giving up (0: the request was sent once).
        retries: u32,
    },
    /// The server could not be reached at all.
    #[error("cannot reach {url}: {}; is the server running?", root_cause(&**source))]
    Unreachable {
        /// The address tried (no credentials in it).
        url: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server did not answer in time.
    #[error(
        "{url} did not answer within {}; the server may be overloaded or down, retry or raise the timeout",
        humantime::format_duration(*after)
    )]
    Timeout {
        /// The address tried.
        url: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The connection failed after it was established (reset, protocol error).
    #[error(
        "talking to {url} failed: {}; retry, and check that the URL is the API's base",
        root_cause(&**source)
    )]
    Transport {
        /// The address tried.
        url: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A success answer whose body the client cannot read (code `unreadable_answer`).
    #[error("{request} answered {status} with a body vphone cannot read: {reason}")]
    Decode {
        /// The request.
        request: String,
        /// The HTTP status.
        status: u16,
        /// What did not match.
        reason: String,
    },
    /// The client is misconfigured (bad URL, missing credentials).
    #[error("client configuration: {0}")]
    Config(String),
    /// Credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
}

impl ClientError {
    /// The bank's answer, when the server refused the request.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            ClientError::Api { remote, .. } => Some(&**remote),
            _ => None,
        }
    }

    /// The HTTP status the server answered: of a refusal, or of an unreadable success.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { remote, .. } => Some(remote.status),
            ClientError::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error code: the server's for a refusal (`None` when it gave none),
    /// [`ErrorCode::UnreadableAnswer`] for a success whose body could not be read.
    pub fn error_code(&self) -> Option<&ErrorCode> {
        const UNREADABLE: &ErrorCode = &ErrorCode::UnreadableAnswer;
        match self {
            ClientError::Api { remote, .. } => remote.code.as_ref(),
            ClientError::Decode { .. } => Some(UNREADABLE),
            _ => None,
        }
    }

    /// [`ClientError::error_code`] as text.
    pub fn code(&self) -> Option<&str> {
        self.error_code().map(ErrorCode::as_str)
    }

    /// What to do next about a refusal.
    pub fn hint(&self) -> Option<Hint> {
        match self {
            ClientError::Api {
                request, remote, ..
            } => hint(request, remote),
            _ => None,
        }
    }

    /// Whether the server was unreachable or too slow (as opposed to refusing).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Timeout { .. }
                | ClientError::Transport { .. }
        )
    }
}

/// The innermost cause of a transport error ("Connection refused (os error 111)", "dns
/// error: ..."), which says more than reqwest's "error sending request". The chain is built
/// from errors stripped of their URL, so no credentials or query strings appear in it.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    if std::ptr::addr_eq(last, e) {
        e.to_string()
    } else {
        format!("{e}: {last}")
    }
}

fn retries_suffix(retries: u32) -> String {
    match retries {
        0 => String::new(),
        1 => " (after 1 retry)".to_owned(),
        n => format!(" (after {n} retries)"),
    }
}

fn hint_suffix(request: &str, remote: &RemoteError) -> String {
    hint(request, remote).map_or_else(String::new, |h| format!(" ({})", h.describe()))
}

/// What a refusal means for the user, judged from its status and code only (never from
/// words in a server's `detail`). The CLI turns it into the commands that help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// The person has the maximum of bound devices.
    DeviceLimit,
    /// The challenge expired.
    ChallengeExpired,
    /// The challenge was already answered.
    ChallengeUsed,
    /// The challenge is spent after too many wrong answers.
    ChallengeSpent,
    /// The OTP or TAN was wrong.
    WrongCode,
    /// The signature did not verify.
    SignatureRejected,
    /// The device was deleted.
    DeviceDeleted,
    /// The device already has a key of this purpose.
    KeyPurposeTaken,
    /// The public key is already bound.
    KeyAlreadyBound,
    /// The challenge needs the restricted key.
    RestrictedKeyRequired,
    /// The person has no verified mobile number.
    NoVerifiedNumber,
    /// The person already has a mobile number.
    NumberExists,
    /// The credentials were refused.
    Credentials,
    /// The server does not offer this call (404/405/501 without an API code).
    NotOffered,
    /// An id in the request is unknown to this partner.
    NotFound(NotFound),
    /// The request conflicts with existing state.
    Conflict,
    /// Too many requests.
    RateLimited,
    /// The server failed.
    ServerFailed,
}

/// What a 404 could not find, judged from the request's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotFound {
    /// A challenge.
    Challenge,
    /// A person (also for create calls whose body names the person).
    Person,
    /// A key of a device.
    Key,
    /// A device.
    Device,
    /// A change request.
    ChangeRequest,
    /// Something else.
    Other,
}

impl Hint {
    /// What the hint means, in words that name no command.
    pub fn describe(self) -> &'static str {
        match self {
            Hint::DeviceLimit => "a person may bind at most 5 devices; delete one, then bind again",
            Hint::ChallengeExpired => {
                "the challenge expired (challenges live 5 minutes); start a new one"
            }
            Hint::ChallengeUsed => "the challenge was already answered; start a new one",
            Hint::ChallengeSpent => "the challenge is spent after 3 wrong answers; start a new one",
            Hint::WrongCode => {
                "the code was wrong; after 3 wrong answers the challenge is spent, so check the SMS and retry or start a new challenge"
            }
            Hint::SignatureRejected => {
                "the signature did not verify: a wrong OTP, a key the device does not have, or a spent challenge; start a new challenge or bind again"
            }
            Hint::DeviceDeleted => "the device was deleted; forget it, then bind again",
            Hint::KeyPurposeTaken => "the device already has a key of this purpose",
            Hint::KeyAlreadyBound => {
                "this public key is already bound; delete that device first or use a new phone"
            }
            Hint::RestrictedKeyRequired => "add a restricted key first",
            Hint::NoVerifiedNumber => "the person has no verified mobile number",
            Hint::NumberExists => "the person already has a mobile number",
            Hint::Credentials => {
                "check the client id and secret (VPHONE_CLIENT_ID/VPHONE_CLIENT_SECRET or the credentials file) and the token URL"
            }
            Hint::NotOffered => "the server does not offer this call",
            Hint::NotFound(what) => what.describe(),
            Hint::Conflict => "it conflicts with existing state; list what exists and retry",
            Hint::RateLimited => "rate limited; wait and retry",
            Hint::ServerFailed => "the server failed; retry later",
        }
    }
}

impl NotFound {
    /// What was not found and where to look, naming no command.
    pub fn describe(self) -> &'static str {
        match self {
            NotFound::Challenge => {
                "unknown challenge for this partner: check the challenge id; challenges expire after 5 minutes, so start a new one if it is older"
            }
            NotFound::Person => {
                "unknown person for this partner: check the person id (a partner sees only the persons it created, so also check the credentials)"
            }
            NotFound::Key => "unknown key for this device; list its keys",
            NotFound::Device => {
                "unknown or deleted device for this partner; list the person's devices, or bind again"
            }
            NotFound::ChangeRequest => {
                "unknown change request for this partner: check the change request id"
            }
            NotFound::Other => "unknown or deleted id for this partner; check the id",
        }
    }
}

/// What the user should do next about a refusal of `request` (`"PUT /v1/..."`), judged
/// from its status and API code only (and, for a 404, from what the request named).
pub fn hint(request: &str, remote: &RemoteError) -> Option<Hint> {
    use ErrorCode as C;
    let h = match (remote.status, remote.code.as_ref()) {
        (_, Some(C::DeviceLimitReached)) => Hint::DeviceLimit,
        (_, Some(C::ChallengeExpired)) => Hint::ChallengeExpired,
        (_, Some(C::ChallengeAlreadyUsed)) => Hint::ChallengeUsed,
        (_, Some(C::ChallengeFailed)) => Hint::ChallengeSpent,
        (_, Some(C::InvalidOtp)) => Hint::WrongCode,
        (_, Some(C::InvalidSignature)) => Hint::SignatureRejected,
        (_, Some(C::DeviceDeleted)) => Hint::DeviceDeleted,
        (_, Some(C::KeyPurposeTaken)) => Hint::KeyPurposeTaken,
        (_, Some(C::KeyAlreadyBound)) => Hint::KeyAlreadyBound,
        (_, Some(C::RestrictedKeyRequired)) => Hint::RestrictedKeyRequired,
        (_, Some(C::TelephoneNumberNotFound)) => Hint::NoVerifiedNumber,
        (_, Some(C::MobileNumberExists)) => Hint::NumberExists,
        (401, _) | (_, Some(C::InvalidClient | C::InvalidToken | C::Unauthorized)) => {
            Hint::Credentials
        }
        (404 | 405 | 501, Some(C::RouteNotFound | C::MethodNotAllowed) | None) => Hint::NotOffered,
        (404, _) => Hint::NotFound(not_found(request)),
        (409, _) => Hint::Conflict,
        (429, _) => Hint::RateLimited,
        (s, _) if s >= 500 => Hint::ServerFailed,
        _ => return None,
    };
    Some(h)
}

/// What a 404 could not find, judged from the request's path (the id in the path, or for
/// a create call the id its body names).
fn not_found(request: &str) -> NotFound {
    let path = request.split_whitespace().nth(1).unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let api = segments
        .iter()
        .position(|s| *s == "v1")
        .map_or(&[][..], |v1| &segments[v1 + 1..]);
    match api {
        ["mfa", "challenges", _, _, ..] => NotFound::Challenge,
        ["mfa", "challenges", "sms"] | ["mfa", "devices"] | ["persons", ..] => NotFound::Person,
        ["mfa", "devices", _, "keys", _, ..] => NotFound::Key,
        ["mfa", "challenges", ..] | ["mfa", "devices", ..] => NotFound::Device,
        ["change_requests", ..] => NotFound::ChangeRequest,
        _ => NotFound::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ErrorShape;

    fn api(status: u16, code: &str, detail: &str) -> ClientError {
        api_to("POST /v1/mfa/devices", status, code, detail)
    }

    fn api_to(request: &str, status: u16, code: &str, detail: &str) -> ClientError {
        ClientError::Api {
            request: request.into(),
            remote: Box::new(RemoteError {
                status,
                code: (!code.is_empty()).then(|| ErrorCode::parse(code)),
                title: String::new(),
                detail: detail.into(),
                field: None,
                shape: ErrorShape::Errors,
                injected: false,
            }),
            retries: 0,
        }
    }

    #[test]
    fn refusals_name_status_code_detail_and_what_it_means() {
        let e = api(401, "invalid_client", "unknown client").to_string();
        assert!(
            e.contains("POST /v1/mfa/devices refused: HTTP 401 invalid_client"),
            "{e}"
        );
        assert!(e.contains("VPHONE_CLIENT_SECRET"), "{e}");
        let e = api(409, "device_limit_reached", "person has 5 devices").to_string();
        assert!(e.contains("at most 5 devices"), "{e}");
        let e = api(403, "invalid_otp", "wrong code").to_string();
        assert!(e.contains("3 wrong answers"), "{e}");
        let e = api(403, "challenge_expired", "").to_string();
        assert!(e.contains("5 minutes"), "{e}");
    }

    #[test]
    fn library_messages_name_no_cli_command() {
        for (status, code) in [
            (409, "device_limit_reached"),
            (403, "device_deleted"),
            (409, "key_purpose_taken"),
            (403, "restricted_key_required"),
            (400, "telephone_number_not_found"),
            (404, "not_found"),
        ] {
            let e = api(status, code, "x").to_string();
            assert!(!e.contains("vphone "), "{e}");
        }
    }

    #[test]
    fn hints_come_from_status_and_code_never_from_the_detail() {
        let e = api(403, "", "Invalid or expired TAN");
        assert_eq!(
            e.hint(),
            None,
            "no code, a 403: nothing to guess from words"
        );
        assert!(!e.to_string().contains("5 minutes"), "{e}");
        let e = api(403, "invalid_tan", "Invalid or expired TAN");
        assert_eq!(e.hint(), None, "an unknown code is not guessed either");
        let e = api(403, "INVALID_OTP", "the challenge expired");
        assert_eq!(e.hint(), Some(Hint::WrongCode), "by code, in any case");
        let e = api(409, "", "maximum of devices reached");
        assert_eq!(e.hint(), Some(Hint::Conflict), "not the device limit");
        let e = api_to("POST /v1/mfa/challenges/sms", 404, "", "Cannot POST");
        assert_eq!(e.hint(), Some(Hint::NotOffered));
    }

    #[test]
    fn an_unreadable_answer_carries_its_status_and_code() {
        let e = ClientError::Decode {
            request: "GET /v1/persons/x".into(),
            status: 200,
            reason: "missing field `id`".into(),
        };
        assert_eq!(
            (e.status(), e.code()),
            (Some(200), Some("unreadable_answer"))
        );
    }

    #[test]
    fn a_404_hint_says_what_was_not_found() {
        let hint = |request: &str| api_to(request, 404, "not_found", "no such id").hint();
        let id = "0123456789abcdef0123456789abcdef";
        for request in [
            format!("GET /v1/mfa/challenges/devices/{id}"),
            format!("PUT /v1/mfa/challenges/signatures/{id}"),
            format!("PUT /v1/mfa/challenges/sms/{id}"),
        ] {
            assert_eq!(hint(&request), Some(Hint::NotFound(NotFound::Challenge)));
        }
        for request in [
            "POST /v1/mfa/challenges/devices".to_owned(),
            format!("GET /v1/mfa/devices/{id}"),
            format!("DELETE /v1/mfa/devices/{id}"),
            format!("POST /v1/mfa/devices/{id}/keys"),
        ] {
            assert_eq!(
                hint(&request),
                Some(Hint::NotFound(NotFound::Device)),
                "{request}"
            );
        }
        assert_eq!(
            hint(&format!("GET /v1/mfa/devices/{id}/keys/{id}")),
            Some(Hint::NotFound(NotFound::Key))
        );
        for request in [
            format!("GET /v1/persons/{id}cper"),
            format!("POST /v1/persons/{id}cper/mobile_number"),
            "POST /v1/mfa/challenges/sms".to_owned(),
            "POST /v1/mfa/devices".to_owned(),
        ] {
            assert_eq!(
                hint(&request),
                Some(Hint::NotFound(NotFound::Person)),
                "{request}"
            );
        }
        assert_eq!(
            hint(&format!("POST /v1/change_requests/{id}/confirm")),
            Some(Hint::NotFound(NotFound::ChangeRequest))
        );
    }
}
