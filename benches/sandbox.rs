//! Sandbox throughput: N full bindings and N device-signing challenges over HTTP, with the
//! sandbox's CPU cost per verification next to bare verify loops measured in the same run.
//!
//! Both run with the bank in memory (the default) and in a SQLite file (`--state`), in
//! alternating rounds (the order swaps each round, so a load spike on a shared box is not
//! charged to one mode only); the medians and two ratios are printed: of requests/s, and of
//! the sandbox's CPU per request (in-memory / `--state`: the share of throughput `--state`
//! keeps when the sandbox is CPU-bound, which wall-clock figures on a busy box hide).
//!
//! Run: `cargo bench --bench sandbox` (N from `VPHONE_BENCH_N`, default 2000; concurrency from
//! `VPHONE_BENCH_CONCURRENCY`, default 32; rounds from `VPHONE_BENCH_ROUNDS`, default 3;
//! `VPHONE_BENCH_MODE=memory` or `state` runs one mode only, e.g. under `perf record`;
//! `VPHONE_BENCH_SYNC=full` measures `--state` as `--state-sync full` runs it, every commit
//! fsynced, instead of the default `normal`).
//!
//! The sandbox runs on its own runtime whose threads are named `sandbox-worker`; the client
//! (reqwest + ring signing) runs on other threads. The sandbox's CPU time is read per thread
//! from `/proc/self/task/*/schedstat` (Linux), summed over threads named `sandbox-*` (its
//! workers, blocking pool and the state file's committing and checkpointing threads), so
//! client work is not counted against it.
#![allow(clippy::unwrap_used, missing_docs)]

/// The same allocator as the `vphone` binary, so the bench measures what users run.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;

use common::median;
use p256::ecdsa::signature::{Signer, Verifier};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vphone::sandbox::store::{SqliteStore, SyncMode};
use vphone::sandbox::verify::{VerifyingKey, verify_signature};
use vphone::sandbox::{self, SandboxConfig, SandboxState};

