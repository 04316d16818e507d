//! `vphone serve`: many phones behind one HTTP control API, so test rigs in any language
//! (pytest, JUnit, Jest, curl) and a browser can drive them.
//!
//! - [`router`] builds the axum router from a [`ControlState`]; [`spawn`] serves it.
//! - One file per area: `phones` (create, list, show, forget, SMS), `flows` (bind, keys,
//!   approve, sign, SMS challenge, change, delete device), `push` (challenges pushed by a
//!   backend), `policy` (prompt, faults, pending approvals), `events` (SSE), `openapi`.
//!   Each adds its routes with [`Routes::add`], which also records them, so a test can
//!   compare the router with `/openapi.json`.
//! - `web`: the web phone at `/` (HTML, CSS, JS inside the binary), outside the API's table.
//! - Every error answers `{"error": {"message", "exit_code", "kind", "status"?, "code"?}}`
//!   ([`ControlError`]).
//! - Flows run on blocking threads: the emulated biometric prompt ([`policy::Prompt`]) may
//!   wait for a decision made through the API, and must not hold an async worker meanwhile.
//! - Nothing here logs or returns private keys, credentials or the bearer token; request
//!   logs carry method, route template, status and latency only.

pub mod cli;
pub mod error;
pub mod events;
mod flows;
mod openapi;
pub mod phones;
pub mod policy;
pub mod push;
mod sms;
mod toolkit;
pub mod web;

pub use error::ControlError;
pub use events::{Event, EventHub};
pub use phones::Phones;

use crate::client::ApiClient;
use crate::phone::{Home, OtpSource};
use crate::sandbox::SandboxState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vphone_keystore::Passphrase;
use zeroize::Zeroizing;

/// The bank the hosted phones talk to.
#[derive(Clone)]
pub struct Bank {
    /// The client every phone shares (one pool, one token).
    pub client: ApiClient,
    /// Where the phones read their SMS codes.
    pub source: OtpSource,
    /// The sandbox running in this process, when there is one (its SMS outbox feeds the
    /// phones' inboxes and `sms_received` events directly).
    pub embedded: Option<SandboxState>,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank")
            .field("api", &self.client.base_url())
            .field("source", &self.source)
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

/// What a control server is configured with.
pub struct ControlConfig {
    /// Where the phones' profiles live.
    pub home: Home,
    /// Seals the phones' files when set.
    pub passphrase: Option<Arc<Passphrase>>,
    /// The bank.
    pub bank: Bank,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<Zeroizing<String>>,
    /// How long a `manual` prompt waits for a decision before it counts as denied.
    pub approval_timeout: Duration,
    /// How long a flow waits for an SMS.
    pub otp_timeout: Duration,
    /// Events kept for resumption.
    pub event_buffer: usize,
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field("home", &self.home)
            .field("bank", &self.bank)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("approval_timeout", &self.approval_timeout)
            .finish_non_exhaustive()
    }
}

struct Inner {
    bank: Bank,
    phones: Phones,
    events: EventHub,
    token: Option<Zeroizing<String>>,
}

/// The control server's shared state.
#[derive(Clone)]
pub struct ControlState(Arc<Inner>);

impl std::fmt::Debug for ControlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlState")
            .field("bank", &self.0.bank)
            .finish_non_exhaustive()
    }
}

impl ControlState {
    /// A control state for `config`; hosts every phone already in the home directory.
    pub fn new(config: ControlConfig) -> ControlState {
        let events = EventHub::new(config.event_buffer);
        let phones = Phones::new(
            config.home,
            config.passphrase,
            config.bank.clone(),
            events.clone(),
            config.approval_timeout,
            config.otp_timeout,
        );
        ControlState(Arc::new(Inner {
            bank: config.bank,
            phones,
            events,
            token: config.token,
        }))
    }

    /// The hosted phones.
    pub fn phones(&self) -> &Phones {
        &self.0.phones
    }

