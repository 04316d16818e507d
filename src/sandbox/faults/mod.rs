//! Faults on demand: rules ([`FaultRule`]) that delay, refuse or drop requests the way real
//! banks and networks do, reproducibly from a seed.
//!
//! - Rules are tried in order on every request outside `/sandbox/*`. Every firing latency
//!   rule adds its delay; the first firing status or drop rule decides the request's fate
//!   and ends the search.
//! - Every decision that needs chance (a probability, a uniform latency) draws from one
//!   SplitMix64 generator seeded with [`SandboxConfig::faults_seed`]
//!   (super::SandboxConfig::faults_seed): the same seed and the same order of requests give
//!   the same faults, on every platform and version. Concurrent requests reach the generator
//!   in whatever order they arrive, so replay a failing run with one request at a time.
//! - `drop_before` and `drop_after` answer with a response that carries [`DropConnection`];
//!   the connection task ([`super::serve`]) closes the connection instead of writing it.
//! - `/sandbox/stats` lists every rule with the number of faults it injected; the request log
//!   marks each injected fault with `fault = "<rule>"`.

mod rule;

pub use rule::{FaultAction, FaultRule, FaultWhen, RuleError};

use super::error::ApiError;
use super::state::SandboxState;
use crate::api::ErrorCode;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Marks a response whose connection must be closed without writing it.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// Marks a response (or a dropped request) with the rule that injected a fault, for the log.
#[derive(Debug, Clone)]
pub struct InjectedFault(pub String);

/// One rule and how many faults it injected, as `/sandbox/stats` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultCount {
    /// The rule's canonical text.
    pub rule: String,
    /// Faults it injected so far.
    pub injected: u64,
}

/// What the rules decided for one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Sum of the delays of the latency rules that fired.
    pub delay: Duration,
    /// The status or drop action that fired, with its rule's index.
    pub fate: Option<(usize, FaultAction)>,
    /// Indexes of the rules that fired, in order.
    pub fired: Vec<usize>,
}

/// SplitMix64: tiny, fast, and its sequence is fixed by its definition, so a seed replays
/// the same faults whatever version of `rand` is in use.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The rules in force, their counters and the seeded generator.
#[derive(Debug)]
pub struct FaultEngine {
    rules: Vec<FaultRule>,
    /// Requests each rule matched (for `every` and `next`).
    matched: Vec<AtomicU64>,
    /// Faults each rule injected.
    injected: Vec<AtomicU64>,
    rng: Mutex<SplitMix64>,
    seed: u64,
}

impl FaultEngine {
    /// An engine with `rules`, drawing from `seed`.
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        let zeros = || rules.iter().map(|_| AtomicU64::new(0)).collect();
        FaultEngine {
            matched: zeros(),
            injected: zeros(),
            rules,
            rng: Mutex::new(SplitMix64(seed)),
            seed,
        }
    }

    /// The seed it draws from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether there is any rule at all (without, requests skip the engine).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides what happens to a request; `partner` is the caller's client id, if known.
    /// Counts what fires.
    pub fn decide(&self, method: &Method, path: &str, partner: Option<&str>) -> Decision {
        let mut decision = Decision::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches(method, path) {
                continue;
            }
            if let Some(wanted) = &rule.partner
                && partner != Some(wanted.as_str())
            {
                continue;
            }
            let n = self.matched[i].fetch_add(1, Ordering::Relaxed) + 1;
            let fires = match rule.when {
                FaultWhen::Always => true,
                FaultWhen::Probability(p) => self.rng.lock().next_f64() < p,
                FaultWhen::EveryNth(every) => n.is_multiple_of(every),
                FaultWhen::NextN(count) => n <= count,
            };
            if !fires {
                continue;
            }
            self.injected[i].fetch_add(1, Ordering::Relaxed);
            decision.fired.push(i);
            match &rule.action {
                FaultAction::Latency { min, max } => {
                    let span = max.saturating_sub(*min);
                    let extra = if span.is_zero() {
                        Duration::ZERO
                    } else {
                        span.mul_f64(self.rng.lock().next_f64())
                    };
                    decision.delay += *min + extra;
                }
                other => {
                    decision.fate = Some((i, other.clone()));
                    break;
                }
            }
        }
        decision
    }

    /// Every rule with the faults it injected so far.
    pub fn counts(&self) -> Vec<FaultCount> {
        self.rules
            .iter()
            .zip(&self.injected)
            .map(|(rule, n)| FaultCount {
                rule: rule.to_string(),
                injected: n.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The text of rule `i`.
    fn name(&self, i: usize) -> String {
        self.rules
            .get(i)
            .map(ToString::to_string)
            .unwrap_or_default()
    }
}

/// The refusal a `status` fault answers with, in the bank's errors shape.
pub fn refusal(status: u16, retry_after: Option<u64>) -> ApiError {
    let (status, code, title) = match status {
        401 => {
            return ApiError::invalid_token(
                "the access token expired; get a new one from POST /oauth2/token",
            );
        }
        429 => {
            return ApiError::too_many_requests(
                "too many requests; retry after the Retry-After seconds",
                retry_after.unwrap_or(1),
            );
        }
        500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "Internal Server Error",
        ),
        502 => (StatusCode::BAD_GATEWAY, "bad_gateway", "Bad Gateway"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Service Unavailable",
        ),
    };
    let mut e = ApiError::new(
        status,
        ErrorCode::Other(code.to_owned()),
        title,
        "the service failed to answer; nothing was changed, try again",
    );
    e.retry_after = retry_after;
    e
}

/// The client id of the partner whose bearer token the request carries, if any.
fn partner_of(state: &SandboxState, req: &Request) -> Option<String> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .split_once(' ')?
        .1
        .trim();
    let partner = state.0.tokens.get(token)?.partner;
    state
        .partners()
        .get(usize::from(partner))
        .map(|p| p.client_id.clone())
}

