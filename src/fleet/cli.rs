//! `vphone load`: the command-line face of fleets. `main.rs` parses [`LoadArgs`] and calls
//! [`main`]; everything else happens here.

use super::faults::{FaultSource, FaultWindow, injected_between};
use super::runner::{ProgressMode, RunOptions};
use super::{Fleet, FleetError, Model, Pacing, Report, Scenario, Shard, Start, Threads};
use crate::api::{Otp, PhoneNumber};
use crate::client::retry::DEFAULT_RETRIES;
use crate::client::{ApiClient, ClientConfig, Credentials, RetryPolicy, Target, Transcript};
use crate::phone::cli::{OtpArg, parse_otp};
use crate::sandbox::faults::FaultRule;
use crate::sandbox::ratelimit::RateLimit;
use crate::sandbox::{SandboxConfig, spawn};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use vphone_keystore::Backend;

/// Environment variable with the OTP the target sends to `--number` (default `212212`).
pub const OTP_ENV: &str = "VPHONE_FLEET_OTP";

/// Environment variable holding the fleet seed (a number or 64 hex digits).
pub const SEED_ENV: &str = "VPHONE_FLEET_SEED";

/// Environment variable that may give `--start-at`.
pub const START_AT_ENV: &str = "VPHONE_START_AT";

/// Run a fleet of simulated phones against the in-process sandbox or `--api URL`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoadArgs {
    /// Other load commands.
    #[command(subcommand)]
    pub command: Option<LoadCommand>,
    /// The run's settings.
    #[command(flatten)]
    pub run: RunArgs,
}

/// `vphone load` subcommands.
#[derive(Debug, Subcommand)]
pub enum LoadCommand {
    /// Merge reports of shards losslessly (histograms are merged, not percentiles averaged).
    Merge(MergeArgs),
    /// Show a report file written by `--json`: its table, and with --html a page to look at.
    Report(ReportArgs),
}

/// `vphone load report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A report written by `vphone load --json` or `vphone load merge --json`.
    pub report: PathBuf,
    /// Write the report as one self-contained HTML page (charts over time, errors,
    /// parameters; nothing is fetched when it is viewed).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `vphone load merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Reports written by `vphone load --json`.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Write the merged report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Merge even when some shards of the run are missing; the table names the gap.
    #[arg(long)]
    pub allow_partial: bool,
    /// Also write the merged report as one self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, a line every 5 s otherwise.
    Auto,
    /// A plain line every 5 s.
    Lines,
    /// No progress output.
    Off,
}

