//! Fault rules against the real sandbox over HTTP: each action's effect on the wire and on
//! the bank's state, the per-rule counts in `/sandbox/stats`, and replay from a seed.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::{Bank, assert_refused, two_partner_config};
use serde_json::{Value, json};
use vphone::sandbox::SandboxConfig;
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::faults::admin::AdminToken;

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

/// `(message_id, code)` of every SMS to `number`, in arrival order.
async fn arrivals(bank: &Bank, number: &str) -> Vec<(u64, String)> {
    bank.sms(number)
        .await
        .iter()
        .map(|m| {
            let code = m["text"]
                .as_str()
                .unwrap()
                .split(|c: char| !c.is_ascii_digit())
                .find(|run| run.len() == 6)
                .unwrap()
                .to_owned();
            (m["message_id"].as_u64().unwrap(), code)
        })
        .collect()
}

#[tokio::test]
async fn sms_faults_deliver_never_late_twice_and_out_of_order() {
    let route = "POST /v1/mfa/challenges/sms";
    let mut config = with_rules(
        &[
            &format!("{route}: sms_drop next=1"),
            &format!("{route}: sms_delay=3s next=1"),
            &format!("{route}: sms_duplicate next=1"),
            &format!("{route}: sms_reorder next=1"),
        ],
        1,
    );
    // Six SMS to one person, more than the default limit allows.
    config.sms_rate_limit.max = 0;
    let bank = Bank::start_with(config, true).await;
    let (person, number) = bank.verified_person().await;
    let before = arrivals(&bank, &number).await.len();
    let challenge = || async {
        let (s, b) = bank
            .call(
                "POST",
                "/v1/mfa/challenges/sms",
                Some(json!({"person_id": person})),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    };
    let new = |all: Vec<(u64, String)>| all[before..].to_vec();
    // 1: dropped. 2: held for 3 s of the sandbox's clock.
    challenge().await;
    challenge().await;
    assert_eq!(new(arrivals(&bank, &number).await), []);
    bank.advance(2);
    assert_eq!(new(arrivals(&bank, &number).await), []);
    bank.advance(1);
    let got = new(arrivals(&bank, &number).await);
    assert_eq!(got.len(), 1, "the delayed SMS arrives once its time comes");
    let delayed = got[0].clone();
    // 3: twice, with the same message id.
    challenge().await;
    let got = new(arrivals(&bank, &number).await);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], got[2]);
    assert!(got[1].0 > delayed.0);
    // 4: held until 5 arrives, then delivered after it: the older code comes last.
    challenge().await;
    assert_eq!(new(arrivals(&bank, &number).await).len(), 3);
    challenge().await;
    let got = new(arrivals(&bank, &number).await);
    assert_eq!(got.len(), 5);
    assert!(got[3].0 > got[4].0, "sent later, delivered first: {got:?}");
    let stats = stats(&bank).await;
    let injected: Vec<u64> = stats["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["injected"].as_u64().unwrap())
        .collect();
    assert_eq!(injected, [1, 1, 1, 1]);
    assert_eq!(bank.state().sms_held(), 0);
}

