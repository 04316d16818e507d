//! The lean HTTP/1.1 transport (`ClientConfig::with_lean_http`) against the real sandbox and
//! against small scripted servers on 127.0.0.1: the same answers, errors and transcript as
//! reqwest, idle connections the server closed are replaced, and failures keep their
//! variants.
#![allow(clippy::unwrap_used)]

mod common;

use common::raw_http::{TOKEN_REPLY, read_request};
use common::{bounded, client_with as client};
use std::net::SocketAddr;
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
        let unknown =
            vphone::api::PersonId::from_user("0123456789abcdef0123456789abcdefcper").unwrap();
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
/// `script`; it logs each `/v1` request line and sends on `closed` the client's address of
/// each connection it closed.
async fn scripted(script: Script) -> (String, Arc<Mutex<Vec<String>>>, mpsc::Receiver<SocketAddr>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = log.clone();
    let (closed_tx, closed) = mpsc::channel(16);
    tokio::spawn(async move {
        // Bounded: a test makes a handful of connections.
        for _ in 0..16 {
            let Ok((mut sock, peer)) = listener.accept().await else {
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
                            let _ = closed_tx.send(peer).await;
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

/// Waits (bounded) until the server's FIN reached the client's end of connection `client`
/// (its local address): the kernel no longer lists that socket as ESTABLISHED (it is in
/// CLOSE_WAIT, or the client already closed it too). Then lets this thread's runtime poll its
/// I/O driver once more, so the connection's readiness records the end of stream.
async fn until_the_client_saw_the_close(client: SocketAddr) {
    // /proc/net/tcp: `sl local_address rem_address st ...`, addresses as hex `IP:PORT`,
    // state 01 = ESTABLISHED.
    let port = format!(":{:04X}", client.port());
    for _ in 0..500 {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux)");
        let established = table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&port) && fields[3] == "01"
        });
        if !established {
            // Sleeping parks the runtime, which polls the I/O driver.
            tokio::time::sleep(Duration::from_millis(1)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the client's connection from {client} never saw the server close it");
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
        let peer = closed.recv().await.unwrap();
        // As after a real idle period: the server's end of stream has reached the client's
        // socket, and the runtime's I/O driver has seen it.
        until_the_client_saw_the_close(peer).await;
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

/// One sandbox served on a second listener ([`vphone::sandbox::Server::listen_here`]), and a
/// lean client connecting there ([`vphone::client::ApiClient::connecting_to`]): the request
/// keeps the base URL's `Host` and path and carries the token, the second listener answers
/// from the same state, and once dropped it accepts no more connections.
#[tokio::test]
async fn a_client_connecting_to_a_second_listener_reaches_the_same_sandbox() {
    bounded(async {
        let sandbox = spawn(SandboxConfig::default()).await.unwrap();
        let main = client(&sandbox.base_url(), true, Duration::from_secs(10), None);
        let person = main
            .create_person(&person_named("Two", "Doors"))
            .await
            .unwrap();

        // What the client sends: the head as a raw listener reads it.
        let raw = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let raw_addr = raw.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut sock, _) = raw.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_eq!(
                    sock.read(&mut byte).await.unwrap(),
                    1,
                    "the head ended early"
                );
                head.push(byte[0]);
            }
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(head).unwrap().to_ascii_lowercase()
        });
        let elsewhere = main.connecting_to(raw_addr).unwrap();
        elsewhere.get_discard("/sandbox/health").await.unwrap();
        let head = reader.await.unwrap();
        assert!(
            head.starts_with("get /sandbox/health http/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nhost: {}\r\n", sandbox.addr())),
            "{head}"
        );
        assert!(head.contains("\r\nauthorization: bearer "), "{head}");

        // The sandbox on a second listener: the same persons.
        let listening = sandbox.server().listen_here().await.unwrap();
        assert_ne!(listening.addr(), sandbox.addr());
        let second = main.connecting_to(listening.addr()).unwrap();
        assert_eq!(second.get_person(&person.id).await.unwrap().id, person.id);
        let addr = listening.addr();
        drop(listening);
        let mut refused = false;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the dropped listener still accepts connections");

        // reqwest connects where the URL says: no such client.
        let with_reqwest = client(&sandbox.base_url(), false, Duration::from_secs(10), None);
        assert!(with_reqwest.connecting_to(addr).is_none());
        sandbox.shutdown().await;
    })
    .await;
}
