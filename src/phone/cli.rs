//! The `vphone phone ...` commands: argument structs and their execution. `main` only
//! parses and maps the error to an exit code.

use super::{Confirmation, Home, OtpSource, Phone, PhoneError, PhoneName, person_named};
use crate::api::{
    ChallengeId, ChangeRequestId, KeyPurpose, Otp, PersonId, PhoneNumber, UpdatePerson,
};
use crate::client::{ApiClient, ClientConfig, ClientError, Credentials, CredentialsError, Target};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use vphone_keystore::{
    AlwaysApprove, AlwaysDeny, ApproveAfter, Passphrase, TerminalPrompt, UserPresence,
};

/// The exit codes, for `--help` texts.
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 refused (by the bank or the user), 2 usage error, \
3 server unreachable or timed out (also: no SMS arrived in time), 4 local state (profile, vault, \
credentials, missing setup).";

/// Which server to talk to and how; shared by `phone` and `demo`.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// API base URL of a local or other server (token URL: <URL>/oauth2/token).
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
        let credentials = match Credentials::discover(self.credentials.as_deref())? {
            Some(c) => c,
            None if target.is_local() => Credentials::sandbox_default(),
            None => {
                return Err(CredentialsError::Missing {
                    target: target.to_string(),
                }
                .into());
            }
        };
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

/// `vphone phone ...`
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub struct PhoneArgs {
    /// Options.
    #[command(flatten)]
    pub options: PhoneOptions,
    /// What to do.
    #[command(subcommand)]
    pub command: PhoneCommand,
}

/// Which confirmation a change request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ViaArg {
    /// Sign with the bound device.
    Device,
    /// A TAN by SMS.
    Sms,
    /// The static TAN 212212.
    Static,
}

/// One phone command.
#[derive(Debug, Subcommand)]
pub enum PhoneCommand {
    /// Create a phone: a new person at the bank with NUMBER verified by SMS (or, with
    /// --person-id, an existing person whose NUMBER is already verified).
    Create {
        /// The phone's name.
        name: PhoneName,
        /// The mobile number (E.164). +15550101 always receives 212212.
        #[arg(long, default_value = "+15550101")]
        number: PhoneNumber,
        /// First name of the new person.
        #[arg(long, default_value = "Vera")]
        first_name: String,
        /// Last name of the new person.
        #[arg(long, default_value = "Phone")]
        last_name: String,
        /// Join this existing person instead of creating one.
        #[arg(long)]
        person_id: Option<PersonId>,
    },
    /// Bind the phone: new unrestricted key, SMS OTP, signed, verified.
    Bind {
        /// The phone.
        name: PhoneName,
    },
    /// Add the other key purpose to the bound device.
    AddKey {
        /// The phone.
        name: PhoneName,
        /// The purpose (default: the one the phone lacks).
        #[arg(long)]
        purpose: Option<KeyPurpose>,
    },
    /// List the person's bound devices.
    Devices {
        /// The phone.
        name: PhoneName,
        /// Include deleted devices.
        #[arg(long)]
        include_deleted: bool,
    },
    /// List the bound device's keys as the bank sees them.
    Keys {
        /// The phone.
        name: PhoneName,
    },
    /// Delete the phone's device at the bank (its keys are forgotten).
    DeleteDevice {
        /// The phone.
        name: PhoneName,
    },
    /// Answer a device-signing challenge by id.
    Sign {
        /// The phone.
        name: PhoneName,
        /// The challenge id.
        #[arg(long)]
        challenge: ChallengeId,
    },
    /// Create a device-signing challenge and answer it.
    Approve {
        /// The phone.
        name: PhoneName,
        /// The key to use (default: the bank's choice).
        #[arg(long)]
        purpose: Option<KeyPurpose>,
    },
    /// Ask for an SMS challenge and answer it.
    SmsChallenge {
        /// The phone.
        name: PhoneName,
    },
    /// Change the person's name or email, confirmed by device signing, SMS TAN or static TAN.
    Change {
        /// The phone.
        name: PhoneName,
        /// New first name.
        #[arg(long)]
        first_name: Option<String>,
        /// New last name.
        #[arg(long)]
        last_name: Option<String>,
        /// New email.
        #[arg(long)]
        email: Option<String>,
        /// How to confirm.
        #[arg(long, value_enum, default_value = "device")]
        via: ViaArg,
    },
    /// Authorize and confirm an existing change request.
    Confirm {
        /// The phone.
        name: PhoneName,
        /// The change request id.
        #[arg(long)]
        change_request: ChangeRequestId,
        /// How to confirm.
        #[arg(long, value_enum, default_value = "device")]
        via: ViaArg,
    },
    /// List the phones in the home directory.
    List,
    /// Show a phone's saved state (and, if bound, the device at the bank).
    Show {
        /// The phone.
        name: PhoneName,
        /// Do not ask the bank.
        #[arg(long)]
        offline: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flow failed.
    #[error(transparent)]
    Phone(#[from] PhoneError),
    /// The client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// A passphrase problem, or a step of the demo failed (already reported).
    #[error("{0}")]
    Local(String),
    /// The demo ran but some steps failed.
    #[error("{failed} of {total} demo steps did not pass")]
    DemoFailed {
        /// Steps that failed or did not run.
        failed: usize,
        /// All steps.
        total: usize,
        /// The exit code of the first failure.
        exit_code: u8,
    },
}

impl CliError {
    /// The process exit code (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Phone(e) => e.exit_code(),
            CliError::Client(e) if e.is_unavailable() => 3,
            CliError::Client(ClientError::Config(_) | ClientError::Credentials(_)) => 4,
            CliError::Client(_) => 1,
            CliError::DemoFailed { exit_code, .. } => *exit_code,
            CliError::Usage(_) => 2,
            CliError::Local(_) => 4,
        }
    }
}

