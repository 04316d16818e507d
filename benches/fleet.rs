//! Fleet benchmark: the fleet against the in-process sandbox, next to a ceiling computed in
//! the same run from bare crypto and bare HTTP costs; the fleet's own CPU per operation
//! against a separate `vphone sandbox` process (so the sandbox's CPU is excluded), with the
//! threads `vphone load --api` takes for it by default (half the cores: it is on loopback)
//! and with one per core, next to the raw floor of this machine (a client that only writes
//! fixed requests and reads the answers' bytes, measured against the same sandbox in each
//! round); and memory per idle phone.
//!
//! The ceiling uses the fastest primitive the build has for each crypto step (both signing
//! backends are measured, the faster counts, and the output names it) and the cheapest
//! HTTP round trip (both transports, each with its client tasks on the sandbox's runtime,
//! on threads of their own and, for the lean one, on threads that serve themselves the
//! sandbox), and verifies different signatures, as the sandbox does.
//!
//! Both fleet measurements run in rounds, each with new phones; in-process, the ceiling's
//! parts are measured again between every two fleet phases, and each phase is set against
//! the mean of the measurements just before and just after it. The median round counts.
//! All rounds share one sandbox, whose data grows with each (the peak memory printed covers
//! them all).
//!
//! Run: `cargo bench --bench fleet`. Knobs (all bounded):
//! `VPHONE_BENCH_ROUNDS` rounds (default 5, at most 15),
//! `VPHONE_BENCH_DEVICES` phones to bind per round (default 10000, at most 200000),
//! `VPHONE_BENCH_SIGNS` device-signing challenges per round (default 20000, at most 1000000),
//! `VPHONE_BENCH_CONCURRENCY` workers (default 64, at most 4096),
//! `VPHONE_BENCH_IDLE_PHONES` phones for the memory measure (default 1000000, at most 2000000).
//! Every phase also stops after 120 s.

/// The same allocator as the `vphone` binary, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use common::median;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vphone::api::KeyPurpose;
use vphone::client::{ApiClient, ClientConfig, Credentials};
use vphone::fleet::{
    Fleet, Model, Pacing, Report, RunOptions, Scenario, Step, Threads, peak_rss_bytes, rss_bytes,
    run,
};
use vphone::sandbox::{SandboxConfig, Server, spawn};
use vphone_keystore::{Backend, Seed, SigningKey};

const PHASE_CAP: Duration = Duration::from_secs(120);