/// The settings of one load run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Target API base URL (credentials from --credentials FILE, $VPHONE_CREDENTIALS or
    /// VPHONE_CLIENT_ID / VPHONE_CLIENT_SECRET; without any, the sandbox's default partner).
    /// Without it, a sandbox is started in-process on 127.0.0.1.
    #[arg(long, value_name = "URL")]
    pub api: Option<url::Url>,
    /// A TOML file with `client_id` and `client_secret` for --api (never the secret itself
    /// as an argument).
    #[arg(long, value_name = "FILE", requires = "api")]
    pub credentials: Option<PathBuf>,
    /// Phones in the whole fleet (a shard runs its slice of them) [default: the --fleet
    /// file's size, else 100].
    #[arg(long)]
    pub devices: Option<u64>,
    /// `onboard`, `bind`, `add_key`, `sign`, `sms`, `change`, or a weighted mix such as
    /// `mix:bind=1,sign=8,sms=1`.
    #[arg(long, default_value = "bind")]
    pub scenario: String,
    /// Closed model: concurrent workers (default 32). Open model: the most iterations in
    /// flight (default 1024); arrivals finding all busy start late, timed from when they
    /// were due.
    #[arg(long, short = 'c')]
    pub concurrency: Option<usize>,
    /// Threads that run the workers, each with its own share of them. Default: with --api,
    /// one per core, or half the cores, at least one, when the address is a loopback one
    /// (the target runs on this machine and needs the others; a tunnel to a bank elsewhere
    /// looks local too: set N there). Fewer, busier threads sleep and wake less, which costs
    /// less CPU per request while they keep up. Without --api, one per core, each also
    /// serving its own workers the in-process sandbox on a listener of its own, so a
    /// request and its answer stay on one thread; N gives the workers N threads of their
    /// own, and the sandbox is served by the main runtime's.
    #[arg(long, value_name = "N")]
    pub threads: Option<std::num::NonZeroUsize>,
    /// Open model: iterations started per second, whatever the latency; latencies count
    /// from each iteration's intended start. Needs --duration or --iterations.
    #[arg(long, value_name = "PER_SECOND")]
    pub rate: Option<f64>,
    /// Spread worker starts (closed) or grow the rate linearly (open) over this time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub ramp_up: Duration,
    /// Stop starting iterations after this time; iterations still running get --drain
    /// more to finish, then are cancelled and reported as unfinished.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// With --duration: how long running iterations may still finish after it ends.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub drain: Duration,
    /// Stop after this many iterations (default: one per phone unless --duration is given).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// The fleet seed, for throwaway runs only: it derives every key of the fleet, and an
    /// argument is visible to other users (ps, shell history), so this warns. A number or 64
    /// hex digits. Prefer --seed-file or VPHONE_FLEET_SEED. Default: the --fleet file's seed,
    /// else a random one (kept by --save-fleet). Reports and logs show only its fingerprint.
    #[arg(long, conflicts_with = "seed_file")]
    pub seed: Option<String>,
    /// Read the fleet seed (a number or 64 hex digits) from this file; without it (and without
    /// --seed), VPHONE_FLEET_SEED holds the seed itself.
    #[arg(long, value_name = "FILE")]
    pub seed_file: Option<PathBuf>,
    /// Run the K-th of N disjoint slices of the fleet (`2/4`), or `auto` to read
    /// JOB_COMPLETION_INDEX (0-based) and VPHONE_SHARD_COUNT.
    #[arg(long, default_value = "1/1")]
    pub shard: String,
    /// Load phones saved by an earlier run (`--save-fleet`); repeatable, e.g. one per shard.
    #[arg(long, value_name = "FILE")]
    pub fleet: Vec<PathBuf>,
    /// Save the fleet (seed and the bank's ids per phone) after the run.
    #[arg(long, value_name = "FILE")]
    pub save_fleet: Option<PathBuf>,
    /// Write the full report, histograms and time series included, as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the report as one self-contained HTML page: throughput and latency charts over
    /// the run's seconds, the errors and the run's parameters (nothing fetched when viewed).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Start the run at this wall-clock time (RFC 3339, e.g. `2026-11-29T12:00:00Z`), so
    /// the shards of one run on many machines begin together. Setup (fleet files, sandbox,
    /// token) happens first. A time more than 5 s past is refused; one up to 5 s past
    /// starts at once, with a warning. One more than 24 h ahead is refused as a mistyped date.
    #[arg(long, value_name = "RFC3339", env = START_AT_ENV, value_parser = parse_start_at)]
    pub start_at: Option<time::OffsetDateTime>,
    /// The mobile number every fleet person uses (its OTP comes from --otp, else
    /// VPHONE_FLEET_OTP, default 212212, the sandbox's test-number OTP).
    #[arg(long, default_value = "+15550101")]
    pub number: String,
    /// Where the fleet's codes come from: static:CODE (the code the target sends to
    /// --number) or command:CMD (runs `sh -c CMD` for every SMS with VPHONE_OTP_NUMBER and
    /// VPHONE_OTP_KIND set, and reads the code from its stdout).
    #[arg(long, value_name = "static:CODE|command:CMD", value_parser = parse_fleet_otp)]
    pub otp: Option<OtpArg>,
    /// Write a sample of the HTTP exchanges (see --transcript-every) to FILE as JSON lines,
    /// OTPs, TANs, tokens and signatures redacted.
    #[arg(long, value_name = "FILE")]
    pub transcript: Option<PathBuf>,
    /// With --transcript: record one exchange in N.
    #[arg(long, value_name = "N", default_value = "100", requires = "transcript")]
    pub transcript_every: u64,
    /// Per-request timeout.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub timeout: Duration,
    /// In-process sandbox only: delay every /v1 response by this much (fault injection).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub sandbox_latency: Option<Duration>,
    /// In-process sandbox only: a fault rule, as `vphone sandbox --fault` takes it
    /// (repeatable), e.g. '* /v1/*: status=503 p=0.05'.
    #[arg(long, value_name = "RULE", value_parser = parse_fault)]
    pub sandbox_fault: Vec<FaultRule>,
    /// In-process sandbox only: the seed of its fault decisions (default: random, printed).
    #[arg(long, value_name = "N")]
    pub sandbox_faults_seed: Option<u64>,
    /// How often a failed request is sent again (see README "Retries"); each retry is
    /// counted under its operation in the report.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RETRIES)]
    pub retries: u32,
    /// Send every request once (the same as --retries 0).
    #[arg(long, conflicts_with = "retries")]
    pub no_retry: bool,
    /// Progress display.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
    /// Who derives and signs the fleet's P-256 keys: `aws-lc` (fast, random ECDSA nonces)
    /// or `rustcrypto` (the reference single phones use, RFC 6979). The keys are the same.
    #[arg(long, default_value = "aws-lc", value_parser = parse_signer)]
    pub signer: Backend,
    /// Exit with status 1 when any operation failed (the default; kept for scripts).
    #[arg(long)]
    pub fail_on_error: bool,
    /// Exit with status 1 only when more than this share of iterations failed
    /// (`0.05` or `5%`); without it, any failed iteration does.
    #[arg(long, value_name = "P", value_parser = parse_rate)]
    pub max_error_rate: Option<f64>,
}

