//! How the demo runs and reports one step: what it needs from earlier steps, the calls it
//! made with the statuses the server answered (read from the client's transcript, never
//! written by hand), and whether it passed, was skipped because the server does not offer
//! its call, failed, or could not run because a step it needs failed.

use crate::client::{ClientError, Exchange, Transcript};
use crate::phone::PhoneError;
use crate::phone::cli::CliError;
use serde::Serialize;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It did what it shows.
    Ok,
    /// The server does not offer a call it needs (or a step it needs was skipped).
    Skipped,
    /// The server refused or answered something the phone could not use.
    Failed,
    /// A step it needs failed, so it was not tried.
    NotRun,
}

/// One call of a step, as the transcript recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallReport {
    /// `METHOD /route/{id}`.
    pub call: String,
    /// The status the server answered; `None` when no answer came.
    pub status: Option<u16>,
    /// How long the exchange took.
    pub ms: f64,
}

impl CallReport {
    fn of(e: &Exchange) -> CallReport {
        CallReport {
            call: e.call(),
            status: e.status,
            ms: e.ms,
        }
    }
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based position.
    pub index: usize,
    /// What the step does.
    pub step: &'static str,
    /// How it ended.
    pub status: StepStatus,
    /// Whether it passed (`status == ok`).
    pub ok: bool,
    /// The calls it made and the statuses answered, then what they mean, or why it did not
    /// pass.
    pub detail: String,
    /// Every call it made, with the status the server answered.
    pub calls: Vec<CallReport>,
    /// How long it took; `None` when it did not run (a step it needs did not pass).
    pub ms: Option<f64>,
}

/// Why a step did not pass, and the exit code that deserves.
pub(super) struct StepError {
    pub(super) message: String,
    pub(super) exit_code: u8,
}

impl From<PhoneError> for StepError {
    fn from(e: PhoneError) -> Self {
        StepError {
            exit_code: e.exit_code(),
            message: e.to_string(),
        }
    }
}

impl From<ClientError> for StepError {
    fn from(e: ClientError) -> Self {
        let code = CliError::Client(e);
        StepError {
            exit_code: code.exit_code(),
            message: code.to_string(),
        }
    }
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError {
            message,
            exit_code: 1,
        }
    }
}

/// Whether an exchange says the server does not offer the call at all, rather than that an
/// object is unknown: 405 and 501 always; 404 when its body is not the API's error for an
/// unknown object (an HTML or text page, no body, JSON without a code, or the sandbox's own
/// `route_not_found`).
pub fn not_offered(e: &Exchange) -> bool {
    match e.status {
        Some(405 | 501) => true,
        Some(404) => {
            let Some(body) = &e.response else {
                return true;
            };
            let code = body["errors"][0]["code"]
                .as_str()
                .or_else(|| body["code"].as_str())
                .or_else(|| body["error_code"].as_str());
            match code {
                None => true,
                Some(c) => c == "route_not_found",
            }
        }
        _ => false,
    }
}

/// The steps so far, printing each as it ends.
pub(super) struct Walk {
    pub(super) json: bool,
    pub(super) total: usize,
    pub(super) exit_code: Option<u8>,
    pub(super) steps: Vec<StepReport>,
    pub(super) transcript: Arc<Transcript>,
}

