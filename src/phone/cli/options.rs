//! Options shared by the `phone` commands (and `demo`): server, credentials, the emulated
//! biometric prompt and where SMS codes come from.

use crate::api::{Otp, PhoneNumber};
use crate::client::{ApiClient, ClientConfig, ClientError, Credentials, Target};
use crate::phone::{Confirmation, OtpSource};
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

    /// A client for the target, with credentials from the file or environment.
    pub fn client(&self, target: &Target) -> Result<ApiClient, ClientError> {
        let credentials = Credentials::for_target(self.credentials.as_deref(), target)?;
        ApiClient::new(ClientConfig::new(target, credentials).with_timeout(self.timeout))
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
    /// Where SMS codes come from: auto (the sandbox outbox for --api servers, else static
    /// 212212 for the test number +15550101, else the terminal), sandbox, static, prompt.
    #[arg(long, global = true, value_enum, default_value = "auto")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OtpArg {
    /// Pick by target and number.
    Auto,
    /// The vphone sandbox's SMS outbox.
    Sandbox,
    /// Always 212212 (the Solaris sandbox's test code).
    Static,
    /// Ask on the terminal.
    Prompt,
}

pub(super) fn otp_source(
    arg: OtpArg,
    target: &Target,
    client: &ApiClient,
    number: Option<&PhoneNumber>,
) -> OtpSource {
    let static_code =
        || OtpSource::Static(Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits")));
    match arg {
        OtpArg::Sandbox => OtpSource::SandboxHttp(client.clone()),
        OtpArg::Static => static_code(),
        OtpArg::Prompt => OtpSource::Terminal,
        OtpArg::Auto if target.is_local() => OtpSource::SandboxHttp(client.clone()),
        OtpArg::Auto if number == Some(&PhoneNumber::test_number()) => static_code(),
        OtpArg::Auto => OtpSource::Terminal,
    }
}

pub(super) fn confirmation(via: ViaArg) -> Confirmation {
    match via {
        ViaArg::Device => Confirmation::DeviceSigning,
        ViaArg::Sms => Confirmation::Sms,
        ViaArg::Static => Confirmation::Static(
            Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits")),
        ),
    }
}
