//! Runs a scenario over a fleet under a pacing model, with live progress.

use super::pacing::{Model, Pacing};
use super::recorder::Recorder;
use super::scenario::{Ran, Scenario, Step, Steps};
use super::{Fleet, FleetError, Report, Shard, ShardRun, peak_rss_bytes};
use crate::api::{Otp, PhoneNumber};
use crate::client::ApiClient;
use crate::phone::OtpCommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long in-flight iterations may finish after `--duration` ends (see [`RunOptions::drain`]).
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(5);

/// How long a thread that served its workers the in-process sandbox waits at the end for
/// its listener's connections to close (idle ones close at once).
const LISTENER_STOP: Duration = Duration::from_secs(5);

/// How far past its `--start-at` a run may still start (at once): shards of one Job that
/// finish their setup a moment after the agreed time still start together with the others,
/// give or take this. Later than that, the run is refused rather than measuring a load the
/// other shards did not share.
pub const START_AT_GRACE: Duration = Duration::from_secs(5);

/// How far ahead `--start-at` may be: further is taken for a mistyped date, not a plan.
pub const START_AT_MAX_AHEAD: Duration = Duration::from_secs(24 * 3600);

/// When a run with a start time begins, as [`start_delay`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The start time is this far ahead: wait.
    In(Duration),
    /// The start time passed this long ago, within [`START_AT_GRACE`]: start at once.
    Late(Duration),
}

/// When to start a run due `at`, the time being `now` (both wall-clock): a start time more
/// than [`START_AT_GRACE`] past, or more than [`START_AT_MAX_AHEAD`] ahead, is refused with
/// the reason.
pub fn start_delay(at: SystemTime, now: SystemTime) -> Result<Start, FleetError> {
    match at.duration_since(now) {
        Ok(ahead) if ahead > START_AT_MAX_AHEAD => Err(FleetError::Usage(format!(
            "--start-at is {:.1} h ahead (a run waits at most {} h): check the date",
            ahead.as_secs_f64() / 3600.0,
            START_AT_MAX_AHEAD.as_secs() / 3600
        ))),
        Ok(ahead) => Ok(Start::In(ahead)),
        Err(e) if e.duration() <= START_AT_GRACE => Ok(Start::Late(e.duration())),
        Err(e) => Err(FleetError::Usage(format!(
            "--start-at passed {:.1} s ago (a run may start at most {} s late): give a time \
             far enough ahead for every shard to set up, e.g. two minutes from now",
            e.duration().as_secs_f64(),
            START_AT_GRACE.as_secs()
        ))),
    }
}

/// How progress is shown while a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar when stderr is a terminal, else a plain line every few seconds.
    Auto,
    /// A plain line on stderr every this many seconds.
    Lines(u64),
    /// Nothing (tests, benchmarks).
    Off,
}

/// How many threads run a run's workers, and which runtime they are.
///
/// With its own threads, each thread runs its share of the workers on its own
/// single-threaded runtime (never more threads than workers). A thread with no ready request
/// sleeps until an answer wakes it, and on a box the target shares those sleeps and wake-ups
/// are much of the client's CPU: against a `vphone sandbox` on the same 2-core machine, one
/// thread drove as many device-signing challenges per second as two, for about 40 µs of
/// client CPU each instead of 49.
///
/// Against the in-process sandbox each thread also serves its own workers' requests
/// ([`Threads::WithSandbox`]), on a listener of its own: a request then goes from the
/// client's task to the server's and back on one thread, where a sandbox served by other
/// threads hands every request and answer across cores and wakes a sleeping thread (the
/// README's Threads paragraph has the measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// One per core the process may run on.
    PerCore,
    /// Half the cores, at least one: the target runs on this machine and needs the others.
    BesideTarget,
    /// One per core, each serving the in-process sandbox ([`RunOptions::sandbox`]) to its
    /// own workers on a listener of its own (the same sandbox: one state, every listener).
    WithSandbox,
    /// Exactly this many (`--threads N`).
    Exactly(NonZeroUsize),
}