fn knob(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

/// CPU seconds this process has used, all its threads (those that ended too), from the
/// process CPU-time clock: nanoseconds, where `/proc/self/stat` counts 10 ms ticks (at 2,000
/// operations a tick is 5 µs per operation).
fn cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// CPU time the calling thread has run, nanoseconds (`/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// CPU seconds per call of `f` (this thread's CPU time, so time other processes take from
/// the shared cores does not inflate the bare costs and flatter the ratio), over at least
/// `min` wall time. Falls back to wall time where the kernel does not say.
fn per_call(mut f: impl FnMut(u64), min: Duration) -> f64 {
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut n = 0u64;
    while start.elapsed() < min {
        for _ in 0..50 {
            f(n);
            n += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9 / n as f64,
        _ => wall / n as f64,
    }
}

fn closed(workers: usize, iterations: u64) -> Pacing {
    Pacing {
        model: Model::Closed { workers },
        ramp_up: Duration::ZERO,
        duration: Some(PHASE_CAP),
        iterations: Some(iterations),
    }
}

struct Phase {
    report: Report,
    cpu: f64,
}

/// A phase against the in-process sandbox, run as `vphone load` runs it: each thread
/// serving its own workers the sandbox.
async fn phase(
    client: &ApiClient,
    sandbox: &Server,
    fleet: &Arc<Fleet>,
    step: Step,
    pacing: Pacing,
) -> Phase {
    let mut options = RunOptions::new(Scenario::Single(step), pacing);
    options.threads = Threads::WithSandbox;
    options.sandbox = Some(sandbox.clone());
    phase_with(client, fleet, options).await
}

async fn phase_with(client: &ApiClient, fleet: &Arc<Fleet>, options: RunOptions) -> Phase {
    let cpu0 = cpu_secs();
    let scenario = options.scenario.clone();
    let report = match run(client, fleet.clone(), options).await {
        Ok(r) => r,
        Err(e) => panic!("bench phase {scenario:?} failed: {e}"),
    };
    Phase {
        report,
        cpu: cpu_secs() - cpu0,
    }
}

fn main() {
    // The process set up as `vphone load` sets up its own (see `use_small_pages`).
    let small_pages = vphone::fleet::use_small_pages();
    let devices = knob("VPHONE_BENCH_DEVICES", 10_000, 200_000);
    let signs = knob("VPHONE_BENCH_SIGNS", 20_000, 1_000_000);
    let concurrency = knob("VPHONE_BENCH_CONCURRENCY", 64, 4096) as usize;
    let idle = knob("VPHONE_BENCH_IDLE_PHONES", 1_000_000, 2_000_000);
    let rounds = knob("VPHONE_BENCH_ROUNDS", 5, 15) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()
        .expect("tokio runtime");

    println!(
        "vphone fleet benchmark: {cores} cores, {rounds} rounds of {devices} new phones and {signs} signing challenges, concurrency {concurrency}"
    );
    println!(
        "process set up as `vphone load`: mimalloc, transparent huge pages {}",
        if small_pages {
            "off"
        } else {
            "as the system has them"
        }
    );
    println!();

    // 1. Memory per idle phone, before anything else grows the heap.
    let rss0 = rss_bytes().unwrap_or(0);
    let idle_fleet = runtime.block_on(async {
        let fleet = Fleet::new("1", idle, 0..idle).expect("fleet");
        // Make every phone a bound one (person and device ids set), the largest idle state.
        for i in 0..fleet.len() {
            let mut s = fleet.slot(i).lock().await;
            fleet.set_person(&mut s, &vphone::api::PersonId::generate());
            fleet.set_verified(&mut s);
            fleet.set_device(&mut s, &vphone::api::DeviceId::generate());
        }
        fleet
    });
    let rss1 = rss_bytes().unwrap_or(0);
    let per_phone_rss = rss1.saturating_sub(rss0) as f64 / idle as f64;
    let slot = std::mem::size_of::<vphone::fleet::PhoneSlot>();
    println!("memory per idle phone ({idle} bound phones in the fleet's real structure)");
    println!(
        "  RSS growth / phones       {per_phone_rss:>8.1} bytes  (VmRSS before and after building them)"
    );
    println!(
        "  exact size of one slot    {slot:>8} bytes  (size_of PhoneSlot; no per-phone heap: ids are 128-bit numbers, keys derived on demand)"
    );
    println!("  target                         128 bytes");
    drop(idle_fleet);
    println!();

    runtime.block_on(async {
        let sandbox = spawn(SandboxConfig::default()).await.expect("sandbox");
        let url = url::Url::parse(&sandbox.base_url()).expect("sandbox URL");
        // The fleets' client (lean HTTP/1.1 transport), and reqwest's for comparison.
        let config = ClientConfig::local(url, Credentials::sandbox_default());
        let client = ApiClient::new(config.clone().with_lean_http(true)).expect("client");
        client.authenticate().await.expect("token");
        let reqwest_client = ApiClient::new(config).expect("client");
        reqwest_client.authenticate().await.expect("token");

        // 2. Bare costs: each signing backend's derivation and signature; the faster counts.
        let seed = Seed::from_u64(7);
        let message = b"212212";
        let derive_cost = |backend: Backend| {
            per_call(
                |n| {
                    let k = SigningKey::derive_with(&seed, n, KeyPurpose::Unrestricted, backend);
                    std::hint::black_box(k.public_key_hex());
                },
                Duration::from_millis(400),
            )
        };
        let sign_cost = |backend: Backend| {
            let key = SigningKey::derive_with(&seed, 0, KeyPurpose::Unrestricted, backend);
            per_call(
                |_| {
                    std::hint::black_box(key.sign(message));
                },
                Duration::from_millis(400),
            )
        };
        let crypto: Vec<_> = Backend::ALL
            .into_iter()
            .map(|backend| (backend, derive_cost(backend), sign_cost(backend)))
            .collect();
        let fastest = |pick: fn(&(Backend, f64, f64)) -> f64| {
            crypto
                .iter()
                .min_by(|a, b| pick(a).total_cmp(&pick(b)))
                .map(|c| (c.0, pick(c)))
                .expect("two backends measured")
        };
        let (derive_by, t_derive) = fastest(|c| c.1);
        let (sign_by, t_sign) = fastest(|c| c.2);
        // Verification as the sandbox meets it: a different key, code and signature each
        // time, each key parsed once when it was registered (`UnparsedPublicKey` would parse
        // it again on every call). One signature verified over and over is measured too: it
        // comes out a few µs cheaper, because the branch predictor learns the variable-time
        // inverse of that one s, which real traffic never repeats.
        let verifiers: Vec<_> = (0..VERIFY_INPUTS)
            .map(|n| {
                let key = SigningKey::derive(&seed, n, KeyPurpose::Unrestricted);
                let code = format!("{:06}", n * 7919 % 1_000_000);
                let parsed = parsed_key(key.public_key_bytes());
                let signature = key.sign(code.as_bytes());
                (key.public_key_bytes(), parsed, code, signature)
            })
            .collect();
        let input = |n: u64| &verifiers[(n % VERIFY_INPUTS) as usize];
        let verify_cost = || {
            per_call(
                |n| {
                    let (_, parsed, code, signature) = input(n);
                    assert!(parsed.verify_sig(code.as_bytes(), signature).is_ok());
                },
                Duration::from_millis(500),
            )
        };
        let t_verify = verify_cost();
        let t_verify_repeated = per_call(
            |_| {
                let (_, parsed, code, signature) = input(0);
                assert!(parsed.verify_sig(code.as_bytes(), signature).is_ok());
            },
            Duration::from_millis(300),
        );
        // A binding's new key is checked (a point on the curve) and parsed once.
        let key_check_cost = || {
            per_call(
                |n| {
                    let (point, _, _, _) = input(n);
                    std::hint::black_box(
                        parsed_key(point),
                    );
                },
                Duration::from_millis(200),
            )
        };
        let t_key_check = key_check_cost();
        let http_requests = (signs * 2).clamp(2000, 40_000);
        let mut round_trips = Vec::new();
        let server = sandbox.server();
        for (name, c) in [("reqwest", &reqwest_client), ("lean", &client)] {
            for layout in [Layout::SandboxRuntime, Layout::OwnThreads, Layout::ServingThreads] {
                // Only the lean transport can call a thread's own listener (reqwest connects
                // where the URL says).
                if name == "reqwest" && matches!(layout, Layout::ServingThreads) {
                    continue;
                }
                let (cpu, wall) =
                    round_trip_cost(c, &server, http_requests, concurrency, layout, None).await;
                round_trips.push((name, layout, cpu, wall));
            }
        }
        let (http_by, http_layout, t_http, http_wall) = round_trips
            .iter()
            .copied()
            .min_by(|a, b| a.2.total_cmp(&b.2))
            .expect("two transports measured");
        println!(
            "bare costs, measured now (CPU time per operation, client and server; each fleet round below measures its own again)"
        );
        for (backend, d, s) in &crypto {
            println!(
                "  {:<10} derivation + public key hex {:>7.1} µs, P-256 sign {:>7.1} µs",
                backend.as_str(),
                d * 1e6,
                s * 1e6
            );
        }
        println!(
            "  key derivation + public key hex   {:>8.1} µs  (fastest: {derive_by})",
            t_derive * 1e6
        );
        println!(
            "  P-256 sign                        {:>8.1} µs  (fastest: {sign_by})",
            t_sign * 1e6
        );
        println!(
            "  P-256 verify                      {:>8.1} µs  (aws-lc-rs, each key parsed once as the sandbox does, over {VERIFY_INPUTS} different keys and signatures; one signature again and again: {:.1} µs)",
            t_verify * 1e6,
            t_verify_repeated * 1e6
        );
        println!(
            "  public key check and parse        {:>8.1} µs  (aws-lc-rs ParsedPublicKey::new: the point is on the curve; once per binding)",
            t_key_check * 1e6
        );
        for (name, layout, cpu, _) in &round_trips {
            println!(
                "  {name:<10} HTTP round trip, client + server {:>7.1} µs  (clients {})",
                cpu * 1e6,
                layout.describe()
            );
        }
        println!(
            "  HTTP round trip, client + server  {:>8.1} µs  (fastest: {http_by}, clients {}; authenticated GET /sandbox/health through the API client, {http_requests} requests at concurrency {concurrency}: {:.0} req/s wall)",
            t_http * 1e6,
            http_layout.describe(),
            http_requests as f64 / http_wall
        );
        println!("ceiling model: ops/s = cores / CPU seconds per op, with");
        println!(
            "  binding = 2 HTTP round trips + 1 sign + 1 verify + 1 key derivation + 1 public key check"
        );
        println!("  device-signing challenge = 2 HTTP round trips + 1 sign + 1 verify");
        println!("  (JSON, routing, sandbox state and fleet bookkeeping are the overhead the ratio exposes)");
        println!();

        // 3. The real fleet, in rounds. The ceiling's parts (the fastest backends and layout
        // found above) are measured again between every two fleet phases, and each phase is
        // judged against the mean of the measurements just before and just after it: so a
        // spell of slow machine that starts or ends between the ceiling and the fleet moves
        // the ratio half as far, either way. Each round's fleet of new phones is onboarded
        // (not timed as bindings), bound and signs; the result is the median round.
        // The same primitives as an operation must run them: its crypto on the thread that
        // made its round trips, between them. Informational: it shows what interleaving costs
        // on this machine (each step's crypto streams aws-lc's tables through the caches the
        // network and sandbox state were in); the targets stay set against the bare parts.
        let bind_crypto: Between = {
            let seed = seed.clone();
            Arc::new(move |n| {
                let key = SigningKey::derive_with(&seed, n, KeyPurpose::Unrestricted, derive_by);
                std::hint::black_box(key.public_key_hex());
                let parsed = parsed_key(key.public_key_bytes());
                let code = (n % 1_000_000).to_le_bytes();
                let signature = key.sign(&code);
                assert!(parsed.verify_sig(&code, &signature).is_ok());
            })
        };
        let sign_crypto: Between = {
            let keys: Vec<_> = (0..VERIFY_INPUTS)
                .map(|n| {
                    let key = SigningKey::derive_with(&seed, n, KeyPurpose::Unrestricted, sign_by);
                    let parsed = parsed_key(key.public_key_bytes());
                    (key, parsed)
                })
                .collect();
            Arc::new(move |n| {
                let (key, parsed) = &keys[(n % VERIFY_INPUTS) as usize];
                let challenge = n.to_le_bytes();
                let signature = key.sign(&challenge);
                assert!(parsed.verify_sig(&challenge, &signature).is_ok());
            })
        };
        let interleaved_requests = (http_requests / 2).max(2000);
        let http_client = if http_by == "lean" { &client } else { &reqwest_client };
        let interleaved = async |between: &Between| {
            // Per operation: two round trips and the crypto between them.
            2.0 * round_trip_cost(
                http_client,
                &server,
                interleaved_requests,
                concurrency,
                http_layout,
                Some(between),
            )
            .await
            .0
        };
        let measure_bare = async || Bare {
            derive: derive_cost(derive_by),
            sign: sign_cost(sign_by),
            verify: verify_cost(),
            key_check: key_check_cost(),
            http: round_trip_cost(http_client, &server, http_requests, concurrency, http_layout, None)
                .await
                .0,
            interleaved: [interleaved(&bind_crypto).await, interleaved(&sign_crypto).await],
        };
        let first_bare = Bare {
            derive: t_derive,
            sign: t_sign,
            verify: t_verify,
            key_check: t_key_check,
            http: t_http,
            interleaved: [interleaved(&bind_crypto).await, interleaved(&sign_crypto).await],
        };
        println!(
            "the same parts interleaved as an operation runs them (its crypto between its two round trips, on their thread; {interleaved_requests} requests; a binding derives and signs by {derive_by}, a challenge signs by {sign_by}; informational, the targets are set against the ceiling):"
        );
        for (op, name) in [(BIND, "binding"), (SIGN, "device-signing challenge")] {
            let parts = [first_bare.binding(), first_bare.challenge()][op];
            println!(
                "  {name:<24} {:>7.1} µs interleaved against {:>7.1} µs as the sum of the parts: interleaving adds {:.1} µs",
                first_bare.interleaved[op] * 1e6,
                parts * 1e6,
                (first_bare.interleaved[op] - parts) * 1e6
            );
        }
        println!();
        println!(
            "fleet against the in-process sandbox (closed model, concurrency {concurrency}), signer {} (the fleets' default)",
            vphone::fleet::DEFAULT_SIGNER.as_str()
        );
        println!(
            "  bare = the mean of the ceiling's parts measured just before and just after the fleet phase"
        );
        println!(
            "  round   bare bind   fleet bind   CPU ratio   bindings/s (ceiling)    bare sign   fleet sign   CPU ratio   challenges/s (ceiling)"
        );
        let mut results: Vec<Round> = Vec::new();
        let mut before_bind = first_bare;
        for round in 0..rounds {
            let seed_text = (7 + round).to_string();
            let fleet = Arc::new(Fleet::new(&seed_text, devices, 0..devices).expect("fleet"));
            let onboard =
                phase(&client, &server, &fleet, Step::Onboard, closed(concurrency, devices)).await;
            let bind =
                phase(&client, &server, &fleet, Step::Bind, closed(concurrency, devices)).await;
            let between = measure_bare().await;
            let sign = phase(&client, &server, &fleet, Step::Sign, closed(concurrency, signs)).await;
            let after_sign = measure_bare().await;
            let (bind_bare, sign_bare) =
                (before_bind.mean(&between), between.mean(&after_sign));
            for p in [&onboard, &bind, &sign] {
                assert_eq!(p.report.total_errors(), 0, "{}", p.report.render_table());
            }
            let per_op = |p: &Phase, op: &str| p.cpu / p.report.ok(op).max(1) as f64;
            let (fleet_bind, fleet_sign) = (per_op(&bind, "bind"), per_op(&sign, "sign"));
            let (bind_ceiling, sign_ceiling) =
                (cores as f64 / bind_bare.binding(), cores as f64 / sign_bare.challenge());
            let (bindings, challenges) = (bind.report.rate("bind"), sign.report.rate("sign"));
            println!(
                "  {:>5}   {:>6.1} µs   {:>7.1} µs   {:>9.3}   {bindings:>7.0} ({bind_ceiling:>7.0})    {:>6.1} µs   {:>7.1} µs   {:>9.3}   {challenges:>7.0} ({sign_ceiling:>7.0})",
                round + 1,
                bind_bare.binding() * 1e6,
                fleet_bind * 1e6,
                bind_bare.binding() / fleet_bind,
                sign_bare.challenge() * 1e6,
                fleet_sign * 1e6,
                sign_bare.challenge() / fleet_sign,
            );
            results.push(Round {
                ratio: [
                    bind_bare.binding() / fleet_bind,
                    sign_bare.challenge() / fleet_sign,
                ],
                wall: [bindings / bind_ceiling, challenges / sign_ceiling],
                onboarded: onboard.report.rate("onboard"),
                p99_us: [
                    bind.report.ops["bind"].quantile_us(0.99),
                    sign.report.ops["sign"].quantile_us(0.99),
                ],
                bare: [
                    (before_bind.binding(), between.binding()),
                    (between.challenge(), after_sign.challenge()),
                ],
                interleaved: [
                    (bind_bare.interleaved[BIND], fleet_bind),
                    (sign_bare.interleaved[SIGN], fleet_sign),
                ],
            });
            // The next round's onboarding comes first; its bindings follow this measurement.
            before_bind = after_sign;
        }
        let each = |show: &dyn Fn(&Round) -> String| {
            results.iter().map(show).collect::<Vec<_>>().join(", ")
        };
        let median_of = |pick: &dyn Fn(&Round) -> f64| {
            median(&results.iter().map(pick).collect::<Vec<_>>())
        };
        println!(
            "  onboarding (setup, not a binding): {} persons/s",
            each(&|r| format!("{:.0}", r.onboarded))
        );
        let p99 = |us: Option<u64>| us.map_or_else(|| "-".into(), |us| format!("{:.1}", us as f64 / 1e3));
        println!(
            "  p99 latency: bindings {} ms; challenges {} ms",
            each(&|r| p99(r.p99_us[BIND])),
            each(&|r| p99(r.p99_us[SIGN]))
        );
        let bracket = |op: usize| {
            each(&|r| format!("{:.0}/{:.0}", r.bare[op].0 * 1e6, r.bare[op].1 * 1e6))
        };
        println!(
            "  bare before/after each phase: bindings {} µs; challenges {} µs",
            bracket(BIND),
            bracket(SIGN)
        );
        println!(
            "  against the same parts interleaved (informational): interleaved/fleet µs and CPU ratio per round"
        );
        for (op, name) in [(BIND, "bindings"), (SIGN, "challenges")] {
            println!(
                "    {name:<10} {}; median ratio {:.3}",
                each(&|r| format!(
                    "{:.0}/{:.0} {:.3}",
                    r.interleaved[op].0 * 1e6,
                    r.interleaved[op].1 * 1e6,
                    r.interleaved[op].0 / r.interleaved[op].1
                )),
                median_of(&|r| r.interleaved[op].0 / r.interleaved[op].1)
            );
        }
        // Three decimals, and the verdict spelled out: 0.796 is not 0.8, though it rounds to it.
        let verdict = |ratio: f64| if ratio >= TARGET_RATIO { "met" } else { "MISSED" };
        let (bind_ratio, sign_ratio) =
            (median_of(&|r| r.ratio[BIND]), median_of(&|r| r.ratio[SIGN]));
        println!(
            "  bindings                  CPU ratio {bind_ratio:.3}   (median of {rounds} rounds; wall-clock ratio {:.3})   target {TARGET_RATIO}: {}",
            median_of(&|r| r.wall[BIND]),
            verdict(bind_ratio)
        );
        println!(
            "  device-signing challenges CPU ratio {sign_ratio:.3}   (median of {rounds} rounds; wall-clock ratio {:.3})   target {TARGET_RATIO}: {}",
            median_of(&|r| r.wall[SIGN]),
            verdict(sign_ratio)
        );
        println!(
            "  (CPU ratio = bare CPU per operation / the fleet's and sandbox's CPU per operation; the wall-clock ratio = achieved rate / ceiling counts cores other processes took, the CPU ratio does not)"
        );
        println!();
        println!(
            "peak memory (VmHWM) of the whole run: {:.1} MiB",
            peak_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
        );
        sandbox.shutdown().await;

        // 4. The fleet's own CPU, the sandbox in another process: with the threads `vphone
        // load --api` takes by default for this target, and with one per core to compare.
        let Some(external) = External::start() else {
            println!("client CPU against a separate sandbox: skipped (could not start `vphone sandbox`)");
            return;
        };
        let url = url::Url::parse(&external.url).expect("sandbox URL");
        let client = ApiClient::new(
            ClientConfig::local(url.clone(), Credentials::sandbox_default()).with_lean_http(true),
        )
        .expect("client");
        client.authenticate().await.expect("token");
        println!(
            "fleet CPU per operation against a separate `vphone sandbox` process (this process only: the client)"
        );
        let default = Threads::for_target(&url);
        // The default's threads in rounds, each with a fleet of new phones, and the median
        // round against the targets (a slow spell of this box moves single measurements);
        // one per core once, for comparison.
        let mut plans = vec![default; rounds];
        if default != Threads::PerCore {
            plans.push(Threads::PerCore);
        }
        let mut per_binding = Vec::new();
        let mut per_challenge = Vec::new();
        let mut floors = Vec::new();
        let addr = url.socket_addrs(|| None).expect("sandbox address")[0];
        let floor_requests = (signs * 2).clamp(2000, 40_000);
        for (n, threads) in plans.into_iter().enumerate() {
            let seed_text = (100 + n).to_string();
            let fleet = Arc::new(Fleet::new(&seed_text, devices, 0..devices).expect("fleet"));
            let with = |pacing: Pacing, step: Step| {
                let mut options = RunOptions::new(Scenario::Single(step), pacing);
                options.threads = threads;
                options
            };
            let onboard = phase_with(&client, &fleet, with(closed(concurrency, devices), Step::Onboard)).await;
            let bind = phase_with(&client, &fleet, with(closed(concurrency, devices), Step::Bind)).await;
            let sign = phase_with(&client, &fleet, with(closed(concurrency, signs), Step::Sign)).await;
            for p in [&onboard, &bind, &sign] {
                assert_eq!(p.report.total_errors(), 0, "{}", p.report.render_table());
            }
            let per = |cpu: f64, n: u64| cpu / n.max(1) as f64 * 1e6;
            let bound = bind.report.ok("bind");
            // The raw client right after the fleet's phases, against the same sandbox.
            let floor = raw_floor(addr, floor_requests, concurrency);
            let label = if threads == default && n < rounds {
                format!("round {}", n + 1)
            } else {
                "one per core, for comparison".to_owned()
            };
            println!(
                "  {} fleet thread(s), {label}: per onboarded binding {:.1} µs (onboarding {:.1} + binding {:.1}; {:.0} bindings/s), per challenge {:.1} µs ({:.0} challenges/s); raw client {:.1} µs per request",
                threads.count_here(concurrency),
                per(onboard.cpu + bind.cpu, bound),
                per(onboard.cpu, onboard.report.ok("onboard")),
                per(bind.cpu, bound),
                bind.report.rate("bind"),
                per(sign.cpu, sign.report.ok("sign")),
                sign.report.rate("sign"),
                floor * 1e6
            );
            if threads == default && n < rounds {
                per_binding.push(per(onboard.cpu + bind.cpu, bound));
                per_challenge.push(per(sign.cpu, sign.report.ok("sign")));
                floors.push(floor);
            }
        }
        println!(
            "  with {} fleet thread(s) ({}; the default for this target), median of {rounds} rounds:",
            default.count_here(concurrency),
            default.reason()
        );
        let (binding_us, challenge_us) = (median(&per_binding), median(&per_challenge));
        let floor_us = median(&floors) * 1e6;
        // The raw client's CPU for each request and the fastest crypto measured at the start:
        // what the operation costs before any HTTP, JSON or bookkeeping work, on this machine.
        let binding_floor = 6.0 * floor_us + (t_derive + t_sign) * 1e6;
        let challenge_floor = 2.0 * floor_us + t_sign * 1e6;
        let verdict = |us: f64, target: f64, floor: f64| match (us <= target, floor > target) {
            (true, _) => "met".to_owned(),
            (false, true) => "MISSED; already the raw floor below is above the target".to_owned(),
            (false, false) => "MISSED".to_owned(),
        };
        println!(
            "    per onboarded binding          {binding_us:>7.1} µs  (6 requests, 1 derivation, 1 signature)   target {CLIENT_BINDING_US:>3} µs: {}",
            verdict(binding_us, CLIENT_BINDING_US, binding_floor)
        );
        println!(
            "    per device-signing challenge   {challenge_us:>7.1} µs  (2 requests, 1 signature)   target {CLIENT_CHALLENGE_US:>3} µs: {}",
            verdict(challenge_us, CLIENT_CHALLENGE_US, challenge_floor)
        );
        println!(
            "  the raw floor on this machine (informational): a client thread that only writes a fixed request and reads the answer's bytes (no HTTP library, JSON, token, records or crypto; one thread, {concurrency} connections, one write and one read per request as the fleet does) spends {floor_us:.1} µs of CPU per request against this sandbox (median of the rounds); with the crypto, the floor per operation is"
        );
        println!(
            "    per onboarded binding          {binding_floor:>7.1} µs  (6 × {floor_us:.1} + derivation {:.1} + signature {:.1}, the fastest measured above); the fleet spends {:.1} µs more",
            t_derive * 1e6,
            t_sign * 1e6,
            binding_us - binding_floor
        );
        println!(
            "    per device-signing challenge   {challenge_floor:>7.1} µs  (2 × {floor_us:.1} + signature {:.1}); the fleet spends {:.1} µs more",
            t_sign * 1e6,
            challenge_us - challenge_floor
        );
        drop(external);
    });
}

/// Where the round trip's client tasks run: both ways a fleet can run its workers.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// Tasks of the runtime serving the sandbox (`Threads::WithSandbox`).
    SandboxRuntime,
    /// One single-threaded runtime per core of their own (`Threads::PerCore`).
    OwnThreads,
    /// One single-threaded runtime per core, each serving its own tasks the sandbox on a
    /// listener of its own (`Threads::WithSandbox`, as the fleet runs against it).
    ServingThreads,
}

impl Layout {
    fn describe(self) -> &'static str {
        match self {
            Layout::SandboxRuntime => "on the sandbox's runtime",
            Layout::OwnThreads => "on a runtime per core of their own",
            Layout::ServingThreads => "on a runtime per core, each serving them the sandbox",
        }
    }
}

