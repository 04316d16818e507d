//! `vphone demo`: starts the sandbox in-process (or uses `--api`), then walks one phone
//! through every flow, one readable line per step, and ends with a summary.
//!
//! Every line shows the calls of its step with the statuses the server answered, read from
//! the client's transcript. A step whose call the server does not offer is skipped, not
//! failed, and the walk goes on with every later step that does not need it.

mod walk;

pub use walk::{CallReport, StepReport, StepStatus, not_offered};

mod steps;

use crate::api::{PhoneNumber, SmsMessage};
use crate::client::{ApiClient, ClientConfig, Credentials, Transcript};
use crate::phone::cli::{CliError, ConnectArgs, OtpArg, otp_source_known, parse_otp};
use crate::phone::{OtpSource, SmsFeed, random_number};
use crate::sandbox::{self, SandboxConfig, SandboxState};
use clap::Args;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use vphone_keystore::{PresenceError, PresenceRequest, UserPresence};
use walk::Walk;

/// `vphone demo`
#[derive(Debug, Args)]
#[command(after_help = DEMO_EXIT_CODES)]
pub struct DemoArgs {
    /// Print the steps and the summary as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// The mobile number to verify (default: a fresh random +49151 number on a vphone
    /// sandbox, so real OTPs flow; +15550101, which receives 212212, on any other server).
    #[arg(long)]
    pub number: Option<PhoneNumber>,
    /// Where SMS codes come from: auto, sandbox, static, static:CODE, command:CMD, prompt
    /// (as for `vphone phone`; auto reads the in-process sandbox's SMS directly).
    #[arg(long, default_value = "auto", value_parser = parse_otp)]
    pub otp: OtpArg,
    /// How long to wait for an SMS (or an OTP command, or a typed code).
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub otp_timeout: Duration,
    /// Server selection and credentials (without --api or --target the sandbox runs
    /// in-process).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The in-process sandbox is an SMS feed for phones in the same process.
impl SmsFeed for SandboxState {
    fn subscribe(&self) -> broadcast::Receiver<SmsMessage> {
        self.subscribe_sms()
    }
    fn since(&self, number: &PhoneNumber, after: u64) -> Vec<SmsMessage> {
        self.sms_since(number, after)
    }
}

/// The biometric prompt of the demo: approves, and counts how often it was asked.
#[derive(Debug, Default)]
pub struct CountingApprove(AtomicUsize);

impl CountingApprove {
    /// How often the prompt was shown.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl UserPresence for CountingApprove {
    fn confirm(&self, _request: &PresenceRequest) -> Result<(), PresenceError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The whole walk.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// The server.
    pub api: String,
    /// The steps in order.
    pub steps: Vec<StepReport>,
    /// Steps that passed.
    pub passed: usize,
    /// Steps skipped: the server does not offer their call (or one they need).
    pub skipped: usize,
    /// Steps that failed.
    pub failed: usize,
    /// Steps not tried because a step they need failed.
    pub not_run: usize,
    /// Steps planned.
    pub total: usize,
    /// Wall time.
    pub total_ms: f64,
}

/// The demo's exit codes, for `--help`.
pub const DEMO_EXIT_CODES: &str = "Exit codes: 0 when no step failed. A step whose call the \
server does not offer (404/405/501 on the route itself) is skipped, not failed, and does not \
change the exit code; the token and create-person steps cannot be skipped (without them \
nothing can be shown; the usual cause is a wrong --api base URL). Otherwise the code of the \
first failure: 1 refused, 3 server unreachable or timed out, 4 local state or an OTP source \
that cannot deliver.";
/// Runs `vphone demo` on a fresh runtime.
/// With `--json`, stdout holds one JSON document whatever happens: the report, or
/// `{"error": {...}}` when the walk could not start.
pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let json = args.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(execute(args)));
    match &result {
        // A failed walk already printed its report.
        Err(CliError::DemoFailed { .. }) | Ok(()) => {}
        Err(e) if json => match serde_json::to_string_pretty(&e.to_json()) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print JSON: {e}"),
        },
        Err(_) => {}
    }
    result
}