fn otp_source(
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

fn confirmation(via: ViaArg) -> Confirmation {
    match via {
        ViaArg::Device => Confirmation::DeviceSigning,
        ViaArg::Sms => Confirmation::Sms,
        ViaArg::Static => Confirmation::Static(
            Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits")),
        ),
    }
}

/// Prints `value` as JSON, or the human line.
fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot print JSON: {e}"),
        }
    } else {
        println!("{}", human());
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs one `vphone phone` command on a fresh runtime.
pub fn run(args: PhoneArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(execute(args))
}

/// Runs one `vphone phone` command.
pub async fn execute(args: PhoneArgs) -> Result<(), CliError> {
    let o = &args.options;
    let home = Home::resolve(o.home.as_deref()).map_err(PhoneError::from)?;
    let json = o.json;
    if let PhoneCommand::List = args.command {
        let names = home.list().map_err(PhoneError::from)?;
        let list: Vec<&str> = names.iter().map(PhoneName::as_str).collect();
        emit(json, &list, || {
            if list.is_empty() {
                format!("no phones in {}", home.root().display())
            } else {
                list.join("\n")
            }
        });
        return Ok(());
    }
    let passphrase = Passphrase::from_env()
        .map_err(|e| CliError::Local(e.to_string()))?
        .map(Arc::new);
    let target = o.connect.target();
    let client = o.connect.client(&target)?;
    let presence = o.presence.presence();
    let open = |name: &PhoneName| -> Result<Phone, CliError> {
        let phone = Phone::open(
            &home,
            name.clone(),
            client.clone(),
            OtpSource::Terminal,
            passphrase.clone(),
        )?;
        let source = otp_source(o.otp, &target, &client, phone.profile().number.as_ref());
        Ok(phone
            .with_otp_source(source)
            .with_presence(presence.clone())
            .with_otp_timeout(o.otp_timeout))
    };
    match args.command {
        PhoneCommand::List => {}
        PhoneCommand::Create {
            name,
            number,
            first_name,
            last_name,
            person_id,
        } => {
            let source = otp_source(o.otp, &target, &client, Some(&number));
            let mut phone = Phone::create(
                &home,
                name.clone(),
                client.clone(),
                source,
                passphrase.clone(),
            )?
            .with_presence(presence.clone())
            .with_otp_timeout(o.otp_timeout);
            match person_id {
                Some(person) => {
                    phone.adopt(person, number)?;
                    emit(json, phone.profile(), || {
                        format!(
                            "phone {name}: joined person {} with number {}",
                            phone
                                .profile()
                                .person_id
                                .as_ref()
                                .map_or("", PersonId::as_str),
                            phone
                                .profile()
                                .number
                                .as_ref()
                                .map_or("", PhoneNumber::as_str)
                        )
                    });
                }
                None => {
                    let out = phone
                        .register(person_named(&first_name, &last_name), number)
                        .await?;
                    emit(json, &out, || {
                        format!(
                            "phone {name}: person {} created, number {} verified ({})",
                            out.person.id,
                            out.mobile_number.number,
                            ms(out.timings.total())
                        )
                    });
                }
            }
        }
        PhoneCommand::Bind { name } => {
            let mut phone = open(&name)?;
            let out = phone.bind().await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: bound as device {} with key {} ({})",
                    out.device_id,
                    out.fingerprint,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::AddKey { name, purpose } => {
            let mut phone = open(&name)?;
            let out = phone.add_key(purpose).await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: added {} key {} (vouched for by the {} key, {})",
                    out.key_purpose,
                    out.key_id,
                    out.signed_with,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::Devices {
            name,
            include_deleted,
        } => {
            let phone = open(&name)?;
            let devices = phone.devices(include_deleted).await?;
            emit(json, &devices, || {
                if devices.is_empty() {
                    "no bound devices".to_owned()
                } else {
                    devices
                        .iter()
                        .map(|d| {
                            format!(
                                "{}  {}  created {}{}",
                                d.id,
                                d.name,
                                d.created_at,
                                d.deleted_at
                                    .map(|t| format!("  deleted {t}"))
                                    .unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        PhoneCommand::Keys { name } => {
            let mut phone = open(&name)?;
            let keys = phone.keys().await?;
            emit(json, &keys, || {
                keys.keys
                    .iter()
                    .map(|k| {
                        format!(
                            "{}  {}  used {}",
                            k.key_id,
                            k.key_purpose,
                            k.used_at.map_or("never".to_owned(), |t| t.to_string())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        PhoneCommand::DeleteDevice { name } => {
            let mut phone = open(&name)?;
            let out = phone.delete_device().await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: device {} deleted ({})",
                    out.device_id,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::Sign { name, challenge } => {
            let phone = open(&name)?;
            let out = phone.sign_challenge(&challenge).await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: challenge {} signed with the {} key ({})",
                    out.challenge_id,
                    out.key_purpose,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::Approve { name, purpose } => {
            let phone = open(&name)?;
            let out = phone.approve(purpose).await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: challenge {} approved with the {} key ({})",
                    out.challenge_id,
                    out.key_purpose,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::SmsChallenge { name } => {
            let phone = open(&name)?;
            let out = phone.sms_challenge().await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: SMS challenge {} answered ({})",
                    out.challenge_id,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::Change {
            name,
            first_name,
            last_name,
            email,
            via,
        } => {
            let update = UpdatePerson {
                first_name,
                last_name,
                email,
            };
            if update.is_empty() {
                return Err(CliError::Usage(
                    "nothing to change: give --first-name, --last-name or --email".to_owned(),
                ));
            }
            let phone = open(&name)?;
            let out = phone.change_person(&update, &confirmation(via)).await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: change request {} {} via {} ({})",
                    out.change_request_id,
                    out.status,
                    out.delivery_method,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::Confirm {
            name,
            change_request,
            via,
        } => {
            let phone = open(&name)?;
            let out = phone
                .confirm_change(&change_request, &confirmation(via))
                .await?;
            emit(json, &out, || {
                format!(
                    "phone {name}: change request {} {} via {} ({})",
                    out.change_request_id,
                    out.status,
                    out.delivery_method,
                    ms(out.timings.total())
                )
            });
        }
        PhoneCommand::Show { name, offline } => {
            let phone = open(&name)?;
            let p = phone.profile();
            let device = if p.bound && !offline {
                Some(phone.device().await?)
            } else {
                None
            };
            let keys: Vec<_> = phone.vault().keys().map(|k| serde_json::json!({"purpose": k.purpose().to_string(), "fingerprint": k.fingerprint()})).collect();
            let value = serde_json::json!({"profile": p, "keys": keys, "device": device});
            emit(json, &value, || {
                let mut lines = vec![
                    format!("phone     {}", p.name),
                    format!(
                        "person    {}",
                        p.person_id.as_ref().map_or("-", PersonId::as_str)
                    ),
                    format!(
                        "number    {}",
                        p.number.as_ref().map_or("-", PhoneNumber::as_str)
                    ),
                    format!(
                        "device    {}{}",
                        p.device_id.as_ref().map_or("-", |d| d.as_str()),
                        if p.bound { " (bound)" } else { "" }
                    ),
                    format!("api       {}", p.api_base.as_deref().unwrap_or("-")),
                ];
                for k in phone.vault().keys() {
                    lines.push(format!("key       {} {}", k.purpose(), k.fingerprint()));
                }
                lines.join("\n")
            });
        }
    }
    Ok(())
}
