//! The client's token handling and error reading, against a tiny scripted server.
#![allow(clippy::unwrap_used)] // test helpers: a failed setup should panic loudly

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use vphone::api::PersonId;
use vphone::client::{ApiClient, ClientConfig, ClientError, Credentials};

#[derive(Default)]
struct Counts {
    tokens: AtomicUsize,
    calls: AtomicUsize,
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn client(base: &str, secret: &str) -> ApiClient {
    let config = ClientConfig::local(base.parse().unwrap(), Credentials::new("p", secret))
        .with_timeout(Duration::from_secs(5));
    ApiClient::new(config).unwrap()
}

const PERSON: &str =
    r#"{"id":"0123456789abcdef0123456789abcdefcper","first_name":"A","last_name":"B"}"#;

/// Token `tN` is the N-th token issued; `/v1/persons/..` accepts only the newest.
fn scripted(counts: Arc<Counts>) -> Router {
    let c1 = counts.clone();
    let c2 = counts;
    Router::new()
        .route(
            "/oauth2/token",
            post(move |headers: HeaderMap| {
                let c = c1.clone();
                async move {
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                    // base64("p:good")
                    if auth != "Basic cDpnb29k" {
                        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client","error_description":"unknown client"}"#.to_owned());
                    }
                    let n = c.tokens.fetch_add(1, Ordering::SeqCst) + 1;
                    (StatusCode::OK, format!(r#"{{"access_token":"t{n}","token_type":"bearer","expires_in":3599}}"#))
                }
            }),
        )
        .route(
            "/v1/persons/{id}",
            get(move |headers: HeaderMap| {
                let c = c2.clone();
                async move {
                    c.calls.fetch_add(1, Ordering::SeqCst);
                    let newest = format!("Bearer t{}", c.tokens.load(Ordering::SeqCst));
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                    if auth == newest && c.tokens.load(Ordering::SeqCst) >= 2 {
                        (StatusCode::OK, PERSON.to_owned())
                    } else {
                        (StatusCode::UNAUTHORIZED, r#"{"errors":[{"status":401,"code":"invalid_token","title":"Invalid Token","detail":"token revoked"}]}"#.to_owned())
                    }
                }
            }),
        )
}

fn person_id() -> PersonId {
    PersonId::from_user("0123456789abcdef0123456789abcdefcper").unwrap()
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_call_retried() {
    let counts = Arc::new(Counts::default());
    let base = serve(scripted(counts.clone())).await;
    let api = client(&base, "good");
    let person = api.get_person(&person_id()).await.unwrap();
    assert_eq!(person.first_name, "A");
    assert_eq!(
        counts.tokens.load(Ordering::SeqCst),
        2,
        "one token, one refresh"
    );
    assert_eq!(
        counts.calls.load(Ordering::SeqCst),
        2,
        "one call, one retry"
    );
    // The refreshed token is cached: the next call needs no new token.
    api.get_person(&person_id()).await.unwrap();
    assert_eq!(counts.tokens.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_credentials_name_the_variables_to_check_and_hide_the_secret() {
    let base = serve(scripted(Arc::new(Counts::default()))).await;
    let api = client(&base, "wrong-secret-value");
    let err = api.get_person(&person_id()).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.code(), Some("invalid_client"));
    let text = err.to_string();
    assert!(text.contains("VPHONE_CLIENT_SECRET"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");
    assert!(!format!("{err:?}").contains("wrong-secret-value"));
}

#[tokio::test]
async fn a_closed_port_is_reported_as_unreachable_with_the_next_step() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let api = client(&format!("http://{addr}"), "good");
    let err = api.get_person(&person_id()).await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(err.to_string().contains("is the server running?"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_reported_with_the_operating_systems_reason() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = client(&format!("http://{addr}"), "good")
        .get_person(&person_id())
        .await
        .unwrap_err()
        .to_string();
    // "error sending request" alone does not tell a refused port from a DNS failure.
    assert!(err.to_lowercase().contains("refused"), "{err}");
    assert!(!err.contains("good"), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out_with_a_clear_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections and never answer.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let config = ClientConfig::local(
        format!("http://{addr}").parse().unwrap(),
        Credentials::new("p", "good"),
    )
    .with_timeout(Duration::from_millis(300));
    let err = ApiClient::new(config)
        .unwrap()
        .get_person(&person_id())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("did not answer within 300ms"),
        "{err}"
    );
}

#[tokio::test]
async fn any_2xx_with_or_without_a_body_is_success_and_plain_text_errors_are_read() {
    let app = Router::new()
        .route(
            "/oauth2/token",
            post(|| async { r#"{"access_token":"t","token_type":"Bearer"}"# }),
        )
        .route(
            "/v1/mfa/devices/{id}",
            axum::routing::delete(|| async { (StatusCode::OK, "{\"ignored\":true}") }),
        )
        .route(
            "/v1/mfa/challenges/sms/{id}",
            axum::routing::put(|| async { StatusCode::ACCEPTED }),
        )
        .route(
            "/v1/persons/{id}",
            get(|| async { (StatusCode::BAD_GATEWAY, "upstream down") }),
        );
    let base = serve(app).await;
    let api = client(&base, "any");
    let device = vphone::api::DeviceId::generate();
    api.delete_device(&device).await.unwrap();
    let answer = vphone::api::AnswerSmsChallenge {
        code: vphone::api::Otp::parse("123456").unwrap(),
    };
    api.answer_sms_challenge(&vphone::api::ChallengeId::generate(), &answer)
        .await
        .unwrap();
    let err = api.get_person(&person_id()).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("HTTP 502: upstream down") && text.contains("retry later"),
        "{text}"
    );
}

#[tokio::test]
async fn a_malformed_token_answer_is_reported_without_quoting_the_token_or_the_token_urls_query() {
    let app = Router::new().route(
        "/oauth2/token",
        post(|| async { r#"{"access_token":987654321,"token_type":"bearer"}"# }),
    );
    let base = serve(app).await;
    let mut config = ClientConfig::local(base.parse().unwrap(), Credentials::new("p", "good"));
    config.token_url = format!("{base}/oauth2/token?api_key=s3cr3t-query")
        .parse()
        .unwrap();
    let api = ApiClient::new(config).unwrap();
    assert!(!format!("{api:?}").contains("s3cr3t"), "{api:?}");
    let err = api.get_person(&person_id()).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("987654321"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("/oauth2/token"), "{shown}");
    }
}

#[tokio::test]
async fn a_server_without_an_sms_outbox_says_to_pick_another_otp_source() {
    use vphone::phone::{Inbox, InboxError, OtpSource, PhoneError};
    let app = Router::new().route(
        "/oauth2/token",
        post(|| async { r#"{"access_token":"t","token_type":"bearer"}"# }),
    );
    let api = client(&serve(app).await, "any");
    let inbox = Inbox::new(
        vphone::api::PhoneNumber::test_number(),
        OtpSource::SandboxHttp(api),
    );
    let err = inbox.marker().await.unwrap_err();
    assert!(
        matches!(err, InboxError::NoOutbox { status: 404, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("--otp prompt"), "{text}");
    // Not the 404 hint about device ids, which would send the user the wrong way.
    assert!(!text.contains("list devices"), "{text}");
    let err = PhoneError::Inbox {
        step: "bind: read inbox",
        source: err,
    };
    assert_eq!(err.exit_code(), 4);
}