/// Runs the walk; `Ok` when no step failed (see [`DEMO_EXIT_CODES`]).
pub async fn execute(args: DemoArgs) -> Result<(), CliError> {
    let in_process = args.connect.api.is_none() && args.connect.target.is_none();
    let mut transcript = Transcript::in_memory();
    if let Some(path) = &args.connect.transcript {
        transcript = transcript.and_file(path).map_err(|e| {
            CliError::Local(format!(
                "cannot write the transcript {}: {e}",
                path.display()
            ))
        })?;
    }
    let transcript = Arc::new(transcript);
    let (client, sandbox) = if in_process {
        let handle = sandbox::spawn(SandboxConfig::default())
            .await
            .map_err(|e| CliError::Local(format!("cannot start the sandbox: {e}")))?;
        let base = handle
            .base_url()
            .parse()
            .map_err(|e| CliError::Local(format!("sandbox URL: {e}")))?;
        let client = ApiClient::new(
            ClientConfig::local(base, Credentials::sandbox_default())
                .with_timeout(args.connect.timeout)
                .with_transcript(Some(transcript.clone()))
                .with_retry(args.connect.retry_policy()),
        )?;
        (client, Some(handle))
    } else {
        let target = args.connect.target();
        let client = args
            .connect
            .client_with(&target, Some(transcript.clone()))?;
        (client, None)
    };
    // A vphone sandbox sends real SMS to any number; another server is asked for the test
    // number, whose code is the static 212212.
    let vphone_sandbox = sandbox.is_some() || client.is_vphone_sandbox().await;
    let number = match &args.number {
        Some(n) => n.clone(),
        None if vphone_sandbox => random_number(),
        None => PhoneNumber::test_number(),
    };
    let source = match (&sandbox, &args.otp) {
        (Some(handle), OtpArg::Auto) => {
            let feed: Arc<dyn SmsFeed> = Arc::new(handle.state().clone());
            OtpSource::InProcess(feed)
        }
        (_, arg) => otp_source_known(arg, &client, Some(&number), vphone_sandbox),
    };
    let api = client.base_url().to_owned();
    if !args.json {
        match &sandbox {
            Some(_) => println!("vphone demo: sandbox started in-process at {api}"),
            None => println!("vphone demo: against {api}"),
        }
    }
    let started = Instant::now();
    let mut walk = Walk {
        json: args.json,
        total: steps::STEPS,
        exit_code: None,
        steps: Vec::new(),
        transcript: transcript.clone(),
    };
    steps::walk_all(&mut walk, client, source, number, args.otp_timeout).await;
    if let Some(handle) = sandbox {
        handle.shutdown().await;
    }
    let _ = transcript.flush();
    let report = DemoReport {
        api,
        passed: walk.count(StepStatus::Ok),
        skipped: walk.count(StepStatus::Skipped),
        failed: walk.count(StepStatus::Failed),
        not_run: walk.count(StepStatus::NotRun),
        total: steps::STEPS,
        total_ms: started.elapsed().as_secs_f64() * 1e3,
        steps: walk.steps,
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print JSON: {e}"),
        }
    } else {
        println!("{}", summary_line(&report));
    }
    match walk.exit_code {
        None => Ok(()),
        Some(exit_code) => Err(CliError::DemoFailed {
            failed: report.failed + report.not_run,
            total: report.total,
            exit_code,
        }),
    }
}

/// `summary: 13/16 steps ok, 3 skipped, 0 failed in 95.1 ms`.
fn summary_line(r: &DemoReport) -> String {
    let mut line = format!(
        "summary: {}/{} steps ok, {} skipped, {} failed",
        r.passed, r.total, r.skipped, r.failed
    );
    if r.not_run > 0 {
        line.push_str(&format!(", {} not run", r.not_run));
    }
    line.push_str(&format!(" in {:.1} ms", r.total_ms));
    if r.failed > 0 {
        line.push_str(" — FAILED");
    }
    line
}
