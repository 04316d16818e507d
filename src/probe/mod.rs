//! `vphone probe`: tells a team what a server supports. With a throwaway person it walks
//! every call of API.md once (through the phone's own flows, plus the reads no flow makes),
//! then prints one row per call — the status answered, the shape of the answer (as
//! documented, a named variant, unreadable), the time — and which phone flows work.
//! Everything shown comes from the client's transcript of what the server answered.

mod shapes;

pub use shapes::Shape;

use crate::api::{KeyPurpose, PhoneNumber, UpdatePerson};
use crate::client::{ApiClient, Exchange, Transcript};
use crate::demo::not_offered;
use crate::phone::cli::{CliError, ConnectArgs, OtpArg, otp_source_known, parse_otp};
use crate::phone::{Confirmation, Phone, PhoneError, PhoneName, person_named, random_number};
use clap::Args;
use serde::Serialize;
use shapes::{Body, classify};
use std::sync::Arc;
use std::time::Duration;

/// Retries the probe makes when neither `--retries` nor `--no-retry` is given: none, so
/// that a refusal the server made (a 503, a 429, a refused connection) is reported rather
/// than hidden behind a retry that passed.
pub const PROBE_DEFAULT_RETRIES: u32 = 0;

/// `vphone probe`'s exit codes.
pub const PROBE_EXIT_CODES: &str = "Exit codes: 0 when the table was made (whatever the server \
supports), 3 server unreachable or timed out before the first call, 4 credentials or \
configuration.";

/// `vphone probe`. It sends every request once unless `--retries N` asks for retries; a call
/// that passed only after retries then says so.
#[derive(Debug, Args)]
#[command(after_help = PROBE_EXIT_CODES)]
pub struct ProbeArgs {
    /// Print the table and the flows as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// The throwaway person's mobile number (default: a fresh random number on a vphone
    /// sandbox, else +15550101, which receives 212212).
    #[arg(long)]
    pub number: Option<PhoneNumber>,
    /// Where SMS codes come from (as for `vphone phone`).
    #[arg(long, default_value = "auto", value_parser = parse_otp)]
    pub otp: OtpArg,
    /// How long to wait for an SMS.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub otp_timeout: Duration,
    /// Server selection and credentials.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Every call of API.md, in the order the probe makes them, with the status and answer it
/// documents.
const CALLS: &[(&str, u16, Body)] = &[
    ("POST /oauth2/token", 200, Body::Token),
    ("POST /v1/persons", 201, Body::Person),
    ("GET /v1/persons/{id}", 200, Body::Person),
    (
        "POST /v1/persons/{id}/mobile_number",
        201,
        Body::MobileNumber,
    ),
    (
        "POST /v1/persons/{id}/mobile_number/authorize",
        201,
        Body::Any,
    ),
    (
        "POST /v1/persons/{id}/mobile_number/confirm",
        201,
        Body::MobileNumber,
    ),
    ("POST /v1/mfa/devices", 202, Body::CreateDevice),
    ("PUT /v1/mfa/challenges/signatures/{id}", 204, Body::Ignored),
    (
        "GET /v1/mfa/challenges/signatures/{id}",
        200,
        Body::SignatureChallenge,
    ),
    ("GET /v1/mfa/devices", 200, Body::DeviceList),
    ("GET /v1/mfa/devices/{id}", 200, Body::Device),
    ("GET /v1/mfa/devices/{id}/keys", 200, Body::Keys),
    ("POST /v1/mfa/devices/{id}/keys", 201, Body::AddKey),
    ("GET /v1/mfa/devices/{id}/keys/{id}", 200, Body::Key),
    (
        "POST /v1/mfa/challenges/devices",
        201,
        Body::DeviceChallenge,
    ),
    ("PUT /v1/mfa/challenges/devices/{id}", 204, Body::Ignored),
    (
        "GET /v1/mfa/challenges/devices/{id}",
        200,
        Body::DeviceChallenge,
    ),
    ("POST /v1/mfa/challenges/sms", 201, Body::SmsChallenge),
    ("PUT /v1/mfa/challenges/sms/{id}", 204, Body::Ignored),
    ("GET /v1/mfa/challenges/sms/{id}", 200, Body::SmsChallenge),
    ("PATCH /v1/persons/{id}", 202, Body::PatchPerson),
    (
        "POST /v1/change_requests/{id}/authorize",
        201,
        Body::ChangeRequest,
    ),
    (
        "POST /v1/change_requests/{id}/confirm",
        201,
        Body::Confirmation,
    ),
    ("DELETE /v1/mfa/devices/{id}", 204, Body::Ignored),
    (
        "DELETE /v1/persons/{id}/mobile_number",
        202,
        Body::ChangeRequest,
    ),
];

/// One call's row: the first request the probe made to it, and how that request ended.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `METHOD /route/{id}`.
    pub call: String,
    /// The status the request ended with (its first answer, unless it was retried);
    /// `None` when not reached or no answer came.
    pub status: Option<u16>,
    /// What that status means here: `ok`, `refused`, `not offered`, `no answer`, `not reached`.
    pub outcome: &'static str,
    /// How the answer's body was read.
    #[serde(flatten)]
    pub shape: Shape,
    /// The last exchange's time.
    pub ms: Option<f64>,
    /// When the request was retried (`--retries N`): what each attempt before the last was
    /// answered, in order (`None`: no answer came). Empty when it was sent once.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retried_after: Vec<Option<u16>>,
}

