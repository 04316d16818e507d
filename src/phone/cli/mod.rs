//! The `vphone phone ...` commands: argument structs and their execution. `main` only
//! parses and maps the error to an exit code.

mod device;
mod options;
mod setup;
mod sign;
mod toolkit;

pub use options::{
    ConnectArgs, DEFAULT_LOCAL_API, OtpArg, PhoneOptions, PresenceArg, TargetArg, otp_source,
    otp_source_known, parse_otp,
};
pub use toolkit::KeyIdArg;

use super::logic::ChallengeProblem;
use super::{Home, Phone, PhoneError, PhoneName, ProfileError, SavedPhone};
use crate::api::{
    ChallengeId, ChangeRequestId, DeviceId, KeyPurpose, PersonId, PhoneNumber, UpdatePerson,
};
use crate::client::{ClientError, Hint, NotFound, Target};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use vphone_keystore::{Passphrase, PublicKeyFormat, SignatureFormat, UserPresence};

/// The exit codes, for `--help` texts.
pub const EXIT_CODES: &str = "Exit codes: 0 ok, 1 refused (by the bank or the user), 2 usage error, \
3 server unreachable or timed out (also: no SMS arrived, or no code was typed, in time), \
4 local state (profile, vault, credentials, missing setup).";

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
    /// --person-id, an existing person whose NUMBER is already verified). If setup stops
    /// half-way (server down, no SMS), run the same command again to finish it.
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
        /// The key the challenge was made for, when the server's challenge does not name
        /// one (a purpose the challenge names wins; a different one is refused).
        #[arg(long)]
        purpose: Option<KeyPurpose>,
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
    /// Make a key and save it without telling any bank (your backend will); prints its
    /// public key. Creates the phone if it does not exist yet.
    NewKey {
        /// The phone.
        name: PhoneName,
        /// The key's purpose.
        #[arg(long)]
        purpose: KeyPurpose,
        /// Where the phone's SMS codes arrive (for `otp`), when creating the phone.
        #[arg(long)]
        number: Option<PhoneNumber>,
        /// How to print the public key: hex (the API's), spki-base64, pem or jwk.
        #[arg(long, default_value = "hex")]
        format: PublicKeyFormat,
    },
    /// Print a key's public key.
    PublicKey {
        /// The phone.
        name: PhoneName,
        /// The key (default: unrestricted if the phone holds one, else restricted).
        #[arg(long)]
        purpose: Option<KeyPurpose>,
        /// hex (uncompressed SEC1 point, the API's format), spki-base64, pem or jwk.
        #[arg(long, default_value = "hex")]
        format: PublicKeyFormat,
    },
    /// Sign a message (SHA256withECDSA over its bytes); a restricted key asks the biometric
    /// prompt first, as the flows do.
    SignMessage {
        /// The phone.
        name: PhoneName,
        /// The key to sign with.
        #[arg(long)]
        purpose: KeyPurpose,
        /// The message (its UTF-8 bytes are signed).
        #[arg(
            long,
            value_name = "TEXT",
            conflicts_with = "stdin",
            required_unless_present = "stdin"
        )]
        message: Option<String>,
        /// Read the message from standard input (every byte, no newline stripped).
        #[arg(long)]
        stdin: bool,
        /// hex (DER, the API's format), base64 (DER) or raw-base64 (r||s, 64 bytes).
        #[arg(long, default_value = "hex")]
        format: SignatureFormat,
    },
    /// Print the newest code that reached the phone's number (waiting for one if none has).
    Otp {
        /// The phone.
        name: PhoneName,
        /// How long to wait for a code (default: --otp-timeout).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        /// Only a code that arrived after this marker (from --print-marker).
        #[arg(long, value_name = "MARKER")]
        since: Option<u64>,
        /// Print the inbox's current marker instead of a code: take it before triggering the
        /// SMS, then pass it as --since, and an old code is never read.
        #[arg(long, conflicts_with_all = ["since", "wait"])]
        print_marker: bool,
    },
    /// Record a device your backend bound at the bank for this phone, so `keys`, `sign`,
    /// `approve` and `delete-device` work on it.
    Adopt {
        /// The phone.
        name: PhoneName,
        /// The bank's id of the device.
        #[arg(long)]
        device_id: DeviceId,
        /// The bank's id of a key, as PURPOSE=ID (repeatable; `keys` fills in the rest).
        #[arg(long, value_name = "PURPOSE=ID")]
        key_id: Vec<KeyIdArg>,
        /// The person the device belongs to (needed by `devices`).
        #[arg(long)]
        person_id: Option<PersonId>,
    },
    /// List the phones in the home directory.
    List,
    /// Show a phone's saved state (and, if bound, the device at the bank).
    Show {
        /// The phone.
        name: PhoneName,
        /// Read only the saved file: no credentials, no network.
        #[arg(long)]
        offline: bool,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flow failed.
    #[error("{}{}", .0, next_step_after(.0))]
    Phone(#[from] PhoneError),
    /// `create` stopped half-way; the phone is saved and the same command finishes it.
    #[error(
        "{source}{}\nphone {name} is saved with what the bank has so far; run `vphone phone create {name}` again (with the same --number) to finish setting it up",
        next_step_after(source)
    )]
    Unfinished {
        /// The phone.
        name: PhoneName,
        /// Why setup stopped.
        source: PhoneError,
    },
    /// The client could not be built, or a call outside a phone flow failed.
    #[error("{}{}", .0, next_step(.0, None))]
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