/// One in-process round's results; each pair is indexed by [`BIND`] and [`SIGN`].
struct Round {
    /// Bare CPU per operation / the fleet's and sandbox's.
    ratio: [f64; 2],
    /// Achieved rate / ceiling.
    wall: [f64; 2],
    /// Persons onboarded per second (setup, not timed as bindings).
    onboarded: f64,
    /// p99 latency, µs.
    /// None when no operation of the kind succeeded in the round.
    p99_us: [Option<u64>; 2],
    /// The bare operation's CPU seconds measured just before and just after its phase.
    bare: [(f64, f64); 2],
    /// The interleaved parts' CPU seconds per operation (the mean of before and after) and
    /// the fleet's.
    interleaved: [(f64, f64); 2],
}

/// Index of bindings in a [`Round`]'s pairs.
const BIND: usize = 0;
/// Index of device-signing challenges in a [`Round`]'s pairs.
const SIGN: usize = 1;

/// The client's CPU per onboarded binding (µs) the fleet must stay within.
const CLIENT_BINDING_US: f64 = 120.0;
/// The client's CPU per device-signing challenge (µs) the fleet must stay within.
const CLIENT_CHALLENGE_US: f64 = 60.0;

/// The CPU ratio (bare / fleet and sandbox, per operation) the fleet must reach.
const TARGET_RATIO: f64 = 0.8;

