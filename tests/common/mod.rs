//! Shared helpers: a real sandbox on 127.0.0.1:0 and phones talking to it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod child;
pub mod load;
pub mod raw_http;

use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use vphone::api::{PersonId, PhoneNumber};
use vphone::client::{ApiClient, ClientConfig, Credentials, Transcript};
use vphone::phone::{Home, OtpSource, Phone, PhoneName, person_named};
use vphone::sandbox::{self, SandboxConfig, SandboxHandle, SandboxState};

/// Every test finishes within this, or fails.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

/// Runs `f`, failing the test if it takes longer than [`TEST_LIMIT`].
pub async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("the test took longer than its time limit")
}

/// Which server a rig runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// The sandbox, answering as API.md documents.
    Sandbox,
    /// The variant bank: the same sandbox answering in other servers' shapes.
    Variant,
}

/// A sandbox (or the variant bank over one) and a client of it.
pub struct Rig {
    pub sandbox: SandboxHandle,
    pub client: ApiClient,
    pub server: Server,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::with_state(SandboxState::new(SandboxConfig::default())).await
    }

    /// A rig on `server`.
    pub async fn on(server: Server) -> Rig {
        let state = SandboxState::new(SandboxConfig::default());
        match server {
            Server::Sandbox => Rig::with_state(state).await,
            Server::Variant => {
                let sandbox = sandbox::variant::spawn_with(
                    state,
                    "127.0.0.1:0".parse().unwrap(),
                    sandbox::variant::VariantOptions::default(),
                )
                .await
                .unwrap();
                let client = client_for(&sandbox.base_url(), Credentials::sandbox_default());
                Rig {
                    sandbox,
                    client,
                    server,
                }
            }
        }
    }

    pub async fn with_state(state: SandboxState) -> Rig {
        let sandbox = sandbox::spawn_with(state, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = client_for(&sandbox.base_url(), Credentials::sandbox_default());
        Rig {
            sandbox,
            client,
            server: Server::Sandbox,
        }
    }

    pub fn base_url(&self) -> String {
        self.sandbox.base_url()
    }

    /// The `injected` count of every fault rule, in the config's order, read from
    /// `GET /sandbox/stats`.
    pub async fn injected(&self) -> Vec<u64> {
        let stats: serde_json::Value = self
            .client
            .http()
            .get(format!("{}/sandbox/stats", self.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        stats["faults"]
            .as_array()
            .unwrap_or_else(|| panic!("no faults in {stats}"))
            .iter()
            .map(|f| f["injected"].as_u64().unwrap())
            .collect()
    }

    /// A phone reading its SMS from the sandbox's outbox over HTTP.
    pub fn phone(&self, name: &str) -> Phone {
        Phone::new(
            PhoneName::parse(name).unwrap(),
            self.client.clone(),
            OtpSource::SandboxHttp(self.client.clone()),
        )
        .with_otp_timeout(Duration::from_secs(10))
    }

    /// A phone whose person exists and whose (fresh) number is verified.
    pub async fn registered(&self, name: &str) -> Phone {
        let mut phone = self.phone(name);
        phone
            .register(person_named("Test", name), unique_number())
            .await
            .unwrap();
        phone
    }

    /// A registered and bound phone.
    pub async fn bound(&self, name: &str) -> Phone {
        let mut phone = self.registered(name).await;
        phone.bind().await.unwrap();
        phone
    }

    /// A registered and bound phone whose profile is saved in `home`, reading its SMS from
    /// the sandbox's outbox over HTTP.
    pub async fn saved_bound(&self, home: &Home, name: &PhoneName) -> Phone {
        let source = OtpSource::SandboxHttp(self.client.clone());
        let mut phone =
            Phone::create(home, name.clone(), self.client.clone(), source, None).unwrap();
        phone
            .register(person_named("Test", &name.to_string()), unique_number())
            .await
            .unwrap();
        phone.bind().await.unwrap();
        phone
    }

    /// A second phone of the same person as `first`.
    pub fn sibling(&self, first: &Phone, name: &str) -> Phone {
        let mut phone = self.phone(name);
        let p = first.profile();
        phone
            .join_person(p.person_id.clone().unwrap(), p.number.clone().unwrap())
            .unwrap();
        phone
    }
}

/// A client of `base` with the sandbox's default partner, on the lean transport or reqwest,
/// with `timeout` and an optional transcript.
pub fn client_with(
    base: &str,
    lean: bool,
    timeout: Duration,
    transcript: Option<Arc<Transcript>>,
) -> ApiClient {
    let config = ClientConfig::local(base.parse().unwrap(), Credentials::sandbox_default())
        .with_timeout(timeout)
        .with_transcript(transcript)
        .with_lean_http(lean);
    ApiClient::new(config).unwrap()
}

pub fn client_for(base: &str, credentials: Credentials) -> ApiClient {
    let config = ClientConfig::local(base.parse().unwrap(), credentials)
        .with_timeout(Duration::from_secs(10));
    ApiClient::new(config).unwrap()
}

/// `vphone phone` in `home`, with none of the caller's credentials or passphrase in its
/// environment and at most 60 s to finish; no server named.
pub fn phone_cli_bare(home: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("vphone").unwrap();
    cmd.env_remove("VPHONE_CLIENT_ID")
        .env_remove("VPHONE_CLIENT_SECRET")
        .env_remove("VPHONE_CREDENTIALS")
        .env_remove("VPHONE_PASSPHRASE")
        .env_remove("VPHONE_PASSPHRASE_FILE")
        .env("VPHONE_HOME", home)
        .timeout(Duration::from_secs(60))
        .arg("phone");
    cmd
}

/// [`phone_cli_bare`] against the server at `api`.
pub fn phone_cli(home: &std::path::Path, api: &str) -> assert_cmd::Command {
    let mut cmd = phone_cli_bare(home);
    cmd.args(["--api", api]);
    cmd
}

/// A random number, so each test's SMS are its own.
pub fn unique_number() -> PhoneNumber {
    let n: u64 = rand::thread_rng().gen_range(0..10_000_000_000);
    PhoneNumber::parse(&format!("+4917{n:010}")).unwrap()
}

pub fn person_of(phone: &Phone) -> PersonId {
    phone.profile().person_id.clone().unwrap()
}

/// The in-process sandbox as an SMS feed.
pub fn feed(rig: &Rig) -> OtpSource {
    OtpSource::InProcess(Arc::new(rig.sandbox.state().clone()))
}

/// A port nothing listens on.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
