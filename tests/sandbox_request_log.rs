//! The sandbox's request log: each request's line names its route and status and carries no
//! secret. In a test binary of its own: a thread-scoped tracing subscriber misses call sites
//! whose interest other test threads (running without one) cached at the same moment, which
//! made this test fail about one run in eight while it shared `sandbox_routes`' binary.
#![allow(clippy::unwrap_used)]

mod sandbox_common;

use sandbox_common::Bank;

#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn request_logs_carry_routes_and_statuses_but_no_secrets() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let bank = Bank::start().await;
    let (person, number) = bank.verified_person().await;
    let phone = bank.bind(&person, &number).await;
    let otp = bank.last_otp(&number).await;
    // A request's log line is written once its answer went out, so the client can see the
    // answer before the line exists: wait for it (bounded) rather than read too early.
    let route = "route=\"/v1/mfa/challenges/signatures/{challenge_id}\"";
    let read = || String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    for _ in 0..500 {
        if read().contains(route) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let text = read();
    assert!(text.contains(route), "{text}");
    assert!(text.contains("status=204"));
    for secret in [
        otp.as_str(),
        bank.token.as_str(),
        &phone.key.public_hex(),
        "vphone-demo-secret",
    ] {
        assert!(!text.contains(secret), "a secret leaked into the log");
    }
}