/// A P-256 point checked and parsed for verification, as the sandbox keeps a bound key.
fn parsed_key(point: impl AsRef<[u8]>) -> aws_lc_rs::signature::ParsedPublicKey {
    aws_lc_rs::signature::ParsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, point)
        .expect("a valid public key")
}

/// One operation's crypto, run between its round trips; its argument differs every call.
type Between = Arc<dyn Fn(u64) + Send + Sync>;

/// Different keys and signatures the ceiling's verification goes through.
const VERIFY_INPUTS: u64 = 256;

/// One measurement of the ceiling's parts, CPU seconds each (fastest backends and layout).
#[derive(Debug, Clone, Copy)]
struct Bare {
    derive: f64,
    sign: f64,
    verify: f64,
    key_check: f64,
    http: f64,
    /// A binding's and a challenge's two round trips with their crypto between them, on the
    /// thread that made them (indexed by [`BIND`] and [`SIGN`]).
    interleaved: [f64; 2],
}

impl Bare {
    /// 2 HTTP round trips + 1 sign + 1 verify + 1 key derivation + 1 public key check.
    fn binding(&self) -> f64 {
        2.0 * self.http + self.sign + self.verify + self.derive + self.key_check
    }

    /// 2 HTTP round trips + 1 sign + 1 verify.
    fn challenge(&self) -> f64 {
        2.0 * self.http + self.sign + self.verify
    }

