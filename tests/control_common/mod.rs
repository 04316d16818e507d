//! Shared helpers of the control-API tests: a real sandbox and a real control server on
//! 127.0.0.1:0, an HTTP client, and "the backend" (a direct client of the sandbox).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use vphone::api::{ChallengeId, CreateDeviceChallenge, DeviceId, KeyPurpose};
use vphone::client::{ApiClient, ClientConfig, Credentials, RetryPolicy};
use vphone::control::{Bank, ControlConfig, ControlHandle, ControlState};
use vphone::phone::{Home, OtpSource};
use vphone::sandbox::faults::FaultRule;
use vphone::sandbox::{self, ChallengeRecord, SandboxConfig, SandboxHandle, SandboxState};
use zeroize::Zeroizing;

/// Every test finishes within this, or fails.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs `f`, failing the test if it takes longer than [`TEST_LIMIT`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the test took longer than its time limit")
}

/// A sandbox, a control server driving it, and a client of each.
pub struct Rig {
    pub sandbox: SandboxHandle,
    pub control: ControlHandle,
    /// "The backend": a partner client of the sandbox.
    pub backend: ApiClient,
    pub http: reqwest::Client,
    pub home: tempfile::TempDir,
    token: Option<String>,
}

/// Options of a rig.
#[derive(Default)]
pub struct RigOptions {
    pub token: Option<String>,
    pub event_buffer: Option<usize>,
    /// Fault rules of the sandbox; with any, the phones send every request once (no
    /// retries), so each fault reaches them.
    pub faults: Vec<&'static str>,
    /// Serve the bank as the variant bank (other servers' shapes, ids of 70-80 characters).
    pub variant: bool,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::with(RigOptions::default()).await
    }

    pub async fn with(options: RigOptions) -> Rig {
        let state = SandboxState::new(SandboxConfig {
            faults: options
                .faults
                .iter()
                .map(|r| FaultRule::parse(r).unwrap())
                .collect(),
            ..SandboxConfig::default()
        });
        let addr = "127.0.0.1:0".parse().unwrap();
        let sandbox = if options.variant {
            let options = sandbox::variant::VariantOptions::default();
            sandbox::variant::spawn_with(state.clone(), addr, options).await
        } else {
            sandbox::spawn_with(state.clone(), addr).await
        }
        .unwrap();
        let config = ClientConfig::local(
            sandbox.base_url().parse().unwrap(),
            Credentials::sandbox_default(),
        )
        .with_timeout(Duration::from_secs(10));
        let config = if options.faults.is_empty() {
            config
        } else {
            config.with_retry(RetryPolicy::none())
        };
        let backend = ApiClient::new(config).unwrap();
        let home = tempfile::tempdir().unwrap();
        let control = ControlState::new(ControlConfig {
            home: Home::new(home.path()),
            passphrase: None,
            bank: Bank {
                client: backend.clone(),
                source: OtpSource::InProcess(Arc::new(state.clone())),
                embedded: Some(state),
            },
            token: options.token.clone().map(Zeroizing::new),
            approval_timeout: Duration::from_secs(30),
            otp_timeout: Duration::from_secs(10),
            event_buffer: options.event_buffer.unwrap_or(4096),
        });
        let control = vphone::control::spawn(control, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Rig {
            sandbox,
            control,
            backend,
            http,
            home,
            token: options.token,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.control.base_url())
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `method path` with an optional JSON body; returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.auth(self.http.request(method, self.url(path)));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} non-JSON ({e}): {text}"));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let (status, out) = self.call("POST", path, Some(body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {out}");
        out
    }

    /// Sets the policy of phone `name`.
    pub async fn put_policy(&self, name: &str, policy: Value) -> Value {
        let (status, out) = self
            .call("PUT", &format!("/phones/{name}/policy"), Some(policy))
            .await;
        assert_eq!(status, 200, "{out}");
        out
    }

    /// A phone created over the API (new person, fresh number verified by SMS).
    pub async fn created(&self, name: &str) -> Value {
        let (status, body) = self
            .call("POST", "/phones", Some(json!({"name": name})))
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    /// A phone created and bound over the API; returns its device id.
    pub async fn bound(&self, name: &str) -> DeviceId {
        self.created(name).await;
        let out = self.post(&format!("/phones/{name}/bind"), json!({})).await;
        DeviceId::from_server(out["device_id"].as_str().unwrap()).unwrap()
    }

    /// "The backend" creates a device-signing challenge for `device` directly at the bank.
    pub async fn backend_challenge(
        &self,
        device: &DeviceId,
        purpose: Option<KeyPurpose>,
    ) -> ChallengeId {
        let req = CreateDeviceChallenge {
            device_id: device.clone(),
            key_purpose: purpose,
            device_data: None,
        };
        self.backend.create_device_challenge(&req).await.unwrap().id
    }

    /// What the bank recorded about `challenge`.
    pub fn bank_record(&self, challenge: &ChallengeId) -> ChallengeRecord {
        self.sandbox.state().challenge_status(challenge).unwrap()
    }

    /// Pushes `challenge` to phone `name` and waits until the phone is done with it.
    pub async fn push_and_wait(&self, name: &str, challenge: &ChallengeId) -> Value {
        let pushed = self
            .call(
                "POST",
                &format!("/phones/{name}/push"),
                Some(json!({"challenge_id": challenge})),
            )
            .await;
        assert_eq!(pushed.0, 202, "{}", pushed.1);
        self.wait_push(name, pushed.1["id"].as_u64().unwrap()).await
    }

    /// Waits (long-poll, bounded) until push `id` of phone `name` is done.
    pub async fn wait_push(&self, name: &str, id: u64) -> Value {
        for _ in 0..10 {
            let push = self
                .get(&format!("/phones/{name}/pushes/{id}?wait_ms=5000"))
                .await;
            if push["state"] == "done" {
                return push;
            }
        }
        panic!("push {id} of {name} did not finish");
    }

    /// Waits (long-poll, bounded) for the first pending approval of phone `name`.
    pub async fn pending_approval(&self, name: &str) -> Value {
        for _ in 0..10 {
            let list = self
                .get(&format!("/phones/{name}/approvals?wait_ms=5000"))
                .await;
            if let Some(first) = list.as_array().and_then(|l| l.first()) {
                return first.clone();
            }
        }
        panic!("no approval became pending on {name}");
    }

    /// Events after `after`, as JSON (long-poll until at least one, bounded).
    pub async fn events_after(&self, path: &str, after: u64) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let resp = self
            .auth(
                self.http
                    .get(self.url(&format!("{path}{sep}after={after}&wait_ms=5000")))
                    .header("accept", "application/json"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<Vec<Value>>().await.unwrap()
    }

    /// Every event so far (bounded: the buffer is finite).
    pub async fn all_events(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let last = self.get("/info").await["last_event_seq"].as_u64().unwrap();
        let mut after = 0;
        while after < last {
            let page = self.events_after("/events", after).await;
            after = page.last().and_then(|e| e["seq"].as_u64()).unwrap_or(last);
            out.extend(page);
        }
        out
    }
}

/// Types of `events`, in order.
pub fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// The challenge id of a JSON value.
pub fn challenge_of(v: &Value) -> ChallengeId {
    ChallengeId::from_server(v.as_str().unwrap()).unwrap()
}

/// One parsed Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: Option<u64>,
    pub event: Option<String>,
    pub data: Value,
}

/// Reads `n` events from an SSE response (bounded by the test limit of the caller).
pub async fn read_sse(resp: &mut reqwest::Response, n: usize) -> Vec<Sse> {
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = resp.chunk().await.unwrap().expect("the stream ended early");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut sse = Sse {
                id: None,
                event: None,
                data: Value::Null,
            };
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    sse.id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("event:") {
                    sse.event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            // Keep-alive comments carry no data.
            if !data.is_empty() {
                sse.data = serde_json::from_str(&data).unwrap();
                out.push(sse);
            }
        }
    }
    out.truncate(n);
    out
}