impl Threads {
    /// The default for a target at `url`: [`Threads::BesideTarget`] when its host is a
    /// loopback address, `localhost`, or the unspecified address (`0.0.0.0` and `[::]`
    /// connect to this machine), since the target then runs here; else [`Threads::PerCore`].
    pub fn for_target(url: &url::Url) -> Threads {
        let local = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                name.eq_ignore_ascii_case("localhost")
                    || name.to_ascii_lowercase().ends_with(".localhost")
            }
            None => false,
        };
        if local {
            Threads::BesideTarget
        } else {
            Threads::PerCore
        }
    }

    /// How many threads for `workers` workers on a machine with `cores` cores.
    pub fn count(self, cores: usize, workers: usize) -> usize {
        let wanted = match self {
            Threads::PerCore | Threads::WithSandbox => cores,
            Threads::BesideTarget => cores / 2,
            Threads::Exactly(n) => n.get(),
        };
        wanted.min(workers).max(1)
    }

    /// The count for this machine (as [`std::thread::available_parallelism`] reports it).
    pub fn count_here(self, workers: usize) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.count(cores, workers)
    }

    /// Why this many, for the run's header: `one per core`, `half the cores: the target is
    /// on this machine`, or `--threads`.
    pub fn reason(self) -> &'static str {
        match self {
            Threads::PerCore => "one per core",
            Threads::BesideTarget => "half the cores: the target is on this machine",
            Threads::Exactly(_) => "--threads",
            Threads::WithSandbox => "one per core, each serving its workers the in-process sandbox",
        }
    }
}

/// Everything a run needs besides the client and the fleet.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What each iteration does.
    pub scenario: Scenario,
    /// When iterations start and when the run stops.
    pub pacing: Pacing,
    /// The mobile number every fleet person uses.
    pub number: PhoneNumber,
    /// The OTP the target always sends to that number.
    pub otp: Otp,
    /// A command printing each code instead of `otp` (`--otp command:CMD`).
    pub otp_command: Option<OtpCommand>,
    /// Progress display.
    pub progress: ProgressMode,
    /// Which slice of the fleet this is (for the report).
    pub shard: Shard,
    /// With a duration: how long iterations still running at its end may take to finish.
    /// Whatever still runs after that is cancelled and counted as unfinished, so a run
    /// never outlasts `duration + drain` however slow the target is.
    pub drain: Duration,
    /// Wall-clock time to start at, after the token is fetched (see [`start_delay`]).
    pub start_at: Option<SystemTime>,
    /// How many threads run the workers.
    pub threads: Threads,
    /// The in-process sandbox the client calls, which [`Threads::WithSandbox`] serves on
    /// each thread of the run.
    pub sandbox: Option<crate::sandbox::Server>,
}

impl RunOptions {
    /// Options for the sandbox's test number (`+15550101`, OTP `212212`), no progress.
    pub fn new(scenario: Scenario, pacing: Pacing) -> RunOptions {
        RunOptions {
            scenario,
            pacing,
            number: PhoneNumber::test_number(),
            // A constant six-digit string always parses.
            otp: Otp::parse("212212").expect("212212 is a valid OTP"),
            otp_command: None,
            progress: ProgressMode::Off,
            shard: Shard::WHOLE,
            drain: DEFAULT_DRAIN,
            start_at: None,
            threads: Threads::PerCore,
            sandbox: None,
        }
    }

    /// How many iterations to run at most, given the fleet slice size.
    fn limit(&self, phones: u64) -> u64 {
        let asked = self.pacing.iterations;
        match &self.scenario {
            Scenario::Single(step) if step.is_once_per_phone() => {
                asked.unwrap_or(phones).min(phones)
            }
            _ => asked.unwrap_or(if self.pacing.duration.is_some() {
                u64::MAX
            } else {
                phones
            }),
        }
    }
}