/// The middleware: applies the rules' decision to every request outside `/sandbox/*`.
pub async fn inject(State(state): State<SandboxState>, req: Request, next: Next) -> Response {
    let engine = &state.0.faults;
    if engine.is_empty() || req.uri().path().starts_with("/sandbox/") {
        return next.run(req).await;
    }
    let wants_partner = engine.rules.iter().any(|r| r.partner.is_some());
    let partner = wants_partner.then(|| partner_of(&state, &req)).flatten();
    let decision = engine.decide(req.method(), req.uri().path(), partner.as_deref());
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let fired = decision
        .fired
        .iter()
        .map(|&i| engine.name(i))
        .collect::<Vec<_>>()
        .join("; ");
    let mut response = match decision.fate {
        None => next.run(req).await,
        Some((
            _,
            FaultAction::Status {
                status,
                retry_after,
            },
        )) => {
            let mut refused = refusal(status, retry_after).into_response();
            refused.headers_mut().insert(
                crate::api::INJECTED_FAULT_HEADER,
                header::HeaderValue::from_static("injected"),
            );
            refused
        }
        Some((_, FaultAction::DropBefore)) => dropped(),
        Some((_, FaultAction::DropAfter)) => {
            // The bank acts in full; only its answer is lost.
            drop(next.run(req).await);
            dropped()
        }
        // Latency never ends the search; kept total for the compiler.
        Some((_, FaultAction::Latency { .. })) => next.run(req).await,
    };
    if !fired.is_empty() {
        response.extensions_mut().insert(InjectedFault(fired));
    }
    response
}

/// A response the connection task closes the connection for instead of writing.
fn dropped() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(rules: &[&str], seed: u64) -> FaultEngine {
        let rules = rules.iter().map(|r| FaultRule::parse(r).unwrap()).collect();
        FaultEngine::new(rules, seed)
    }

    fn fates(e: &FaultEngine, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| {
                e.decide(&Method::GET, "/v1/persons/p1", None)
                    .fate
                    .is_some()
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_fault_sequence() {
        let rules = ["GET /v1/*: status=503 p=0.3"];
        let a = fates(&engine(&rules, 42), 200);
        let b = fates(&engine(&rules, 42), 200);
        let c = fates(&engine(&rules, 43), 200);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let hits = a.iter().filter(|f| **f).count();
        // 30% of 200 is 60; a binomial with sd 6.5 is inside 30..90 unless the draw is broken.
        assert!((30..90).contains(&hits), "{hits}");
    }

    #[test]
    fn every_nth_and_next_n_count_matching_requests_only() {
        let e = engine(&["GET /v1/*: status=500 every=3"], 1);
        assert_eq!(
            fates(&e, 7),
            [false, false, true, false, false, true, false]
        );
        let e = engine(&["GET /v1/*: drop_before next=2"], 1);
        assert!(
            e.decide(&Method::PUT, "/v1/persons/p1", None)
                .fate
                .is_none()
        );
        assert_eq!(fates(&e, 4), [true, true, false, false]);
        assert_eq!(e.counts()[0].injected, 2);
    }

    #[test]
    fn latency_adds_up_and_the_first_fate_wins() {
        let e = engine(
            &[
                "* /v1/*: latency=10ms",
                "* /v1/*: latency=20ms..40ms",
                "GET /v1/*: status=502",
                "GET /v1/*: drop_after",
            ],
            7,
        );
        let d = e.decide(&Method::GET, "/v1/persons/p1", None);
        assert!(
            d.delay >= Duration::from_millis(30) && d.delay <= Duration::from_millis(50),
            "{:?}",
            d.delay
        );
        assert_eq!(d.fired, [0, 1, 2]);
        assert!(matches!(
            d.fate,
            Some((2, FaultAction::Status { status: 502, .. }))
        ));
        let counts = e.counts();
        assert_eq!(counts[3].injected, 0);
        assert_eq!(counts[0].rule, "* /v1/*: latency=10ms");
    }

    #[test]
    fn a_partner_rule_skips_other_partners() {
        let e = engine(&["* /v1/*: status=503 partner=other"], 1);
        assert!(
            e.decide(&Method::GET, "/v1/x", Some("vphone-demo"))
                .fate
                .is_none()
        );
        assert!(e.decide(&Method::GET, "/v1/x", None).fate.is_none());
        assert!(
            e.decide(&Method::GET, "/v1/x", Some("other"))
                .fate
                .is_some()
        );
    }

    #[test]
    fn refusals_use_the_errors_shape_codes() {
        let e = refusal(503, Some(2));
        assert_eq!(
            (e.status.as_u16(), e.code.as_str()),
            (503, "service_unavailable")
        );
        assert_eq!(e.retry_after, Some(2));
        assert_eq!(refusal(500, None).code.as_str(), "internal_server_error");
        assert_eq!(refusal(502, None).code.as_str(), "bad_gateway");
        assert_eq!(refusal(401, None).code.as_str(), "invalid_token");
        let e = refusal(429, Some(3));
        assert_eq!(
            (e.code.as_str(), e.retry_after),
            ("too_many_requests", Some(3))
        );
    }
}
