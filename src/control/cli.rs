//! `vphone serve`: parse the options, start the bank (the embedded sandbox, or a client of
//! `--api`), serve the control API until Ctrl-C.

use super::{Bank, ControlConfig, ControlState};
use crate::api::Otp;
use crate::client::{ApiClient, ClientConfig, ClientError, Credentials};
use crate::phone::cli::ConnectArgs;
use crate::phone::{Home, OtpSource, ProfileError};
use crate::sandbox::{self, SandboxConfig, SandboxState};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vphone_keystore::Passphrase;
use zeroize::Zeroizing;

/// Where `vphone serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// `vphone serve`
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address of the control API. A non-loopback address must be named here explicitly
    /// and needs --token-file. [default: 127.0.0.1:8090]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token every request must carry (`Authorization: Bearer
    /// ...`); required for a non-loopback --listen. Tokens are never arguments.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Where phone profiles live (default $VPHONE_HOME, else ~/.vphone).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Where the embedded sandbox listens (only without --api/--target).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub sandbox_listen: SocketAddr,
    /// How long a `manual` prompt waits for approve/deny before it counts as denied.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub approval_timeout: Duration,
    /// How long a flow waits for an SMS.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub otp_timeout: Duration,
    /// Events kept for resuming event streams.
    #[arg(long, default_value_t = super::events::EVENT_BUFFER)]
    pub event_buffer: usize,
    /// The bank: without --api or --target, a sandbox started in this process.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Why `vphone serve` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The options do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The token file is unreadable or empty.
    #[error("token file {}: {reason}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the token).
        reason: String,
    },
    /// The home directory cannot be used.
    #[error(transparent)]
    Home(#[from] ProfileError),
    /// The client of --api could not be built (credentials, URL).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The passphrase could not be read.
    #[error("{0}")]
    Passphrase(String),
    /// An address could not be served.
    #[error("cannot serve {what} on {addr}: {source}")]
    Io {
        /// The control API or the embedded sandbox.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl ServeError {
    /// The process exit code: 2 usage, 3 network, 4 local state.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Usage(_) => 2,
            ServeError::Io { .. } => 3,
            ServeError::Client(e) if e.is_unavailable() => 3,
            ServeError::TokenFile { .. }
            | ServeError::Home(_)
            | ServeError::Client(_)
            | ServeError::Passphrase(_) => 4,
        }
    }
}

/// The listening address, refusing a non-loopback one that was not named explicitly or
/// has no token.
pub fn listen_addr(args: &ServeArgs) -> Result<SocketAddr, ServeError> {
    let addr = match args.listen {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|e| ServeError::Usage(format!("default address: {e}")))?,
    };
    if !addr.ip().is_loopback() && args.token_file.is_none() {
        return Err(ServeError::Usage(format!(
            "--listen {addr} is not a loopback address: anyone who can reach it could drive the phones; add --token-file FILE so every request needs its bearer token"
        )));
    }
    Ok(addr)
}

/// Reads the bearer token: the file's content without surrounding whitespace, at least 16
/// characters, no whitespace inside.
pub fn read_token(path: &std::path::Path) -> Result<Zeroizing<String>, ServeError> {
    let bad = |reason: &str| ServeError::TokenFile {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let raw = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(&e.to_string()))?);
    let token = Zeroizing::new(raw.trim().to_owned());
    if token.len() < 16 {
        return Err(bad("the token must be at least 16 characters"));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the token must be one line without spaces"));
    }
    Ok(token)
}

/// Serves until Ctrl-C, logging requests to stderr (`RUST_LOG` filters, default `info`).
pub fn run(args: ServeArgs) -> Result<(), ServeError> {
    let addr = listen_addr(&args)?;
    let token = args.token_file.as_deref().map(read_token).transpose()?;
    let home = Home::resolve(args.home.as_deref())?;
    let passphrase = Passphrase::from_env()
        .map_err(|e| ServeError::Passphrase(e.to_string()))?
        .map(Arc::new);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| ServeError::Io {
            what: "the async runtime",
            addr,
            source,
        })?;
    runtime.block_on(serve(args, addr, token, home, passphrase))
}

async fn serve(
    args: ServeArgs,
    addr: SocketAddr,
    token: Option<Zeroizing<String>>,
    home: Home,
    passphrase: Option<Arc<Passphrase>>,
) -> Result<(), ServeError> {
    let embedded = args.connect.api.is_none() && args.connect.target.is_none();
    let (bank, sandbox) = if embedded {
        let state = SandboxState::new(SandboxConfig::default());
        let handle = sandbox::spawn_with(state.clone(), args.sandbox_listen)
            .await
            .map_err(|source| ServeError::Io {
                what: "the embedded sandbox",
                addr: args.sandbox_listen,
                source,
            })?;
        let base = handle
            .base_url()
            .parse()
            .map_err(|e| ServeError::Usage(format!("sandbox URL: {e}")))?;
        let client = ApiClient::new(
            ClientConfig::local(base, Credentials::sandbox_default())
                .with_timeout(args.connect.timeout)
                .with_retry(args.connect.retry_policy()),
        )?;
        let bank = Bank {
            client,
            source: OtpSource::InProcess(Arc::new(state.clone())),
            embedded: Some(state),
        };
        (bank, Some(handle))
    } else {
        let target = args.connect.target();
        let client = args.connect.client(&target)?;
        // A vphone sandbox elsewhere has an SMS outbox; the real Solaris sandbox sends
        // 212212 to its test number.
        let source = if target.is_local() {
            OtpSource::SandboxHttp(client.clone())
        } else {
            OtpSource::Static(
                Otp::parse(crate::sandbox::sms::STATIC_OTP)
                    .map_err(|e| ServeError::Usage(format!("static OTP: {e}")))?,
            )
        };
        let bank = Bank {
            client,
            source,
            embedded: None,
        };
        (bank, None)
    };
    let api_base = bank.client.base_url().to_owned();
    let state = ControlState::new(ControlConfig {
        home: home.clone(),
        passphrase,
        bank,
        token,
        approval_timeout: args.approval_timeout,
        otp_timeout: args.otp_timeout,
        event_buffer: args.event_buffer,
    });
    state.phones().load_all().await;
    let handle = super::spawn(state.clone(), addr)
        .await
        .map_err(|source| ServeError::Io {
            what: "the control API",
            addr,
            source,
        })?;
    let bank = if sandbox.is_some() {
        format!("embedded sandbox at {api_base} (partner vphone-demo)")
    } else {
        api_base
    };
    // A closed stdout (the caller stopped reading) must not stop the server.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "vphone serve listening on {}", handle.base_url());
    let _ = writeln!(out, "OpenAPI document: {}/openapi.json", handle.base_url());
    let _ = writeln!(out, "bank: {bank}");
    let _ = writeln!(
        out,
        "phones: {} ({} hosted)",
        home.root().display(),
        state.phones().hosted().len()
    );
    let _ = out.flush();
    drop(out);
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot wait for Ctrl-C; stopping");
    }
    handle.shutdown().await;
    if let Some(s) = sandbox {
        s.shutdown().await;
    }
    Ok(())
}