struct Shared {
    client: ApiClient,
    fleet: Arc<Fleet>,
    recorder: Recorder,
    options: RunOptions,
    next: AtomicU64,
    missed: AtomicU64,
    skipped: AtomicU64,
    in_flight: AtomicU64,
    cursors: [AtomicUsize; 3],
    limit: u64,
    t0: Instant,
    deadline: Option<Instant>,
}

impl Shared {
    /// With a duration: when whatever still runs is cancelled (its end plus the drain).
    fn cutoff(&self) -> Option<Instant> {
        self.deadline.map(|d| d + self.options.drain)
    }

    /// The phone and step of iteration `n`.
    fn assign(&self, n: u64) -> (Step, usize) {
        let len = self.fleet.len();
        let step = self.options.scenario.step(n);
        let round_robin = (n % len as u64) as usize;
        match (&self.options.scenario, step) {
            (Scenario::Single(_), _) => (step, round_robin),
            (Scenario::Mix(_), Step::Onboard | Step::Bind | Step::AddKey) => {
                let cursor = match step {
                    Step::Onboard => 0,
                    Step::Bind => 1,
                    _ => 2,
                };
                let i = self.cursors[cursor].fetch_add(1, Ordering::Relaxed);
                if i < len {
                    (step, i)
                } else {
                    // Every phone has taken this one-time step: sign instead.
                    (Step::Sign, round_robin)
                }
            }
            (Scenario::Mix(_), _) => (step, round_robin),
        }
    }

    async fn iterate(&self, client: &ApiClient, worker: usize, n: u64, since: Instant) {
        let (step, phone) = self.assign(n);
        let steps = Steps {
            client,
            fleet: &self.fleet,
            recorder: &self.recorder,
            worker,
            number: &self.options.number,
            otp: &self.options.otp,
            clock: &super::SYSTEM_CLOCK,
            otp_command: self.options.otp_command.as_ref(),
        };
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut ran = boxed_run(&steps, step, phone, since).await;
        if ran == Ok(Ran::Skipped) && matches!(self.options.scenario, Scenario::Mix(_)) {
            // In a mix, a one-time step drawn for a phone that already took it (e.g. a bind
            // for a phone a `sign` bound as its prerequisite) signs instead, as it does once
            // every phone took it.
            let round_robin = (n % self.fleet.len() as u64) as usize;
            ran = boxed_run(&steps, Step::Sign, round_robin, since).await;
        }
        // A failed iteration is already recorded; the run goes on.
        match ran {
            Ok(Ran::Skipped) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ran::Done) => self.recorder.iteration_done(),
            Err(_) => {
                self.recorder.iteration_failed();
                self.recorder.iteration_done();
            }
        }
        // Not reached by an iteration cancelled at the end of the drain: it stays counted.
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An iteration's future (about 1.5 KB: each request's future is kept once, see
/// `Steps::counted`, and the rare large ones are boxed), made and boxed by a plain function,
/// so the worker's own future stays small. Boxed inside an `async fn`, it was a temporary of
/// the caller's state as well (rustc keeps room for it), which made every worker's future
/// larger and built each iteration there before copying it into the box.
fn boxed_run<'s>(
    steps: &'s Steps<'_>,
    step: Step,
    phone: usize,
    since: Instant,
) -> std::pin::Pin<Box<impl Future<Output = Result<Ran, super::scenario::Aborted>> + 's>> {
    Box::pin(steps.run(step, phone, since))
}

