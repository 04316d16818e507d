//! Fault rules against the real sandbox over HTTP: each action's effect on the wire and on
//! the bank's state, the per-rule counts in `/sandbox/stats`, and replay from a seed.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::{Bank, assert_refused, two_partner_config};
use serde_json::{Value, json};
use vphone::sandbox::SandboxConfig;
use vphone::sandbox::faults::FaultRule;

fn with_rules(rules: &[&str], seed: u64) -> SandboxConfig {
    SandboxConfig {
        faults: rules.iter().map(|r| FaultRule::parse(r).unwrap()).collect(),
        faults_seed: Some(seed),
        ..two_partner_config()
    }
}

async fn stats(bank: &Bank) -> Value {
    let r = bank
        .http
        .get(format!("{}/sandbox/stats", bank.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn new_person() -> Option<Value> {
    Some(json!({"first_name": "Ada", "last_name": "Lovelace"}))
}

/// Sends `POST /v1/persons`; `Err` when the connection closed without an answer.
async fn create_person(bank: &Bank) -> Result<u16, reqwest::Error> {
    let r = bank
        .http
        .post(format!("{}/v1/persons", bank.base))
        .bearer_auth(&bank.token)
        .json(&new_person())
        .send()
        .await?;
    Ok(r.status().as_u16())
}

#[tokio::test]
async fn status_faults_refuse_in_the_errors_shape_before_the_bank_acts() {
    let bank = Bank::start_with(
        with_rules(
            &[
                "POST /v1/persons: status=503 next=1",
                "POST /v1/persons: status=429 retry_after=7 next=1",
                "POST /v1/persons: status=401 next=1",
                "POST /v1/persons: status=500 next=1",
                "POST /v1/persons: status=502 next=1",
            ],
            1,
        ),
        false,
    )
    .await;
    let got = bank.call("POST", "/v1/persons", new_person()).await;
    assert_refused(&got, 503, "service_unavailable");
    let r = bank
        .http
        .post(format!("{}/v1/persons", bank.base))
        .bearer_auth(&bank.token)
        .json(&new_person())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    // Made up by a fault rule, and marked so for clients to tell it from the bank's own.
    assert_eq!(r.headers()["vphone-fault"], "injected");
    let got = bank.call("POST", "/v1/persons", new_person()).await;
    assert_refused(&got, 401, "invalid_token");
    let got = bank.call("POST", "/v1/persons", new_person()).await;
    assert_refused(&got, 500, "internal_server_error");
    let got = bank.call("POST", "/v1/persons", new_person()).await;
    assert_refused(&got, 502, "bad_gateway");
    assert_eq!(
        bank.state().stats().live_persons,
        0,
        "a refusal changes nothing"
    );
    // Every rule has had its one fault; the sixth call goes through.
    let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
    assert_eq!(s, 201);
    let stats = stats(&bank).await;
    let faults = stats["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 5);
    for f in faults {
        assert_eq!(f["injected"], 1, "{f}");
    }
    assert_eq!(
        faults[1]["rule"],
        "POST /v1/persons: status=429 retry_after=7 next=1"
    );
}

#[tokio::test]
async fn drop_before_closes_the_connection_and_the_bank_does_nothing() {
    let bank = Bank::start_with(
        with_rules(&["POST /v1/persons: drop_before next=1"], 1),
        false,
    )
    .await;
    let err = create_person(&bank).await.unwrap_err();
    assert!(!err.is_status(), "no answer at all: {err}");
    assert_eq!(bank.state().stats().live_persons, 0);
    assert_eq!(create_person(&bank).await.unwrap(), 201);
    assert_eq!(bank.state().stats().live_persons, 1);
    assert_eq!(stats(&bank).await["faults"][0]["injected"], 1);
}

#[tokio::test]
async fn drop_after_lets_the_bank_act_and_loses_only_the_answer() {
    let bank = Bank::start_with(
        with_rules(&["POST /v1/persons: drop_after every=2"], 1),
        false,
    )
    .await;
    assert_eq!(create_person(&bank).await.unwrap(), 201);
    let err = create_person(&bank).await.unwrap_err();
    assert!(!err.is_status(), "no answer at all: {err}");
    // The second person was created although its answer never came.
    assert_eq!(bank.state().stats().live_persons, 2);
    assert_eq!(create_person(&bank).await.unwrap(), 201);
    assert_eq!(stats(&bank).await["faults"][0]["injected"], 1);
}

#[tokio::test]
async fn sandbox_routes_and_unmatched_routes_are_never_faulted() {
    let bank = Bank::start_with(with_rules(&["GET *: status=503"], 1), false).await;
    // `/sandbox/*` stays reliable: the harness reads its SMS and counters there.
    assert_eq!(stats(&bank).await["faults"][0]["injected"], 0);
    let (s, _) = bank.call("GET", "/oauth2/token", None).await;
    assert_eq!(
        s, 503,
        "the token endpoint is a route like any other (405 without the rule)"
    );
    let bank = Bank::start_with(with_rules(&["GET /v1/persons/*: status=503"], 1), false).await;
    let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
    assert_eq!(s, 201);
}

#[tokio::test]
async fn a_partner_rule_faults_only_that_partners_calls() {
    let bank = Bank::start_with(
        with_rules(&["POST /v1/persons: status=503 partner=other-partner"], 1),
        false,
    )
    .await;
    let other = bank
        .token_for(sandbox_common::OTHER_ID, sandbox_common::OTHER_SECRET)
        .await;
    let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
    assert_eq!(s, 201);
    let got = bank
        .call_as(&other, "POST", "/v1/persons", new_person())
        .await;
    assert_refused(&got, 503, "service_unavailable");
}

/// The statuses of `n` sequential calls to a sandbox with a 40% 503 rule and `seed`.
async fn sequence(seed: u64, n: usize) -> Vec<u16> {
    let bank = Bank::start_with(
        with_rules(&["POST /v1/persons: status=503 p=0.4"], seed),
        false,
    )
    .await;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(create_person(&bank).await.unwrap());
    }
    let injected = out.iter().filter(|s| **s == 503).count() as u64;
    assert_eq!(stats(&bank).await["faults"][0]["injected"], injected);
    out
}

#[tokio::test]
async fn the_same_faults_seed_gives_the_same_fault_sequence() {
    let a = sequence(2026, 40).await;
    let b = sequence(2026, 40).await;
    let c = sequence(2027, 40).await;
    assert_eq!(a, b);
    assert_ne!(a, c, "another seed, another sequence");
    assert!(a.contains(&503) && a.contains(&201), "{a:?}");
}

#[tokio::test]
async fn the_latency_option_is_listed_as_a_latency_rule() {
    let config = SandboxConfig {
        latency: Some(std::time::Duration::from_millis(1)),
        ..with_rules(&[], 1)
    };
    let bank = Bank::start_with(config, false).await;
    assert_eq!(create_person(&bank).await.unwrap(), 201);
    let stats = stats(&bank).await;
    assert_eq!(stats["faults"][0]["rule"], "* /v1/*: latency=1ms");
    assert_eq!(stats["faults"][0]["injected"], 1);
}