    /// The mean of two measurements, part by part.
    fn mean(&self, other: &Bare) -> Bare {
        Bare {
            derive: (self.derive + other.derive) / 2.0,
            sign: (self.sign + other.sign) / 2.0,
            verify: (self.verify + other.verify) / 2.0,
            key_check: (self.key_check + other.key_check) / 2.0,
            http: (self.http + other.http) / 2.0,
            interleaved: [BIND, SIGN]
                .map(|op| (self.interleaved[op] + other.interleaved[op]) / 2.0),
        }
    }
}

/// CPU seconds (this process: client and in-process server) per request and the wall
/// seconds of `requests` authenticated `GET /sandbox/health` calls over `concurrency` tasks,
/// spread as `layout` says; with `between`, each task runs it after every second call.
async fn round_trip_cost(
    client: &ApiClient,
    server: &Server,
    requests: u64,
    concurrency: usize,
    layout: Layout,
    between: Option<&Between>,
) -> (f64, f64) {
    let serving = matches!(layout, Layout::ServingThreads);
    let share =
        move |w: u64| requests / concurrency as u64 + u64::from(w < requests % concurrency as u64);
    let cpu0 = cpu_secs();
    let wall0 = Instant::now();
    if let Layout::SandboxRuntime = layout {
        health_checks(client, 0..concurrency as u64, share, between).await;
        let wall = wall0.elapsed().as_secs_f64();
        return ((cpu_secs() - cpu0) / requests as f64, wall);
    }
    let threads = Threads::PerCore.count_here(concurrency);
    let mut finished = Vec::new();
    // No runtime stops (taking reqwest's connections it runs with it) before all are done:
    // each thread holds a receiver and, when done, drops it and waits until every receiver
    // is gone. A thread that panics drops its receiver as it unwinds, so none waits for ever.
    let (all_done, arrived) = tokio::sync::watch::channel(());
    let all_done = std::sync::Arc::new(all_done);
    for t in 0..threads {
        let mut client = client.clone();
        let server = serving.then(|| server.clone());
        let all_done = all_done.clone();
        let arrived = arrived.clone();
        let between = between.cloned();
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut listening = None;
                if let Some(server) = server {
                    let here = server.listen_here().await.expect("a listener");
                    client = client.connecting_to(here.addr()).expect("lean");
                    listening = Some(here);
                }
                let workers = (t as u64..concurrency as u64).step_by(threads);
                health_checks(&client, workers, share, between.as_ref()).await;
                drop(arrived);
                all_done.closed().await;
                // Its connections end before its runtime does.
                drop(client);
                if let Some(listening) = listening {
                    listening.stop(Duration::from_secs(5)).await;
                }
            });
            let _ = done.send(());
        });
        finished.push(finished_rx);
    }
    drop(arrived);
    for finished_rx in finished {
        finished_rx.await.expect("round-trip thread finished");
    }
    let wall = wall0.elapsed().as_secs_f64();
    ((cpu_secs() - cpu0) / requests as f64, wall)
}

