//! The sandbox holds up against hostile and careless clients: stalled and idle connections are
//! closed by their deadlines, a connection cap reached by idle clients still lets a normal
//! request through, one-time codes are rate-limited per person, free text is checked, and the
//! high-S signature policy is configurable. Every test runs on 127.0.0.1 with short timeouts
//! and bounds each wait; none asserts a duration beyond "closed within a generous bound".
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sandbox_common::{Bank, assert_refused, two_partner_config};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use vphone::sandbox::SandboxConfig;
use vphone::sandbox::config::RateLimit;

/// Far longer than any configured timeout here: only a sandbox that never closes fails.
const BOUND: Duration = Duration::from_secs(20);

fn short_timeouts() -> SandboxConfig {
    SandboxConfig {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(600),
        body_read_timeout: Duration::from_millis(300),
        ..two_partner_config()
    }
}

/// Reads until the server closes the connection (EOF or reset), within [`BOUND`]; returns
/// what arrived. Panics if the connection is still open at the bound.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "the connection is still open after {BOUND:?}"
    );
    got
}

/// Reads one complete response of a `Content-Length` body from a raw stream.
async fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut got = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response arrived");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    return;
                }
            }
        }
    })
    .await
    .expect("a response within the bound");
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.as_bytes().to_vec();
    (status, body)
}

fn health_request() -> &'static [u8] {
    b"GET /sandbox/health HTTP/1.1\r\nHost: sandbox\r\n\r\n"
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let bank = Bank::start_with(short_timeouts(), false).await;
    let mut stalled = TcpStream::connect(bank.handle.addr()).await.unwrap();
    stalled
        .write_all(b"GET /sandbox/health HTTP/1.1\r\nHost: sand")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(bank.handle.addr()).await.unwrap();
    assert!(read_until_closed(&mut stalled).await.is_empty());
    assert!(read_until_closed(&mut silent).await.is_empty());
    assert_eq!(bank.state().stats().connections.header_timeouts, 2);
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_the_connection_closed() {
    let bank = Bank::start_with(short_timeouts(), false).await;
    let mut stream = TcpStream::connect(bank.handle.addr()).await.unwrap();
    let head = format!(
        "POST /v1/persons HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"first_name\"",
        bank.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let got = String::from_utf8(read_until_closed(&mut stream).await).unwrap();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    let body: Value = serde_json::from_str(got.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["errors"][0]["code"], "request_timeout", "{body}");
    assert_eq!(bank.state().stats().connections.body_timeouts, 1);
    assert_eq!(bank.state().stats().live_persons, 0);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let bank = Bank::start_with(short_timeouts(), false).await;
    let mut stream = TcpStream::connect(bank.handle.addr()).await.unwrap();
    stream.write_all(health_request()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200);
    stream.write_all(health_request()).await.unwrap();
    assert_eq!(read_response(&mut stream).await.0, 200, "kept alive");
    assert!(read_until_closed(&mut stream).await.is_empty());
    let c = bank.state().stats().connections;
    // The bank's own pooled connection (its token request) idles out too.
    assert!(c.idle_timeouts >= 1, "{c:?}");
    assert_eq!((c.header_timeouts, c.evicted), (0, 0), "{c:?}");
}

#[tokio::test]
async fn a_slow_body_longer_than_the_idle_timeout_arrives_whole() {
    use vphone::sandbox::faults::FaultRule;
    // Each answer to GET /v1/persons/* trickles 8 bytes every 50 ms: a person of a few
    // hundred bytes takes many idle timeouts to write.
    let config = SandboxConfig {
        idle_timeout: Duration::from_millis(100),
        faults: vec![FaultRule::parse("GET /v1/persons/*: slow_body=8/50ms").unwrap()],
        ..short_timeouts()
    };
    let bank = Bank::start_with(config, false).await;
    let person = bank.person().await;
    let mut stream = TcpStream::connect(bank.handle.addr()).await.unwrap();
    let request = format!(
        "GET /v1/persons/{person} HTTP/1.1\r\nHost: sandbox\r\nAuthorization: Bearer {}\r\n\r\n",
        bank.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, body) = read_response(&mut stream).await;
    assert_eq!(status, 200);
    let back: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(back["id"], person.as_str());
    // Once the answer is written the connection is idle, and idles out as usual.
    assert!(read_until_closed(&mut stream).await.is_empty());
}

/// Waits until `done`, checking every 20 ms; panics naming `what` at [`BOUND`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(BOUND, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "not {what} within {BOUND:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_its_answers_is_closed_after_the_idle_timeout() {
    let bank = Bank::start_with(short_timeouts(), false).await;
    let stats = || bank.state().stats().connections;
    // Any connection of the bank's own client closes first, so the counts below are ours.
    wait_until("no connection open", || stats().open == 0).await;
    let before = stats();
    // A small receive window and answers far larger than the socket buffers hold: the
    // sandbox's writes wait for a client that never reads. Hyper takes each ordinary answer's
    // body whole, so that wait is idle time (only producing an answer is busy time).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(bank.handle.addr()).await.unwrap();
    let request: &[u8] = b"GET /sandbox/openapi.json HTTP/1.1\r\nHost: sandbox\r\n\r\n";
    stream.write_all(&request.repeat(200)).await.unwrap();
    wait_until("the unread connection is closed", || {
        let now = stats();
        now.accepted > before.accepted && now.open == 0
    })
    .await;
    let after = stats();
    assert_eq!(after.idle_timeouts, before.idle_timeouts + 1, "{after:?}");
    assert_eq!((after.header_timeouts, after.evicted), (0, 0), "{after:?}");
    drop(stream);
}

