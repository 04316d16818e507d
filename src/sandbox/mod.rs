//! The sandbox: a strict local emulation of the Solaris device-management API (see
//! `API.md`), for phones, test rigs, load runs and demos.
//!
//! - [`router`] builds the axum router from a [`SandboxState`]; [`spawn`] serves it on
//!   `127.0.0.1:0` and returns a [`SandboxHandle`].
//! - Without a config file the sandbox has one partner: client id **`vphone-demo`**, secret
//!   **`vphone-demo-secret`** ([`config::DEFAULT_CLIENT_ID`], [`config::DEFAULT_CLIENT_SECRET`]).
//! - Every OTP goes to the receiving number's SMS outbox, read with
//!   `GET /sandbox/sms?number=...&after=<seq>&wait_ms=<ms>` or [`SandboxState::subscribe_sms`].
//!   The test number `+15550101` always gets `212212`; `static_otp` makes every OTP `212212`.
//! - Every refusal answers in the `errors` shape with a specific `code`. A refused request
//!   changes nothing, except that a wrong answer to a challenge counts as a failed attempt.
//! - Finished challenges and change requests (completed, spent or expired) answer as before
//!   for [`SandboxConfig::retention`] (15 minutes), then a background sweep forgets them, with
//!   the unverified device of a forgotten binding; their ids answer 404 `not_found` from then
//!   on. Long load runs stay within bounded memory; [`SandboxStats`] counts what is held.
//! - [`serve`](mod@serve) is its own accept loop: header, idle and body timeouts, a connection cap that
//!   makes idle clients give way, accept-error backoff. One-time codes are rate-limited per
//!   person and tokens per partner ([`ratelimit`]); free text is checked by [`text`].
//! - State lives in sharded maps with one small lock per entity; signatures are verified with
//!   aws-lc-rs against keys parsed once when registered.
//! - [`variant::spawn`] serves the same sandbox behind a layer that answers in the shapes
//!   other servers use (the variant bank), to test the phone's tolerance.

mod auth;
mod challenges;
mod change_requests;
pub mod cli;
pub use crate::clock;
pub mod config;
pub mod core;
mod devices;
pub mod error;
pub mod faults;
pub mod openapi;
mod outbox;
mod persons;
pub mod ratelimit;
pub mod serve;
mod settle;
pub mod sms;
mod state;
pub mod store;
#[cfg(test)]
mod store_order_test;
#[cfg(test)]
mod test_binding;
pub mod text;
#[cfg(test)]
mod unlocked_verify_test;
pub mod variant;
pub mod verify;

/// The life of anything answerable (moved into the core; kept at its old path).
pub use self::core::attempts;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ConfigError, PartnerConfig, SandboxConfig};
pub use error::ApiError;
pub use serve::ConnectionStats;
pub use state::{ChallengeRecord, SandboxState, SandboxStats, Swept};

use crate::api::SmsMessage;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::{broadcast, oneshot};

/// The sandbox's routes: the token endpoints, every `/v1` call of `API.md`, and `/sandbox/*`.
pub fn router(state: SandboxState) -> Router {
    let v1 = Router::new()
        .route("/v1/persons", post(persons::create))
        .route(
            "/v1/persons/{person_id}",
            get(persons::get).patch(persons::update),
        )
        .route(
            "/v1/persons/{person_id}/mobile_number",
            post(persons::add_mobile)
                .get(persons::get_mobile)
                .delete(persons::delete_mobile),
        )
        .route(
            "/v1/persons/{person_id}/mobile_number/authorize",
            post(persons::authorize_mobile),
        )
        .route(
            "/v1/persons/{person_id}/mobile_number/confirm",
            post(persons::confirm_mobile),
        )
        .route("/v1/mfa/devices", post(devices::create).get(devices::list))
        .route(
            "/v1/mfa/devices/{device_id}",
            get(devices::get).delete(devices::delete),
        )
        .route(
            "/v1/mfa/devices/{device_id}/keys",
            post(devices::add_key).get(devices::list_keys),
        )
        .route(
            "/v1/mfa/devices/{device_id}/keys/{key_id}",
            get(devices::get_key),
        )
        .route(
            "/v1/mfa/challenges/signatures/{challenge_id}",
            get(devices::get_signature_challenge).put(devices::answer_signature_challenge),
        )
        .route(
            "/v1/mfa/challenges/devices",
            post(challenges::create_device),
        )
        .route(
            "/v1/mfa/challenges/devices/{challenge_id}",
            get(challenges::get_device).put(challenges::answer_device),
        )
        .route("/v1/mfa/challenges/sms", post(challenges::create_sms))
        .route(
            "/v1/mfa/challenges/sms/{challenge_id}",
            get(challenges::get_sms).put(challenges::answer_sms),
        )
        .route(
            "/v1/change_requests/{change_request_id}",
            get(change_requests::get),
        )
        .route(
            "/v1/change_requests/{change_request_id}/authorize",
            post(change_requests::authorize),
        )
        .route(
            "/v1/change_requests/{change_request_id}/confirm",
            post(change_requests::confirm),
        );
    let routes = Router::new()
        .merge(v1)
        .route("/oauth2/token", post(auth::token))
        .route("/oauth/token", post(auth::token))
        .route("/sandbox/sms", get(outbox::sms))
        .route("/sandbox/health", get(outbox::health))
        .route("/sandbox/stats", get(outbox::stats))
        .route("/sandbox/openapi.json", get(openapi::document))
        .route(
            "/sandbox/faults",
            get(faults::admin::get)
                .put(faults::admin::put)
                .delete(faults::admin::delete),
        )
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    routes
        .layer(middleware::from_fn_with_state(state.clone(), way_in))
        .with_state(state)
}

