//! `vphone sandbox`: serve the sandbox until Ctrl-C.

use super::config::{DEFAULT_CLIENT_ID, SandboxConfig};
use super::state::SandboxState;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `vphone sandbox`. Secrets come only from the config file, never the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TOML config file with partners and limits (see `sandbox.example.toml`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Every OTP and TAN is 212212.
    #[arg(long)]
    pub static_otp: bool,
    /// How long challenges can be answered, e.g. `5m`, `30s`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub challenge_lifetime: Option<Duration>,
    /// Failed answers before a challenge is spent.
    #[arg(long)]
    pub max_attempts: Option<u32>,
    /// Bound devices allowed per person.
    #[arg(long)]
    pub max_devices: Option<usize>,
    /// Delay every /v1 response by this much (fault injection), e.g. `50ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// A fault rule, repeatable, e.g. `PUT /v1/mfa/challenges/*: status=503 p=0.05` (see the
    /// README, section Faults); added after the config file's rules.
    #[arg(long = "fault", value_name = "RULE", value_parser = parse_fault)]
    pub faults: Vec<super::faults::FaultRule>,
    /// Seed of the fault decisions (default: the config's `faults_seed`, else a random one,
    /// logged at start); the same seed replays the same faults.
    #[arg(long)]
    pub faults_seed: Option<u64>,
    /// How long finished challenges and change requests are kept before they are forgotten
    /// (then their ids answer 404), e.g. `15m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retention: Option<Duration>,
    /// A file holding the admin token that opens `/sandbox/faults` (instead of the config's
    /// `admin_token` or `admin_token_file`); the token itself never goes on the command line.
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// Seed of the generator ids, OTPs and strings to sign draw from: the same requests in
    /// the same order get the same ids and codes (for reproducible test runs).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the bank (persons, numbers, devices, keys, open challenges and change requests)
    /// in this SQLite file, created if missing; a restart on the same file serves the same
    /// bank. Every change is committed before its answer is sent (README, section Sandbox).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// With `--state`: `normal` (a commit survives the process being killed) or `full`
    /// (every commit is also fsynced, surviving power loss; slower).
    #[arg(long, value_enum, default_value_t = StateSync::Normal, requires = "state")]
    pub state_sync: StateSync,
    /// Log lines on stderr as readable text, or one JSON object per line for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_fault(text: &str) -> Result<super::faults::FaultRule, String> {
    super::faults::FaultRule::parse(text).map_err(|e| e.to_string())
}

/// How `vphone sandbox` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// How long a commit to the `--state` file waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateSync {
    /// Committed to SQLite's write-ahead log: survives a killed process.
    Normal,
    /// Also fsynced: survives power loss.
    Full,
}

/// Why `vphone sandbox` stopped.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The `--state` file could not be opened or read.
    #[error("cannot use the state file {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        source: super::store::StoreError,
    },
    /// The address could not be bound, or serving failed.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl CliError {
    /// The process exit code, following `vphone --help`: 4 for a bad config (local state),
    /// 3 when the address cannot be served (network).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::State { .. } => 4,
            CliError::Serve { .. } => 3,
        }
    }
}

impl SandboxArgs {
    /// The configuration these arguments describe.
    pub fn config(&self) -> Result<SandboxConfig, super::config::ConfigError> {
        let mut config = match &self.config {
            Some(path) => SandboxConfig::from_toml_file(path)?,
            None => SandboxConfig::default(),
        };
        config.static_otp |= self.static_otp;
        if let Some(v) = self.challenge_lifetime {
            config.challenge_lifetime = v;
        }
        if let Some(v) = self.max_attempts {
            config.max_failed_attempts = v;
        }
        if let Some(v) = self.max_devices {
            config.max_devices_per_person = v;
        }
        if let Some(v) = self.latency {
            config.latency = (!v.is_zero()).then_some(v);
        }
        if let Some(v) = self.retention {
            config.retention = v;
        }
        config.faults.extend(self.faults.iter().cloned());
        if let Some(path) = &self.admin_token_file {
            config.admin_token = Some(super::config::read_admin_token_file(path)?);
        }
        if let Some(seed) = self.faults_seed {
            config.faults_seed = Some(seed);
        }
        if let Some(seed) = self.seed {
            config.seed = Some(seed);
        }
        config.validate()?;
        Ok(config)
    }
}

/// Serves the sandbox until Ctrl-C, logging requests to stderr (`RUST_LOG` filters, default
/// `info`).
pub fn run(args: SandboxArgs) -> Result<(), CliError> {
    let config = args.config()?;
    init_logging(args.log_format);
    // Before the runtime starts: every connection is a file descriptor.
    let nofile = super::serve::raise_nofile_limit();
    tracing::info!(
        open_files_limit = nofile.map_or_else(|| "unlimited".to_owned(), |n| n.to_string()),
        "open-files limit"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::Serve {
            addr: args.listen,
            source,
        })?;
    runtime.block_on(serve(args, config))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Another subcommand or the
/// embedding program may have set a subscriber already; then that one stays.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        // Escape codes only where a terminal renders them, not in files or collectors.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}

async fn serve(args: SandboxArgs, config: SandboxConfig) -> Result<(), CliError> {
    let uses_default = config
        .partners
        .iter()
        .any(|p| p.client_id == DEFAULT_CLIENT_ID);
    let partners = config.partners.len();
    let state = match &args.state {
        None => SandboxState::new(config),
        Some(path) => {
            let state_err = |source| CliError::State {
                path: path.clone(),
                source,
            };
            let sync = match args.state_sync {
                StateSync::Normal => super::store::SyncMode::Normal,
                StateSync::Full => super::store::SyncMode::Full,
            };
            let store = super::store::SqliteStore::open(path, sync).map_err(state_err)?;
            let state = SandboxState::with_store(
                config,
                std::sync::Arc::new(super::clock::SystemClock),
                Box::new(store),
            )
            .map_err(state_err)?;
            let stats = state.stats();
            tracing::info!(
                path = %path.display(),
                persons = stats.live_persons,
                devices = stats.live_devices,
                challenges = stats.live_challenges,
                change_requests = stats.live_change_requests,
                "state file loaded"
            );
            state
        }
    };
    let serve_err = |source| CliError::Serve {
        addr: args.listen,
        source,
    };
    let rules = state.fault_counts();
    if !rules.is_empty() {
        for rule in &rules {
            tracing::info!(rule = %rule.rule, "fault rule");
        }
        tracing::info!(
            faults_seed = state.faults_seed(),
            "fault decisions draw from this seed"
        );
    }
    if state.config().admin_token.is_some() {
        tracing::info!("/sandbox/faults is open to the admin token");
    }
    let handle = super::spawn_with(state, args.listen)
        .await
        .map_err(serve_err)?;
    println!("vphone sandbox listening on {}", handle.base_url());
    if uses_default {
        println!(
            "partner client id: {DEFAULT_CLIENT_ID} (secret: see README, section Sandbox); {partners} partner(s) configured"
        );
    } else {
        println!("{partners} partner(s) configured from the config file");
    }
    println!(
        "SMS outbox: {}/sandbox/sms?number=+15550101",
        handle.base_url()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot wait for Ctrl-C; stopping");
    }
    handle.shutdown().await;
    Ok(())
}
