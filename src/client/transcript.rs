//! The client's transcript: one record per HTTP exchange (method, path without its query,
//! status, milliseconds, request id, and the JSON bodies with every secret redacted), kept
//! in memory for the demo and the probe and/or written as JSON lines for bug reports.
//!
//! A client without a transcript pays one `Option` check per request. A transcript may
//! sample (`every = N` records one exchange in N), so a fleet can keep one cheaply; the
//! bodies are only copied for exchanges that are recorded.

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What replaces a secret in a recorded body.
pub const REDACTED: &str = "<redacted>";

/// The most bytes of a non-JSON body kept (as text, secrets masked).
const TEXT_KEEP: usize = 160;

/// The most exchanges kept in memory; later ones still go to the file.
const MEMORY_CAP: usize = 100_000;

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    /// Position in the transcript (0-based, counting every exchange, sampled or not).
    pub seq: u64,
    /// The HTTP method.
    pub method: String,
    /// The request path, without the query (which may carry secrets or filters).
    pub path: String,
    /// The status the server answered; `None` when no answer came (connection failed).
    pub status: Option<u16>,
    /// From sending the request to reading the whole answer.
    pub ms: f64,
    /// Which retry of its request this exchange was under the retry policy: 0 for the first
    /// attempt (then left out of the JSON). A resend after a token refresh is not a retry.
    #[serde(skip_serializing_if = "is_zero")]
    pub retry: u32,
    /// The server's request id (`x-request-id` and its cousins), if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The request body, secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    /// The answer's body, secrets redacted: JSON as JSON, anything else as a short string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Exchange {
    /// `METHOD /path/template`, ids replaced by `{id}`, e.g. `PUT /v1/mfa/challenges/sms/{id}`.
    pub fn call(&self) -> String {
        format!("{} {}", self.method, route_of(&self.path))
    }
}