#[tokio::test]
async fn at_the_connection_cap_idle_clients_make_room_and_established_ones_are_still_answered() {
    let config = SandboxConfig {
        max_connections: Some(4),
        ..two_partner_config()
    };
    // Bank::start_with fetches a token on one pooled connection: that is one of the four.
    let bank = Bank::start_with(config, false).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(bank.handle.addr()).await.unwrap();
        s.write_all(health_request()).await.unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        idle.push(s);
    }
    let c = bank.state().stats().connections;
    assert_eq!((c.open, c.cap), (4, 4));
    // A fresh client, on a new connection: it gets an answer.
    let fresh = reqwest::Client::new();
    let r = tokio::time::timeout(
        BOUND,
        fresh.get(format!("{}/sandbox/health", bank.base)).send(),
    )
    .await
    .expect("answered within the bound")
    .unwrap();
    assert_eq!(r.status(), 200);
    let c = bank.state().stats().connections;
    assert_eq!(c.cap_reached, 1);
    assert_eq!(c.evicted, 1, "{c:?}");
    assert!(c.open <= 4, "{c:?}");
    // The longest-waiting connection made room (the token's); the three others still answer.
    for (i, s) in idle.iter_mut().enumerate() {
        eprintln!("idle {i}");
        s.write_all(health_request()).await.unwrap();
        assert_eq!(read_response(s).await.0, 200);
    }
}

/// A sandbox of cap 3 with a second listener holding two idle connections (the token's
/// pooled connection on the first listener is the third, and the longest idle).
async fn at_the_cap_across_two_listeners(
    bank: &Bank,
) -> (vphone::sandbox::Listening, Vec<TcpStream>) {
    let second = bank.handle.server().listen_here().await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(second.addr()).await.unwrap();
        s.write_all(health_request()).await.unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        idle.push(s);
    }
    let c = bank.state().stats().connections;
    assert_eq!((c.open, c.cap, c.cap_reached), (3, 3, 0), "{c:?}");
    (second, idle)
}

fn cap_of_three() -> SandboxConfig {
    SandboxConfig {
        max_connections: Some(3),
        ..two_partner_config()
    }
}

