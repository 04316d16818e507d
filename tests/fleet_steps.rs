//! What a fleet's step rows measure and record, against the real in-process sandbox: a
//! step's row excludes its prerequisites (checked on a clock that ticks once per reading,
//! so no wall time is asserted), failed steps name the failed request's cause, and a
//! one-time step a phone already took is skipped and not counted (in a mix it signs instead).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use vphone::api::{Otp, PhoneNumber};
use vphone::client::{ApiClient, ClientConfig, Credentials};
use vphone::fleet::{
    Clock, ErrorKey, Fleet, Model, Pacing, Ran, Recorder, Report, RunOptions, Scenario, Step,
    Steps, run,
};
use vphone::sandbox::{SandboxConfig, SandboxHandle, spawn};

async fn sandbox() -> (SandboxHandle, ApiClient) {
    let sandbox = spawn(SandboxConfig::default()).await.unwrap();
    let url = url::Url::parse(&sandbox.base_url()).unwrap();
    let client = ApiClient::new(ClientConfig::local(url, Credentials::sandbox_default())).unwrap();
    (sandbox, client)
}

fn closed(workers: usize, iterations: u64) -> Pacing {
    Pacing {
        model: Model::Closed { workers },
        ramp_up: Duration::ZERO,
        duration: Some(Duration::from_secs(60)),
        iterations: Some(iterations),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_phones_sign_row_excludes_its_onboarding_and_binding() {
    let (sb, client) = sandbox().await;
    let fleet = Fleet::new("21", 1, 0..1).unwrap();
    let recorder = Recorder::default();
    let clock = Clock::ticking();
    let (number, otp) = (PhoneNumber::test_number(), Otp::parse("212212").unwrap());
    let steps = Steps {
        client: &client,
        fleet: &fleet,
        recorder: &recorder,
        worker: 0,
        number: &number,
        otp: &otp,
        clock: &clock,
        otp_command: None,
    };
    // The first sign onboards and binds the phone first; the second finds it bound.
    for _ in 0..2 {
        let since = clock.now();
        assert_eq!(steps.run(Step::Sign, 0, since).await, Ok(Ran::Done));
    }
    let mut report = Report::new("sign", "test", "-", 0);
    recorder.fill(&mut report).unwrap();
    let table = report.render_table();
    let sign = &report.ops["sign"].latency_us;
    assert_eq!(sign.len(), 2, "{table}");
    // On the ticking clock every reading is one second later, so a row's time counts the
    // readings inside it: a fresh phone's sign spans exactly as many as a bound phone's.
    assert!(sign.equivalent(sign.min(), sign.max()), "{table}");
    let (onboard, bind) = (
        report.ops["onboard"].latency_us.max(),
        report.ops["bind"].latency_us.max(),
    );
    assert!(sign.max() < onboard + bind, "{table}");
    // Rows do not overlap: each step's requests fall inside its own row.
    let inside = |op: &str| report.ops[op].latency_us.max();
    assert!(
        bind > inside("create_device") + inside("answer_signature_challenge"),
        "{table}"
    );
    assert!(
        sign.max() > inside("create_device_challenge") + inside("answer_device_challenge"),
        "{table}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_step_rows_name_the_failed_requests_status_and_code() {
    let (sb, client) = sandbox().await;
    let fleet = Arc::new(Fleet::new("22", 2, 0..2).unwrap());
    // The wrong OTP: onboarding fails at confirm_mobile_number, so neither phone can sign.
    let options = RunOptions {
        otp: Otp::parse("000000").unwrap(),
        ..RunOptions::new(Scenario::Single(Step::Sign), closed(1, 2))
    };
    let report = run(&client, fleet, options).await.unwrap();
    let table = report.render_table();
    let cause = report
        .errors
        .keys()
        .find(|k| k.op == "confirm_mobile_number")
        .cloned()
        .unwrap_or_else(|| panic!("the request failed\n{table}"));
    assert_ne!(cause.status, 0, "{table}");
    for step in ["onboard", "sign"] {
        let key = ErrorKey {
            op: step.to_owned(),
            ..cause.clone()
        };
        assert_eq!(report.errors.get(&key), Some(&2), "{step}\n{table}");
    }
    assert!(!table.contains("step_aborted"), "{table}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_step_a_phone_already_took_is_skipped_and_not_counted() {
    let (sb, client) = sandbox().await;
    let fleet = Arc::new(Fleet::new("23", 3, 0..3).unwrap());
    let bind = || RunOptions::new(Scenario::Single(Step::Bind), closed(2, 3));
    let first = run(&client, fleet.clone(), bind()).await.unwrap();
    assert_eq!(
        (first.iterations, first.skipped, first.ok("bind")),
        (3, 0, 3)
    );
    let again = run(&client, fleet.clone(), bind()).await.unwrap();
    let table = again.render_table();
    assert_eq!((again.iterations, again.skipped), (0, 3), "{table}");
    assert!(
        again.ops.is_empty(),
        "nothing was sent or recorded\n{table}"
    );
    assert!(table.contains("skipped: 3"), "{table}");
    assert!(
        table.starts_with("scenario bind (closed concurrency=2 "),
        "one space between the scenario and its pacing\n{table}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_mix_a_one_time_step_a_phone_already_took_signs_instead() {
    let (sb, client) = sandbox().await;
    let fleet = Arc::new(Fleet::new("24", 3, 0..3).unwrap());
    let bind = RunOptions::new(Scenario::Single(Step::Bind), closed(2, 3));
    let first = run(&client, fleet.clone(), bind).await.unwrap();
    assert_eq!((first.iterations, first.ok("bind")), (3, 3));
    // On the bound fleet, binds are drawn for phones that took them (the bind cursor starts
    // at the first phone): each must sign instead, as once the cursor is past the last.
    let mix: Scenario = "mix:bind=1,sign=1".parse().unwrap();
    let binds_drawn = (0..12).filter(|&n| mix.step(n) == Step::Bind).count();
    assert!(binds_drawn > 0, "the draw includes binds");
    let report = run(&client, fleet.clone(), RunOptions::new(mix, closed(2, 12)))
        .await
        .unwrap();
    let table = report.render_table();
    assert_eq!(
        (report.iterations, report.skipped, report.ok("sign")),
        (12, 0, 12),
        "{table}"
    );
    assert!(
        !report.ops.contains_key("bind"),
        "nothing was bound again\n{table}"
    );
    assert!(!table.contains("skipped"), "{table}");
    sb.shutdown().await;
}