/// The commands that help after a failed call, as a line to append (the library says what
/// a refusal means; naming commands is the CLI's business). `phone` names the phone in them.
fn next_step(e: &ClientError, phone: Option<&str>) -> String {
    if matches!(e, ClientError::Unreachable { .. }) {
        return "\nnext: start a server with `vphone sandbox`, or point --api at a running one"
            .to_owned();
    }
    let (Some(hint), Some(phone)) = (e.hint(), phone) else {
        return String::new();
    };
    let text = match hint {
        Hint::DeviceLimit => format!(
            "list the devices with `vphone phone devices {phone}`, delete one with `vphone phone delete-device <its phone>`, then bind again"
        ),
        Hint::DeviceDeleted => format!(
            "forget it with `vphone phone delete-device {phone}`, then bind again with `vphone phone bind {phone}`"
        ),
        Hint::KeyPurposeTaken | Hint::NotFound(NotFound::Key) => {
            format!("list its keys with `vphone phone keys {phone}`")
        }
        Hint::RestrictedKeyRequired => {
            format!("add one with `vphone phone add-key {phone} --purpose restricted`")
        }
        Hint::NoVerifiedNumber => {
            format!("create the phone with `vphone phone create {phone} --number +15550101`")
        }
        Hint::NotFound(NotFound::Device) => format!(
            "list the person's devices with `vphone phone devices {phone}`, or bind again with `vphone phone bind {phone}`"
        ),
        _ => return String::new(),
    };
    format!("\nnext: {text}")
}

/// What to do after a failed flow, as a line to append: the library error says what
/// happened and carries the phone, number or purpose; the command to run is named here.
fn next_step_after(e: &PhoneError) -> String {
    let text = match e {
        PhoneError::Bank { phone, source, .. } => return next_step(source, Some(phone)),
        PhoneError::Challenge {
            phone,
            problem: ChallengeProblem::NoSuchKey { needed, .. },
        } => format!("add it with `vphone phone add-key {phone} --purpose {needed}`"),
        PhoneError::Presence { .. } => {
            "approve the prompt, or run with --presence approve".to_owned()
        }
        PhoneError::NoPerson { name } | PhoneError::NoNumber { name } => {
            format!("create it with `vphone phone create {name} --number +15550101`")
        }
        PhoneError::Profile(ProfileError::NotFound { name, .. }) => format!(
            "create it with `vphone phone create {name} --number +15550101`, or see `vphone phone list`"
        ),
        PhoneError::NumberMismatch { name, saved, .. } => format!(
            "finish with `vphone phone create {name} --number {saved}`, or delete its file to start over"
        ),
        PhoneError::NotBound { name } => format!("bind it with `vphone phone bind {name}`"),
        PhoneError::AlreadyBound { name, .. } => {
            format!("delete it first with `vphone phone delete-device {name}`")
        }
        PhoneError::KeyExists { name, .. } => format!("see `vphone phone keys {name}`"),
        PhoneError::KeyUnconfirmed { name, .. } => {
            format!("run `vphone phone keys {name}` to ask the bank and settle it, then try again")
        }
        PhoneError::KeyPending { name, .. } => format!(
            "once the server answers, run `vphone phone keys {name}` (or `vphone phone add-key {name}`) to settle the pending key"
        ),
        other => {
            return other
                .client_error()
                .map_or_else(String::new, |c| next_step(c, None));
        }
    };
    format!("\nnext: {text}")
}

impl CliError {
    /// The error as `{"error": {"message", "exit_code", "status"?, "code"?}}`, for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let client = match self {
            CliError::Phone(e) | CliError::Unfinished { source: e, .. } => e.client_error(),
            CliError::Client(e) => Some(e),
            _ => None,
        };
        let mut error = serde_json::json!({
            "message": self.to_string(),
            "exit_code": self.exit_code(),
        });
        if let Some(status) = client.and_then(ClientError::status) {
            error["status"] = status.into();
        }
        if let Some(code) = client.and_then(ClientError::code) {
            error["code"] = code.into();
        }
        serde_json::json!({ "error": error })
    }

    /// The process exit code (see [`EXIT_CODES`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Phone(e) | CliError::Unfinished { source: e, .. } => e.exit_code(),
            CliError::Client(e) if e.is_unavailable() => 3,
            CliError::Client(ClientError::Config(_) | ClientError::Credentials(_)) => 4,
            CliError::Client(_) => 1,
            CliError::DemoFailed { exit_code, .. } => *exit_code,
            CliError::Usage(_) => 2,
            CliError::Local(_) => 4,
        }
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
/// With `--json`, a failure also prints `{"error": {...}}` on stdout, so a script always
/// reads one JSON document there; the human message still goes to stderr.
pub fn run(args: PhoneArgs) -> Result<(), CliError> {
    let json = args.options.json;
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Local(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(execute(args)));
    if json && let Err(e) = &result {
        emit(true, &e.to_json(), String::new);
    }
    result
}