async fn worker(shared: Arc<Shared>, client: ApiClient, w: usize) {
    let pacing = &shared.options.pacing;
    if let Model::Closed { .. } = pacing.model {
        tokio::time::sleep(pacing.worker_delay(w)).await;
    }
    loop {
        let n = shared.next.fetch_add(1, Ordering::Relaxed);
        if n >= shared.limit {
            break;
        }
        let start = match pacing.intended_offset(n) {
            Some(offset) => {
                let intended = shared.t0 + offset;
                if shared.deadline.is_some_and(|d| intended >= d) {
                    break;
                }
                let now = Instant::now();
                if intended > now {
                    tokio::time::sleep_until(intended.into()).await;
                } else if shared.deadline.is_some_and(|d| now >= d) {
                    // Due before the end but no worker was free in time: not run, counted.
                    shared.missed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                intended
            }
            None => {
                let now = Instant::now();
                if shared.deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
        };
        shared.iterate(&client, w, n, start).await;
    }
}

/// Runs workers `first, first + step, ...` below `workers` on this thread's single-threaded
/// runtime until they finish or, with a duration, until its end plus the drain; whatever
/// still runs then is cancelled (dropping a task drops its requests and releases its
/// phone). Returns whether every worker finished by itself.
///
/// One runtime per core instead of one runtime for all: a request's answer wakes the task
/// on the thread whose I/O driver saw it, so no thread is woken to steal work and no task
/// hops between cores mid-request (on two cores that saves about a sixth of the client's
/// CPU per request).
async fn run_workers(
    shared: Arc<Shared>,
    client: &ApiClient,
    first: usize,
    step: usize,
    workers: usize,
) -> bool {
    let mut tasks = tokio::task::JoinSet::new();
    for w in (first..workers).step_by(step.max(1)) {
        tasks.spawn(worker(shared.clone(), client.clone(), w));
    }
    let cutoff = shared.cutoff();
    let all_done = async { while tasks.join_next().await.is_some() {} };
    let drained = match cutoff {
        Some(cutoff) => tokio::time::timeout_at(cutoff.into(), all_done)
            .await
            .is_ok(),
        None => {
            all_done.await;
            true
        }
    };
    if !drained {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    drained
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs `options.scenario` over `fleet` and returns the report. The client's token is
/// fetched before the clock starts, so no iteration pays for it.
pub async fn run(
    client: &ApiClient,
    fleet: Arc<Fleet>,
    options: RunOptions,
) -> Result<Report, FleetError> {
    let started_unix_ms = unix_ms();
    let mut report = Report::new(
        &options.scenario.to_string(),
        &options.pacing.to_string(),
        &fleet.seed_fingerprint(),
        started_unix_ms,
    );
    report.devices = fleet.total();
    let range = fleet.range();
    let workers = options.pacing.workers();
    let threads = options.threads.count_here(workers);
    let mut shard_run = ShardRun {
        shard: options.shard.to_string(),
        first_device: range.start,
        end_device: range.end,
        peak_memory_bytes: 0,
        elapsed_secs: 0.0,
        threads: threads as u64,
        signer: fleet.signer().as_str().to_owned(),
    };
    if fleet.is_empty() {
        // An empty slice (more shards than phones) still names itself, so a merge sees
        // every shard of the run.
        shard_run.peak_memory_bytes = peak_rss_bytes().unwrap_or(0);
        report.shards.push(shard_run);
        return Ok(report);
    }
    // Without a token no iteration can succeed; each will record the failure itself.
    let _ = client.authenticate().await;
    // Each thread's listener and client (holding that token), ready before the clock starts.
    let serving = serving_threads(client, &options, threads)?;
    if let Some(at) = options.start_at
        && let Start::In(wait) = start_delay(at, SystemTime::now())?
    {
        tokio::time::sleep(wait).await;
    }
    let limit = options.limit(fleet.len() as u64);
    let progress = options.progress;
    let t0 = Instant::now();
    // The time series' seconds: Unix seconds from here on, on the monotonic clock.
    let seconds = super::SecondClock::now();
    // The run's start is the time series' origin (after the token, which no row includes).
    report.started_unix_ms = seconds.origin_unix_ms();
    let shared = Arc::new(Shared {
        client: client.clone(),
        deadline: options.pacing.duration.map(|d| t0 + d),
        fleet: fleet.clone(),
        recorder: Recorder::new(seconds),
        options,
        next: AtomicU64::new(0),
        missed: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        cursors: Default::default(),
        limit,
        t0,
    });
    let display = Progress::start(progress, shared.clone());
    // On an error the display stops as it is dropped.
    run_on_threads(&shared, threads, workers, serving).await?;
    let elapsed = t0.elapsed();
    display.finish(&shared.recorder, elapsed);

    shared.recorder.fill(&mut report)?;
    report.elapsed_secs = super::report::secs(elapsed);
    report.missed = shared.missed.load(Ordering::Relaxed);
    report.skipped = shared.skipped.load(Ordering::Relaxed);
    report.unfinished = shared.in_flight.load(Ordering::Relaxed);
    shard_run.peak_memory_bytes = peak_rss_bytes().unwrap_or(0);
    shard_run.elapsed_secs = report.elapsed_secs;
    report.shards.push(shard_run);
    Ok(report)
}

/// Runs the workers spread over `threads` threads of their own, each with a single-threaded
/// runtime, and waits for them all.
async fn run_on_threads(
    shared: &Arc<Shared>,
    threads: usize,
    workers: usize,
    serving: Vec<Option<Serving>>,
) -> Result<(), FleetError> {
    // A pooled connection may belong to another thread's runtime (reqwest runs each
    // connection as a task of the runtime that opened it): no runtime stops, taking its
    // connections with it, before every thread's workers are done.
    // Each thread's arrival, counted when dropped: after its workers, or when the thread
    // fails or panics before, or here, for a thread that could not be started (with the
    // closure std drops, or with the arrivals of the threads after it) so the threads
    // already running never wait for it in vain.
    let (all_done, arrivals) = meeting_point(threads);
    let mut finished = Vec::with_capacity(threads);
    let mut failure = None;
    for (t, (serve, arrival)) in serving.into_iter().zip(arrivals).enumerate() {
        let (done, finished_rx) = tokio::sync::oneshot::channel();
        let shared = shared.clone();
        let all_done = all_done.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vphone-fleet-{t}"))
            .spawn(move || {
                let drained = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async {
                            let drained = thread_workers(shared, serve, t, threads, workers).await;
                            drop(arrival);
                            all_done.closed().await;
                            drained
                        })
                    });
                let _ = done.send(drained);
            });
        match spawned {
            Ok(_) => finished.push(finished_rx),
            Err(e) => {
                failure = Some(FleetError::Threads(e));
                break;
            }
        }
    }
    // Every thread started, then the first failure: none waits for a thread that failed.
    for finished_rx in finished {
        let outcome = match finished_rx.await {
            Ok(Ok(_drained)) => continue,
            Ok(Err(e)) => FleetError::Threads(e),
            Err(_) => FleetError::Threads(std::io::Error::other(
                "a worker thread ended without finishing its workers",
            )),
        };
        failure.get_or_insert(outcome);
    }
    failure.map_or(Ok(()), Err)
}

/// The fleet threads' meeting point before their runtimes end: [`AllDone::closed`] returns
/// once every thread's [`Arrival`] is dropped, whether its workers finished or the thread
/// failed or panicked (a `Barrier` would wait for a panicked thread for ever).
type AllDone = tokio::sync::watch::Sender<()>;

/// One thread's arrival at [`AllDone`], counted when dropped.
type Arrival = tokio::sync::watch::Receiver<()>;

/// A meeting point for `threads` threads and their arrivals.
fn meeting_point(threads: usize) -> (Arc<AllDone>, Vec<Arrival>) {
    let (all_done, arrival) = tokio::sync::watch::channel(());
    (
        Arc::new(all_done),
        (0..threads).map(|_| arrival.clone()).collect(),
    )
}

/// What a thread serving its workers the in-process sandbox needs: the sandbox, the
/// thread's listener (bound before the run starts), and a client that calls it.
struct Serving {
    server: crate::sandbox::Server,
    listener: std::net::TcpListener,
    client: ApiClient,
}

/// For [`Threads::WithSandbox`], one [`Serving`] per thread; for any other choice, none.
/// Refuses options that cannot serve: no sandbox, or a client that cannot call a thread's
/// own listener (only the lean transport can).
fn serving_threads(
    client: &ApiClient,
    options: &RunOptions,
    threads: usize,
) -> Result<Vec<Option<Serving>>, FleetError> {
    if options.threads != Threads::WithSandbox {
        return Ok((0..threads).map(|_| None).collect());
    }
    let server = options.sandbox.as_ref().ok_or_else(|| {
        FleetError::Options(
            "Threads::WithSandbox serves the in-process sandbox: set RunOptions::sandbox".into(),
        )
    })?;
    (0..threads)
        .map(|_| {
            let listener = crate::sandbox::Server::bind_local().map_err(FleetError::Sandbox)?;
            let addr = listener.local_addr().map_err(FleetError::Sandbox)?;
            let client = client.connecting_to(addr).ok_or_else(|| {
                FleetError::Options(
                    "Threads::WithSandbox needs a client with the lean HTTP transport \
                     (ClientConfig::with_lean_http): only it can call a thread's own listener"
                        .into(),
                )
            })?;
            Ok(Some(Serving {
                server: server.clone(),
                listener,
                client,
            }))
        })
        .collect()
}

/// Runs thread `t`'s workers; with `serving`, on the thread's own listener, which it stops
/// before the thread's runtime ends (waiting, at most until the run's cutoff or
/// [`LISTENER_STOP`], for its connections to close).
async fn thread_workers(
    shared: Arc<Shared>,
    serving: Option<Serving>,
    t: usize,
    threads: usize,
    workers: usize,
) -> std::io::Result<bool> {
    let Some(Serving {
        server,
        listener,
        client,
    }) = serving
    else {
        let client = shared.client.clone();
        return Ok(run_workers(shared, &client, t, threads, workers).await);
    };
    let listening = server.serve_on(listener)?;
    let cutoff = shared.cutoff();
    let drained = run_workers(shared, &client, t, threads, workers).await;
    drop(client);
    let limit = cutoff.map_or(LISTENER_STOP, |c| {
        c.saturating_duration_since(Instant::now())
            .min(LISTENER_STOP)
    });
    listening.stop(limit).await;
    Ok(drained)
}

/// The live display: a bar on a terminal, periodic lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(mode: ProgressMode, shared: Arc<Shared>) -> Progress {
        let every = match mode {
            ProgressMode::Off => {
                return Progress {
                    bar: None,
                    task: None,
                };
            }
            ProgressMode::Lines(secs) => Some(secs.max(1)),
            ProgressMode::Auto if std::io::stderr().is_terminal() => None,
            ProgressMode::Auto => Some(5),
        };
        let limit = shared.limit;
        let bar = every.is_none().then(|| {
            let (len, template) = if limit != u64::MAX {
                (
                    limit,
                    "{elapsed_precise} [{bar:30}] {pos}/{len} iterations  {msg}",
                )
            } else {
                (
                    shared.options.pacing.duration.map_or(0, |d| d.as_secs()),
                    "{elapsed_precise} [{bar:30}] {msg}",
                )
            };
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        let tick_bar = bar.clone();
        let task = tokio::spawn(async move {
            let period = match every {
                Some(secs) => Duration::from_secs(secs),
                None => Duration::from_millis(200),
            };
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(period).await;
                let r = &shared.recorder;
                let done = r.iterations();
                let now = Instant::now();
                let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
                let msg = format!(
                    "{} ok steps, {} failures, {rate:.0} it/s",
                    r.steps_ok(),
                    r.failures()
                );
                match &tick_bar {
                    Some(bar) if limit != u64::MAX => {
                        bar.set_position(done);
                        bar.set_message(msg);
                    }
                    Some(bar) => {
                        bar.set_position(shared.t0.elapsed().as_secs());
                        bar.set_message(format!("{done} iterations, {msg}"));
                    }
                    None => eprintln!(
                        "load: {:>7.1}s {done} iterations, {msg}",
                        shared.t0.elapsed().as_secs_f64()
                    ),
                }
                last = (now, done);
            }
        });
        Progress {
            bar,
            task: Some(task),
        }
    }

    /// Ends the display after a run: plain lines end with a last one; a bar is cleared.
    fn finish(mut self, recorder: &Recorder, elapsed: Duration) {
        if let Some(task) = self.task.take() {
            task.abort();
            if self.bar.is_none() {
                eprintln!(
                    "load: {:>7.1}s {} iterations, done",
                    elapsed.as_secs_f64(),
                    recorder.iterations()
                );
            }
        }
        // Dropped here: the bar is cleared.
    }
}

