//! `vphone load` on the command line: help, and clear refusals of flag combinations that
//! make no run (each refused before any sandbox starts or any request is sent).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns unwrap too

mod common;

use common::load::vphone_load as load;

/// Now plus `secs` (negative: in the past), as RFC 3339.
fn rfc3339(secs: i64) -> String {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn refused(args: &[&str], needle: &str) {
    let out = load(args).assert().code(2).get_output().clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} ran something");
}

#[test]
fn bad_flag_combinations_are_refused_with_the_reason() {
    refused(&["--devices", "0"], "at least one phone");
    refused(&["--rate", "50"], "--rate needs --duration or --iterations");
    refused(&["--rate", "0", "--duration", "1s"], "positive number");
    refused(&["--shard", "0/2"], "1 <= K <= N");
    refused(&["--shard", "3/2"], "1 <= K <= N");
    refused(&["--shard", "two"], "K/N");
    refused(&["--iterations", "0"], "--iterations 0");
    refused(&["--duration", "0s"], "--duration 0s");
    refused(&["--concurrency", "0"], "at least 1");
    refused(&["--threads", "0"], "--threads");
    refused(&["--scenario", "fly"], "unknown scenario step");
    refused(&["--shard", "auto"], "JOB_COMPLETION_INDEX");
    // An output whose directory is missing is refused before the run, not after it.
    for flag in ["--json", "--html", "--save-fleet"] {
        refused(
            &[flag, "/nonexistent-vphone-dir/out", "--iterations", "1"],
            "/nonexistent-vphone-dir does not exist",
        );
    }
    refused(
        &[
            "--api",
            "http://127.0.0.1:9",
            "--sandbox-latency",
            "10ms",
            "--iterations",
            "1",
        ],
        "--sandbox-latency",
    );
    let out = load(&["--shard", "auto"])
        .env("JOB_COMPLETION_INDEX", "2")
        .env("VPHONE_SHARD_COUNT", "2")
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("0-based"), "{stderr}");
}

#[test]
fn help_explains_every_knob() {
    let out = load(&["--help"]).assert().success().get_output().clone();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--api",
        "--devices",
        "--scenario",
        "--concurrency",
        "--threads",
        "--rate",
        "--ramp-up",
        "--duration",
        "--drain",
        "--iterations",
        "--seed",
        "--seed-file",
        "VPHONE_FLEET_SEED",
        "--shard",
        "JOB_COMPLETION_INDEX",
        "--fleet",
        "--save-fleet",
        "--json",
        "--sandbox-latency",
        "merge",
        "report",
        "--html",
        "--start-at",
    ] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
}

#[test]
fn an_open_model_run_on_the_command_line_reports_its_fleet() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    load(&[
        "--devices",
        "3",
        "--rate",
        "100",
        "--iterations",
        "3",
        "--seed",
        "5",
        "--progress",
        "off",
        "--fail-on-error",
    ])
    .arg("--json")
    .arg(&json)
    .assert()
    .success();
    let report = vphone::fleet::Report::read_file(&json).unwrap();
    assert_eq!((report.devices, report.ok("bind")), (3, 3));
    // Reports name the seed by its fingerprint only.
    assert_eq!(
        report.seed,
        vphone_keystore::Seed::from_u64(5).fingerprint()
    );
}

#[test]
fn a_run_says_how_many_threads_run_its_workers_and_why() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--devices",
            "4",
            "-c",
            "4",
            "--seed",
            "5",
            "--progress",
            "off",
            "--fail-on-error",
        ];
        args.extend_from_slice(extra);
        let out = load(&args).assert().success().get_output().clone();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let asked = run(&["--threads", "3", "--json", json.to_str().unwrap()]);
    assert!(asked.contains("3 thread(s) (--threads)"), "{asked}");
    // The report keeps them, with the signer, for each shard.
    let report = vphone::fleet::Report::read_file(&json).unwrap();
    let shard = &report.shards[0];
    assert_eq!((shard.threads, shard.signer.as_str()), (3, "aws-lc"));
    // Never more threads than workers.
    let capped = run(&["--threads", "9"]);
    assert!(capped.contains("4 thread(s) (--threads)"), "{capped}");
    // By default one per core, each serving its workers the in-process sandbox.
    let cores = std::thread::available_parallelism().unwrap().get().min(4);
    let default = run(&[]);
    assert!(
        default.contains(&format!(
            "{cores} thread(s) (one per core, each serving its workers the in-process sandbox)"
        )),
        "{default}"
    );
}

/// A run of three bindings with a wrong static OTP: creating each person and number
/// succeeds, confirming the number (and so onboarding and binding) is refused by the bank.
const REFUSED_BINDINGS: [&str; 12] = [
    "--scenario",
    "bind",
    "--devices",
    "3",
    "--iterations",
    "3",
    "--seed",
    "7",
    "--progress",
    "off",
    "--otp",
    "static:000000",
];