/// Runs `calls(w)` authenticated health checks for each worker `w` of `workers`, each worker
/// a task of this runtime, and waits for them all. With `between`, each worker runs it after
/// every second check, with an input of its own each time (one operation's crypto).
async fn health_checks(
    client: &ApiClient,
    workers: impl Iterator<Item = u64>,
    calls: impl Fn(u64) -> u64,
    between: Option<&Between>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for w in workers {
        let client = client.clone();
        let n = calls(w);
        let between = between.cloned();
        tasks.spawn(async move {
            for i in 0..n {
                client.get_discard("/sandbox/health").await.expect("health");
                if let Some(work) = &between
                    && i % 2 == 1
                {
                    // A different input for every operation of every worker.
                    work((w << 32) | (i / 2));
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// What a client that does nothing but send and receive spends on one request to `addr` on
/// this machine: a thread with one single-threaded runtime (the fleet's layout against a local target) and `concurrency`
/// connections, each sending a fixed `GET /sandbox/health` and reading the answer's bytes
/// (the head up to its blank line, then `content-length` bytes), with no HTTP library, JSON,
/// token, record or crypto. What it costs is the kernel's (the socket calls, the loopback
/// TCP path, the sleeps and wake-ups of waiting for a server) and little else. CPU seconds
/// per request of that thread.
fn raw_floor(addr: std::net::SocketAddr, requests: u64, concurrency: usize) -> f64 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const REQUEST: &[u8] = b"GET /sandbox/health HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n";
    let per_connection = requests / concurrency as u64;
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut streams = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                streams.push(stream);
            }
            let cpu0 = thread_cpu_ns();
            let mut tasks = tokio::task::JoinSet::new();
            for mut stream in streams {
                tasks.spawn(async move {
                    let mut input = Vec::with_capacity(4096);
                    for _ in 0..per_connection {
                        stream.write_all(REQUEST).await.expect("write");
                        input.clear();
                        let end = loop {
                            if let Some(end) = answer_end(&input) {
                                break end;
                            }
                            assert!(
                                stream.read_buf(&mut input).await.expect("read") > 0,
                                "closed"
                            );
                        };
                        assert!(
                            input.starts_with(b"HTTP/1.1 200"),
                            "the health check answered"
                        );
                        assert_eq!(end, input.len(), "one answer per request");
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("a raw client task");
            }
            match (cpu0, thread_cpu_ns()) {
                (Some(a), Some(b)) => {
                    (b - a) as f64 / 1e9 / (per_connection * concurrency as u64) as f64
                }
                _ => f64::NAN,
            }
        })
    });
    thread.join().expect("the raw client thread")
}

/// Where the first whole answer in `input` ends (head and `content-length` body), if it is
/// all there.
fn answer_end(input: &[u8]) -> Option<usize> {
    let head = input.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let length = std::str::from_utf8(&input[..head])
        .ok()?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (input.len() >= head + length).then_some(head + length)
}

/// A `vphone sandbox` child process on a free loopback port, killed when dropped.
struct External {
    child: std::process::Child,
    url: String,
    // Kept open so the sandbox's later output never meets a closed pipe.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl External {
    fn start() -> Option<External> {
        use std::io::BufRead as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vphone"))
            .args(["sandbox", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut stdout = std::io::BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        // The first line says the sandbox listens (or the process ended: EOF).
        let _ = stdout.read_line(&mut line);
        let external = External {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _stdout: stdout,
        };
        line.contains("listening").then_some(external)
    }
}

impl Drop for External {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