impl Drop for Progress {
    /// Stops the display, after [`Progress::finish`] or when a run ends early (an error).
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thread_that_panics_before_the_meeting_point_still_arrives() {
        let (all_done, mut arrivals) = meeting_point(3);
        let last = arrivals.pop().expect("three arrivals");
        let waiting = {
            let all_done = all_done.clone();
            let arrival = arrivals.pop().expect("three arrivals");
            tokio::spawn(async move {
                drop(arrival);
                all_done.closed().await;
            })
        };
        let panicked = {
            let arrival = arrivals.pop().expect("three arrivals");
            std::thread::spawn(move || {
                let _arrival = arrival;
                panic!("a fleet thread failing before its workers finish");
            })
        };
        assert!(panicked.join().is_err());
        // Two of three: the waiter still waits.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(last);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("every thread arrived, the panicked one included")
            .unwrap();
    }

    #[test]
    fn a_target_on_this_machine_gets_half_the_cores_and_any_other_one_per_core() {
        let on = |u: &str| Threads::for_target(&url::Url::parse(u).unwrap());
        for local in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:9000/v1",
            "http://localhost:8080",
            "http://LocalHost.:8080",
            "http://bank.localhost",
            "http://0.0.0.0:8080",
            "http://[::]:8080",
        ] {
            assert_eq!(on(local), Threads::BesideTarget, "{local}");
        }
        for remote in [
            "https://api.example.com",
            "http://10.0.0.7:8080",
            "http://[2001:db8::1]",
            "http://localhost.example.com",
            "http://notlocalhost",
        ] {
            assert_eq!(on(remote), Threads::PerCore, "{remote}");
        }
    }

    #[test]
    fn thread_counts_stay_between_one_and_the_number_of_workers() {
        let n = |k| Threads::Exactly(NonZeroUsize::new(k).unwrap());
        assert_eq!(Threads::PerCore.count(8, 64), 8);
        assert_eq!(Threads::PerCore.count(8, 3), 3);
        assert_eq!(Threads::BesideTarget.count(2, 64), 1);
        assert_eq!(Threads::BesideTarget.count(1, 64), 1);
        assert_eq!(Threads::BesideTarget.count(5, 64), 2);
        assert_eq!(Threads::BesideTarget.count(16, 4), 4);
        assert_eq!(n(3).count(2, 64), 3);
        assert_eq!(n(3).count(2, 2), 2);
        assert_eq!(Threads::WithSandbox.count(8, 64), 8);
        assert_eq!(Threads::WithSandbox.count(8, 3), 3);
    }

    #[test]
    fn a_start_time_ahead_waits_a_little_late_starts_at_once_and_too_late_is_refused() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let s = Duration::from_secs;
        assert_eq!(start_delay(now + s(90), now).unwrap(), Start::In(s(90)));
        assert_eq!(start_delay(now, now).unwrap(), Start::In(Duration::ZERO));
        assert_eq!(start_delay(now - s(5), now).unwrap(), Start::Late(s(5)));
        let err = start_delay(now - s(6), now).unwrap_err().to_string();
        assert!(err.contains("--start-at passed 6.0 s ago"), "{err}");
        assert_eq!(
            start_delay(now + s(24 * 3600), now).unwrap(),
            Start::In(s(24 * 3600))
        );
        let err = start_delay(now + s(365 * 24 * 3600), now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--start-at is 8760.0 h ahead"), "{err}");
    }
}