/// The status of the answer to a request already sent on `stream`, if one comes within 5 s.
async fn answered(stream: &mut TcpStream) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), read_response(stream))
        .await
        .ok()
        .map(|(status, _)| status)
}

#[tokio::test]
async fn listeners_of_one_sandbox_share_its_cap_and_the_longest_idle_connection_of_any_gives_way() {
    let bank = Bank::start_with(cap_of_three(), false).await;
    let (second, mut idle) = at_the_cap_across_two_listeners(&bank).await;
    // A newcomer on a third listener, which has no connection of its own: the sandbox is at
    // its cap, so the longest-idle connection (the token's, on the first listener) gives way.
    let third = bank.handle.server().listen_here().await.unwrap();
    let mut fourth = TcpStream::connect(third.addr()).await.unwrap();
    fourth.write_all(health_request()).await.unwrap();
    assert_eq!(answered(&mut fourth).await, Some(200));
    let c = bank.state().stats().connections;
    assert_eq!((c.cap_reached, c.evicted), (1, 1), "{c:?}");
    assert!(c.open <= 3, "{c:?}");
    // The second listener's connections, idle for less time, are still answered.
    for s in &mut idle {
        s.write_all(health_request()).await.unwrap();
        assert_eq!(answered(s).await, Some(200));
    }
    third.stop(BOUND).await;
    second.stop(BOUND).await;
}

#[tokio::test]
async fn two_newcomers_at_the_cap_on_two_listeners_at_once_are_both_answered() {
    let bank = Bank::start_with(cap_of_three(), false).await;
    let (second, _idle) = at_the_cap_across_two_listeners(&bank).await;
    let third = bank.handle.server().listen_here().await.unwrap();
    // Blocking connects and writes: both newcomers wait in their listeners' backlogs before
    // either accept loop runs, so both loops find the sandbox at its cap together.
    let connect = |addr| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut s, health_request()).unwrap();
        s.set_nonblocking(true).unwrap();
        TcpStream::from_std(s).unwrap()
    };
    let mut a = connect(bank.handle.addr());
    let mut b = connect(third.addr());
    let (ra, rb) = tokio::join!(answered(&mut a), answered(&mut b));
    assert_eq!(
        (ra, rb),
        (Some(200), Some(200)),
        "{:?}",
        bank.state().stats().connections
    );
    third.stop(BOUND).await;
    second.stop(BOUND).await;
}

#[tokio::test]
async fn oversize_request_targets_and_headers_are_refused_in_the_errors_shape() {
    let bank = Bank::start().await;
    let long = format!("{}/sandbox/health?x={}", bank.base, "a".repeat(9000));
    let r = bank.http.get(long).send().await.unwrap();
    assert_eq!(r.status(), 414);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "uri_too_long");
    let mut req = bank.http.get(format!("{}/sandbox/health", bank.base));
    for i in 0..150 {
        req = req.header(format!("x-filler-{i}"), "1");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 431);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "request_header_fields_too_large");
}

