//! The bank's error shapes, and one type that reads them all.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where in the request the problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorSource {
    /// The offending field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One entry of the `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// A unique id of this occurrence.
    #[serde(default)]
    pub id: String,
    /// The HTTP status.
    #[serde(default)]
    pub status: u16,
    /// Machine-readable code, e.g. `invalid_signature`.
    #[serde(default)]
    pub code: String,
    /// Short human title.
    #[serde(default)]
    pub title: String,
    /// What was wrong and what to do.
    #[serde(default)]
    pub detail: String,
    /// Where the problem is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ErrorSource>,
}

/// The `{"errors": [...]}` body the sandbox always sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// The errors, usually one.
    pub errors: Vec<ErrorObject>,
}

#[derive(Deserialize)]
struct FlatError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// An error answer of the API, whatever shape it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The machine-readable code (empty when the server gave none).
    pub code: String,
    /// The short title.
    pub title: String,
    /// The detail text.
    pub detail: String,
    /// The offending field, if named.
    pub field: Option<String>,
}

impl RemoteError {
    /// Reads an error body: the `errors` array, the flat shape, OAuth2's
    /// `{error, error_description}`, or plain text. The HTTP status wins over a body's status.
    pub fn from_body(status: u16, body: &[u8]) -> RemoteError {
        if let Ok(ApiErrorBody { errors }) = serde_json::from_slice::<ApiErrorBody>(body)
            && let Some(first) = errors.into_iter().next()
        {
            return RemoteError {
                status,
                code: first.code,
                title: first.title,
                detail: first.detail,
                field: first.source.and_then(|s| s.field),
            };
        }
        if let Ok(flat) = serde_json::from_slice::<FlatError>(body) {
            let code = flat.code.or(flat.error_code).or(flat.error);
            let detail = flat.detail.or(flat.message).or(flat.error_description);
            if code.is_some() || detail.is_some() {
                return RemoteError {
                    status,
                    code: code.unwrap_or_default(),
                    title: flat.title.unwrap_or_default(),
                    detail: detail.unwrap_or_default(),
                    field: None,
                };
            }
        }
        let text = String::from_utf8_lossy(body);
        RemoteError {
            status,
            code: String::new(),
            title: String::new(),
            detail: text.trim().chars().take(500).collect(),
            field: None,
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if !self.code.is_empty() {
            write!(f, " {}", self.code)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        } else if !self.title.is_empty() {
            write!(f, ": {}", self.title)?;
        }
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_and_plain_text_are_read() {
        let arr = br#"{"errors":[{"id":"x","status":403,"code":"invalid_signature","title":"Invalid Signature","detail":"does not verify","source":{"field":"signature"}}]}"#;
        let e = RemoteError::from_body(403, arr);
        assert_eq!(
            (e.code.as_str(), e.field.as_deref()),
            ("invalid_signature", Some("signature"))
        );
        let flat = br#"{"id":"x","status":404,"code":"model_not_found","title":"Model Not Found","detail":"no such device","error_code":"E1"}"#;
        let e = RemoteError::from_body(404, flat);
        assert_eq!(
            (e.code.as_str(), e.detail.as_str()),
            ("model_not_found", "no such device")
        );
        let e = RemoteError::from_body(502, b"Bad Gateway\n");
        assert_eq!(e.to_string(), "HTTP 502: Bad Gateway");
    }
}
