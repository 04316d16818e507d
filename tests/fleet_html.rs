//! The HTML load report, opened from a file in real headless Chromium: the throughput and
//! latency charts drew lines, the page fetched nothing, and text from the run shows as text.
//!
//! Needs Debian's `chromium` and `chromedriver`. Without them the test says so and skips,
//! unless `VPHONE_REQUIRE_BROWSER` is set (CI sets it), where it fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod webdriver;

use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use vphone::client::{ApiClient, ClientConfig, Credentials};
use vphone::fleet::{ErrorKey, Fleet, Model, Op, Pacing, Report, RunOptions, run};
use vphone::sandbox::{SandboxConfig, spawn};
use webdriver::Browser;

/// The whole browser check finishes within this, or fails.
const LIMIT: Duration = Duration::from_secs(180);

/// An error code as a hostile or broken server might send it: markup that would run script
/// if the page did not escape it.
const HOSTILE: &str = "<img src=x onerror=\"window.pwned=1\">";

/// The browser and driver, or `None` after saying why the test is skipped.
fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    match webdriver::tools() {
        Ok(t) => Some(t),
        Err(why) if std::env::var_os("VPHONE_REQUIRE_BROWSER").is_some() => {
            panic!("VPHONE_REQUIRE_BROWSER is set but {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED fleet report browser test: {why}");
            None
        }
    }
}

/// A real run of a few seconds against the in-process sandbox, so the series has several
/// seconds, with one hostile error row added.
async fn a_report() -> Report {
    let sandbox = spawn(SandboxConfig::default()).await.unwrap();
    let url = url::Url::parse(&sandbox.base_url()).unwrap();
    let client = ApiClient::new(ClientConfig::local(url, Credentials::sandbox_default())).unwrap();
    let fleet = Arc::new(Fleet::new("31", 40, 0..40).unwrap());
    let pacing = Pacing {
        model: Model::Closed { workers: 4 },
        ramp_up: Duration::ZERO,
        duration: Some(Duration::from_millis(3_500)),
        iterations: Some(20_000),
    };
    let scenario = "mix:sign=8,sms=1,change=1".parse().unwrap();
    let mut report = run(&client, fleet, RunOptions::new(scenario, pacing))
        .await
        .unwrap();
    sandbox.shutdown().await;
    report.errors.insert(
        ErrorKey {
            op: "create_device_challenge".into(),
            status: 0,
            code: HOSTILE.into(),
        },
        1,
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_draws_its_charts_in_chromium() {
    let Some((chromium, driver)) = browser_tools() else {
        return;
    };
    tokio::time::timeout(LIMIT, check(chromium, driver))
        .await
        .expect("the browser check took longer than its limit");
}

async fn check(chromium: PathBuf, driver: PathBuf) {
    let report = a_report().await;
    let seconds = report.series.seconds.len();
    assert!(
        seconds >= 3,
        "a 3.5 s run spans at least 3 seconds: {seconds}"
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    report.write_html(&page).unwrap();

    let b = Browser::start(&chromium, &driver, 1280, 1700).await;
    b.goto(url::Url::from_file_path(&page).unwrap().as_str())
        .await;
    b.find("svg#throughput").await;

    // Every throughput line has a drawn length and an extent inside the chart; each line
    // has a point per second of the series.
    let lines = b
        .exec(
            r#"return [...document.querySelectorAll('svg#throughput path.line')].map((p) => {
                 const box = p.getBBox();
                 const svg = p.ownerSVGElement.viewBox.baseVal;
                 return {name: p.dataset.name, length: p.getTotalLength(), width: box.width,
                         inside: box.x >= 0 && box.x + box.width <= svg.width,
                         points: (p.getAttribute('d').match(/[ML]/g) || []).length};
               });"#,
            json!([]),
        )
        .await;
    let lines = lines.as_array().unwrap();
    let names: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    // Scenario steps in their order (the fleet's fresh phones onboard and bind first).
    let steps: Vec<String> = Op::ALL
        .iter()
        .filter(|op| op.is_step() && report.ops.contains_key(op.name()))
        .map(|op| format!("{op} ok/s"))
        .collect();
    // And failed requests per second, when any request failed (steps repeat those).
    let failed_requests = report
        .ops
        .iter()
        .any(|(name, s)| s.failed > 0 && !steps.contains(&format!("{name} ok/s")));
    let mut steps = steps;
    if failed_requests {
        steps.push("failed requests/s".into());
    }
    assert_eq!(names, steps, "{lines:?}\n{}", report.render_table());
    assert!(names.contains(&"change ok/s"), "{names:?}");
    for l in lines {
        assert!(l["length"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["width"].as_f64().unwrap() > 0.0, "{l}");
        assert_eq!(l["inside"], json!(true), "{l}");
        assert_eq!(l["points"], json!(seconds), "{l}");
    }

    // One latency chart per operation, each with a drawn p99: a line with a length, or, for
    // an operation that ran in one second only (the fleet's onboarding), a visible point.
    let drawn = b
        .exec(
            r#"return [...document.querySelectorAll('svg[id^="latency-"]')].map((svg) =>
                 [svg.id, Math.max(0,
                   ...[...svg.querySelectorAll('path.line.p99')].map((p) => p.getTotalLength()),
                   ...[...svg.querySelectorAll('circle.point.p99')].map((c) => c.getBBox().width))]);"#,
            json!([]),
        )
        .await;
    let drawn = drawn.as_array().unwrap();
    assert_eq!(drawn.len(), report.ops.len(), "{drawn:?}");
    for chart in drawn {
        assert!(chart[1].as_f64().unwrap() > 0.0, "{chart}");
    }

    // The hostile code is shown as text: no element made from it, no script ran.
    let codes = b
        .exec(
            "return [...document.querySelectorAll('#errors td.text')].map((td) => td.textContent);",
            json!([]),
        )
        .await;
    assert!(
        codes.as_array().unwrap().contains(&json!(HOSTILE)),
        "{codes}"
    );
    assert_eq!(b.count("img").await, 0);
    assert_eq!(
        b.exec("return window.pwned || null;", json!([])).await,
        json!(null)
    );
    // Viewed from a file, the page fetched nothing.
    let fetched = b
        .exec(
            "return performance.getEntriesByType('resource').length;",
            json!([]),
        )
        .await;
    assert_eq!(fetched, json!(0));
    // Parameters name the seed by its fingerprint.
    let params = b.text("#parameters").await;
    assert!(params.contains(&report.seed), "{params}");

    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("fleet-report.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    // The whole page in one picture.
    let height = b
        .exec("return document.documentElement.scrollHeight;", json!([]))
        .await;
    b.resize(
        1280,
        u32::try_from(height.as_u64().unwrap().min(6_000)).unwrap() + 140,
    )
    .await;
    b.screenshot(&shot).await;
    b.quit().await;
}
