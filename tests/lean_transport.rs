//! The lean HTTP/1.1 transport (`ClientConfig::with_lean_http`) against the real sandbox and
//! against small scripted servers on 127.0.0.1: the same answers, errors and transcript as
//! reqwest, idle connections the server closed are replaced, and failures keep their
//! variants.
#![allow(clippy::unwrap_used)]

mod common;

use common::raw_http::{TOKEN_REPLY, read_request};
use common::{bounded, client_with as client};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc};
use vphone::client::{ClientError, Transcript};
use vphone::fleet::{Fleet, Model, Pacing, RunOptions, Scenario, Step, run};
use vphone::phone::person_named;
use vphone::sandbox::{SandboxConfig, spawn};

/// The calls and statuses of a one-worker fleet run (onboard, bind, then sign) over
/// either transport, against a fresh sandbox.
async fn fleet_calls(lean: bool) -> Vec<(String, Option<u16>, bool)> {
    let sandbox = spawn(SandboxConfig::default()).await.unwrap();
    let transcript = Arc::new(Transcript::in_memory());
    let client = client(
        &sandbox.base_url(),
        lean,
        Duration::from_secs(10),
        Some(transcript.clone()),
    );
    let fleet = Arc::new(Fleet::new("3", 2, 0..2).unwrap());
    let pacing = Pacing {
        model: Model::Closed { workers: 1 },
        ramp_up: Duration::ZERO,
        duration: Some(Duration::from_secs(30)),
        iterations: Some(4),
    };
    let options = RunOptions::new(Scenario::Single(Step::Sign), pacing);
    let report = run(&client, fleet, options).await.unwrap();
    assert_eq!(report.total_errors(), 0, "{}", report.render_table());
    assert_eq!(report.ok("sign"), 4);
    sandbox.shutdown().await;
    transcript
        .exchanges()
        .iter()
        .map(|e| (e.call(), e.status, e.response.is_some()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lean_transport_makes_the_same_calls_with_the_same_answers_as_reqwest() {
    bounded(async {
        let with_reqwest = fleet_calls(false).await;
        let lean = fleet_calls(true).await;
        assert_eq!(lean, with_reqwest);
        // Token, 2 × (4 onboarding + 2 binding requests), 4 × 2 signing requests.
        assert_eq!(lean.len(), 1 + 2 * 6 + 4 * 2, "{lean:?}");
        assert_eq!(lean[0].0, "POST /oauth2/token");
        assert_eq!(
            lean.last().unwrap(),
            &(
                "PUT /v1/mfa/challenges/devices/{id}".to_owned(),
                Some(204),
                false
            )
        );
    })
    .await;
}

#[tokio::test]
async fn lean_refusals_read_the_banks_error_shape() {
    bounded(async {
        let sandbox = spawn(SandboxConfig::default()).await.unwrap();
        let api = client(&sandbox.base_url(), true, Duration::from_secs(10), None);
        let unknown = vphone::api::PersonId::parse("0123456789abcdef0123456789abcdefcper").unwrap();
        let err = api.get_person(&unknown).await.unwrap_err();
        assert_eq!(err.status(), Some(404), "{err}");
        assert!(err.remote().is_some(), "{err:?}");
        sandbox.shutdown().await;
    })
    .await;
}

/// How the scripted server treats `/v1` requests.
#[derive(Clone, Copy)]
enum Script {
    /// Answer with a person, then close the connection (no `Connection: close` header:
    /// as a server dropping an idle keep-alive connection).
    AnswerThenClose,
    /// Read the request and never answer.
    Silent,
}

/// A server on 127.0.0.1 that answers the token call and treats `/v1` requests per
/// `script`; it logs each `/v1` request line and says on `closed` when it closed a
/// connection.
async fn scripted(script: Script) -> (String, Arc<Mutex<Vec<String>>>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = log.clone();
    let (closed_tx, closed) = mpsc::channel(16);
    tokio::spawn(async move {
        // Bounded: a test makes a handful of connections.
        for _ in 0..16 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                while let Some(line) = read_request(&mut sock).await {
                    if line.contains("/oauth2/token") {
                        if sock.write_all(TOKEN_REPLY.as_bytes()).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    seen.lock().await.push(line);
                    match script {
                        Script::AnswerThenClose => {
                            let body = r#"{"id":"0123456789abcdef0123456789abcdefcper","first_name":"Once","last_name":"Only"}"#;
                            let reply = format!(
                                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = sock.write_all(reply.as_bytes()).await;
                            drop(sock);
                            let _ = closed_tx.send(()).await;
                            return;
                        }
                        Script::Silent => {
                            // Hold the connection open without answering until the peer goes.
                            let mut rest = [0u8; 64];
                            while matches!(sock.read(&mut rest).await, Ok(n) if n > 0) {}
                            return;
                        }
                    }
                }
            });
        }
    });
    (base, log, closed)
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_replaced_before_a_post() {
    bounded(async {
        let (base, log, mut closed) = scripted(Script::AnswerThenClose).await;
        let api = client(&base, true, Duration::from_secs(10), None);
        api.authenticate().await.unwrap();
        let first = api
            .create_person(&person_named("Once", "Only"))
            .await
            .unwrap();
        assert_eq!(first.first_name, "Once");
        closed.recv().await.unwrap();
        // A moment for the runtime's I/O driver to see the end of stream, as it always has
        // after a real idle period; the assertion is on the outcome, not on this time.
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A POST is never resent; it succeeds only if it goes out on a new connection.
        let second = api
            .create_person(&person_named("Once", "Only"))
            .await
            .unwrap();
        assert_eq!(second.first_name, "Once");
        let log = log.lock().await.clone();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(
            log.iter().all(|l| l.starts_with("POST /v1/persons")),
            "{log:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_silent_server_times_out_on_the_lean_transport() {
    bounded(async {
        let (base, log, _closed) = scripted(Script::Silent).await;
        let api = client(&base, true, Duration::from_millis(300), None);
        api.authenticate().await.unwrap();
        let err = api
            .create_person(&person_named("Slow", "Server"))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(err.is_unavailable());
        assert_eq!(log.lock().await.len(), 1, "sent once");
    })
    .await;
}

#[tokio::test]
async fn a_server_gone_after_the_token_is_unreachable_on_the_lean_transport() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api = client(&base, true, Duration::from_secs(5), None);
        // Answer the token call on one connection, then stop listening.
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            drop(listener);
            let line = read_request(&mut sock).await.unwrap();
            assert!(line.contains("/oauth2/token"), "{line}");
            sock.write_all(TOKEN_REPLY.as_bytes()).await.unwrap();
            sock
        });
        api.authenticate().await.unwrap();
        let _held = server.await.unwrap();
        let err = api
            .create_person(&person_named("No", "One"))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
    })
    .await;
}