/// Every request's way in, as one layer: its log line ([`log_request`]), the head's limits
/// ([`serve::check_head`]), injected faults ([`faults::inject`]), then the wait for what it
/// changed to be committed ([`settle::settle`]). One layer, not four: axum boxes each
/// layer's future and clones the services under it on every request. With four, a binding
/// made 192 allocations in the process (fleet and sandbox); with one, 152.
async fn way_in(State(state): State<SandboxState>, req: Request, next: Next) -> Response {
    log_request(&state, req, |req| {
        serve::check_head(req, |req| {
            faults::inject(&state, req, |req| settle::settle(&state, req, next))
        })
    })
    .await
}

/// The request id's header: a constant, so answering with it copies no name.
const REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// One log line per request: id, method, route template, status, code, latency. Never bodies,
/// headers or query strings, so OTPs, keys and tokens stay out of the log.
async fn log_request<F, Fut>(state: &SandboxState, req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let start = Instant::now();
    state.0.counters.requests.fetch_add(1, Ordering::Relaxed);
    // The caller's id if it is a sane one (a cheap copy of the header), else a fresh UUID
    // from the thread's generator (`Uuid::new_v4` would ask the kernel each time).
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.as_bytes()
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .cloned()
        .unwrap_or_else(|| {
            let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
            let mut buf = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(id.hyphenated().encode_lower(&mut buf))
                .expect("a UUID is a valid header value")
        });
    let method = req.method().clone();
    // A shared string inside: cloning it allocates nothing.
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("<unmatched>", |m| m.as_str());
    let mut response = next(req).await;
    let status = response.status();
    let code = response
        .extensions()
        .get::<error::LoggedCode>()
        .map_or("", |c| c.0.as_str());
    let fault = response
        .extensions()
        .get::<faults::InjectedFault>()
        .map(|f| f.0.clone());
    let latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    // Checked above: ASCII letters, digits, `-` and `_` only.
    let shown = request_id.to_str().unwrap_or("");
    if let Some(fault) = fault {
        let status = if response
            .extensions()
            .get::<faults::DropConnection>()
            .is_some()
        {
            "dropped".to_owned()
        } else {
            status.as_u16().to_string()
        };
        tracing::warn!(request_id = %shown, %method, route, status, code, latency_us, fault, "request (fault injected)");
    } else if status.is_server_error() {
        tracing::error!(request_id = %shown, %method, route, status = status.as_u16(), code, latency_us, "request");
    } else {
        tracing::info!(request_id = %shown, %method, route, status = status.as_u16(), code, latency_us, "request");
    }
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

/// A running sandbox server.
#[derive(Debug)]
pub struct SandboxHandle {
    state: SandboxState,
    server: Server,
    /// Its first listener, the one it started on.
    listening: Listening,
    sweeper: tokio::task::JoinHandle<()>,
    sms_pump: tokio::task::JoinHandle<()>,
}

impl SandboxHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// `http://IP:PORT`, the base URL for clients.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Its state (SMS outbox, counters, clock).
    pub fn state(&self) -> &SandboxState {
        &self.state
    }

    /// What serves its API, to serve the same sandbox on more listeners.
    pub fn server(&self) -> Server {
        self.server.clone()
    }

    /// Every SMS delivered from now on.
    pub fn subscribe_sms(&self) -> broadcast::Receiver<SmsMessage> {
        self.state.subscribe_sms()
    }

    /// Stops accepting, lets open requests finish, and waits for the server to end.
    pub async fn shutdown(self) {
        self.sweeper.abort();
        self.sms_pump.abort();
        // Open long-polls may take up to a minute to end on their own; do not wait for them.
        self.listening.stop(std::time::Duration::from_secs(5)).await;
    }
}

