//! One error type for every API call, with a hint naming the next step. Messages hold the
//! request line, status, code and detail, never credentials, tokens, OTPs or signatures.

use crate::api::RemoteError;
use std::time::Duration;

use super::credentials::CredentialsError;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; the bank refused the request.
    #[error("{request} refused: {remote}{}", hint_suffix(request, remote, None))]
    Api {
        /// The request, e.g. `POST /v1/mfa/devices`.
        request: String,
        /// What the server said, in whichever error shape it used.
        remote: Box<RemoteError>,
    },
    /// The server could not be reached at all.
    #[error(
        "cannot reach {url}: {}; is the server running? start one with `vphone sandbox`, or point --api at a running server",
        root_cause(source)
    )]
    Unreachable {
        /// The address tried (no credentials in it).
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
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
        root_cause(source)
    )]
    Transport {
        /// The address tried.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// A success answer whose body is not what the API documents.
    #[error("{request} answered {status} with an unexpected body: {reason}")]
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

    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        self.remote().map(|r| r.status)
    }

    /// The machine-readable code of a refusal (`""` when none was given).
    pub fn code(&self) -> Option<&str> {
        self.remote().map(|r| r.code.as_str())
    }

    /// The message, with the hint's commands naming phone `name` where the plain message
    /// says [`PHONE_NAME_PLACEHOLDER`] (the client does not know which phone it serves).
    pub fn message_for_phone(&self, name: &str) -> String {
        match self {
            ClientError::Api { request, remote } => {
                format!(
                    "{request} refused: {remote}{}",
                    hint_suffix(request, remote, Some(name))
                )
            }
            other => other.to_string(),
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

fn hint_suffix(request: &str, remote: &RemoteError, phone: Option<&str>) -> String {
    match (hint(request, remote), phone) {
        (Some(h), Some(name)) => {
            format!(
                " ({})",
                h.replace(&format!(" {PHONE_NAME_PLACEHOLDER}"), &format!(" {name}"))
            )
        }
        (Some(h), None) => format!(" ({h})"),
        (None, _) => String::new(),
    }
}

/// Stands for the phone's name in the commands hints suggest; see
/// [`ClientError::message_for_phone`].
pub const PHONE_NAME_PLACEHOLDER: &str = "NAME";

/// What the user should do next about a refusal of `request` (`"PUT /v1/..."`), judged
/// from its status and code (and, for a 404, from what the request named). Commands name
/// the phone as [`PHONE_NAME_PLACEHOLDER`].
pub fn hint(request: &str, remote: &RemoteError) -> Option<String> {
    let code = remote.code.as_str();
    let text = format!("{} {} {}", code, remote.title, remote.detail).to_ascii_lowercase();
    let h = match (remote.status, code) {
        (_, "device_limit_reached") => {
            "a person may bind at most 5 devices; list them with `vphone phone devices NAME`, delete one with `vphone phone delete-device <its phone>`, then bind again"
        }
        (_, "challenge_expired") => {
            "the challenge expired (challenges live 5 minutes); start a new one"
        }
        (_, "challenge_already_used") => "the challenge was already answered; start a new one",
        (_, "challenge_failed") => "the challenge is spent after 3 wrong answers; start a new one",
        (_, "invalid_otp") => {
            "the code was wrong; after 3 wrong answers the challenge is spent, so check the SMS and retry or start a new challenge"
        }
        (_, "device_deleted") => {
            "the device was deleted; forget it with `vphone phone delete-device NAME`, then bind again with `vphone phone bind NAME`"
        }
        (_, "key_purpose_taken") => {
            "the device already has a key of this purpose; list them with `vphone phone keys NAME`"
        }
        (_, "key_already_bound") => {
            "this public key is already bound; delete that device first or use a new phone"
        }
        (_, "restricted_key_required") => {
            "add a restricted key first with `vphone phone add-key NAME --purpose restricted`"
        }
        (_, "telephone_number_not_found") => {
            "the person has no verified mobile number; create the phone with `vphone phone create NAME --number +15550101`"
        }
        (_, "mobile_number_exists") => "the person already has a mobile number",
        (401, _) => {
            "check VPHONE_CLIENT_ID/VPHONE_CLIENT_SECRET or the --credentials file, and the token URL"
        }
        (403, _) if text.contains("expired") => {
            "the challenge expired (challenges live 5 minutes); start a new one"
        }
        (403, _) if text.contains("otp") || text.contains("tan") => {
            "the code was wrong; after 3 wrong answers the challenge is spent, so start a new one"
        }
        (403, _) if text.contains("signature") => {
            "the signature did not verify: a wrong OTP, a key the device does not have, or a spent challenge; start a new challenge or bind again"
        }
        (404, _) => not_found_hint(request),
        (409, _) if text.contains("limit") || text.contains("maximum") => {
            "a person may bind at most 5 devices; list them with `vphone phone devices NAME`, delete one with `vphone phone delete-device <its phone>`, then bind again"
        }
        (409, _) => "it conflicts with existing state; list what exists and retry",
        (429, _) => "rate limited; wait and retry",
        (s, _) if s >= 500 => "the server failed; retry later",
        _ => return None,
    };
    Some(h.to_owned())
}

/// What a 404 could not find, judged from the request's path (the id in the path, or for
/// a create call the id its body names), and where to look.
fn not_found_hint(request: &str) -> &'static str {
    let path = request.split_whitespace().nth(1).unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let api = segments
        .iter()
        .position(|s| *s == "v1")
        .map_or(&[][..], |v1| &segments[v1 + 1..]);
    match api {
        ["mfa", "challenges", _, _, ..] => {
            "unknown challenge for this partner: check the challenge id; challenges expire after 5 minutes, so start a new one if it is older"
        }
        ["mfa", "challenges", "sms"] | ["mfa", "devices"] | ["persons", ..] => {
            "unknown person for this partner: check the person id (a partner sees only the persons it created, so also check the credentials)"
        }
        ["mfa", "devices", _, "keys", _, ..] => {
            "unknown key for this device; list its keys with `vphone phone keys NAME`"
        }
        ["mfa", "challenges", ..] | ["mfa", "devices", ..] => {
            "unknown or deleted device for this partner; list the person's devices with `vphone phone devices NAME`, or bind again with `vphone phone bind NAME`"
        }
        ["change_requests", ..] => {
            "unknown change request for this partner: check the change request id"
        }
        _ => "unknown or deleted id for this partner; check the id",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, detail: &str) -> ClientError {
        api_to("POST /v1/mfa/devices", status, code, detail)
    }

    fn api_to(request: &str, status: u16, code: &str, detail: &str) -> ClientError {
        ClientError::Api {
            request: request.into(),
            remote: Box::new(RemoteError {
                status,
                code: code.into(),
                title: String::new(),
                detail: detail.into(),
                field: None,
            }),
        }
    }

    #[test]
    fn refusals_name_status_code_detail_and_the_next_step() {
        let e = api(401, "invalid_client", "unknown client").to_string();
        assert!(
            e.contains("POST /v1/mfa/devices refused: HTTP 401 invalid_client"),
            "{e}"
        );
        assert!(e.contains("VPHONE_CLIENT_SECRET"), "{e}");
        let e = api(409, "device_limit_reached", "person has 5 devices").to_string();
        assert!(e.contains("delete-device"), "{e}");
        let e = api(403, "invalid_otp", "wrong code").to_string();
        assert!(e.contains("3 wrong answers"), "{e}");
        let e = api(403, "challenge_expired", "").to_string();
        assert!(e.contains("5 minutes"), "{e}");
    }

    #[test]
    fn a_404_hint_says_what_was_not_found() {
        let hint = |request: &str| api_to(request, 404, "not_found", "no such id").to_string();
        let id = "0123456789abcdef0123456789abcdef";
        for request in [
            format!("GET /v1/mfa/challenges/devices/{id}"),
            format!("PUT /v1/mfa/challenges/signatures/{id}"),
            format!("PUT /v1/mfa/challenges/sms/{id}"),
        ] {
            let e = hint(&request);
            assert!(
                e.contains("check the challenge id") && e.contains("5 minutes"),
                "{e}"
            );
            assert!(!e.contains("devices NAME"), "{e}");
        }
        for request in [
            "POST /v1/mfa/challenges/devices".to_owned(),
            format!("GET /v1/mfa/devices/{id}"),
            format!("DELETE /v1/mfa/devices/{id}"),
            format!("POST /v1/mfa/devices/{id}/keys"),
        ] {
            let e = hint(&request);
            assert!(e.contains("vphone phone devices NAME"), "{request}: {e}");
        }
        let e = hint(&format!("GET /v1/mfa/devices/{id}/keys/{id}"));
        assert!(e.contains("vphone phone keys NAME"), "{e}");
        for request in [
            format!("GET /v1/persons/{id}cper"),
            format!("POST /v1/persons/{id}cper/mobile_number"),
            "POST /v1/mfa/challenges/sms".to_owned(),
            "POST /v1/mfa/devices".to_owned(),
        ] {
            let e = hint(&request);
            assert!(e.contains("check the person id"), "{request}: {e}");
        }
        let e = hint(&format!("POST /v1/change_requests/{id}/confirm"));
        assert!(e.contains("check the change request id"), "{e}");
    }

    #[test]
    fn a_hint_names_the_phone_when_the_caller_knows_it() {
        let e = api(409, "device_limit_reached", "person has 5 devices");
        assert!(e.to_string().contains("devices NAME`"), "{e}");
        let named = e.message_for_phone("alice");
        assert!(named.contains("`vphone phone devices alice`"), "{named}");
        assert!(!named.contains("NAME"), "{named}");
    }
}