impl RunArgs {
    /// The pacing these arguments ask for; refuses combinations that make no run.
    pub fn pacing(&self) -> Result<Pacing, FleetError> {
        let usage = |text: &str| Err(FleetError::Usage(text.to_owned()));
        if self.devices == Some(0) {
            return usage("--devices 0: a fleet needs at least one phone");
        }
        if self.iterations == Some(0) {
            return usage("--iterations 0: give at least 1 (or leave it out)");
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return usage("--duration 0s: give a positive time such as 30s (or leave it out)");
        }
        if self.rate.is_some() && self.duration.is_none() && self.iterations.is_none() {
            return usage(
                "--rate needs --duration or --iterations: an open-model run must say when \
                 it ends (e.g. --rate 200 --duration 60s)",
            );
        }
        if self.api.is_some() && self.sandbox_latency.is_some() {
            return usage(
                "--sandbox-latency only applies to the in-process sandbox; leave out --api \
                 to use it",
            );
        }
        if self.api.is_some()
            && (!self.sandbox_fault.is_empty() || self.sandbox_faults_seed.is_some())
        {
            return usage(
                "--sandbox-fault and --sandbox-faults-seed only apply to the in-process \
                 sandbox; give a sandbox at --api its rules with `vphone sandbox --fault`",
            );
        }
        let model = match self.rate {
            Some(rate) if !(rate > 0.0 && rate.is_finite()) => {
                return Err(FleetError::Usage(format!(
                    "--rate {rate}: give a positive number of iterations per second"
                )));
            }
            Some(rate) => Model::Open {
                rate,
                max_in_flight: self.concurrency.unwrap_or(1024),
            },
            None => Model::Closed {
                workers: self.concurrency.unwrap_or(32),
            },
        };
        if self.concurrency == Some(0) {
            return Err(FleetError::Usage("--concurrency must be at least 1".into()));
        }
        Ok(Pacing {
            model,
            ramp_up: self.ramp_up,
            duration: self.duration,
            iterations: self.iterations,
        })
    }
}

