//! The bank's error shapes, and one type that reads them all.

use super::ErrorCode;
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

/// How an error answer's body was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorShape {
    /// The documented `{"errors": [...]}`.
    Errors,
    /// Solaris' flat `{id, status, code, title, detail, error_code}` (or OAuth2's
    /// `{error, error_description}`).
    Flat,
    /// An HTML page (a proxy's or a web framework's error page).
    Html,
    /// Plain text, or JSON without any error field.
    Text,
    /// No body at all.
    Empty,
}

/// The longest detail kept from a page or text body, in characters.
const SHORT_LINE: usize = 120;

/// An error answer of the API, whatever shape it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// The HTTP status of the answer.
    pub status: u16,
    /// The machine-readable code, when the server gave one.
    pub code: Option<ErrorCode>,
    /// The short title.
    pub title: String,
    /// The detail text: for a page or text body, one short line condensed from it.
    pub detail: String,
    /// The offending field, if named.
    pub field: Option<String>,
    /// How the body was written.
    pub shape: ErrorShape,
    /// The answer carried [`INJECTED_FAULT_HEADER`]: a vphone sandbox's fault rule refused
    /// the request on purpose, not the bank's rules.
    pub injected: bool,
}

/// The header a vphone sandbox puts on the answers its fault rules make up (value
/// `injected`), so clients tell injected faults from real failures.
pub const INJECTED_FAULT_HEADER: &str = "vphone-fault";

impl RemoteError {
    /// Reads an error body: the `errors` array, the flat shape, OAuth2's
    /// `{error, error_description}`, an HTML page or plain text (both condensed to one short
    /// line). The HTTP status wins over a body's status.
    pub fn from_body(status: u16, body: &[u8]) -> RemoteError {
        let code_of = |text: String| (!text.is_empty()).then(|| ErrorCode::parse(&text));
        if let Ok(ApiErrorBody { errors }) = serde_json::from_slice::<ApiErrorBody>(body)
            && let Some(first) = errors.into_iter().next()
        {
            return RemoteError {
                status,
                code: code_of(first.code),
                title: first.title,
                detail: first.detail,
                field: first.source.and_then(|s| s.field),
                shape: ErrorShape::Errors,
                injected: false,
            };
        }
        if let Ok(flat) = serde_json::from_slice::<FlatError>(body) {
            let code = flat.code.or(flat.error_code).or(flat.error);
            let detail = flat.detail.or(flat.message).or(flat.error_description);
            if code.is_some() || detail.is_some() {
                return RemoteError {
                    status,
                    code: code.and_then(code_of),
                    title: flat.title.unwrap_or_default(),
                    detail: detail.unwrap_or_default(),
                    field: None,
                    shape: ErrorShape::Flat,
                    injected: false,
                };
            }
        }
        let text = String::from_utf8_lossy(body);
        let (detail, shape) = if text.trim().is_empty() {
            (String::new(), ErrorShape::Empty)
        } else if looks_like_html(&text) {
            (condense_html(&text), ErrorShape::Html)
        } else {
            (condense_text(&text), ErrorShape::Text)
        };
        RemoteError {
            status,
            code: None,
            title: String::new(),
            detail,
            field: None,
            shape,
            injected: false,
        }
    }

    /// The code as text (`""` when the server gave none).
    pub fn code_str(&self) -> &str {
        self.code.as_ref().map_or("", ErrorCode::as_str)
    }
}

fn looks_like_html(text: &str) -> bool {
    let head: String = text.trim_start().chars().take(200).collect();
    let head = head.to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body")
}

/// The first non-empty line, whitespace collapsed, cut to [`SHORT_LINE`] characters.
fn condense_text(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    shorten(&line.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn shorten(line: &str) -> String {
    if line.chars().count() <= SHORT_LINE {
        line.to_owned()
    } else {
        let mut cut: String = line.chars().take(SHORT_LINE - 1).collect();
        cut.push('…');
        cut
    }
}

/// What an HTML error page says, in one line: the text of its `<pre>` (Express), else its
/// `<h1>`, else its `<title>`, else all its text.
fn condense_html(page: &str) -> String {
    let text = ["pre", "h1", "title"]
        .iter()
        .find_map(|tag| element_text(page, tag).filter(|t| !t.is_empty()))
        .unwrap_or_else(|| strip_tags(page));
    format!(
        "HTML page: {:?}",
        condense_text(&text.split_whitespace().collect::<Vec<_>>().join(" "))
    )
}

fn element_text(page: &str, tag: &str) -> Option<String> {
    let lower = page.to_ascii_lowercase();
    let open = lower.find(&format!("<{tag}"))?;
    let body_start = open + lower[open..].find('>')? + 1;
    let close = body_start + lower[body_start..].find(&format!("</{tag}"))?;
    Some(
        decode_entities(&strip_tags(&page[body_start..close]))
            .trim()
            .to_owned(),
    )
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if self.shape == ErrorShape::Html {
            write!(f, " {}", self.detail)?;
        } else if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        } else if !self.title.is_empty() {
            write!(f, ": {}", self.title)?;
        }
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        if self.injected {
            f.write_str(" [a fault the vphone sandbox injected]")?;
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
            (e.code_str(), e.field.as_deref()),
            ("invalid_signature", Some("signature"))
        );
        let flat = br#"{"id":"x","status":404,"code":"model_not_found","title":"Model Not Found","detail":"no such device","error_code":"E1"}"#;
        let e = RemoteError::from_body(404, flat);
        assert_eq!(
            (e.code_str(), e.detail.as_str()),
            ("model_not_found", "no such device")
        );
        let e = RemoteError::from_body(502, b"Bad Gateway\n");
        assert_eq!(e.to_string(), "HTTP 502: Bad Gateway");
    }

    #[test]
    fn an_html_page_becomes_one_short_line() {
        let page = b"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n</head>\n<body>\n<pre>Cannot POST /v1/mfa/challenges/sms</pre>\n</body>\n</html>\n";
        let e = RemoteError::from_body(404, page);
        assert_eq!(e.shape, ErrorShape::Html);
        assert_eq!(
            e.to_string(),
            "HTTP 404 HTML page: \"Cannot POST /v1/mfa/challenges/sms\""
        );
        let nginx = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        let e = RemoteError::from_body(502, nginx);
        assert_eq!(e.to_string(), "HTTP 502 HTML page: \"502 Bad Gateway\"");
        assert!(!e.to_string().contains('<'));
    }

    #[test]
    fn plain_text_becomes_its_first_line_cut_short() {
        let long = format!("upstream says no\n\n{}", "stack frame\n".repeat(100));
        let e = RemoteError::from_body(500, long.as_bytes());
        assert_eq!(e.detail, "upstream says no");
        let wide = "x ".repeat(500);
        let e = RemoteError::from_body(500, wide.as_bytes());
        assert!(e.detail.chars().count() <= SHORT_LINE && e.detail.ends_with('…'));
        let e = RemoteError::from_body(503, b"");
        assert_eq!(
            (e.shape, e.to_string().as_str()),
            (ErrorShape::Empty, "HTTP 503")
        );
    }
}