/// A running sandbox's API (its routes, limits and state), to serve on more listeners than
/// the one it started on. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Server {
    app: Router,
    state: SandboxState,
}

impl Server {
    /// Serves the same sandbox on a new listener on `127.0.0.1:0` (see [`Server::serve_on`]).
    pub async fn listen_here(&self) -> std::io::Result<Listening> {
        self.serve_on(Server::bind_local()?)
    }

    /// A listener on `127.0.0.1:0` for [`Server::serve_on`], bound now (on any thread).
    pub fn bind_local() -> std::io::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    }

    /// Serves the same sandbox (its state, routes and limits) on `listener` as well, from
    /// a task of the runtime this is called on, until the [`Listening`] it returns is
    /// stopped or dropped. On a single-threaded runtime, clients on that runtime then have
    /// their requests answered on their own thread: the fleet gives each of its threads a
    /// listener this way (see [`crate::fleet::Threads::WithSandbox`]).
    ///
    /// All its listeners share the sandbox's one connection cap (`max_connections`, or the
    /// default from the open-files limit): at the cap, the longest-idle connection of any of
    /// them gives way. `/sandbox/stats` counts the connections of all of them. `listener`
    /// must be non-blocking ([`Server::bind_local`] makes it so).
    pub fn serve_on(&self, listener: std::net::TcpListener) -> std::io::Result<Listening> {
        self.serve(tokio::net::TcpListener::from_std(listener)?)
    }

    /// Serves on `listener` from a task of the current runtime.
    fn serve(&self, listener: tokio::net::TcpListener) -> std::io::Result<Listening> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::run(
            listener,
            self.app.clone(),
            self.state.clone(),
            stopped,
        ));
        Ok(Listening {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// A listener [`Server::serve_on`] serves. [`Listening::stop`] stops accepting and waits
/// for its connections to end; dropping it only asks them to close, which they do while
/// their runtime runs (a runtime that ends drops them, and the sandbox's counts with them).
#[derive(Debug)]
#[must_use = "dropping a Listening stops it at once"]
pub struct Listening {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Listening {
    /// Tells its accept loop to stop (once; later calls do nothing).
    fn ask_to_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits, at most `limit`, until every connection it accepted has
    /// ended (idle ones close at once, busy ones once answered); then gives up on them.
    pub async fn stop(mut self, limit: std::time::Duration) {
        self.ask_to_stop();
        match tokio::time::timeout(limit, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "sandbox server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "sandbox server task failed"),
            Err(_) => self.task.abort(),
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.ask_to_stop();
    }
}

/// Serves a fresh sandbox with `config` on `127.0.0.1:0`.
pub async fn spawn(config: SandboxConfig) -> std::io::Result<SandboxHandle> {
    spawn_with(
        SandboxState::new(config),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
}

/// Serves `state` on `addr` in a background task, with a background sweep that forgets what
/// outlived the retention window ([`SandboxState::start_sweeper`]).
pub async fn spawn_with(state: SandboxState, addr: SocketAddr) -> std::io::Result<SandboxHandle> {
    let app = router(state.clone());
    serve(state, addr, app).await
}

/// Serves `app`, a layer over [`router`]`(state)` (a test's middleware, say), on `addr` with
/// the sandbox's own accept loop: a response marked [`faults::DropConnection`] closes its
/// connection unanswered, the way a lost answer looks to a client.
pub async fn spawn_router(
    state: SandboxState,
    addr: SocketAddr,
    app: Router,
) -> std::io::Result<SandboxHandle> {
    serve(state, addr, app).await
}

/// Serves `app` (the sandbox's router, or a layer over it such as [`variant`]) on `addr`,
/// with the background sweep of `state`.
async fn serve(
    state: SandboxState,
    addr: SocketAddr,
    app: Router,
) -> std::io::Result<SandboxHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let server = Server {
        app,
        state: state.clone(),
    };
    let listening = server.serve(listener)?;
    let sweeper = state.start_sweeper();
    let sms_pump = state.start_sms_pump();
    Ok(SandboxHandle {
        state,
        server,
        listening,
        sweeper,
        sms_pump,
    })
}