/// The path with every segment that is not a word of the API replaced by `{id}`.
pub fn route_of(path: &str) -> String {
    const WORDS: &[&str] = &[
        "v1",
        "persons",
        "mobile_number",
        "authorize",
        "confirm",
        "mfa",
        "devices",
        "keys",
        "challenges",
        "signatures",
        "sms",
        "change_requests",
        "oauth2",
        "oauth",
        "token",
        "sandbox",
        "health",
        "stats",
    ];
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let mut out = String::with_capacity(path.len());
    // Segments before the first API word are the base URL's own prefix: kept as they are.
    let mut in_api = false;
    for seg in path.split('/').skip(1) {
        out.push('/');
        in_api |= WORDS.contains(&seg);
        if !in_api || WORDS.contains(&seg) || seg.is_empty() {
            out.push_str(seg);
        } else {
            out.push_str("{id}");
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// A record of a client's exchanges.
#[derive(Debug)]
pub struct Transcript {
    every: u64,
    counter: AtomicU64,
    memory: Option<Mutex<Vec<Exchange>>>,
    file: Option<Mutex<BufWriter<File>>>,
}

impl Transcript {
    /// Keeps every exchange in memory (for the demo and the probe).
    pub fn in_memory() -> Transcript {
        Transcript {
            every: 1,
            counter: AtomicU64::new(0),
            memory: Some(Mutex::new(Vec::new())),
            file: None,
        }
    }

    /// Writes one exchange in `every` (at least 1) to `path` as JSON lines, keeping none in
    /// memory (for fleets).
    pub fn to_file(path: &Path, every: u64) -> std::io::Result<Transcript> {
        Ok(Transcript {
            every: every.max(1),
            counter: AtomicU64::new(0),
            memory: None,
            file: Some(Mutex::new(BufWriter::new(File::create(path)?))),
        })
    }

    /// The same transcript, also writing every exchange to `path` as JSON lines.
    pub fn and_file(mut self, path: &Path) -> std::io::Result<Transcript> {
        self.file = Some(Mutex::new(BufWriter::new(File::create(path)?)));
        Ok(self)
    }

    /// Claims the next position; `Some(seq)` when this exchange is to be recorded.
    pub(crate) fn claim(&self) -> Option<u64> {
        let seq = self.counter.fetch_add(1, Ordering::Relaxed);
        seq.is_multiple_of(self.every).then_some(seq)
    }

    /// Records one exchange (already redacted).
    pub(crate) fn record(&self, exchange: Exchange) {
        if let Some(file) = &self.file {
            let mut w = file.lock();
            // A transcript is a diagnostic: a full disk must not fail the call it records.
            if serde_json::to_writer(&mut *w, &exchange).is_ok() {
                let _ = w.write_all(b"\n");
            }
        }
        if let Some(memory) = &self.memory {
            let mut m = memory.lock();
            if m.len() < MEMORY_CAP {
                m.push(exchange);
            }
        }
    }

    /// How many exchanges are kept in memory; a mark for [`Transcript::since`].
    pub fn len(&self) -> usize {
        self.memory.as_ref().map_or(0, |m| m.lock().len())
    }

    /// Whether none is kept in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The exchanges kept in memory from position `mark` (a former [`Transcript::len`]) on.
    pub fn since(&self, mark: usize) -> Vec<Exchange> {
        self.memory
            .as_ref()
            .map_or_else(Vec::new, |m| m.lock().get(mark..).unwrap_or(&[]).to_vec())
    }

    /// Every exchange kept in memory.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.since(0)
    }

    /// Writes buffered lines to the file.
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.file {
            Some(f) => f.lock().flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Transcript {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A body as recorded: JSON with secrets redacted, else a short masked text, `None` if empty.
pub fn redacted_body(bytes: &[u8]) -> Option<Value> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut v) => {
            redact(&mut v);
            Some(v)
        }
        Err(_) => {
            let text = String::from_utf8_lossy(bytes);
            // Masked before it is cut, so no half of a code survives the cut.
            let mut short = mask_codes(&text.split_whitespace().collect::<Vec<_>>().join(" "));
            if short.len() > TEXT_KEEP {
                let mut cut = TEXT_KEEP;
                while !short.is_char_boundary(cut) {
                    cut -= 1;
                }
                short.truncate(cut);
                short.push('…');
            }
            Some(Value::String(short))
        }
    }
}

/// Fields whose value is a secret wherever they appear.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "tan",
    "otp",
    "signature",
    "client_secret",
    "password",
    "private_key",
    "secret",
];

/// Fields of free text that may quote a code (an SMS's text).
const TEXT_FIELDS: &[&str] = &["text", "message", "body", "sms"];

/// Redacts secrets in place: every [`SECRET_FIELDS`] value, a `code` that is all digits (an
/// SMS challenge's answer; error codes are words and stay), and codes quoted in free text.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.to_ascii_lowercase();
                let digits_code = k == "code"
                    && v.as_str()
                        .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
                if SECRET_FIELDS.contains(&k.as_str()) || digits_code {
                    *v = Value::String(REDACTED.to_owned());
                } else if TEXT_FIELDS.contains(&k.as_str())
                    && let Value::String(s) = v
                {
                    *s = mask_codes(s);
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Replaces every standalone run of 4 to 8 digits (an OTP or TAN) with [`REDACTED`].
fn mask_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let mut prev_alnum = false;
    let flush = |run: &mut String, out: &mut String, next_alnum: bool, prev_alnum: bool| {
        if (4..=8).contains(&run.len()) && !next_alnum && !prev_alnum {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    let mut before_run = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if run.is_empty() {
                before_run = prev_alnum;
            }
            run.push(c);
        } else {
            if !run.is_empty() {
                flush(&mut run, &mut out, c.is_alphanumeric(), before_run);
            }
            out.push(c);
        }
        prev_alnum = c.is_alphanumeric();
    }
    if !run.is_empty() {
        flush(&mut run, &mut out, false, before_run);
    }
    out
}

/// The server's request id from the usual headers.
pub(crate) fn request_id(headers: &http::HeaderMap) -> Option<String> {
    [
        "x-request-id",
        "request-id",
        "x-correlation-id",
        "x-amzn-requestid",
    ]
    .iter()
    .find_map(|h| headers.get(*h))
    .and_then(|v| v.to_str().ok())
    .map(|s| s.chars().take(128).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn otps_tans_tokens_and_signatures_are_redacted_and_the_rest_kept() {
        let mut v = json!({
            "access_token": "eyJ.secret.token", "token_type": "bearer",
            "token": "123456", "tan": "212212", "signature": "3045aa",
            "code": "654321", "errors": [{"code": "invalid_otp", "detail": "wrong code"}],
            "client_secret": "s3cr3t",
            "nested": {"sms": [{"text": "Your code is 987654. Do not share it.", "seq": 7}]},
            "id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
            "string_to_sign": "challenge-42-of-7"
        });
        redact(&mut v);
        let text = v.to_string();
        for secret in [
            "eyJ.secret.token",
            "123456",
            "212212",
            "3045aa",
            "654321",
            "s3cr3t",
            "987654",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(v["errors"][0]["code"], "invalid_otp");
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v["id"], "a1b2c3d4e5f60718293a4b5c6d7e8f90");
        assert_eq!(v["string_to_sign"], "challenge-42-of-7");
        assert_eq!(
            v["nested"]["sms"][0]["text"],
            "Your code is <redacted>. Do not share it."
        );
        assert_eq!(v["nested"]["sms"][0]["seq"], 7);
    }

    #[test]
    fn a_text_body_is_one_short_line_with_codes_masked() {
        let page = format!(
            "<html>\n<body>Cannot POST /v1/x, code 123456</body>{}</html>",
            "x".repeat(400)
        );
        let v = redacted_body(page.as_bytes()).unwrap();
        let s = v.as_str().unwrap();
        assert!(s.starts_with("<html> <body>Cannot POST /v1/x, code <redacted></body>"));
        assert!(s.chars().count() <= TEXT_KEEP + 1, "{s}");
        assert!(redacted_body(b"  \n").is_none());
    }

    #[test]
    fn routes_replace_ids_but_keep_api_words() {
        assert_eq!(
            route_of("/v1/mfa/challenges/sms/abc123?x=1"),
            "/v1/mfa/challenges/sms/{id}"
        );
        assert_eq!(
            route_of("/v1/persons/p1/mobile_number/confirm"),
            "/v1/persons/{id}/mobile_number/confirm"
        );
        assert_eq!(route_of("/oauth2/token"), "/oauth2/token");
        assert_eq!(
            route_of("/prefix/v1/mfa/devices/d1/keys"),
            "/prefix/v1/mfa/devices/{id}/keys"
        );
    }

    #[test]
    fn sampling_records_one_in_n() {
        let t = Transcript {
            every: 3,
            counter: AtomicU64::new(0),
            memory: None,
            file: None,
        };
        let claimed: Vec<u64> = (0..9).filter_map(|_| t.claim()).collect();
        assert_eq!(claimed, vec![0, 3, 6]);
    }
}
