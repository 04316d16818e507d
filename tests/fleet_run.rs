//! Fleets against the real in-process sandbox on 127.0.0.1: small, fast runs.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use vphone::client::{ApiClient, ClientConfig, Credentials};
use vphone::fleet::{
    Fleet, Model, Pacing, Report, RunOptions, Scenario, Shard, Step, Threads, run,
};
use vphone::sandbox::{SandboxConfig, SandboxHandle, spawn};

async fn sandbox(latency: Option<Duration>) -> (SandboxHandle, ApiClient) {
    let config = SandboxConfig {
        latency,
        ..SandboxConfig::default()
    };
    let sandbox = spawn(config).await.expect("sandbox starts");
    let url = url::Url::parse(&sandbox.base_url()).expect("sandbox URL");
    let client = ApiClient::new(ClientConfig::local(url, Credentials::sandbox_default()))
        .expect("client builds");
    (sandbox, client)
}

fn closed(workers: usize, iterations: Option<u64>) -> Pacing {
    Pacing {
        model: Model::Closed { workers },
        ramp_up: Duration::ZERO,
        duration: Some(Duration::from_secs(60)),
        iterations,
    }
}

async fn go(client: &ApiClient, fleet: &Arc<Fleet>, scenario: &str, pacing: Pacing) -> Report {
    let options = RunOptions::new(scenario.parse().expect("scenario"), pacing);
    run(client, fleet.clone(), options).await.expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_fleet_binds_every_phone_with_zero_errors_and_the_counts_match() {
    let (sb, client) = sandbox(None).await;
    let fleet = Arc::new(Fleet::new("11", 40, 0..40).unwrap());
    let report = go(&client, &fleet, "bind", closed(8, None)).await;
    assert_eq!(report.total_errors(), 0, "{}", report.render_table());
    assert_eq!(report.iterations, 40);
    for op in [
        "bind",
        "onboard",
        "create_person",
        "create_mobile_number",
        "authorize_mobile_number",
        "confirm_mobile_number",
        "create_device",
        "answer_signature_challenge",
    ] {
        assert_eq!(report.ok(op), 40, "{op}\n{}", report.render_table());
        assert_eq!(report.ops[op].latency_us.len(), 40, "{op}");
    }
    let states = fleet.states().await;
    assert!(states.iter().all(|s| s.is_bound()));
    let devices: HashSet<_> = states.iter().filter_map(|s| fleet.device_id(s)).collect();
    assert_eq!(devices.len(), 40);
    assert_eq!(report.shards.len(), 1);
    assert!(report.peak_memory_bytes() > 0);

    // The bound fleet then signs, answers SMS challenges, adds keys and confirms changes.
    let sign = go(&client, &fleet, "sign", closed(8, Some(100))).await;
    assert_eq!(
        (sign.ok("sign"), sign.total_errors()),
        (100, 0),
        "{}",
        sign.render_table()
    );
    assert_eq!(sign.ok("answer_device_challenge"), 100);
    let keys = go(&client, &fleet, "add_key", closed(8, None)).await;
    assert_eq!(
        (keys.ok("add_key"), keys.total_errors()),
        (40, 0),
        "{}",
        keys.render_table()
    );
    let mix = go(
        &client,
        &fleet,
        "mix:sign=4,sms=2,change=2",
        closed(8, Some(120)),
    )
    .await;
    assert_eq!(mix.total_errors(), 0, "{}", mix.render_table());
    assert_eq!(mix.ok("sign") + mix.ok("sms") + mix.ok("change"), 120);
    assert!(mix.ok("change") > 0 && mix.ok("sms") > 0);
    assert_eq!(mix.ok("confirm_change_request"), mix.ok("change"));
    sb.shutdown().await;
}

/// With [`Threads::WithSandbox`] each thread serves its own workers the sandbox on a
/// listener of its own, made for the run: the same sandbox, so the phones bound through one
/// run's listeners sign through the next run's, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_serving_their_workers_the_sandbox_bind_and_sign_every_phone() {
    let (sb, client) = sandbox(None).await;
    let lean = ApiClient::new(
        ClientConfig::local(
            url::Url::parse(&sb.base_url()).unwrap(),
            Credentials::sandbox_default(),
        )
        .with_lean_http(true),
    )
    .unwrap();
    let fleet = Arc::new(Fleet::new("13", 12, 0..12).unwrap());
    let threads = Threads::WithSandbox.count_here(6);
    lean.authenticate().await.unwrap();
    let open_before = sb.state().stats().connections.open;
    let mut accepted = sb.state().stats().connections.accepted;
    for (scenario, iterations, op) in [("bind", None, "bind"), ("sign", Some(30), "sign")] {
        let mut options = RunOptions::new(scenario.parse().unwrap(), closed(6, iterations));
        options.threads = Threads::WithSandbox;
        options.sandbox = Some(sb.server());
        let report = run(&lean, fleet.clone(), options).await.unwrap();
        assert_eq!(report.total_errors(), 0, "{}", report.render_table());
        assert_eq!(report.ok(op), iterations.unwrap_or(12), "{op}");
        assert_eq!(report.shards[0].threads, threads as u64, "{op}");
        // Each thread's listener closed its connections before the thread ended: the
        // sandbox counts none of them open.
        let stats = sb.state().stats().connections;
        assert_eq!(stats.open, open_before, "{op}");
        // Closed because the listener stopped, not evicted to make room.
        assert_eq!(stats.evicted, 0, "{op}");
        // Every thread's client connected to its own listener (the lean client's one
        // connection to the main listener was made before).
        assert!(
            stats.accepted >= accepted + threads as u64,
            "{op}: {stats:?}"
        );
        accepted = stats.accepted;
    }
    // Without the sandbox to serve, or with a client that cannot call a thread's listener
    // (reqwest connects where the URL says), the run is refused and says why.
    let mut options = RunOptions::new("sign".parse().unwrap(), closed(2, Some(2)));
    options.threads = Threads::WithSandbox;
    let err = run(&lean, fleet.clone(), options.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("RunOptions::sandbox"), "{err}");
    options.sandbox = Some(sb.server());
    let err = run(&client, fleet.clone(), options).await.unwrap_err();
    assert!(err.to_string().contains("lean HTTP transport"), "{err}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_fleet_signs_in_a_later_run_without_binding_again() {
    let (sb, client) = sandbox(None).await;
    let fleet = Arc::new(Fleet::new("12", 10, 0..10).unwrap());
    let bound = go(&client, &fleet, "bind", closed(4, None)).await;
    assert_eq!(bound.ok("bind"), 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.txt");
    fleet.save(&path).await.unwrap();

    let later = Arc::new(Fleet::new("12", 10, 0..10).unwrap());
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(later.load_text(&text, &path).await.unwrap(), 10);
    let sign = go(&client, &later, "sign", closed(4, Some(30))).await;
    assert_eq!(
        (sign.ok("sign"), sign.total_errors()),
        (30, 0),
        "{}",
        sign.render_table()
    );
    assert_eq!(sign.ok("bind"), 0, "no phone was bound again");
    assert_eq!(sign.ok("create_device"), 0);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_bind_disjoint_slices_that_cover_the_fleet_and_their_reports_merge() {
    let (sb, client) = sandbox(None).await;
    let total = 31;
    let mut merged: Option<Report> = None;
    let mut seen = HashSet::new();
    for k in 1..=3 {
        let shard = Shard::new(k, 3).unwrap();
        let fleet = Arc::new(Fleet::new("13", total, shard.slice(total)).unwrap());
        let options = RunOptions {
            shard,
            ..RunOptions::new(Scenario::Single(Step::Bind), closed(4, None))
        };
        let report = run(&client, fleet.clone(), options).await.unwrap();
        assert_eq!(report.total_errors(), 0, "{}", report.render_table());
        for i in 0..fleet.len() {
            let public = fleet
                .key(i, vphone::api::KeyPurpose::Unrestricted)
                .public_key_hex();
            assert!(
                seen.insert(public),
                "phone {} in two shards",
                fleet.device_index(i)
            );
        }
        // Through JSON, as `vphone load merge` reads them.
        let report = Report::from_json(&report.to_json().unwrap(), "-".as_ref()).unwrap();
        match &mut merged {
            None => merged = Some(report),
            Some(m) => m.merge(&report).unwrap(),
        }
    }
    let merged = merged.unwrap();
    assert_eq!(seen.len() as u64, total);
    assert_eq!(merged.ok("bind"), total);
    assert_eq!(merged.ops["bind"].latency_us.len(), total);
    assert_eq!(merged.shards.len(), 3);
    assert_eq!(merged.devices, total);
    // The same shard's report again is refused: it would count its phones twice.
    let again = merged.clone();
    assert!(merged.clone().merge(&again).is_err());

    // More shards than phones: an empty slice still reports which shard it was.
    let shard = Shard::new(1, 4).unwrap();
    let empty = Arc::new(Fleet::new("13", 2, shard.slice(2)).unwrap());
    let options = RunOptions {
        shard,
        ..RunOptions::new(Scenario::Single(Step::Bind), closed(4, None))
    };
    let report = run(&client, empty, options).await.unwrap();
    assert_eq!((report.iterations, report.devices), (0, 2));
    assert_eq!(report.shards.len(), 1);
    assert_eq!(report.shards[0].shard, "1/4");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_model_run_against_injected_latency_shows_the_queueing() {
    let latency = Duration::from_millis(40);
    let (sb, client) = sandbox(Some(latency)).await;
    let fleet = Arc::new(Fleet::new("14", 8, 0..8).unwrap());
    let bound = go(&client, &fleet, "bind", closed(8, None)).await;
    assert_eq!(bound.total_errors(), 0, "{}", bound.render_table());

    // 100 arrivals/s for 1 s, but 2 workers at 2 x 40 ms per iteration serve only ~25/s:
    // arrivals queue, and latency counted from the intended start shows it. Every bound
    // below follows from the injected 40 ms, which a slower machine only lengthens: no
    // assertion compares two measured times.
    let open = |max_in_flight| Pacing {
        model: Model::Open {
            rate: 100.0,
            max_in_flight,
        },
        ramp_up: Duration::ZERO,
        duration: Some(Duration::from_secs(1)),
        iterations: Some(100),
    };
    let starved = go(&client, &fleet, "sign", open(2)).await;
    let table = starved.render_table();
    assert_eq!(starved.total_errors(), 0, "{table}");
    assert!(
        starved.ops["create_device_challenge"]
            .quantile_us(0.5)
            .is_some_and(|us| us >= 40_000),
        "{table}"
    );
    // Each worker starts an iteration at most every 80 ms, so at most 13 in the 1 s
    // (at 0, 80, ..., 960 ms); every other arrival found no worker free before the end.
    let ran = starved.ok("sign");
    assert!(ran <= 2 * 13, "{table}");
    assert_eq!(ran + starved.missed, 100, "{table}");
    assert!(
        table.contains("not in the latencies above"),
        "missed iterations are reported as excluded from the percentiles"
    );
    // Before the end no arrival is missed, so the ones run are arrivals 0..ran, due by
    // (ran - 1) x 10 ms <= 250 ms. A worker's last one ended at the 1 s end or later (right
    // after it, the worker found the next arrival missed), so counted from its intended
    // start it took at least 750 ms; the service time alone is 80 ms. The bound asserted
    // leaves 250 ms for the worker's thread being descheduled between the two.
    assert!(
        starved.ops["sign"].latency_us.max() > 500_000,
        "queueing must show in the latencies\n{table}"
    );

    // With enough workers the same arrivals do not queue: every one is run, none missed.
    let served = go(&client, &fleet, "sign", open(64)).await;
    assert_eq!(
        (served.ok("sign"), served.missed, served.total_errors()),
        (100, 0, 0),
        "{}",
        served.render_table()
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_stops_the_run_in_time_even_with_requests_in_flight() {
    // Every /v1 request waits 3 s before the bank acts on it, far longer than the 300 ms
    // duration plus 200 ms drain: the run must end while its first requests are still in
    // flight, before the bank created anyone (an ordering, not a stopwatch).
    let (sb, client) = sandbox(Some(Duration::from_secs(3))).await;
    let fleet = Arc::new(Fleet::new("15", 4, 0..4).unwrap());
    let pacing = Pacing {
        duration: Some(Duration::from_millis(300)),
        ..closed(2, None)
    };
    let options = RunOptions {
        drain: Duration::from_millis(200),
        ..RunOptions::new(Scenario::Single(Step::Onboard), pacing)
    };
    let report = run(&client, fleet, options).await.unwrap();
    assert_eq!(
        sb.state().stats().live_persons,
        0,
        "the run ended before the bank acted on its first request\n{}",
        report.render_table()
    );
    assert_eq!(
        (report.iterations, report.unfinished),
        (0, 2),
        "both workers' iterations were cut and counted\n{}",
        report.render_table()
    );
    assert!(report.render_table().contains("unfinished: 2"));
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prerequisite_counts_as_a_failure_of_the_step() {
    let (sb, client) = sandbox(None).await;
    let fleet = Arc::new(Fleet::new("16", 3, 0..3).unwrap());
    // The wrong OTP: every onboarding fails at confirm_mobile_number, so no phone can sign.
    let options = RunOptions {
        otp: vphone::api::Otp::parse("000000").unwrap(),
        ..RunOptions::new(Scenario::Single(Step::Sign), closed(1, Some(3)))
    };
    let report = run(&client, fleet, options).await.unwrap();
    let table = report.render_table();
    assert_eq!(report.iterations, 3, "{table}");
    assert_eq!(report.ops["confirm_mobile_number"].failed, 3, "{table}");
    assert_eq!(report.ops["onboard"].failed, 3, "{table}");
    assert_eq!(
        (report.ok("sign"), report.ops["sign"].failed),
        (0, 3),
        "every failed iteration shows in its step's row\n{table}"
    );
    // The table does not pass the steps' repeats off as more failed requests.
    assert!(
        table.contains("errors (3 failed requests; 6 failed scenario steps"),
        "{table}"
    );
    sb.shutdown().await;
}

/// Every operation's per-second rows add up to its totals, and lie within the run's wall time.
fn assert_series_matches_totals(report: &Report) {
    let table = report.render_table();
    assert!(!report.series.seconds.is_empty(), "{table}");
    for (name, stats) in &report.ops {
        assert_eq!(
            report.series.totals(name),
            (stats.ok, stats.failed),
            "{name}\n{table}"
        );
    }
    let (first, last) = report.series.span().unwrap();
    let start = report.started_unix_ms / 1000;
    // Milliseconds in the file: one more covers the rounding of the start.
    let end = (report.started_unix_ms + (report.elapsed_secs * 1000.0).ceil() as u64 + 1) / 1000;
    assert!(
        start <= first && last <= end,
        "{first}..{last} outside {start}..{end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_time_series_adds_up_to_its_totals_with_and_without_failures() {
    let (sb, client) = sandbox(None).await;
    let fleet = Arc::new(Fleet::new("17", 20, 0..20).unwrap());
    let report = go(&client, &fleet, "mix:sign=3,sms=1", closed(4, Some(80))).await;
    assert_eq!(report.total_errors(), 0, "{}", report.render_table());
    assert_series_matches_totals(&report);
    let sign: u64 = report
        .series
        .seconds
        .values()
        .filter_map(|ops| ops.get("sign"))
        .map(|s| s.latency_us.len())
        .sum();
    assert_eq!(sign, report.ok("sign"));

    // The wrong OTP: failures land in the series as they do in the totals.
    let fleet = Arc::new(Fleet::new("18", 3, 0..3).unwrap());
    let options = RunOptions {
        otp: vphone::api::Otp::parse("000000").unwrap(),
        ..RunOptions::new(Scenario::Single(Step::Sign), closed(1, Some(3)))
    };
    let failed = run(&client, fleet, options).await.unwrap();
    assert_eq!(failed.series.totals("confirm_mobile_number"), (0, 3));
    assert_series_matches_totals(&failed);
    sb.shutdown().await;
}