#[tokio::test]
async fn a_slow_body_arrives_whole_in_many_pieces() {
    let bank = Bank::start_with(
        with_rules(&["GET /v1/persons/*: slow_body=8/5ms"], 1),
        false,
    )
    .await;
    let person = bank.person().await;
    let mut r = bank
        .http
        .get(format!("{}/v1/persons/{person}", bank.base))
        .bearer_auth(&bank.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let length = r.content_length().unwrap();
    let mut body = Vec::new();
    let mut pieces = 0;
    while let Some(piece) = r.chunk().await.unwrap() {
        pieces += 1;
        body.extend_from_slice(&piece);
    }
    assert_eq!(body.len() as u64, length);
    let person_back: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(person_back["id"], person.as_str());
    assert!(pieces > 1, "{pieces} piece(s) for {length} bytes");
    assert_eq!(stats(&bank).await["faults"][0]["injected"], 1);
}

const ADMIN: &str = "admin-token-for-tests-0123456789";

fn with_admin(rules: &[&str]) -> SandboxConfig {
    SandboxConfig {
        admin_token: Some(AdminToken::new(ADMIN).unwrap()),
        ..with_rules(rules, 3)
    }
}

/// Calls `/sandbox/faults` with `token` (none: no Authorization header).
async fn admin(
    bank: &Bank,
    method: reqwest::Method,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = bank
        .http
        .request(method, format!("{}/sandbox/faults", bank.base));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn rule_texts(listing: &Value) -> Vec<String> {
    listing["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_admin_endpoint_is_refused_without_a_configured_admin_token() {
    let bank = Bank::start_with(with_rules(&["GET /v1/*: status=503"], 1), false).await;
    for token in [None, Some(ADMIN), Some(bank.token.as_str())] {
        let got = admin(&bank, reqwest::Method::GET, token, None).await;
        assert_eq!(got.0, 403, "{got:?}");
        assert_eq!(got.1["errors"][0]["code"], "admin_disabled");
        let detail = got.1["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains("admin_token"), "{detail}");
    }
    let got = admin(&bank, reqwest::Method::DELETE, Some(ADMIN), None).await;
    assert_eq!(got.0, 403);
    assert_eq!(stats(&bank).await["faults"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_admin_endpoint_wants_the_admin_token_and_never_a_partners() {
    let bank = Bank::start_with(with_admin(&["GET /v1/*: status=503"]), false).await;
    let cases = [
        (None, 401, "unauthorized"),
        (Some("not-the-admin-token-at-all"), 401, "invalid_token"),
        (Some(bank.token.as_str()), 403, "forbidden"),
        (Some(sandbox_common::OTHER_SECRET), 401, "invalid_token"),
    ];
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        for (token, status, code) in cases {
            let (s, body) = admin(&bank, method.clone(), token, None).await;
            assert_eq!(
                (s, body["errors"][0]["code"].as_str()),
                (status, Some(code))
            );
            assert!(!body.to_string().contains(ADMIN));
        }
    }
    let (s, body) = admin(&bank, reqwest::Method::GET, Some(ADMIN), None).await;
    assert_eq!(s, 200);
    assert_eq!(body["seed"], 3);
    assert_eq!(rule_texts(&body), ["GET /v1/*: status=503"]);
    assert_eq!(body["rules"][0]["injected"], 0);
}

#[tokio::test]
async fn put_replaces_the_rules_only_when_every_rule_is_valid_and_delete_clears_them() {
    let bank = Bank::start_with(with_admin(&["POST /v1/persons: status=503"]), false).await;
    let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
    assert_eq!(s, 503);
    let before = admin(&bank, reqwest::Method::GET, Some(ADMIN), None)
        .await
        .1;
    for bad in [
        r#"{"rules": ["POST /v1/persons: drop_after", "POST /v1/persons: status=418"]}"#,
        r#"{"rules": ["POST /v1/persons: drop_after"], "colour": 1}"#,
        r#"{"rules": "POST /v1/persons: drop_after"}"#,
        "not json",
    ] {
        let (s, body) = admin(&bank, reqwest::Method::PUT, Some(ADMIN), Some(bad)).await;
        assert_eq!(s, 400, "{bad}: {body}");
        let after = admin(&bank, reqwest::Method::GET, Some(ADMIN), None)
            .await
            .1;
        assert_eq!(after, before, "a refused PUT changes nothing: {bad}");
    }
    let (_, body) = admin(
        &bank,
        reqwest::Method::PUT,
        Some(ADMIN),
        Some(r#"{"rules": ["POST /v1/persons: drop_after", "POST /v1/persons: status=418"]}"#),
    )
    .await;
    assert_eq!(body["errors"][0]["source"]["field"], "rules[1]");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("418")
    );
    // A partner's token cannot replace them either.
    let (s, _) = admin(
        &bank,
        reqwest::Method::PUT,
        Some(&bank.token),
        Some(r#"{"rules": []}"#),
    )
    .await;
    assert_eq!(s, 403);
    let (s, body) = admin(
        &bank,
        reqwest::Method::PUT,
        Some(ADMIN),
        Some(r#"{"rules": ["POST /v1/persons: status=502 next=1"], "seed": 11}"#),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["seed"], 11);
    assert_eq!(rule_texts(&body), ["POST /v1/persons: status=502 next=1"]);
    let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
    assert_eq!(s, 502);
    let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
    assert_eq!(s, 201);
    assert_eq!(stats(&bank).await["faults"][0]["injected"], 1);
    let (s, body) = admin(&bank, reqwest::Method::DELETE, Some(ADMIN), None).await;
    assert_eq!((s, body["rules"].as_array().unwrap().len()), (200, 0));
    let stats = stats(&bank).await;
    assert_eq!(stats["faults"], json!([]));
    // The counts started over with each replacement; the totals per rule text did not, and
    // the generation counts the PUT and the DELETE (the refused PUTs changed nothing).
    assert_eq!(stats["faults_generation"], 2);
    assert_eq!(
        stats["faults_total"],
        json!({"POST /v1/persons: status=503": 1, "POST /v1/persons: status=502 next=1": 1})
    );
}

#[tokio::test]
async fn totals_stay_bounded_when_rules_are_replaced_often_and_no_fault_goes_uncounted() {
    use vphone::sandbox::faults::RETIRED_TOTALS_KEPT;
    let bank = Bank::start_with(with_admin(&[]), false).await;
    let rounds = RETIRED_TOTALS_KEPT + 20;
    for i in 0..rounds {
        // A rule text of its own each round, which refuses the next person once.
        let rules = format!(
            r#"{{"rules": ["POST /v1/persons: status=503 next={}"]}}"#,
            i + 1
        );
        let (s, body) = admin(&bank, reqwest::Method::PUT, Some(ADMIN), Some(&rules)).await;
        assert_eq!(s, 200, "{body}");
        let (s, _) = bank.call("POST", "/v1/persons", new_person()).await;
        assert_eq!(s, 503);
    }
    let stats = stats(&bank).await;
    let totals = stats["faults_total"].as_object().unwrap();
    // The rules in force and the most recently retired texts keep their own total...
    assert_eq!(totals.len(), RETIRED_TOTALS_KEPT + 1, "{totals:?}");
    assert_eq!(
        totals[&format!("POST /v1/persons: status=503 next={rounds}")],
        1
    );
    assert!(!totals.contains_key("POST /v1/persons: status=503 next=1"));
    // ...and the older ones add up in the retired total: every fault is counted once.
    let listed: u64 = totals.values().map(|n| n.as_u64().unwrap()).sum();
    let retired = stats["faults_total_retired"].as_u64().unwrap();
    assert_eq!(retired, (rounds - RETIRED_TOTALS_KEPT - 1) as u64);
    assert_eq!(listed + retired, rounds as u64);
}

/// How many SMS each of `n` SMS challenges delivered (0 dropped, 1, 2 duplicated), and the
/// statuses of the challenge calls, on a sandbox with chance SMS rules and `seed`.
async fn sms_sequence(seed: u64, n: usize) -> (Vec<usize>, Vec<u16>) {
    let route = "POST /v1/mfa/challenges/sms";
    let mut config = with_rules(
        &[
            &format!("{route}: status=503 p=0.2"),
            &format!("{route}: sms_drop p=0.3"),
            &format!("{route}: sms_duplicate p=0.4"),
        ],
        seed,
    );
    config.sms_rate_limit.max = 0;
    let bank = Bank::start_with(config, false).await;
    let (person, number) = bank.verified_person().await;
    let mut seen = bank.sms(&number).await.len();
    let (mut delivered, mut statuses) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (s, _) = bank
            .call(
                "POST",
                "/v1/mfa/challenges/sms",
                Some(json!({"person_id": person})),
            )
            .await;
        statuses.push(s.as_u16());
        let now = bank.sms(&number).await.len();
        delivered.push(now - seen);
        seen = now;
    }
    (delivered, statuses)
}

#[tokio::test]
async fn the_same_faults_seed_gives_the_same_sms_faults() {
    let a = sms_sequence(77, 30).await;
    assert_eq!(a, sms_sequence(77, 30).await);
    assert_ne!(
        a,
        sms_sequence(78, 30).await,
        "another seed, another sequence"
    );
    for kind in [0, 1, 2] {
        assert!(a.0.contains(&kind), "{a:?}");
    }
    // A refused call sends nothing.
    for (d, s) in a.0.iter().zip(&a.1) {
        assert!(*s == 201 || *d == 0, "{a:?}");
    }
}