impl Walk {
    /// Runs step `step` unless a step named in `needs` did not pass; `essential` steps are
    /// failed rather than skipped when the server does not offer their call (without them
    /// nothing can be shown, and the usual cause is a wrong --api base URL).
    pub(super) async fn step<F, T>(
        &mut self,
        step: &'static str,
        needs: &[&'static str],
        essential: bool,
        f: F,
    ) -> Option<T>
    where
        F: Future<Output = Result<(T, String), StepError>>,
    {
        if let Some((status, detail)) = self.blocked(needs) {
            self.push(step, status, detail, Vec::new(), None);
            return None;
        }
        let mark = self.transcript.len();
        let started = Instant::now();
        let result = f.await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        // The SMS outbox is the phone's SIM, not the bank: its polls are not the step's calls.
        let exchanges: Vec<Exchange> = self
            .transcript
            .since(mark)
            .into_iter()
            .filter(|e| !e.path.starts_with("/sandbox/"))
            .collect();
        let calls: Vec<CallReport> = exchanges.iter().map(CallReport::of).collect();
        let said = calls_line(&calls);
        let (status, detail, value) = match result {
            Ok((v, note)) => (StepStatus::Ok, join(&said, &note), Some(v)),
            Err(e) => match exchanges.last().filter(|e| not_offered(e)) {
                Some(last) if !essential => (
                    StepStatus::Skipped,
                    join(
                        &format!("skipped: server does not offer {}", last.call()),
                        &said,
                    ),
                    None,
                ),
                Some(last) => {
                    self.exit_code.get_or_insert(e.exit_code);
                    let why = format!(
                        "FAILED: the server does not offer {}; is --api the API's base URL?",
                        last.call()
                    );
                    (StepStatus::Failed, join(&said, &why), None)
                }
                None => {
                    self.exit_code.get_or_insert(e.exit_code);
                    (
                        StepStatus::Failed,
                        join(&said, &format!("FAILED: {}", e.message)),
                        None,
                    )
                }
            },
        };
        self.push(step, status, detail, calls, Some(ms));
        value
    }

    /// Whether a needed step did not pass: skipped when it was skipped, else not run.
    fn blocked(&self, needs: &[&'static str]) -> Option<(StepStatus, String)> {
        for need in needs {
            let Some(done) = self.steps.iter().find(|s| s.step == *need) else {
                return Some((
                    StepStatus::NotRun,
                    format!("not run: needs \"{need}\", which did not run"),
                ));
            };
            match done.status {
                StepStatus::Ok => {}
                StepStatus::Skipped => {
                    return Some((
                        StepStatus::Skipped,
                        format!("skipped: needs \"{need}\", which the server does not offer"),
                    ));
                }
                StepStatus::Failed | StepStatus::NotRun => {
                    return Some((
                        StepStatus::NotRun,
                        format!("not run: needs \"{need}\", which did not pass"),
                    ));
                }
            }
        }
        None
    }

    fn push(
        &mut self,
        step: &'static str,
        status: StepStatus,
        detail: String,
        calls: Vec<CallReport>,
        ms: Option<f64>,
    ) {
        let index = self.steps.len() + 1;
        if !self.json {
            let dots = ".".repeat(34usize.saturating_sub(step.len()));
            let total = self.total;
            match ms {
                Some(ms) if !calls.is_empty() || status == StepStatus::Ok => {
                    println!("[{index:>2}/{total}] {step} {dots} {detail}   ({ms:.1} ms)");
                }
                _ => println!("[{index:>2}/{total}] {step} {dots} {detail}"),
            }
            let _ = std::io::stdout().flush();
        }
        self.steps.push(StepReport {
            index,
            step,
            status,
            ok: status == StepStatus::Ok,
            detail,
            calls,
            ms,
        });
    }

    /// How many steps ended `status`.
    pub(super) fn count(&self, status: StepStatus) -> usize {
        self.steps.iter().filter(|s| s.status == status).count()
    }
}

/// `POST /v1/persons → 201 · GET /v1/persons/{id} → 200`, statuses as answered.
fn calls_line(calls: &[CallReport]) -> String {
    calls
        .iter()
        .map(|c| match c.status {
            Some(s) => format!("{} → {s}", c.call),
            None => format!("{} → no answer", c.call),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `first — second`, or whichever is not empty.
fn join(first: &str, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (false, true) => first.to_owned(),
        (false, false) => format!("{first} — {second}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answered(status: u16, response: Option<serde_json::Value>) -> Exchange {
        Exchange {
            seq: 0,
            method: "POST".into(),
            path: "/v1/mfa/challenges/sms".into(),
            status: Some(status),
            ms: 1.0,
            retry: 0,
            request_id: None,
            request: None,
            response,
        }
    }

    #[test]
    fn a_missing_route_is_told_from_an_unknown_object() {
        assert!(not_offered(&answered(
            404,
            Some(json!(
                "<html><body>Cannot POST /v1/mfa/challenges/sms</body></html>"
            ))
        )));
        assert!(not_offered(&answered(404, None)));
        assert!(not_offered(&answered(405, Some(json!({"errors": []})))));
        assert!(not_offered(&answered(501, None)));
        assert!(not_offered(&answered(
            404,
            Some(json!({"errors": [{"code": "route_not_found"}]}))
        )));
        assert!(!not_offered(&answered(
            404,
            Some(json!({"errors": [{"code": "not_found", "detail": "no such device"}]}))
        )));
        assert!(!not_offered(&answered(
            404,
            Some(json!({"code": "model_not_found"}))
        )));
        assert!(!not_offered(&answered(403, None)));
    }
}