/// Runs `vphone load` on a fresh multi-threaded runtime and returns the exit code.
pub fn main(args: LoadArgs) -> ExitCode {
    // Before the fleet's heap grows (see the function).
    super::use_small_pages();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs `vphone load` (or `vphone load merge`) inside a Tokio runtime.
pub async fn execute(args: LoadArgs) -> Result<ExitCode, FleetError> {
    match args.command {
        Some(LoadCommand::Merge(m)) => merge(m),
        Some(LoadCommand::Report(r)) => show(r),
        None => run(args.run).await,
    }
}

fn merge(args: MergeArgs) -> Result<ExitCode, FleetError> {
    let mut merged: Option<Report> = None;
    for path in &args.reports {
        let report = Report::read_file(path)?;
        match &mut merged {
            None => merged = Some(report),
            Some(m) => m.merge(&report)?,
        }
    }
    let Some(merged) = merged else {
        return Err(FleetError::Usage(
            "name at least one report to merge".into(),
        ));
    };
    let missing = merged.missing_shards();
    if !missing.is_empty() && !args.allow_partial {
        let names: Vec<&str> = missing.iter().map(|(name, _)| name.as_str()).collect();
        return Err(FleetError::Mismatch(format!(
            "shard(s) {} of this run are missing, so the merge would leave their phones out; \
             pass every shard's report, or --allow-partial to merge anyway with the gap shown",
            names.join(", ")
        )));
    }
    print!("{}", merged.render_table());
    if let Some(path) = &args.json {
        merged.write_file(path)?;
    }
    if let Some(path) = &args.html {
        merged.write_html(path)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ReportArgs) -> Result<ExitCode, FleetError> {
    let report = Report::read_file(&args.report)?;
    print!("{}", report.render_table());
    if let Some(path) = &args.html {
        report.write_html(path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--start-at`: an RFC 3339 time with its offset.
fn parse_start_at(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2026-11-29T12:00:00Z ({e})"))
}

/// Refuses, before anything runs, an output file whose directory does not exist: found only
/// after the run, it would lose the run's results (and the fleet file, the only record of
/// what a random seed bound at the bank).
fn check_output_dirs(args: &RunArgs) -> Result<(), FleetError> {
    let outputs = [
        ("--json", &args.json),
        ("--html", &args.html),
        ("--save-fleet", &args.save_fleet),
        ("--transcript", &args.transcript),
    ];
    for (flag, path) in outputs {
        let Some(dir) = path.as_deref().and_then(std::path::Path::parent) else {
            continue;
        };
        if !dir.as_os_str().is_empty() && !dir.is_dir() {
            return Err(FleetError::Usage(format!(
                "{flag} {}: the directory {} does not exist (create it first; nothing was run)",
                path.as_deref().unwrap_or(dir).display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

async fn run(args: RunArgs) -> Result<ExitCode, FleetError> {
    check_output_dirs(&args)?;
    let scenario: Scenario = args.scenario.parse()?;
    let pacing = args.pacing()?;
    let start_at = args.start_at.map(std::time::SystemTime::from);
    if let Some(at) = start_at {
        // Refused before any setup when it is already too late.
        super::start_delay(at, std::time::SystemTime::now())?;
    }
    let shard: Shard = args.shard.parse()?;
    let number = PhoneNumber::parse(&args.number).map_err(|e| FleetError::Usage(e.to_string()))?;
    let (otp, otp_command) = match &args.otp {
        Some(OtpArg::Static(code)) => (code.clone(), None),
        Some(OtpArg::Command(cmd)) => (test_code(), Some(cmd.clone())),
        _ => {
            let otp_text = std::env::var(OTP_ENV).unwrap_or_else(|_| "212212".to_owned());
            let otp = Otp::parse(&otp_text)
                .map_err(|_| FleetError::Usage(format!("{OTP_ENV} must be exactly 6 digits")))?;
            (otp, None)
        }
    };
    let transcript = match &args.transcript {
        Some(path) => Some(Arc::new(
            Transcript::to_file(path, args.transcript_every)
                .map_err(|e| FleetError::io(path, e))?,
        )),
        None => None,
    };

    // The fleet's identity: the first fleet file's seed and size, unless given.
    let mut first_file = None;
    if let Some(path) = args.fleet.first() {
        let text = std::fs::read_to_string(path).map_err(|e| FleetError::io(path, e))?;
        first_file = Fleet::peek_file(&text);
        if first_file.is_none() {
            return Err(FleetError::Format {
                path: path.clone(),
                what: "fleet",
                detail: "missing `vphone-fleet 1`, `seed` or `devices` line".into(),
            });
        }
    }
    let (seed, seed_from) = fleet_seed(&args, first_file.as_ref().map(|(s, _)| s.as_str()))?;
    // A --devices that disagrees with the fleet file is refused when the file is loaded.
    let total = match (args.devices, &first_file) {
        (Some(devices), _) => devices,
        (None, Some((_, total))) => *total,
        (None, None) => 100,
    };
    let fleet = Arc::new(Fleet::new(&seed, total, shard.slice(total))?.with_signer(args.signer));
    for path in &args.fleet {
        let text = std::fs::read_to_string(path).map_err(|e| FleetError::io(path, e))?;
        let n = fleet.load_text(&text, path).await?;
        eprintln!(
            "load: {} phones of this shard restored from {}",
            n,
            path.display()
        );
    }

    let retry = RetryPolicy::default().with_retries(if args.no_retry { 0 } else { args.retries });
    let (client, sandbox) = match &args.api {
        Some(url) => {
            let target = Target::Local(url.clone());
            let credentials = Credentials::for_target(args.credentials.as_deref(), &target)
                .map_err(|e| FleetError::Client(e.to_string()))?;
            let config = ClientConfig::new(&target, credentials)
                .with_timeout(args.timeout)
                .with_transcript(transcript.clone())
                .with_retry(retry.clone())
                .with_lean_http(true);
            (client_for(config)?, None)
        }
        None => {
            // Fleet phones share the test number and repeat SMS challenges by design: the
            // per-person SMS limit that protects a shared sandbox would turn a load run's
            // `sms` rows into 429s, so the fleet's own in-process bank runs without it.
            let config = SandboxConfig {
                latency: args.sandbox_latency,
                faults: args.sandbox_fault.clone(),
                faults_seed: args.sandbox_faults_seed,
                sms_rate_limit: RateLimit {
                    max: 0,
                    ..RateLimit::SMS_DEFAULT
                },
                ..SandboxConfig::default()
            };
            let sandbox = spawn(config).await.map_err(FleetError::Sandbox)?;
            let url = url::Url::parse(&sandbox.base_url())
                .map_err(|e| FleetError::Client(e.to_string()))?;
            let config = ClientConfig::local(url, Credentials::sandbox_default())
                .with_timeout(args.timeout)
                .with_transcript(transcript.clone())
                .with_retry(retry.clone())
                .with_lean_http(true);
            if !args.sandbox_fault.is_empty() {
                eprintln!(
                    "load: the in-process sandbox injects faults ({} rule(s)), seed {}",
                    args.sandbox_fault.len(),
                    sandbox.state().faults_seed()
                );
            }
            (client_for(config)?, Some(sandbox))
        }
    };
    let threads = match (args.threads, &args.api) {
        (Some(n), _) => Threads::Exactly(n),
        (None, Some(url)) => Threads::for_target(url),
        (None, None) => Threads::WithSandbox,
    };
    eprintln!(
        "load: {scenario} on phones {:?} of {total} (shard {shard}), {pacing}, {} thread(s) \
         ({}), signer {}, seed fingerprint {} ({seed_from}), target {}",
        fleet.range(),
        threads.count_here(pacing.workers()),
        threads.reason(),
        fleet.signer(),
        fleet.seed_fingerprint(),
        if sandbox.is_some() {
            "in-process sandbox"
        } else {
            client.base_url()
        }
    );

    let options = RunOptions {
        progress: match args.progress {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Lines => ProgressMode::Lines(5),
            ProgressArg::Off => ProgressMode::Off,
        },
        number,
        otp,
        otp_command,
        shard,
        drain: args.drain,
        start_at,
        threads,
        sandbox: sandbox.as_ref().map(|s| s.server()),
        ..RunOptions::new(scenario, pacing)
    };
    if let Some(at) = start_at {
        let text = args
            .start_at
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        match super::start_delay(at, std::time::SystemTime::now())? {
            Start::In(wait) => eprintln!(
                "load: waiting until {text} ({:.1} s) to start with the other shards",
                wait.as_secs_f64()
            ),
            Start::Late(late) => eprintln!(
                "load: warning: --start-at {text} passed {:.1} s ago; starting at once",
                late.as_secs_f64()
            ),
        }
    }
    let faults = match &sandbox {
        Some(sandbox) => Some(FaultSource::InProcess(sandbox.state().clone())),
        None => FaultSource::probe(&client).await,
    };
    let before = match &faults {
        Some(source) => source.read().await,
        None => None,
    };
    let mut report = super::run(&client, fleet.clone(), options).await?;
    if let (Some(source), Some(before)) = (&faults, &before)
        && let Some(after) = source.read().await
    {
        // The readings themselves go into the report, so a merge with shards that read the
        // same sandbox counts its faults once; without an instance id, only the difference.
        // Counts of a sandbox that restarted during the run are never subtracted from the
        // old one's: the run has the new one's since it started.
        if let Some(window) = FaultWindow::since_restart(before, after.clone()) {
            report.faults_replaced = injected_between(&window.before, &window.after).rules_replaced;
            report.faults_restarted = true;
            report.fault_windows.push(window);
        } else {
            let run = injected_between(before, &after);
            report.faults_replaced = run.rules_replaced;
            match FaultWindow::new(before.clone(), after) {
                Some(window) => report.fault_windows.push(window),
                None => report.faults_unread = Some(run.injected),
            }
        }
        report.recount_faults().map_err(|detail| {
            FleetError::Mismatch(format!("cannot count the injected faults: {detail}"))
        })?;
    }
    if let Some(t) = &transcript {
        t.flush()
            .map_err(|e| FleetError::io(args.transcript.clone().unwrap_or_default(), e))?;
    }
    if let Some(sandbox) = sandbox {
        sandbox.shutdown().await;
    }
    print!("{}", report.render_table());
    if let Some(line) = report.render_top_errors(3) {
        println!("{line}");
    }
    // Every output is attempted even when one fails (a full disk, a directory removed during
    // the run), the fleet file first: it records what the run bound at the bank.
    let mut failed = Vec::new();
    if let Some(path) = &args.save_fleet {
        failed.extend(fleet.save(path).await.err());
    }
    if let Some(path) = &args.json {
        failed.extend(report.write_file(path).err());
    }
    if let Some(path) = &args.html {
        failed.extend(report.write_html(path).err());
    }
    let mut failed = failed.into_iter();
    if let Some(first) = failed.next() {
        for other in failed {
            eprintln!("error: {other}");
        }
        return Err(first);
    }
    Ok(if failed_too_often(&report, args.max_error_rate) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether the run counts as failed: any failed iteration or request, or with a maximum,
/// a share of failed iterations above it.
fn failed_too_often(report: &super::Report, max_error_rate: Option<f64>) -> bool {
    match max_error_rate {
        None => report.failed_iterations > 0 || report.total_errors() > 0,
        Some(max) => {
            let failed = report.failed_iterations as f64;
            report.iterations > 0 && failed / report.iterations as f64 > max
        }
    }
}

/// `--max-error-rate`: a share in 0..=1, or a percentage (`5%`).
fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (text, 1.0),
    };
    let value = number
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{text:?} is not a share like 0.05 or 5%"))?
        / scale;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text:?} is not between 0 and 1 (0% and 100%)"))
    }
}

/// The fleet's `--otp`: `static:CODE` or `command:CMD` (a fleet cannot prompt).
fn parse_fleet_otp(s: &str) -> Result<OtpArg, String> {
    match parse_otp(s)? {
        arg @ (OtpArg::Static(_) | OtpArg::Command(_)) => Ok(arg),
        _ => Err("a fleet takes --otp static:CODE or --otp command:CMD".into()),
    }
}

fn test_code() -> Otp {
    Otp::parse("212212").unwrap_or_else(|_| unreachable!("six digits"))
}

/// The fleet seed's text and where it came from: `--seed` (with a warning), `--seed-file`,
/// `VPHONE_FLEET_SEED`, the first fleet file, or fresh randomness. Errors name the source,
/// never the content.
fn fleet_seed(
    args: &RunArgs,
    fleet_file: Option<&str>,
) -> Result<(String, &'static str), FleetError> {
    let (text, from) = if let Some(seed) = &args.seed {
        eprintln!(
            "load: warning: --seed puts the fleet seed, which derives every key of the fleet, \
             on the command line (visible in ps and shell history); fine for throwaway runs, \
             otherwise use --seed-file FILE or {SEED_ENV}"
        );
        (seed.clone(), "--seed")
    } else if let Some(path) = &args.seed_file {
        let text = std::fs::read_to_string(path).map_err(|e| FleetError::io(path, e))?;
        (text.trim().to_owned(), "--seed-file")
    } else if let Ok(text) = std::env::var(SEED_ENV) {
        (text.trim().to_owned(), SEED_ENV)
    } else if let Some(text) = fleet_file {
        (text.to_owned(), "the fleet file")
    } else {
        (hex::encode(rand::random::<[u8; 32]>()), "random")
    };
    // Checked here so the error can say where the bad seed came from.
    super::parse_seed(&text).map_err(|e| FleetError::Usage(format!("{from}: {e}")))?;
    Ok((text, from))
}

fn parse_signer(text: &str) -> Result<Backend, String> {
    text.parse()
        .map_err(|e: vphone_keystore::KeystoreError| e.to_string())
}

fn parse_fault(text: &str) -> Result<FaultRule, String> {
    FaultRule::parse(text).map_err(|e| e.to_string())
}

fn client_for(config: ClientConfig) -> Result<ApiClient, FleetError> {
    ApiClient::new(config).map_err(|e| FleetError::Client(e.to_string()))
}