/// The sandbox's threads (its runtime's workers and blocking pool, and any thread of its
/// own such as the state file's checkpointer) are named with this prefix.
const SANDBOX_THREAD: &str = "sandbox-worker";
const SANDBOX_PREFIX: &str = "sandbox-";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU nanoseconds used so far by threads whose name starts with `prefix` (0 if /proc is
/// unavailable). Threads that ended are not counted, so the sandbox's threads are read while
/// it runs.
fn thread_cpu_nanos(prefix: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for task in tasks.flatten() {
        let path = task.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
        total += schedstat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn new_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

fn sign(key: &EcdsaKeyPair, message: &[u8]) -> String {
    hex::encode(key.sign(&SystemRandom::new(), message).unwrap().as_ref())
}

/// Runs `jobs` with at most `concurrency` in flight.
async fn run_all<F, Fut, T>(n: usize, concurrency: usize, job: F) -> Vec<T>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (job, next) = (job.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                out.push((i, job(i).await));
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

struct Phase {
    name: &'static str,
    requests: usize,
    wall: Duration,
    sandbox_cpu_ns: u64,
    verifications: u64,
    verify_ns: u64,
}

fn report(p: &Phase) {
    let secs = p.wall.as_secs_f64();
    println!(
        "{:<22} {:>6} requests in {:>6.2} s = {:>8.0} req/s | sandbox CPU {:>6.1} us/request, {:>6.1} us/verification (all work), {:>5.1} us inside verify",
        p.name,
        p.requests,
        secs,
        p.requests as f64 / secs,
        p.sandbox_cpu_ns as f64 / 1e3 / p.requests as f64,
        p.sandbox_cpu_ns as f64 / 1e3 / p.verifications.max(1) as f64,
        p.verify_ns as f64 / 1e3 / p.verifications.max(1) as f64,
    );
}

fn bare_loops(iterations: usize) -> (f64, f64, f64) {
    let key = new_key();
    let message = b"bare verify loop";
    let der = key
        .sign(&SystemRandom::new(), message)
        .unwrap()
        .as_ref()
        .to_vec();
    let parsed = VerifyingKey::from_uncompressed(key.public_key().as_ref()).unwrap();
    let start = Instant::now();
    for _ in 0..iterations {
        assert_eq!(
            verify_signature(&parsed, message, std::hint::black_box(&der)),
            vphone::sandbox::verify::Verdict::Valid
        );
    }
    let aws_lc = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;

    let unparsed = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    let start = Instant::now();
    for _ in 0..iterations {
        unparsed
            .verify(message, std::hint::black_box(&der))
            .unwrap();
    }
    let aws_lc_unparsed = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;

    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut secret);
    let signing = p256::ecdsa::SigningKey::from_slice(&secret).unwrap();
    let verifying = *signing.verifying_key();
    let sig: p256::ecdsa::Signature = signing.sign(message);
    let start = Instant::now();
    for _ in 0..iterations {
        verifying
            .verify(message, std::hint::black_box(&sig))
            .unwrap();
    }
    let p256 = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    (aws_lc, aws_lc_unparsed, p256)
}

/// Runs both phases against `state`, served on a runtime of its own.
fn run_phases(n: usize, concurrency: usize, state: SandboxState) -> Vec<Phase> {
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SANDBOX_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .unwrap();
    let handle = server_rt
        .block_on(async {
            let state = state.clone();
            tokio::spawn(
                async move { sandbox::spawn_with(state, "127.0.0.1:0".parse().unwrap()).await },
            )
            .await
        })
        .unwrap()
        .unwrap();
    let base = handle.base_url();

    let phases = client_rt.block_on(async move {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();
        let r: Value = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(
                sandbox::config::DEFAULT_CLIENT_ID,
                Some(sandbox::config::DEFAULT_CLIENT_SECRET),
            )
            .form(&[("grant_type", "client_credentials"), ("scope", "partners")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let client = Arc::new(Client {
            http,
            base,
            token: r["access_token"].as_str().unwrap().to_owned(),
        });
        // Setup, not measured: persons on the test number (OTP 212212), five devices each.
        let persons = n.div_ceil(5);
        let c = client.clone();
        let person_ids: Arc<Vec<String>> = Arc::new(
            run_all(persons, concurrency, move |_| {
                let c = c.clone();
                async move {
                    let (_, p) = c
                        .call(
                            reqwest::Method::POST,
                            "/v1/persons",
                            json!({"first_name": "B", "last_name": "Ench"}),
                        )
                        .await;
                    let id = p["id"].as_str().unwrap().to_owned();
                    let base = format!("/v1/persons/{id}/mobile_number");
                    let number = json!({"number": "+15550101"});
                    c.call(reqwest::Method::POST, &base, number.clone()).await;
                    c.call(reqwest::Method::POST, &format!("{base}/authorize"), number)
                        .await;
                    let (s, _) = c
                        .call(
                            reqwest::Method::POST,
                            &format!("{base}/confirm"),
                            json!({"number": "+15550101", "token": "212212"}),
                        )
                        .await;
                    assert_eq!(s, 201);
                    id
                }
            })
            .await,
        );
        let keys: Arc<Vec<EcdsaKeyPair>> = Arc::new((0..n).map(|_| new_key()).collect());

        let mut phases = Vec::new();
        let measure = |name,
                       requests,
                       start: Instant,
                       cpu0: u64,
                       stats0: sandbox::SandboxStats,
                       stats1: sandbox::SandboxStats| Phase {
            name,
            requests,
            wall: start.elapsed(),
            sandbox_cpu_ns: thread_cpu_nanos(SANDBOX_PREFIX) - cpu0,
            verifications: stats1.verifications - stats0.verifications,
            verify_ns: stats1.verify_nanos - stats0.verify_nanos,
        };

        // Phase 1: N bindings = POST device + PUT signed OTP.
        let (stats0, cpu0, start) = (
            state.stats(),
            thread_cpu_nanos(SANDBOX_PREFIX),
            Instant::now(),
        );
        let (c, ks, ps) = (client.clone(), keys.clone(), person_ids.clone());
        let devices: Arc<Vec<String>> = Arc::new(
            run_all(n, concurrency, move |i| {
                let (c, ks, ps) = (c.clone(), ks.clone(), ps.clone());
                async move {
                    let key = &ks[i];
                    let (s, b) = c
                        .call(
                            reqwest::Method::POST,
                            "/v1/mfa/devices",
                            json!({
                            "person_id": ps[i / 5], "key_type": "ecdsa-p256",
                            "key": hex::encode(key.public_key().as_ref()), "name": "bench"}),
                        )
                        .await;
                    assert_eq!(s, 202, "{b}");
                    let path = format!(
                        "/v1/mfa/challenges/signatures/{}",
                        b["challenge"]["id"].as_str().unwrap()
                    );
                    let (s, b2) = c
                        .call(
                            reqwest::Method::PUT,
                            &path,
                            json!({"signature": sign(key, b"212212")}),
                        )
                        .await;
                    assert_eq!(s, 204, "{b2}");
                    b["id"].as_str().unwrap().to_owned()
                }
            })
            .await,
        );
        phases.push(measure(
            "bindings",
            2 * n,
            start,
            cpu0,
            stats0,
            state.stats(),
        ));

        // Phase 2: N device-signing challenges = POST challenge + PUT signature.
        let (stats0, cpu0, start) = (
            state.stats(),
            thread_cpu_nanos(SANDBOX_PREFIX),
            Instant::now(),
        );
        let (c, ks, ds) = (client.clone(), keys.clone(), devices.clone());
        run_all(n, concurrency, move |i| {
            let (c, ks, ds) = (c.clone(), ks.clone(), ds.clone());
            async move {
                let (s, ch) = c
                    .call(
                        reqwest::Method::POST,
                        "/v1/mfa/challenges/devices",
                        json!({"device_id": ds[i]}),
                    )
                    .await;
                assert_eq!(s, 201, "{ch}");
                let path = format!("/v1/mfa/challenges/devices/{}", ch["id"].as_str().unwrap());
                let sig = sign(&ks[i], ch["string_to_sign"].as_str().unwrap().as_bytes());
                let (s, b) = c
                    .call(reqwest::Method::PUT, &path, json!({"signature": sig}))
                    .await;
                assert_eq!(s, 204, "{b}");
            }
        })
        .await;
        phases.push(measure(
            "device challenges",
            2 * n,
            start,
            cpu0,
            stats0,
            state.stats(),
        ));
        phases
    });
    server_rt.block_on(handle.shutdown());
    phases
}

/// Which sandbox a run measures.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Memory,
    /// The bank in a SQLite file, committed as `--state-sync` says.
    State(SyncMode),
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Memory => "in memory",
            Mode::State(SyncMode::Normal) => "--state",
            Mode::State(SyncMode::Full) => "--state full",
        }
    }

    fn state(self, dir: &std::path::Path, round: usize) -> SandboxState {
        match self {
            Mode::Memory => SandboxState::new(SandboxConfig::default()),
            // The same work with the bank in a SQLite file (`vphone sandbox --state FILE`),
            // a fresh file each round.
            Mode::State(sync) => {
                let path = dir.join(format!("bench-{round}.sqlite"));
                let store = SqliteStore::open(&path, sync).unwrap();
                SandboxState::with_store(
                    SandboxConfig::default(),
                    Arc::new(sandbox::SystemClock),
                    Box::new(store),
                )
                .unwrap()
            }
        }
    }
}

fn main() {
    let n = env_usize("VPHONE_BENCH_N", 2000).clamp(5, 200_000);
    let concurrency = env_usize("VPHONE_BENCH_CONCURRENCY", 32).clamp(1, 1024);
    let rounds = env_usize("VPHONE_BENCH_ROUNDS", 3).clamp(1, 20);
    // `memory` or `state` runs one mode only (to profile it); anything else runs both.
    let only = std::env::var("VPHONE_BENCH_MODE").unwrap_or_default();
    // `full`: every commit fsynced (`--state-sync full`); anything else: SQLite's `NORMAL`.
    let sync = match std::env::var("VPHONE_BENCH_SYNC").as_deref() {
        Ok("full") => SyncMode::Full,
        _ => SyncMode::Normal,
    };
    let modes: Vec<Mode> = match only.as_str() {
        "memory" => vec![Mode::Memory],
        "state" => vec![Mode::State(sync)],
        _ => vec![Mode::Memory, Mode::State(sync)],
    };
    println!(
        "vphone sandbox bench: N = {n}, concurrency = {concurrency}, {rounds} rounds, sandbox on 2 threads, {} CPUs",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "--state is SQLite, WAL, synchronous={}; the modes alternate (and swap order each round) so load on a shared box falls on both",
        match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL (--state-sync full: every commit fsynced)",
        }
    );
    let dir = tempfile::tempdir().unwrap();
    // results[mode][round] = phases
    let mut results: Vec<Vec<Vec<Phase>>> = modes.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..modes.len()).collect()
        } else {
            (0..modes.len()).rev().collect()
        };
        for m in order {
            let phases = run_phases(n, concurrency, modes[m].state(dir.path(), round));
            println!("round {} {}:", round + 1, modes[m].label());
            for p in &phases {
                report(p);
            }
            results[m].push(phases);
        }
    }
    let rate = |p: &Phase| p.requests as f64 / p.wall.as_secs_f64();
    let cpu = |p: &Phase| p.sandbox_cpu_ns as f64 / 1e3 / p.requests as f64;
    println!("medians over {rounds} rounds:");
    let phase_names: Vec<&'static str> = results[0][0].iter().map(|p| p.name).collect();
    let mut medians = Vec::new();
    for (m, mode) in modes.iter().enumerate() {
        let mut per_phase = Vec::new();
        for (i, name) in phase_names.iter().enumerate() {
            let r = median(&results[m].iter().map(|ps| rate(&ps[i])).collect::<Vec<_>>());
            let c = median(&results[m].iter().map(|ps| cpu(&ps[i])).collect::<Vec<_>>());
            println!(
                "{:<12} {:<18} {:>8.0} req/s | sandbox CPU {:>6.1} us/request",
                mode.label(),
                name,
                r,
                c
            );
            per_phase.push((r, c));
        }
        medians.push(per_phase);
    }
    if modes.len() == 2 {
        for (i, name) in phase_names.iter().enumerate() {
            let ((mr, mc), (sr, sc)) = (medians[0][i], medians[1][i]);
            let per_round: Vec<String> = results[0]
                .iter()
                .zip(&results[1])
                .map(|(m, s)| format!("{:.2}", rate(&s[i]) / rate(&m[i])))
                .collect();
            println!(
                "ratio {} / in-memory, {name}: requests/s {:.2} (median; per round {}), CPU-bound throughput (in-memory CPU / {} CPU per request) {:.2}",
                modes[1].label(),
                sr / mr,
                per_round.join(" "),
                modes[1].label(),
                mc / sc
            );
        }
    }
    let phases: Vec<&Phase> = results[0].iter().flatten().collect();
    let (aws_lc, aws_lc_unparsed, p256) = bare_loops(n.clamp(500, 5000));
    println!(
        "bare verify loop, aws-lc-rs, key parsed once (the sandbox's path): {aws_lc:>7.1} us/verification"
    );
    println!(
        "bare verify loop, aws-lc-rs, key parsed every call:                {aws_lc_unparsed:>7.1} us/verification"
    );
    println!(
        "bare verify loop, RustCrypto p256:                                 {p256:>7.1} us/verification"
    );
    let inside: f64 = phases.iter().map(|p| p.verify_ns as f64).sum::<f64>()
        / phases
            .iter()
            .map(|p| p.verifications as f64)
            .sum::<f64>()
            .max(1.0)
        / 1e3;
    println!(
        "ratio: inside-sandbox verify ({}) / bare aws-lc = {:.2}; bare p256 / bare aws-lc = {:.1}x",
        modes[0].label(),
        inside / aws_lc,
        p256 / aws_lc
    );
}