    /// The event stream.
    pub fn events(&self) -> &EventHub {
        &self.0.events
    }

    /// The bank.
    pub fn bank(&self) -> &Bank {
        &self.0.bank
    }
}

/// A router under construction that remembers each (method, path) it was given.
pub struct Routes {
    router: Router<ControlState>,
    table: Vec<(Method, &'static str)>,
}

impl Routes {
    /// Adds `handler` for `method` on `path` (axum path syntax, e.g. `/phones/{name}`).
    pub fn add(
        mut self,
        method: Method,
        path: &'static str,
        handler: MethodRouter<ControlState>,
    ) -> Routes {
        self.table.push((method, path));
        self.router = self.router.route(path, handler);
        self
    }
}

fn all_routes() -> Routes {
    let routes = Routes {
        router: Router::new(),
        table: Vec::new(),
    };
    let routes = openapi::routes(routes);
    let routes = phones::routes(routes);
    let routes = flows::routes(routes);
    let routes = push::routes(routes);
    let routes = policy::routes(routes);
    let routes = toolkit::routes(routes);
    events::routes(routes)
}

/// Every (method, path) the router serves, for comparing with `/openapi.json`.
pub fn route_table() -> Vec<(Method, &'static str)> {
    all_routes().table
}

/// The control API's router.
pub fn router(state: ControlState) -> Router {
    all_routes()
        .router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_token))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
        // Added after the token layer: the page's files are public and stateless.
        .merge(web::router())
}

/// Refuses requests without the bearer token, when the server has one. Compares in
/// constant time, so timing does not reveal how much of a guess was right.
async fn check_token(State(state): State<ControlState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.0.token {
        let given = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::api::same_secret(given.as_bytes(), token.as_bytes()) {
            return ControlError::Unauthorized.into_response();
        }
    }
    next.run(req).await
}

/// One log line per request: method, route template, status, latency. Never bodies, query
/// strings or headers, so codes and tokens stay out of the log.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("<unmatched>", |m| m.as_str())
        .to_owned();
    let response = next.run(req).await;
    let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    tracing::info!(%method, route, status = response.status().as_u16(), latency_us, "control request");
    response
}

/// Runs `flow` to the end on a blocking thread: a flow may wait in the emulated prompt
/// (a blocking call), and it finishes even if the HTTP client hangs up, so the phone's
/// saved state always matches what the bank did.
pub async fn run_blocking<F>(flow: F) -> Result<F::Output, ControlError>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(flow))
        .await
        .map_err(|e| ControlError::Internal(format!("a phone flow's task failed: {e}")))
}

/// A running control server.
#[derive(Debug)]
pub struct ControlHandle {
    addr: SocketAddr,
    state: ControlState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    sms: Option<tokio::task::JoinHandle<()>>,
}

impl ControlHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its state.
    pub fn state(&self) -> &ControlState {
        &self.state
    }

    /// Stops accepting and waits (up to 5 s) for open requests to end.
    pub async fn shutdown(mut self) {
        if let Some(sms) = self.sms.take() {
            sms.abort();
        }
        self.state.phones().sms.stop();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Open event streams never end on their own; do not wait for them.
        match tokio::time::timeout(Duration::from_secs(5), &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "control server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "control server task failed"),
            Err(_) => self.task.abort(),
        }
    }
}

/// Serves `state` on `addr` in a background task, with the SMS watcher that turns the
/// embedded sandbox's SMS into `sms_received` events.
pub async fn spawn(state: ControlState, addr: SocketAddr) -> std::io::Result<ControlHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    // Subscribed before the first request is served: the watcher only listens (it never
    // reads the outbox), so an SMS sent before it subscribed would not be announced.
    let sms = state.phones().sms.start_embedded();
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(ControlHandle {
        addr,
        state,
        stop: Some(stop),
        task,
        sms,
    })
}