/// Runs one `vphone phone` command.
pub async fn execute(args: PhoneArgs) -> Result<(), CliError> {
    let o = &args.options;
    let home = Home::resolve(o.home.as_deref()).map_err(PhoneError::from)?;
    if let PhoneCommand::List = args.command {
        return setup::list(&home, o.json);
    }
    let passphrase = Passphrase::from_env()
        .map_err(|e| CliError::Local(e.to_string()))?
        .map(Arc::new);
    let ctx = Ctx {
        json: o.json,
        presence: o.presence.presence(),
        home,
        passphrase,
        options: o,
    };
    match args.command {
        PhoneCommand::List => Ok(()),
        PhoneCommand::Create {
            name,
            number,
            first_name,
            last_name,
            person_id,
        } => setup::create(&ctx, name, number, &first_name, &last_name, person_id).await,
        PhoneCommand::Show { name, offline } => setup::show(&ctx, &name, offline).await,
        PhoneCommand::NewKey {
            name,
            purpose,
            number,
            format,
        } => toolkit::new_key(&ctx, &name, purpose, number, format),
        PhoneCommand::PublicKey {
            name,
            purpose,
            format,
        } => toolkit::public_key(&ctx, &name, purpose, format),
        PhoneCommand::SignMessage {
            name,
            purpose,
            message,
            stdin: _,
            format,
        } => {
            let message = match message {
                Some(text) => toolkit::MessageArg::Text(text),
                None => toolkit::MessageArg::Stdin,
            };
            toolkit::sign_message(&ctx, &name, purpose, message, format)
        }
        PhoneCommand::Otp {
            name,
            wait,
            since,
            print_marker,
        } => toolkit::otp(&ctx, &name, wait, since, print_marker).await,
        PhoneCommand::Adopt {
            name,
            device_id,
            key_id,
            person_id,
        } => toolkit::adopt(&ctx, &name, device_id, key_id, person_id),
        PhoneCommand::Bind { name } => device::bind(&ctx, &name).await,
        PhoneCommand::AddKey { name, purpose } => device::add_key(&ctx, &name, purpose).await,
        PhoneCommand::Devices {
            name,
            include_deleted,
        } => device::devices(&ctx, &name, include_deleted).await,
        PhoneCommand::Keys { name } => device::keys(&ctx, &name).await,
        PhoneCommand::DeleteDevice { name } => device::delete(&ctx, &name).await,
        PhoneCommand::Sign {
            name,
            challenge,
            purpose,
        } => sign::sign(&ctx, &name, &challenge, purpose).await,
        PhoneCommand::Approve { name, purpose } => sign::approve(&ctx, &name, purpose).await,
        PhoneCommand::SmsChallenge { name } => sign::sms_challenge(&ctx, &name).await,
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
            sign::change(&ctx, &name, &update, via).await
        }
        PhoneCommand::Confirm {
            name,
            change_request,
            via,
        } => sign::confirm(&ctx, &name, &change_request, via).await,
    }
}

/// What every command needs: where phones live, how to reach the bank, how to print.
pub(super) struct Ctx<'a> {
    json: bool,
    home: Home,
    passphrase: Option<Arc<Passphrase>>,
    presence: Arc<dyn UserPresence>,
    options: &'a PhoneOptions,
}

impl Ctx<'_> {
    /// The server named by --api or --target, else `saved` (the server a phone was set up
    /// against), else the local sandbox.
    fn target(&self, saved: Option<&str>) -> Target {
        let connect = &self.options.connect;
        if connect.api.is_none()
            && connect.target.is_none()
            && let Some(target) = saved.and_then(|s| Target::from_base_url(s).ok())
        {
            return target;
        }
        connect.target()
    }

    /// Opens saved phone `name`, connected to the server it was set up against unless
    /// --api or --target says otherwise, with the options' OTP source, prompt and timeout.
    async fn open(&self, name: &PhoneName) -> Result<Phone, CliError> {
        let saved = SavedPhone::load(&self.home, name.clone(), self.passphrase.clone())?;
        let target = self.target(saved.profile().api_base.as_deref());
        let client = self.options.connect.client(&target)?;
        let source = otp_source(&self.options.otp, &client, saved.profile().number.as_ref()).await;
        Ok(saved
            .into_phone(client, source)
            .with_presence(self.presence.clone())
            .with_otp_timeout(self.options.otp_timeout))
    }

    /// Prints `value` as JSON, or the human line.
    fn emit<T: Serialize>(&self, value: &T, human: impl FnOnce() -> String) {
        emit(self.json, value, human);
    }
}