#[tokio::test]
async fn the_sixth_sms_to_a_person_within_ten_minutes_is_refused_with_retry_after() {
    let config = SandboxConfig {
        sms_rate_limit: RateLimit::SMS_DEFAULT,
        ..two_partner_config()
    };
    let bank = Bank::start_with(config, true).await;
    // Verifying the number sent the first SMS; four challenges more reach the limit.
    let (person, _) = bank.verified_person().await;
    let create = || {
        bank.call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
    };
    for _ in 0..4 {
        let (s, b) = create().await;
        assert_eq!(s, 201, "{b}");
    }
    let r = bank
        .http
        .post(format!("{}/v1/mfa/challenges/sms", bank.base))
        .bearer_auth(&bank.token)
        .json(&json!({"person_id": person}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_refused(
        &(reqwest::StatusCode::TOO_MANY_REQUESTS, body),
        429,
        "too_many_requests",
    );
    // Another person is not affected; this one may send again once the window has passed.
    let (other, _) = bank.verified_person().await;
    let (s, b) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": other})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    bank.advance(retry);
    let (s, b) = create().await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(bank.state().stats().rate_limited, 1);
}

#[tokio::test]
async fn change_request_tans_count_against_the_same_per_person_limit() {
    let config = SandboxConfig {
        sms_rate_limit: RateLimit {
            max: 2,
            window: Duration::from_secs(600),
        },
        ..two_partner_config()
    };
    let bank = Bank::start_with(config, true).await;
    let (person, _) = bank.verified_person().await;
    let (s, cr) = bank
        .call(
            "PATCH",
            &format!("/v1/persons/{person}"),
            Some(json!({"first_name": "Grace"})),
        )
        .await;
    assert_eq!(s, 202, "{cr}");
    let authorize = format!(
        "/v1/change_requests/{}/authorize",
        cr["id"].as_str().unwrap()
    );
    let body = json!({"delivery_method": "mobile_number", "person_id": person});
    let (s, b) = bank.call("POST", &authorize, Some(body.clone())).await;
    assert_eq!(s, 201, "{b}");
    let got = bank.call("POST", &authorize, Some(body)).await;
    // The change request is already waiting for its TAN: that refusal comes first, or the
    // limit; either way no third SMS went out.
    assert!(got.0 == 429 || got.0 == 409, "{got:?}");
    let (s, _) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/sms",
            Some(json!({"person_id": person})),
        )
        .await;
    assert_eq!(s, 429);
}

#[tokio::test]
async fn token_issuance_is_rate_limited_per_partner() {
    let config = SandboxConfig {
        token_rate_limit: RateLimit {
            max: 2,
            window: Duration::from_secs(60),
        },
        ..two_partner_config()
    };
    // The bank fetched one token already.
    let bank = Bank::start_with(config, true).await;
    let ask = |id: &'static str, secret: &'static str| {
        bank.http
            .post(format!("{}/oauth2/token", bank.base))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let demo = (
        vphone::sandbox::config::DEFAULT_CLIENT_ID,
        vphone::sandbox::config::DEFAULT_CLIENT_SECRET,
    );
    assert_eq!(ask(demo.0, demo.1).await.unwrap().status(), 200);
    let r = ask(demo.0, demo.1).await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let other = (sandbox_common::OTHER_ID, sandbox_common::OTHER_SECRET);
    assert_eq!(ask(other.0, other.1).await.unwrap().status(), 200);
    bank.advance(60);
    assert_eq!(ask(demo.0, demo.1).await.unwrap().status(), 200);
}

#[tokio::test]
async fn long_polls_beyond_the_cap_answer_at_once() {
    let config = SandboxConfig {
        max_long_polls: 1,
        ..two_partner_config()
    };
    let bank = Bank::start_with(config, false).await;
    let number = sandbox_common::random_number();
    let url = format!(
        "{}/sandbox/sms?number={}&wait_ms=60000",
        bank.base,
        number.replace('+', "%2B")
    );
    let waiting = tokio::spawn(bank.http.get(url.clone()).send());
    // Bounded: the first poll takes its slot within the bound.
    let mut taken = false;
    for _ in 0..1_000_000 {
        if bank.state().long_polls_waiting() == 1 {
            taken = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(taken, "the first long-poll never started waiting");
    let r = tokio::time::timeout(BOUND, bank.http.get(url).send())
        .await
        .expect("the capped poll answers at once")
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Vec<Value>>().await.unwrap(), Vec::<Value>::new());
    assert_eq!(bank.state().stats().long_polls_capped, 1);
    // An SMS to the number ends the first poll.
    bank.verified_person_with(&number).await;
    let r = tokio::time::timeout(BOUND, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 1);
}

/// Binds a device whose key is a RustCrypto p256 key; returns its id.
async fn bind_p256(bank: &Bank, person: &str, key: &SigningKey) -> String {
    let public = hex::encode(key.verifying_key().to_encoded_point(false).as_bytes());
    let (s, b) = bank
        .call(
            "POST",
            "/v1/mfa/devices",
            Some(json!({"person_id": person, "key_type": "ecdsa-p256", "key": public, "name": "p256 phone"})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let sig: Signature = key.sign(b"212212");
    let sig = sig.normalize_s().unwrap_or(sig);
    let (s, r) = bank
        .call(
            "PUT",
            &format!(
                "/v1/mfa/challenges/signatures/{}",
                b["challenge"]["id"].as_str().unwrap()
            ),
            Some(json!({"signature": hex::encode(sig.to_der().as_bytes())})),
        )
        .await;
    assert_eq!(s, 204, "{r}");
    b["id"].as_str().unwrap().to_owned()
}

/// A device challenge's string and its two valid signatures: (low-S, high-S twin s' = n − s).
async fn challenge_and_twins(
    bank: &Bank,
    device: &str,
    key: &SigningKey,
) -> (String, String, String) {
    let (s, c) = bank
        .call(
            "POST",
            "/v1/mfa/challenges/devices",
            Some(json!({"device_id": device})),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let sig: Signature = key.sign(c["string_to_sign"].as_str().unwrap().as_bytes());
    let low = sig.normalize_s().unwrap_or(sig);
    let high = Signature::from_scalars(low.r(), -*low.s()).unwrap();
    assert!(high.normalize_s().is_some(), "the twin is the high-S one");
    (
        c["id"].as_str().unwrap().to_owned(),
        hex::encode(low.to_der().as_bytes()),
        hex::encode(high.to_der().as_bytes()),
    )
}

#[tokio::test]
async fn the_high_s_twin_is_accepted_by_default() {
    let bank = Bank::start().await;
    let person = bank.verified_person_with("+15550101").await;
    let key = SigningKey::random(&mut rand::thread_rng());
    let device = bind_p256(&bank, &person, &key).await;
    let (id, _low, high) = challenge_and_twins(&bank, &device, &key).await;
    let (s, b) = bank
        .call(
            "PUT",
            &format!("/v1/mfa/challenges/devices/{id}"),
            Some(json!({"signature": high})),
        )
        .await;
    assert_eq!(s, 204, "{b}");
}

#[tokio::test]
async fn the_high_s_twin_is_refused_with_strict_low_s() {
    let config = SandboxConfig {
        strict_low_s: true,
        ..two_partner_config()
    };
    let bank = Bank::start_with(config, false).await;
    let person = bank.verified_person_with("+15550101").await;
    let key = SigningKey::random(&mut rand::thread_rng());
    let device = bind_p256(&bank, &person, &key).await;
    let (id, low, high) = challenge_and_twins(&bank, &device, &key).await;
    let path = format!("/v1/mfa/challenges/devices/{id}");
    let got = bank
        .call("PUT", &path, Some(json!({"signature": high})))
        .await;
    assert_refused(&got, 403, "invalid_signature");
    let (s, b) = bank
        .call("PUT", &path, Some(json!({"signature": low})))
        .await;
    assert_eq!(s, 204, "{b}");
}

#[tokio::test]
async fn control_bidi_and_zero_width_text_is_refused_naming_each_field() {
    let bank = Bank::start().await;
    let bad_values = [
        "Ada\u{1}",
        "Ada\u{1b}[2J",
        "Ada\u{85}",
        "\u{202E}adA",
        "x\u{2066}y",
        "\u{200B}\u{200B}",
    ];
    let base = json!({"first_name": "Ada", "last_name": "Lovelace", "salutation": "MS",
                      "email": "ada@example.com", "title": "Countess",
                      "address": {"line_1": "12 St James's Square", "city": "London"}});
    let (s, b) = bank.call("POST", "/v1/persons", Some(base.clone())).await;
    assert_eq!(s, 201, "clean text passes: {b}");
    assert_eq!(b["address"]["city"], "London");
    let person = b["id"].as_str().unwrap().to_owned();
    for value in bad_values {
        for field in ["first_name", "last_name", "salutation", "email", "title"] {
            let mut body = base.clone();
            body[field] = json!(value);
            let got = bank.call("POST", "/v1/persons", Some(body)).await;
            assert_refused(&got, 400, "validation_error");
            assert_eq!(
                got.1["errors"][0]["source"]["field"], field,
                "{value:?}: {}",
                got.1
            );
        }
        let mut body = base.clone();
        body["address"]["city"] = json!(value);
        let got = bank.call("POST", "/v1/persons", Some(body)).await;
        assert_eq!(
            got.1["errors"][0]["source"]["field"], "address.city",
            "{}",
            got.1
        );
        let got = bank
            .call(
                "PATCH",
                &format!("/v1/persons/{person}"),
                Some(json!({"last_name": value})),
            )
            .await;
        assert_refused(&got, 400, "validation_error");
        assert_eq!(got.1["errors"][0]["source"]["field"], "last_name");
    }
    // Lengths are capped per field.
    let mut body = base.clone();
    body["first_name"] = json!("a".repeat(201));
    let got = bank.call("POST", "/v1/persons", Some(body)).await;
    assert_eq!(got.1["errors"][0]["source"]["field"], "first_name");
    // A field the bank does not have is refused, not silently stored.
    let mut body = base.clone();
    body["favourite_colour"] = json!("green");
    let got = bank.call("POST", "/v1/persons", Some(body)).await;
    assert_refused(&got, 400, "validation_error");
    assert_eq!(got.1["errors"][0]["source"]["field"], "favourite_colour");
    assert_eq!(
        bank.state().stats().live_persons,
        1,
        "nothing refused was stored"
    );

    // Device names, and device_data over 4 KiB.
    let person = bank.verified_person_with("+15550101").await;
    let key = sandbox_common::Key::new();
    for (field, body) in [
        (
            "name",
            json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "phone\u{202E}"}),
        ),
        (
            "name",
            json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "\u{7}"}),
        ),
        (
            "device_data",
            json!({"person_id": person, "key_type": "ecdsa-p256", "key": key.public_hex(), "name": "phone", "device_data": "x".repeat(4097)}),
        ),
    ] {
        let got = bank.call("POST", "/v1/mfa/devices", Some(body)).await;
        assert_refused(&got, 400, "validation_error");
        assert_eq!(got.1["errors"][0]["source"]["field"], field, "{}", got.1);
    }
    assert_eq!(bank.state().stats().live_devices, 0);
}

#[tokio::test]
async fn refusals_hyper_makes_before_any_route_are_the_documented_ones() {
    let bank = Bank::start().await;
    // A request line that is not HTTP: 400 from hyper, with no body.
    let mut s = TcpStream::connect(bank.handle.addr()).await.unwrap();
    s.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut s).await).to_string();
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.ends_with("\r\n\r\n"), "no body: {got}");
    // A malformed Content-Length: the same.
    let mut s = TcpStream::connect(bank.handle.addr()).await.unwrap();
    s.write_all(b"POST /v1/persons HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
        .await
        .unwrap();
    let got = String::from_utf8_lossy(&read_until_closed(&mut s).await).to_string();
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // Heads beyond hyper's buffer or header count, and targets beyond its URI limit: 431 and
    // 414 from hyper, with no body.
    let many: String = (0..500).map(|i| format!("X-{i}: 1\r\n")).collect();
    for (head, status) in [
        (
            format!(
                "GET /sandbox/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(200 * 1024)
            ),
            "431",
        ),
        (
            format!("GET /sandbox/health HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
            "431",
        ),
        (
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)),
            "414",
        ),
    ] {
        let mut s = TcpStream::connect(bank.handle.addr()).await.unwrap();
        let _ = s.write_all(head.as_bytes()).await;
        let got = String::from_utf8_lossy(&read_until_closed(&mut s).await).to_string();
        assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
        assert!(got.ends_with("\r\n\r\n"), "no body: {got}");
    }
}
