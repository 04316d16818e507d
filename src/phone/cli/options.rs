//! Options shared by the `phone` commands (and `demo`): server, credentials, the emulated
//! biometric prompt and where SMS codes come from.

use crate::api::{Otp, PhoneNumber};
use crate::client::retry::DEFAULT_RETRIES;
use crate::client::{
    ApiClient, ClientConfig, ClientError, Credentials, RetryPolicy, Target, Transcript,
};
use crate::phone::{Confirmation, OtpCommand, OtpSource};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use vphone_keystore::{AlwaysApprove, AlwaysDeny, ApproveAfter, TerminalPrompt, UserPresence};

use super::ViaArg;

/// Which server to talk to and how; shared by `phone` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// API base URL of a local or other server (token URL: <URL>/oauth2/token). Without
    /// --api or --target, a phone command talks to the server the phone was created
    /// against, else http://127.0.0.1:8080.
    #[arg(long, global = true, value_name = "URL", conflicts_with = "target")]
    pub api: Option<Url>,
    /// A well-known server instead of --api.
    #[arg(long, global = true, value_enum)]
    pub target: Option<TargetArg>,
    /// TOML file with client_id and client_secret (else $VPHONE_CREDENTIALS, else
    /// $VPHONE_CLIENT_ID/$VPHONE_CLIENT_SECRET; local servers fall back to the sandbox's
    /// default partner). Secrets are never taken as arguments.
    #[arg(long, global = true, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// How long one HTTP request may take.
    #[arg(long, global = true, value_name = "DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Write every HTTP exchange (method, path, status, ms, request id, bodies with OTPs,
    /// TANs, tokens and signatures redacted) to FILE as JSON lines, e.g. for a bug report.
    #[arg(long, global = true, value_name = "FILE")]
    pub transcript: Option<PathBuf>,
    /// How often a failed request is sent again (default 3; `vphone probe`: 0, so that a
    /// refusal it should report is not hidden): 429 and 503 for every call; 502, 504 and a
    /// connection closed unanswered only for idempotent ones (GET, PUT, DELETE); with
    /// exponential backoff and full jitter, honouring Retry-After up to 10 s.
    #[arg(long, global = true, value_name = "N")]
    pub retries: Option<u32>,
    /// Send every request once (the same as --retries 0).
    #[arg(long, global = true, conflicts_with = "retries")]
    pub no_retry: bool,
}

/// A well-known server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// The local sandbox at http://127.0.0.1:8080 (`vphone sandbox`).
    Local,
    /// Solaris' public sandbox.
    SolarisSandbox,
    /// Solaris' production API.
    SolarisProduction,
}

/// The local sandbox's default address.
pub const DEFAULT_LOCAL_API: &str = "http://127.0.0.1:8080";

impl ConnectArgs {
    /// The server these arguments name.
    pub fn target(&self) -> Target {
        match (&self.api, self.target) {
            (Some(url), _) => Target::Local(url.clone()),
            (None, Some(TargetArg::SolarisSandbox)) => Target::SolarisSandbox,
            (None, Some(TargetArg::SolarisProduction)) => Target::SolarisProduction,
            (None, Some(TargetArg::Local) | None) => Target::Local(
                Url::parse(DEFAULT_LOCAL_API)
                    .unwrap_or_else(|_| unreachable!("constant URL parses")),
            ),
        }
    }

    /// The retry policy `--retries` and `--no-retry` ask for ([`DEFAULT_RETRIES`] when
    /// neither is given).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default().with_retries(self.retries_or(DEFAULT_RETRIES))
    }

    /// The retries `--retries` and `--no-retry` ask for, `default` when neither is given.
    pub fn retries_or(&self, default: u32) -> u32 {
        match (self.no_retry, self.retries) {
            (true, _) => 0,
            (false, Some(n)) => n,
            (false, None) => default,
        }
    }

    /// A client for the target, with credentials from the file or environment, recording
    /// into the `--transcript` file if one is named.
    pub fn client(&self, target: &Target) -> Result<ApiClient, ClientError> {
        let transcript = match &self.transcript {
            Some(path) => Some(Arc::new(Transcript::to_file(path, 1).map_err(|e| {
                ClientError::Config(format!(
                    "cannot write the transcript {}: {e}",
                    path.display()
                ))
            })?)),
            None => None,
        };
        self.client_with(target, transcript)
    }

    /// A client for the target recording into `transcript` (the caller's, e.g. the demo's).
    pub fn client_with(
        &self,
        target: &Target,
        transcript: Option<Arc<Transcript>>,
    ) -> Result<ApiClient, ClientError> {
        let credentials = Credentials::for_target(self.credentials.as_deref(), target)?;
        ApiClient::new(
            ClientConfig::new(target, credentials)
                .with_timeout(self.timeout)
                .with_transcript(transcript)
                .with_retry(self.retry_policy()),
        )
    }
}

