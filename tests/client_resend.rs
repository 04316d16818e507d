//! A pooled connection the server closes before answering: an idempotent request is sent
//! once more on a fresh connection; a POST is never blindly resent. The server is a real
//! HTTP/1.1 server on 127.0.0.1 that reads the request and hangs up instead of answering.
//! Each case runs on reqwest and on the lean transport.
#![allow(clippy::unwrap_used)]

mod common;

use common::raw_http::{TOKEN_REPLY, read_request};
use common::{bounded, client_with};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Mutex;
use vphone::api::{DeviceId, DeviceListQuery, PersonId};
use vphone::client::{ApiClient, Transcript};
use vphone::phone::person_named;

/// Every request line the server read, and whether it answered it.
type Log = Arc<Mutex<Vec<(String, bool)>>>;

/// A server that answers the token call, hangs up on the first `/v1` request it reads
/// (after reading all of it), and answers every later one: 204 for DELETE, `[]` for GET.
async fn hang_up_once_server() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        let hung_up = Arc::new(Mutex::new(false));
        // Bounded: a test makes a handful of connections.
        for _ in 0..16 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            let hung_up = hung_up.clone();
            tokio::spawn(async move {
                while let Some(line) = read_request(&mut sock).await {
                    let reply = if line.contains("/oauth2/token") {
                        TOKEN_REPLY.to_owned()
                    } else {
                        let mut first = hung_up.lock().await;
                        if !*first {
                            *first = true;
                            seen.lock().await.push((line, false));
                            // Close without a word, as a server dropping an idle connection.
                            return;
                        }
                        drop(first);
                        if line.starts_with("DELETE") {
                            "HTTP/1.1 204 No Content\r\n\r\n".to_owned()
                        } else {
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req-42\r\ncontent-length: 2\r\n\r\n[]".to_owned()
                        }
                    };
                    if !line.contains("/oauth2/token") {
                        seen.lock().await.push((line, true));
                    }
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (base, log)
}

/// A client on reqwest, or on the lean transport (`lean`), which must behave the same.
fn client(base: &str, transcript: Option<Arc<Transcript>>, lean: bool) -> ApiClient {
    client_with(base, lean, Duration::from_secs(10), transcript)
}

#[tokio::test]
async fn a_get_on_a_connection_the_server_closed_is_sent_once_more() {
    a_get_on_a_connection_the_server_closed_is_sent_once_more_on(false).await;
}

#[tokio::test]
async fn a_get_on_a_connection_the_server_closed_is_sent_once_more_on_the_lean_transport() {
    a_get_on_a_connection_the_server_closed_is_sent_once_more_on(true).await;
}

async fn a_get_on_a_connection_the_server_closed_is_sent_once_more_on(lean: bool) {
    bounded(async {
        let (base, log) = hang_up_once_server().await;
        let transcript = Arc::new(Transcript::in_memory());
        let client = client(&base, Some(transcript.clone()), lean);
        // The token call opens the connection the GET then reuses.
        client.authenticate().await.unwrap();
        let query = DeviceListQuery {
            person_id: Some(PersonId::from_user("p1").unwrap()),
            ..DeviceListQuery::default()
        };
        let devices = client.list_devices(&query).await.unwrap();
        assert!(devices.is_empty());
        let log = log.lock().await.clone();
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log[0].0.starts_with("GET /v1/mfa/devices") && !log[0].1);
        assert!(log[1].0.starts_with("GET /v1/mfa/devices") && log[1].1);
        // The transcript shows both tries: the one that got no answer, and the answer.
        let calls: Vec<(String, Option<u16>)> = transcript
            .exchanges()
            .iter()
            .map(|e| (e.call(), e.status))
            .collect();
        assert_eq!(
            calls,
            vec![
                ("POST /oauth2/token".to_owned(), Some(200)),
                ("GET /v1/mfa/devices".to_owned(), None),
                ("GET /v1/mfa/devices".to_owned(), Some(200)),
            ]
        );
        assert_eq!(
            transcript.exchanges()[2].request_id.as_deref(),
            Some("req-42")
        );
    })
    .await;
}

#[tokio::test]
async fn a_delete_on_a_connection_the_server_closed_is_sent_once_more() {
    a_delete_on_a_connection_the_server_closed_is_sent_once_more_on(false).await;
}

#[tokio::test]
async fn a_delete_on_a_connection_the_server_closed_is_sent_once_more_on_the_lean_transport() {
    a_delete_on_a_connection_the_server_closed_is_sent_once_more_on(true).await;
}

async fn a_delete_on_a_connection_the_server_closed_is_sent_once_more_on(lean: bool) {
    bounded(async {
        let (base, log) = hang_up_once_server().await;
        let client = client(&base, None, lean);
        client.authenticate().await.unwrap();
        client
            .delete_device(&DeviceId::from_user("d1").unwrap())
            .await
            .unwrap();
        let log = log.lock().await.clone();
        let answered: Vec<bool> = log.iter().map(|(_, answered)| *answered).collect();
        assert_eq!(answered, vec![false, true], "{log:?}");
    })
    .await;
}

#[tokio::test]
async fn a_post_on_a_connection_the_server_closed_is_not_resent() {
    a_post_on_a_connection_the_server_closed_is_not_resent_on(false).await;
}

#[tokio::test]
async fn a_post_on_a_connection_the_server_closed_is_not_resent_on_the_lean_transport() {
    a_post_on_a_connection_the_server_closed_is_not_resent_on(true).await;
}

async fn a_post_on_a_connection_the_server_closed_is_not_resent_on(lean: bool) {
    bounded(async {
        let (base, log) = hang_up_once_server().await;
        let client = client(&base, None, lean);
        client.authenticate().await.unwrap();
        let err = client
            .create_person(&person_named("Once", "Only"))
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
        let log = log.lock().await.clone();
        assert_eq!(log.len(), 1, "the POST was sent again: {log:?}");
        assert!(log[0].0.starts_with("POST /v1/persons"));
    })
    .await;
}