#[test]
fn a_run_with_failed_iterations_exits_1_and_ends_with_the_top_errors() {
    let args = REFUSED_BINDINGS;
    let out = load(&args).assert().code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.starts_with("top errors: "), "{stdout}");
    assert!(last.contains("403 invalid_otp"), "{last}");
    // Within the allowed share of failed iterations, the run passes; above it, it fails.
    let mut allowed = args.to_vec();
    allowed.extend(["--max-error-rate", "100%"]);
    load(&allowed).assert().success();
    let mut strict = args.to_vec();
    strict.extend(["--max-error-rate", "0.5"]);
    load(&strict).assert().code(1);
    refused(&["--max-error-rate", "150%"], "between 0 and 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_binds_every_phone_against_the_variant_bank() {
    let bank = vphone::sandbox::variant::spawn(vphone::sandbox::SandboxConfig::default())
        .await
        .unwrap();
    let url = bank.base_url();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let json_arg = json.clone();
    let out = tokio::task::spawn_blocking(move || {
        load(&[
            "--api",
            &url,
            "--scenario",
            "bind",
            "--devices",
            "20",
            "--iterations",
            "20",
            "--seed",
            "11",
            "--progress",
            "off",
        ])
        .arg("--json")
        .arg(&json_arg)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let report = vphone::fleet::Report::read_file(&json).unwrap();
    assert_eq!(
        (report.ok("bind"), report.total_errors()),
        (20, 0),
        "{stdout}"
    );
    // The bank listens on a loopback address: the fleet leaves it half the cores.
    let cores = std::thread::available_parallelism().unwrap().get();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let header = format!(
        "{} thread(s) (half the cores: the target is on this machine)",
        (cores / 2).max(1)
    );
    assert!(stderr.contains(&header), "{stderr}");
    bank.shutdown().await;
}

#[test]
fn the_built_in_bank_of_a_load_run_does_not_rate_limit_its_phones_sms() {
    // One phone, eight SMS challenges: past the sandbox's default of 5 SMS per person per
    // 10 minutes, which protects a shared sandbox but would turn a load run into 429s.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    load(&[
        "--devices",
        "1",
        "--scenario",
        "sms",
        "--iterations",
        "8",
        "--seed",
        "9",
        "--progress",
        "off",
    ])
    .arg("--json")
    .arg(&json)
    .assert()
    .success();
    let report = vphone::fleet::Report::read_file(&json).unwrap();
    assert_eq!(report.ok("sms"), 8);
}

#[test]
fn a_run_writes_an_html_page_and_report_renders_the_same_page_from_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html, again) = (
        dir.path().join("r.json"),
        dir.path().join("run.html"),
        dir.path().join("again.html"),
    );
    load(&["--devices", "3", "--seed", "5", "--progress", "off"])
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .assert()
        .success();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    assert!(page.contains("id=\"throughput\"") && page.contains("id=\"latency-bind\""));
    let out = load(&["report"])
        .arg(&json)
        .arg("--html")
        .arg(&again)
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stdout).contains("scenario bind"));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);
    load(&["report", "missing.json"]).assert().code(2);
}

#[test]
fn an_operation_with_no_success_shows_no_latency_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let out = load(&REFUSED_BINDINGS)
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .assert()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = |op: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(op))
            .unwrap_or_else(|| panic!("no {op} row: {stdout}"));
        line.split_whitespace().map(str::to_owned).collect()
    };
    // operation, ok, failed, ok/s, then five times.
    for op in ["confirm_mobile_number", "onboard", "bind"] {
        let cells = row(op);
        assert_eq!(cells[1], "0", "{op} succeeded: {stdout}");
        assert_eq!(cells[4..], ["-", "-", "-", "-", "-"], "{op}: {stdout}");
    }
    let person = row("create_person");
    assert_eq!(person[1], "3", "{stdout}");
    assert!(
        person[4..]
            .iter()
            .all(|t| t.parse::<f64>().is_ok_and(|ms| ms > 0.0)),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let times = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us"];
    for key in times {
        assert!(report["ops"]["bind"][key].is_null(), "bind {key}: {report}");
        assert!(
            report["ops"]["create_person"][key]
                .as_f64()
                .is_some_and(|us| us > 0.0)
        );
    }
    for second in report["series"].as_array().unwrap() {
        if let Some(bind) = second["ops"].get("bind") {
            assert!(
                bind["p50_us"].is_null() && bind["p99_us"].is_null(),
                "{second}"
            );
        }
    }
    // The file reads back, with the same table.
    let again = load(&["report"])
        .arg(&json)
        .assert()
        .success()
        .get_output()
        .clone();
    let table = |s: &str| {
        s.lines()
            .filter(|l| l.starts_with("bind "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        table(&String::from_utf8_lossy(&again.stdout)),
        table(&stdout)
    );

    let page = std::fs::read_to_string(&html).unwrap();
    let bind_row = page
        .split("<tr>")
        .find(|r| r.starts_with("<td class=\"text\">bind</td>"))
        .unwrap_or_else(|| panic!("no bind row: {page}"));
    assert_eq!(bind_row.matches("<td>-</td>").count(), 5, "{bind_row}");
}

#[test]
fn start_at_too_far_past_is_refused_and_a_moment_late_or_soon_runs() {
    refused(&["--start-at", &rfc3339(-3600)], "--start-at passed");
    refused(&["--start-at", "noon"], "RFC 3339");
    let run = ["--devices", "2", "--seed", "5", "--progress", "off"];
    let late = load(&run)
        .args(["--start-at", &rfc3339(-1)])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&late.stderr);
    assert!(stderr.contains("starting at once"), "{stderr}");
    // Through the environment, as a Job's pods get it; the run's clock starts no earlier
    // than the chosen time (an ordering of two wall-clock readings, not a duration).
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let at_text = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let soon = load(&run)
        .env("VPHONE_START_AT", &at_text)
        .arg("--json")
        .arg(&json)
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&soon.stderr);
    assert!(stderr.contains("waiting until"), "{stderr}");
    let report = vphone::fleet::Report::read_file(&json).unwrap();
    let at_ms = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap();
    assert!(
        report.started_unix_ms >= at_ms,
        "the run started at {} ms, before --start-at {at_text} ({at_ms} ms)",
        report.started_unix_ms
    );
}