/// Options of every `vphone phone` command.
#[derive(Debug, Clone, Args)]
pub struct PhoneOptions {
    /// Where phone profiles live (default $VPHONE_HOME, else ~/.vphone).
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// The emulated biometric prompt for restricted keys: approve, deny, prompt (ask on the
    /// terminal) or delay:DURATION (approve after e.g. delay:2s).
    #[arg(long, global = true, default_value = "approve", value_parser = parse_presence)]
    pub presence: PresenceArg,
    /// Where SMS codes come from: auto (the SMS outbox when the server answers GET
    /// /sandbox/health as a vphone sandbox, else 212212 for the test number +15550101, else
    /// prompt), sandbox, static (212212), static:CODE, command:CMD (runs `sh -c CMD` with
    /// VPHONE_OTP_NUMBER and VPHONE_OTP_KIND set; the first 6-digit code on its stdout is the
    /// code), prompt (the terminal, or one code per line on stdin when it is not a terminal).
    #[arg(long, global = true, default_value = "auto", value_parser = parse_otp)]
    pub otp: OtpArg,
    /// How long to wait for an SMS.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub otp_timeout: Duration,
    /// Server selection and credentials.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The emulated biometric prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceArg {
    /// Approve at once.
    Approve,
    /// Always refuse.
    Deny,
    /// Ask on the terminal.
    Prompt,
    /// Approve after a delay.
    Delay(Duration),
}

fn parse_presence(s: &str) -> Result<PresenceArg, String> {
    match s {
        "approve" => Ok(PresenceArg::Approve),
        "deny" => Ok(PresenceArg::Deny),
        "prompt" => Ok(PresenceArg::Prompt),
        other => match other.strip_prefix("delay:") {
            Some(d) => humantime::parse_duration(d)
                .map(PresenceArg::Delay)
                .map_err(|e| format!("bad delay {d:?}: {e}")),
            None => Err(format!(
                "{other:?} is not one of approve, deny, prompt, delay:DURATION"
            )),
        },
    }
}

impl PresenceArg {
    /// The prompt implementation.
    pub fn presence(self) -> Arc<dyn UserPresence> {
        match self {
            PresenceArg::Approve => Arc::new(AlwaysApprove),
            PresenceArg::Deny => Arc::new(AlwaysDeny),
            PresenceArg::Prompt => Arc::new(TerminalPrompt::new()),
            PresenceArg::Delay(d) => Arc::new(ApproveAfter(d)),
        }
    }
}

/// Where codes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtpArg {
    /// Pick by what the server is and the number.
    Auto,
    /// The vphone sandbox's SMS outbox.
    Sandbox,
    /// Always this code (`static` alone: 212212, the Solaris sandbox's test code).
    Static(Otp),
    /// Run this command and read the code from its stdout.
    Command(OtpCommand),
    /// The terminal, or stdin lines.
    Prompt,
}

/// Parses `auto`, `sandbox`, `static`, `static:CODE`, `command:CMD` or `prompt`.
pub fn parse_otp(s: &str) -> Result<OtpArg, String> {
    match s {
        "auto" => Ok(OtpArg::Auto),
        "sandbox" => Ok(OtpArg::Sandbox),
        "static" => Ok(OtpArg::Static(test_code())),
        "prompt" => Ok(OtpArg::Prompt),
        other => {
            if let Some(code) = other.strip_prefix("static:") {
                // The message does not repeat the argument: it may be a real code.
                Otp::parse(code)
                    .map(OtpArg::Static)
                    .map_err(|_| "static:CODE needs exactly 6 digits".to_owned())
            } else if let Some(cmd) = other.strip_prefix("command:") {
                if cmd.trim().is_empty() {
                    return Err("command:CMD needs a command, e.g. command:'my-sms-reader'".into());
                }
                Ok(OtpArg::Command(OtpCommand::new(cmd)))
            } else {
                Err(format!(
                    "{other:?} is not one of auto, sandbox, static, static:CODE, command:CMD, prompt"
                ))
            }
        }
    }
}

/// 212212: what the Solaris sandbox (and ours) sends to the test number +15550101.
fn test_code() -> Otp {
    Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits"))
}

/// The OTP source `arg` names for `number` on `client`'s server. `auto` asks the server's
/// `GET /sandbox/health` whether it is a vphone sandbox (whose outbox can be read).
pub async fn otp_source(
    arg: &OtpArg,
    client: &ApiClient,
    number: Option<&PhoneNumber>,
) -> OtpSource {
    let vphone_sandbox = matches!(arg, OtpArg::Auto) && client.is_vphone_sandbox().await;
    otp_source_known(arg, client, number, vphone_sandbox)
}

/// [`otp_source`] for a caller that already asked the server whether it is a vphone
/// sandbox (`vphone_sandbox`), so the health check is not sent twice.
pub fn otp_source_known(
    arg: &OtpArg,
    client: &ApiClient,
    number: Option<&PhoneNumber>,
    vphone_sandbox: bool,
) -> OtpSource {
    match arg {
        OtpArg::Sandbox => OtpSource::SandboxHttp(client.clone()),
        OtpArg::Static(code) => OtpSource::Static(code.clone()),
        OtpArg::Command(cmd) => OtpSource::Command(cmd.clone()),
        OtpArg::Prompt => OtpSource::Terminal,
        OtpArg::Auto => {
            if vphone_sandbox {
                OtpSource::SandboxHttp(client.clone())
            } else if number == Some(&PhoneNumber::test_number()) {
                OtpSource::Static(test_code())
            } else {
                OtpSource::Terminal
            }
        }
    }
}

pub(super) fn confirmation(via: ViaArg) -> Confirmation {
    match via {
        ViaArg::Device => Confirmation::DeviceSigning,
        ViaArg::Sms => Confirmation::Sms,
        ViaArg::Static => Confirmation::Static(test_code()),
    }
}