impl Row {
    /// Whether the call passed only because it was retried.
    pub fn passed_after_retries(&self) -> bool {
        self.outcome == "ok" && !self.retried_after.is_empty()
    }
}

/// One phone flow and whether it worked against the server.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRow {
    /// The `vphone phone` command.
    pub flow: &'static str,
    /// Whether it ran to the end.
    pub works: bool,
    /// Why not, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The probe's findings.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The server.
    pub api: String,
    /// One row per call of API.md.
    pub calls: Vec<Row>,
    /// The phone flows.
    pub flows: Vec<FlowRow>,
}

/// Runs `vphone probe` on a fresh runtime.
pub fn run(args: ProbeArgs) -> Result<(), CliError> {
    let json = args.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(execute(args)));
    if json && let Err(e) = &result {
        println!("{:#}", e.to_json());
    }
    result
}

/// Probes the server and prints the table.
pub async fn execute(args: ProbeArgs) -> Result<(), CliError> {
    let transcript = Arc::new(Transcript::in_memory());
    let target = args.connect.target();
    let mut connect = args.connect.clone();
    connect.retries = Some(connect.retries_or(PROBE_DEFAULT_RETRIES));
    let client = connect.client_with(&target, Some(transcript.clone()))?;
    // Without a token nothing else can be tried: an unreachable server is an error.
    if let Err(e) = client.authenticate().await
        && e.is_unavailable()
    {
        return Err(e.into());
    }
    // One health check serves both the default number and the `auto` OTP source, asked only
    // when one of them needs it.
    let vphone_sandbox = (args.number.is_none() || matches!(args.otp, OtpArg::Auto))
        && client.is_vphone_sandbox().await;
    let number = match &args.number {
        Some(n) => n.clone(),
        None if vphone_sandbox => random_number(),
        None => PhoneNumber::test_number(),
    };
    let source = otp_source_known(&args.otp, &client, Some(&number), vphone_sandbox);
    let name = PhoneName::parse("probe").map_err(|e| CliError::Usage(e.to_string()))?;
    let mut phone = Phone::new(name, client.clone(), source).with_otp_timeout(args.otp_timeout);
    let flows = walk(&mut phone, &client, number).await;
    let report = ProbeReport {
        api: client.base_url().to_owned(),
        calls: rows(&transcript.exchanges()),
        flows,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print JSON: {e}"),
        }
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// Records whether `flow` worked.
fn flow<T>(flows: &mut Vec<FlowRow>, flow: &'static str, result: &Result<T, PhoneError>) -> bool {
    flows.push(FlowRow {
        flow,
        works: result.is_ok(),
        why: result.as_ref().err().map(|e| first_line(&e.to_string())),
    });
    result.is_ok()
}

fn not_tried(flows: &mut Vec<FlowRow>, flow: &'static str, needs: &str) {
    flows.push(FlowRow {
        flow,
        works: false,
        why: Some(format!("not tried: needs {needs}")),
    });
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// Walks the flows (and the reads no flow makes), each once, noting which flows worked.
async fn walk(phone: &mut Phone, client: &ApiClient, number: PhoneNumber) -> Vec<FlowRow> {
    let mut flows = Vec::new();
    let person = phone
        .create_person(&person_named("Probe", "Throwaway"))
        .await;
    let person = match person {
        Ok(p) => p.id,
        Err(e) => {
            flow(&mut flows, "create", &Err::<(), _>(e));
            return flows;
        }
    };
    let _ = client.get_person(&person).await;
    let registered = async {
        phone.add_number(number).await?;
        phone.verify_number().await
    }
    .await;
    if !flow(&mut flows, "create", &registered) {
        for f in ["bind", "sms-challenge", "change --via sms"] {
            not_tried(&mut flows, f, "create");
        }
    }
    let bound = if registered.is_ok() {
        let b = phone.bind().await;
        if let Ok(b) = &b {
            let _ = client.get_signature_challenge(&b.challenge_id).await;
        }
        flow(&mut flows, "bind", &b)
    } else {
        false
    };
    let device_flows = [
        "show",
        "devices",
        "add-key",
        "keys",
        "approve",
        "change --via device",
        "delete-device",
    ];
    if bound {
        let shown = phone.device().await;
        flow(&mut flows, "show", &shown);
        let listed = phone.devices(false).await;
        flow(&mut flows, "devices", &listed);
        let added = phone.add_key(Some(KeyPurpose::Restricted)).await;
        flow(&mut flows, "add-key", &added);
        let keys = phone.keys().await;
        flow(&mut flows, "keys", &keys);
        if let (Some(device), Ok(added)) = (phone.profile().device_id.clone(), &added) {
            let _ = client.get_key(&device, &added.key_id).await;
        }
        let approved = phone.approve(Some(KeyPurpose::Unrestricted)).await;
        if let Ok(s) = &approved {
            let _ = client.get_device_challenge(&s.challenge_id).await;
        }
        flow(&mut flows, "approve", &approved);
    } else if registered.is_ok() {
        for f in device_flows {
            not_tried(&mut flows, f, "bind");
        }
    }
    if registered.is_ok() {
        let sms = phone.sms_challenge().await;
        if let Ok(s) = &sms {
            let _ = client.get_sms_challenge(&s.challenge_id).await;
        }
        flow(&mut flows, "sms-challenge", &sms);
    }
    let rename = |first: &str| UpdatePerson {
        first_name: Some(first.to_owned()),
        last_name: None,
        email: None,
    };
    if bound {
        let r = phone
            .change_person(&rename("Device"), &Confirmation::DeviceSigning)
            .await;
        flow(&mut flows, "change --via device", &r);
    }
    if registered.is_ok() {
        let r = phone
            .change_person(&rename("Sms"), &Confirmation::Sms)
            .await;
        flow(&mut flows, "change --via sms", &r);
    }
    let tan = crate::api::Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits"));
    let r = phone
        .change_person(&rename("Static"), &Confirmation::Static(tan))
        .await;
    flow(&mut flows, "change --via static", &r);
    if bound {
        let d = phone.delete_device().await;
        flow(&mut flows, "delete-device", &d);
    }
    // Last: it holds a change request, and the number is not needed any more.
    let _ = client.delete_mobile_number(&person).await;
    flows
}

/// One row per documented call, from the first request the transcript holds for it: its
/// first exchange and the retries that followed it (the probe makes one request at a time,
/// so the next exchanges of the same call marked as retries are that request's).
fn rows(exchanges: &[Exchange]) -> Vec<Row> {
    CALLS
        .iter()
        .map(|(call, documented, body)| {
            let mut of_call = exchanges.iter().filter(|e| e.call() == *call);
            let Some(first) = of_call.next() else {
                return Row {
                    call: (*call).to_owned(),
                    status: None,
                    outcome: "not reached",
                    shape: Shape::None,
                    ms: None,
                    retried_after: Vec::new(),
                };
            };
            let mut retried_after = Vec::new();
            let mut e = first;
            for next in of_call {
                if next.retry <= e.retry {
                    break;
                }
                retried_after.push(e.status);
                e = next;
            }
            let (outcome, shape) = match e.status {
                None => ("no answer", Shape::None),
                Some(s) if (200..300).contains(&s) => {
                    ("ok", classify(*body, s, *documented, e.response.as_ref()))
                }
                Some(_) if not_offered(e) => ("not offered", Shape::None),
                Some(_) => ("refused", Shape::None),
            };
            Row {
                call: (*call).to_owned(),
                status: e.status,
                outcome,
                shape,
                ms: Some(e.ms),
                retried_after,
            }
        })
        .collect()
}

/// The table and the flows, as printed.
pub fn render(r: &ProbeReport) -> String {
    use std::fmt::Write;
    let width = CALLS.iter().map(|(c, _, _)| c.len()).max().unwrap_or(40);
    let mut out = String::new();
    let _ = writeln!(out, "vphone probe: {}", r.api);
    let _ = writeln!(
        out,
        "{:width$}  {:>6}  {:>8}  shape",
        "call", "status", "ms"
    );
    for row in &r.calls {
        let status = row.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
        let ms = row.ms.map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"));
        let mut shape = match (&row.shape, row.outcome) {
            (Shape::None, outcome) => outcome.to_owned(),
            (shape, _) => shape.to_string(),
        };
        if !row.retried_after.is_empty() {
            let _ = write!(
                shape,
                " ({} after {}: {})",
                if row.outcome == "ok" {
                    "passed"
                } else {
                    "still failed"
                },
                retries_text(row.retried_after.len()),
                answers_text(&row.retried_after)
            );
        }
        let _ = writeln!(out, "{:width$}  {status:>6}  {ms:>8}  {shape}", row.call);
    }
    let retried: Vec<&str> = r
        .calls
        .iter()
        .filter(|row| row.passed_after_retries())
        .map(|row| row.call.as_str())
        .collect();
    if !retried.is_empty() {
        let _ = writeln!(
            out,
            "{} passed only after retries (the first attempt failed): {}",
            match retried.len() {
                1 => "1 call".to_owned(),
                n => format!("{n} calls"),
            },
            retried.join(", ")
        );
    }
    let _ = writeln!(out, "phone flows:");
    for f in &r.flows {
        match &f.why {
            None => {
                let _ = writeln!(out, "  {:22} works", f.flow);
            }
            Some(why) => {
                let _ = writeln!(out, "  {:22} does not work: {why}", f.flow);
            }
        }
    }
    out
}

fn retries_text(n: usize) -> String {
    match n {
        1 => "1 retry".to_owned(),
        n => format!("{n} retries"),
    }
}

/// The statuses of the attempts before the last, `no answer` where none came.
fn answers_text(answers: &[Option<u16>]) -> String {
    answers
        .iter()
        .map(|a| a.map_or_else(|| "no answer".to_owned(), |s| s.to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(seq: u64, method: &str, path: &str, status: Option<u16>, retry: u32) -> Exchange {
        Exchange {
            seq,
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            ms: 1.0,
            retry,
            request_id: None,
            request: None,
            response: None,
        }
    }

    fn row_of<'a>(rows: &'a [Row], call: &str) -> &'a Row {
        rows.iter().find(|r| r.call == call).unwrap()
    }

    #[test]
    fn a_row_is_the_first_request_of_its_call_with_the_retries_that_followed_it() {
        let rows = rows(&[
            exchange(0, "GET", "/v1/mfa/devices/d1", Some(503), 0),
            exchange(1, "GET", "/v1/mfa/devices/d1", None, 1),
            exchange(2, "GET", "/v1/mfa/devices/d1", Some(503), 2),
            // A later request of the same call, not a retry: not part of the row.
            exchange(3, "GET", "/v1/mfa/devices/d1", Some(200), 0),
            exchange(4, "DELETE", "/v1/mfa/devices/d1", Some(503), 0),
        ]);
        let device = row_of(&rows, "GET /v1/mfa/devices/{id}");
        assert_eq!((device.status, device.outcome), (Some(503), "refused"));
        assert_eq!(device.retried_after, [Some(503), None]);
        assert!(!device.passed_after_retries());
        let delete = row_of(&rows, "DELETE /v1/mfa/devices/{id}");
        assert!(delete.retried_after.is_empty());
    }

    #[test]
    fn the_table_says_which_calls_passed_only_after_retries() {
        let rows = rows(&[
            exchange(0, "GET", "/v1/mfa/devices/d1", Some(503), 0),
            exchange(1, "GET", "/v1/mfa/devices/d1", Some(200), 1),
            exchange(2, "DELETE", "/v1/mfa/devices/d1", Some(429), 0),
            exchange(3, "DELETE", "/v1/mfa/devices/d1", Some(429), 1),
        ]);
        let table = render(&ProbeReport {
            api: "http://127.0.0.1:1".to_owned(),
            calls: rows,
            flows: Vec::new(),
        });
        let line = |call: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{call} ")))
                .unwrap()
                .to_owned()
        };
        assert!(
            line("GET /v1/mfa/devices/{id}").ends_with("(passed after 1 retry: 503)"),
            "{table}"
        );
        assert!(
            line("DELETE /v1/mfa/devices/{id}")
                .ends_with("refused (still failed after 1 retry: 429)"),
            "{table}"
        );
        assert!(
            table.contains(
                "1 call passed only after retries (the first attempt failed): GET /v1/mfa/devices/{id}"
            ),
            "{table}"
        );
    }

    #[test]
    fn a_table_without_retries_says_nothing_of_them() {
        let rows = rows(&[exchange(0, "GET", "/v1/mfa/devices/d1", Some(503), 0)]);
        let table = render(&ProbeReport {
            api: "http://127.0.0.1:1".to_owned(),
            calls: rows,
            flows: Vec::new(),
        });
        assert!(!table.contains("retr"), "{table}");
    }
}
