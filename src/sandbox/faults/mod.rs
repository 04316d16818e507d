//! Faults on demand: rules ([`FaultRule`]) that delay, refuse, drop or trickle requests and
//! delay, drop, repeat or reorder SMS the way real banks and networks do, reproducibly from a
//! seed.
//!
//! - Rules are tried in order on every request outside `/sandbox/*`. Every firing latency
//!   rule adds its delay, a firing `slow_body` rule makes the answer trickle, and the first
//!   firing status or drop rule decides the request's fate and ends the search.
//! - SMS rules are tried when a matching request makes the bank send an SMS (an OTP or TAN),
//!   once per SMS; the first that fires gives the SMS its [`SmsFate`]. Held SMS reach the
//!   outbox by the sandbox's clock ([`super::sms`]).
//! - Every decision that needs chance (a probability, a uniform or log-normal delay) draws
//!   from one SplitMix64 generator seeded with [`SandboxConfig::faults_seed`]
//!   (super::SandboxConfig::faults_seed): the same seed and the same order of requests give
//!   the same faults, on every platform and version. Concurrent requests reach the generator
//!   in whatever order they arrive, so replay a failing run with one request at a time.
//! - `drop_before` and `drop_after` answer with a response that carries [`DropConnection`];
//!   the connection task ([`super::serve`]) closes the connection instead of writing it.
//! - `/sandbox/stats` lists every rule with the number of faults it injected; the request log
//!   marks each injected fault with `fault = "<rule>"`. Replacing the rules starts their
//!   counts over, so the stats also carry a total per rule text since the sandbox started
//!   and a generation that counts the replacements: a reader that compares two readings
//!   knows whether the rules changed in between ([`FaultEngine::snapshot`] reads both at
//!   once). Texts that left the rules keep their own total only among the last
//!   [`RETIRED_TOTALS_KEPT`]; older ones add up in one retired total
//!   ([`FaultTotals::retired`]).
//! - The rule set can be read, replaced and cleared at run time ([`admin`], `/sandbox/faults`,
//!   behind the admin token).

pub mod admin;
mod rule;

pub use rule::{
    Delay, FaultAction, FaultRule, FaultWhen, MAX_DELAY, MAX_TRICKLE, REORDER_HOLD, RuleError,
};

use super::error::ApiError;
use super::sms::SmsFate;
use super::state::SandboxState;
use crate::api::ErrorCode;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Marks a response whose connection must be closed without writing it.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// Marks a response (or a dropped request) with the rule that injected a fault, for the log.
#[derive(Debug, Clone)]
pub struct InjectedFault(pub String);

/// One rule and how many faults it injected, as `/sandbox/stats` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FaultCount {
    /// The rule's canonical text.
    pub rule: String,
    /// Faults it injected so far.
    pub injected: u64,
}

/// What the rules decided for one request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// Sum of the delays of the latency rules that fired.
    pub delay: Duration,
    /// The status or drop action that fired, with its rule's index.
    pub fate: Option<(usize, FaultAction)>,
    /// Bytes per piece and the pause between pieces, when a `slow_body` rule fired.
    pub slow_body: Option<(u32, Duration)>,
    /// Indexes of the rules that fired, in order.
    pub fired: Vec<usize>,
    /// The texts of the rules that fired, joined with `"; "` (empty when none did).
    pub label: String,
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

/// One rule set with its counters; replaced as a whole, so counters always match rules.
#[derive(Debug)]
struct RuleSet {
    rules: Vec<FaultRule>,
    /// Requests (for SMS rules: SMS) each rule matched, for `every` and `next`.
    matched: Vec<AtomicU64>,
    /// Faults each rule injected.
    injected: Vec<AtomicU64>,
    /// The engine's total for each rule's text, shared with every set that held that text.
    totals: Vec<Arc<AtomicU64>>,
    /// Whether any rule names a partner (only then is the caller's token looked up).
    has_partner: bool,
    /// Whether any rule acts on SMS.
    has_sms: bool,
}

impl RuleSet {
    /// A set of `rules` whose faults also count in `totals` (per rule text).
    fn new(rules: Vec<FaultRule>, totals: &mut TotalsMap) -> RuleSet {
        let zeros = || rules.iter().map(|_| AtomicU64::new(0)).collect();
        let totals = totals.enter(&rules);
        RuleSet {
            matched: zeros(),
            injected: zeros(),
            totals,
            has_partner: rules.iter().any(|r| r.partner.is_some()),
            has_sms: rules.iter().any(|r| r.action.is_sms()),
            rules,
        }
    }
}

/// How many rule texts that left the rules keep their own total; beyond, the totals of the
/// longest retired ones are summed into [`FaultTotals::retired`].
pub const RETIRED_TOTALS_KEPT: usize = 100;

/// One reading of the fault totals ([`FaultEngine::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultTotals {
    /// Faults injected per rule text since the engine was made, through every replacement
    /// of the rules: every text in force and the [`RETIRED_TOTALS_KEPT`] that left the rules
    /// last are listed, with 0 if they never fired; rules with the same text add up.
    pub by_text: BTreeMap<String, u64>,
    /// Faults injected by rule texts no longer listed in `by_text`: beyond the
    /// [`RETIRED_TOTALS_KEPT`] texts that left the rules most recently, a text's total is
    /// added here and dropped, so the totals stay bounded however often the rules are
    /// replaced and every fault is still counted once (`by_text` summed plus this).
    pub retired: u64,
    /// How many times the rules had been replaced when the totals were read.
    pub generation: u64,
}

/// Faults injected per rule text since the engine was made, whatever the rules in force.
type Totals = Mutex<TotalsMap>;

/// The totals per rule text: every text in force, and up to [`RETIRED_TOTALS_KEPT`] that
/// left the rules, most recently retired first to be kept; the rest add up in `retired`.
#[derive(Debug, Default)]
struct TotalsMap {
    by_text: HashMap<String, Total>,
    /// Faults of the texts whose own total was dropped.
    retired: u64,
    /// Counts the rule sets made, to order retirements.
    sets: u64,
}

/// One rule text's total.
#[derive(Debug)]
struct Total {
    /// Shared with every rule set that holds the text.
    count: Arc<AtomicU64>,
    /// The last rule set holding the text (its number in [`TotalsMap::sets`]).
    last_set: u64,
}

impl TotalsMap {
    /// The totals of `rules`, which are now in force; retires what exceeds the bound.
    fn enter(&mut self, rules: &[FaultRule]) -> Vec<Arc<AtomicU64>> {
        self.sets += 1;
        let set = self.sets;
        let counts = rules
            .iter()
            .map(|r| {
                let total = self.by_text.entry(r.to_string()).or_insert_with(|| Total {
                    count: Arc::default(),
                    last_set: set,
                });
                total.last_set = set;
                total.count.clone()
            })
            .collect();
        self.retire_beyond(RETIRED_TOTALS_KEPT, set);
        counts
    }

    /// Keeps at most `kept` texts not in set `current`, dropping the longest retired first.
    /// A text an older rule set still holds (a request in flight may count on it) is kept
    /// until that set is gone, so a dropped total is final and no fault goes uncounted.
    fn retire_beyond(&mut self, kept: usize, current: u64) {
        let mut retired: Vec<(u64, &String)> = self
            .by_text
            .iter()
            .filter(|(_, t)| t.last_set != current)
            .map(|(text, t)| (t.last_set, text))
            .collect();
        if retired.len() <= kept {
            return;
        }
        // Newest first; ties (texts of one set) by text, so the choice is reproducible.
        retired.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let drop: Vec<String> = retired[kept..]
            .iter()
            .map(|(_, text)| (*text).clone())
            .collect();
        for text in drop {
            if let Some(total) = self.by_text.remove(&text) {
                match Arc::try_unwrap(total.count) {
                    Ok(count) => self.retired = self.retired.saturating_add(count.into_inner()),
                    // Still held by a rule set in use: kept for a later replacement.
                    Err(count) => {
                        self.by_text.insert(
                            text,
                            Total {
                                count,
                                last_set: total.last_set,
                            },
                        );
                    }
                }
            }
        }
    }
}

/// The rules in force, their counters and the seeded generator.
#[derive(Debug)]
pub struct FaultEngine {
    set: RwLock<Arc<RuleSet>>,
    rng: Mutex<SplitMix64>,
    seed: AtomicU64,
    /// Taken only when a rule set is made, never per request.
    totals: Totals,
    /// How many times the rules were replaced since the engine was made.
    generation: AtomicU64,
    /// Whether there is any rule: read first by every request, and written only when the
    /// rules are replaced, so without rules a request touches no lock (whose cache line
    /// would otherwise pass between the cores serving requests).
    armed: AtomicBool,
}

impl FaultEngine {
    /// An engine with `rules`, drawing from `seed`.
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        let totals = Totals::default();
        let set = RuleSet::new(rules, &mut totals.lock());
        FaultEngine {
            armed: AtomicBool::new(!set.rules.is_empty()),
            set: RwLock::new(Arc::new(set)),
            rng: Mutex::new(SplitMix64(seed)),
            seed: AtomicU64::new(seed),
            totals,
            generation: AtomicU64::new(0),
        }
    }

    /// The seed it draws from (the latest one given).
    pub fn seed(&self) -> u64 {
        self.seed.load(Ordering::Relaxed)
    }

    /// Whether there is any rule at all (without, requests skip the engine).
    pub fn is_empty(&self) -> bool {
        !self.armed.load(Ordering::Acquire)
    }

    /// Replaces every rule (their counts start at zero, their totals go on) and counts a
    /// generation; with a `seed`, the generator starts over from it, else it goes on where
    /// it was.
    pub fn replace(&self, rules: Vec<FaultRule>, seed: Option<u64>) {
        // The totals stay locked until the new rules and their generation are in place, so
        // a [`snapshot`](Self::snapshot) sees a replacement whole or not at all.
        let mut totals = self.totals.lock();
        let set = Arc::new(RuleSet::new(rules, &mut totals));
        // Generator first: a request deciding in between sees the old rules and old draws.
        if let Some(seed) = seed {
            *self.rng.lock() = SplitMix64(seed);
            self.seed.store(seed, Ordering::Relaxed);
        }
        let armed = !set.rules.is_empty();
        *self.set.write() = set;
        self.armed.store(armed, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn current(&self) -> Arc<RuleSet> {
        self.set.read().clone()
    }

    /// Whether rule `i` of `set` fires on this request (or SMS); counts what matches and fires.
    fn fires(&self, set: &RuleSet, i: usize, partner: Option<&str>) -> bool {
        let rule = &set.rules[i];
        if let Some(wanted) = &rule.partner
            && partner != Some(wanted.as_str())
        {
            return false;
        }
        let n = set.matched[i].fetch_add(1, Ordering::Relaxed) + 1;
        let fires = match rule.when {
            FaultWhen::Always => true,
            FaultWhen::Probability(p) => self.rng.lock().next_f64() < p,
            FaultWhen::EveryNth(every) => n.is_multiple_of(every),
            FaultWhen::NextN(count) => n <= count,
        };
        if fires {
            set.injected[i].fetch_add(1, Ordering::Relaxed);
            set.totals[i].fetch_add(1, Ordering::Relaxed);
        }
        fires
    }

    /// A delay drawn from `delay` (the generator is asked only when it is random).
    fn draw(&self, delay: &Delay) -> Duration {
        if !delay.is_random() {
            return delay.draw(0.0, 0.0);
        }
        let mut rng = self.rng.lock();
        let (u1, u2) = (rng.next_f64(), rng.next_f64());
        delay.draw(u1, u2)
    }

    /// Decides what happens to a request; `partner` is the caller's client id, if known.
    /// Counts what fires. SMS rules are left for [`FaultEngine::decide_sms`].
    pub fn decide(&self, method: &Method, path: &str, partner: Option<&str>) -> Decision {
        self.decide_in(&self.current(), method, path, partner)
    }

    fn decide_in(
        &self,
        set: &RuleSet,
        method: &Method,
        path: &str,
        partner: Option<&str>,
    ) -> Decision {
        let mut decision = Decision::default();
        for (i, rule) in set.rules.iter().enumerate() {
            if rule.action.is_sms() || !rule.matches(method, path) || !self.fires(set, i, partner) {
                continue;
            }
            decision.fired.push(i);
            match &rule.action {
                FaultAction::Latency(delay) => decision.delay += self.draw(delay),
                FaultAction::SlowBody { bytes, every } => {
                    decision.slow_body = Some((*bytes, *every));
                }
                other => {
                    decision.fate = Some((i, other.clone()));
                    break;
                }
            }
        }
        decision.label = label(set, &decision.fired);
        decision
    }

    /// Decides what happens to one SMS sent while handling a request; the label names the
    /// rule that fired, if one did.
    pub fn decide_sms(
        &self,
        method: &Method,
        path: &str,
        partner: Option<&str>,
    ) -> (SmsFate, Option<String>) {
        let set = self.current();
        for (i, rule) in set.rules.iter().enumerate() {
            if !rule.action.is_sms() || !rule.matches(method, path) || !self.fires(&set, i, partner)
            {
                continue;
            }
            let fate = match &rule.action {
                FaultAction::SmsDelay(delay) => SmsFate::Delay(self.draw(delay)),
                FaultAction::SmsDrop => SmsFate::Drop,
                FaultAction::SmsDuplicate { after } => SmsFate::Duplicate(*after),
                // Only SMS actions get here.
                _ => SmsFate::Reorder,
            };
            return (fate, Some(rule.to_string()));
        }
        (SmsFate::Deliver, None)
    }

    /// Every rule with the faults it injected so far.
    pub fn counts(&self) -> Vec<FaultCount> {
        let set = self.current();
        set.rules
            .iter()
            .zip(&set.injected)
            .map(|(rule, n)| FaultCount {
                rule: rule.to_string(),
                injected: n.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The totals per rule text, the retired total and the generation, read in one go: a
    /// replacement of the rules (which may retire texts, moving their totals into
    /// `retired`) lands wholly before or wholly after it, so no fault is listed twice or
    /// missed, and the generation is the one the totals belong to.
    pub fn snapshot(&self) -> FaultTotals {
        let totals = self.totals.lock();
        FaultTotals {
            by_text: totals
                .by_text
                .iter()
                .map(|(rule, t)| (rule.clone(), t.count.load(Ordering::Relaxed)))
                .collect(),
            retired: totals.retired,
            generation: self.generation.load(Ordering::Acquire),
        }
    }

    /// How many times the rules were replaced (`PUT` or `DELETE /sandbox/faults`) since the
    /// engine was made: two readings of [`FaultEngine::counts`] with different generations
    /// count from different starts.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The texts of rules `fired` of `set`, joined with `"; "`.
fn label(set: &RuleSet, fired: &[usize]) -> String {
    fired
        .iter()
        .filter_map(|&i| set.rules.get(i))
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
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

/// The request being handled, for the SMS rules decided when the bank sends an SMS.
#[derive(Debug)]
struct SmsContext {
    method: Method,
    path: String,
    partner: Option<String>,
    /// The SMS rules that fired while handling it, for the request's log line.
    fired: Mutex<Vec<String>>,
}

tokio::task_local! {
    static SMS_CONTEXT: Arc<SmsContext>;
}

/// What happens to an SMS the bank sends now: decided by the SMS rules against the request
/// being handled ([`SmsFate::Deliver`] outside a request or without SMS rules).
pub fn sms_fate(engine: &FaultEngine) -> SmsFate {
    let Ok(context) = SMS_CONTEXT.try_with(Arc::clone) else {
        return SmsFate::Deliver;
    };
    let (fate, fired) =
        engine.decide_sms(&context.method, &context.path, context.partner.as_deref());
    if let Some(rule) = fired {
        tracing::warn!(fault = %rule, ?fate, "SMS fault injected");
        context.fired.lock().push(rule);
    }
    fate
}

/// The middleware's step: applies the rules' decision to every request outside `/sandbox/*`,
/// handing the request on to `next` (the rest of the way in) unless a rule answers instead.
pub(crate) async fn inject<F, Fut>(state: &SandboxState, req: Request, next: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let engine = &state.0.faults;
    // Sandbox routes first: a long-poll would otherwise hold the rule set (and keep its
    // retired totals listed) for its whole wait.
    if req.uri().path().starts_with("/sandbox/") {
        return next(req).await;
    }
    if engine.is_empty() {
        return next(req).await;
    }
    let set = engine.current();
    if set.rules.is_empty() {
        drop(set);
        return next(req).await;
    }
    let partner = set.has_partner.then(|| partner_of(state, &req)).flatten();
    let decision = engine.decide_in(&set, req.method(), req.uri().path(), partner.as_deref());
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let context = set.has_sms.then(|| {
        Arc::new(SmsContext {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            partner,
            fired: Mutex::new(Vec::new()),
        })
    });
    let run = |req: Request| async {
        match &context {
            Some(c) => SMS_CONTEXT.scope(c.clone(), next(req)).await,
            None => next(req).await,
        }
    };
    let mut response = match decision.fate {
        None => run(req).await,
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
            drop(run(req).await);
            dropped()
        }
        // Only status and drop actions end the search; kept total for the compiler.
        Some(_) => run(req).await,
    };
    let mut labels = decision.label;
    if let Some(context) = &context {
        for rule in context.fired.lock().drain(..) {
            if !labels.is_empty() {
                labels.push_str("; ");
            }
            labels.push_str(&rule);
        }
    }
    if let Some((bytes, every)) = decision.slow_body
        && response.extensions().get::<DropConnection>().is_none()
    {
        response = trickle(response, bytes, every).await;
    }
    if !labels.is_empty() {
        response.extensions_mut().insert(InjectedFault(labels));
    }
    response
}

/// The response with its body sent `bytes` at a time, one piece every `every`, for at most
/// [`MAX_TRICKLE`] (then the rest goes at once). `Content-Length` stays exact, so a client
/// sees a complete, slow answer.
pub async fn trickle(response: Response, bytes: u32, every: Duration) -> Response {
    let (mut parts, body) = response.into_parts();
    let full = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(full) => full,
        Err(e) => {
            tracing::error!(error = %e, "slow_body: the answer could not be read");
            return refusal(500, None).into_response();
        }
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(full.len()));
    let pieces = pieces(full, bytes as usize, every);
    Response::from_parts(parts, Body::from_stream(pieces))
}

/// The stream of pieces of [`trickle`].
fn pieces(
    full: Bytes,
    bytes: usize,
    every: Duration,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let started = tokio::time::Instant::now();
    futures::stream::unfold((full, true), move |(mut rest, first)| async move {
        if rest.is_empty() {
            return None;
        }
        if !first {
            tokio::time::sleep(every).await;
        }
        let take = if started.elapsed() >= MAX_TRICKLE {
            rest.len()
        } else {
            bytes.min(rest.len())
        };
        let piece = rest.split_to(take);
        Some((Ok(piece), (rest, false)))
    })
}

/// A response the connection task closes the connection for instead of writing.
fn dropped() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(DropConnection);
    response
}

/// How often the SMS pump looks for held SMS whose time has come.
const SMS_PUMP_EVERY: Duration = Duration::from_millis(100);

impl SandboxState {
    /// Delivers held SMS when the sandbox's clock reaches their time, checking every 100 ms,
    /// so long-polls see them without another read. Ends when the state is dropped.
    pub fn start_sms_pump(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SMS_PUMP_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                inner.sms.release_due(inner.clock.now());
            }
        })
    }

    /// How many SMS fault rules are holding back right now.
    pub fn sms_held(&self) -> usize {
        self.0.sms.held()
    }
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
    fn totals_per_rule_text_go_on_when_the_rules_are_replaced_and_counts_start_over() {
        let e = engine(&["GET /v1/*: status=503", "POST /v1/*: status=502"], 1);
        assert_eq!(fates(&e, 2), [true, true]);
        assert_eq!(e.generation(), 0);
        let rule = |r: &str| vec![FaultRule::parse(r).unwrap()];
        e.replace(rule("GET /v1/*: status=503"), None);
        assert_eq!(fates(&e, 1), [true]);
        assert_eq!(e.counts()[0].injected, 1, "the rule's count started over");
        assert_eq!(e.generation(), 1);
        e.replace(Vec::new(), None);
        assert_eq!(fates(&e, 1), [false]);
        assert_eq!(e.generation(), 2);
        assert_eq!(
            e.snapshot().by_text,
            BTreeMap::from([
                ("GET /v1/*: status=503".to_owned(), 3),
                ("POST /v1/*: status=502".to_owned(), 0),
            ])
        );
    }

    /// A rule text of its own for round `i`, which fires on every GET.
    fn nth_rule(i: usize) -> Vec<FaultRule> {
        vec![FaultRule::parse(&format!("GET /v1/round{i}/*: status=503")).unwrap()]
    }

    fn fire(e: &FaultEngine, set: &RuleSet, i: usize) {
        let d = e.decide_in(set, &Method::GET, &format!("/v1/round{i}/x"), None);
        assert!(d.fate.is_some(), "round {i} fires");
    }

    #[test]
    fn totals_keep_the_rules_in_force_and_a_bounded_number_of_retired_ones_losing_no_count() {
        let e = engine(&[], 1);
        let rounds = RETIRED_TOTALS_KEPT + 50;
        for i in 0..rounds {
            e.replace(nth_rule(i), None);
            fire(&e, &e.current(), i);
        }
        let snapshot = e.snapshot();
        let totals = &snapshot.by_text;
        // The rule in force and the most recently retired ones keep their own total.
        assert_eq!(totals.len(), RETIRED_TOTALS_KEPT + 1);
        let last = rounds - 1;
        assert_eq!(totals[&nth_rule(last)[0].to_string()], 1);
        assert_eq!(
            totals[&nth_rule(last - RETIRED_TOTALS_KEPT)[0].to_string()],
            1
        );
        assert!(!totals.contains_key(&nth_rule(0)[0].to_string()));
        // The dropped ones are summed: every fault is still counted exactly once.
        assert_eq!(snapshot.retired, (rounds - RETIRED_TOTALS_KEPT - 1) as u64);
        assert_eq!(
            totals.values().sum::<u64>() + snapshot.retired,
            rounds as u64
        );
        assert_eq!(snapshot.generation, rounds as u64);
    }

    #[test]
    fn a_snapshot_taken_while_rules_are_replaced_sees_each_replacement_whole_or_not_at_all() {
        // One thread replaces the rules with round i's own text and then fires it once, so
        // texts keep retiring; the other reads snapshots meanwhile. A snapshot of generation
        // g saw rounds 0..g installed: round g-1's text is listed, round g's is not yet, and
        // every fault counted once gives g-1 or g (the fire of round g-1 may not be done).
        let e = Arc::new(engine(&[], 1));
        let rounds = RETIRED_TOTALS_KEPT * 20;
        let writer = {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..rounds {
                    e.replace(nth_rule(i), None);
                    fire(&e, &e.current(), i);
                }
            })
        };
        // Bounded: the writer ends after `rounds` rounds.
        while !writer.is_finished() {
            let s = e.snapshot();
            let g = s.generation as usize;
            let counted = s.by_text.values().sum::<u64>() + s.retired;
            if g == 0 {
                assert_eq!(counted, 0);
                continue;
            }
            assert!(
                s.by_text.contains_key(&nth_rule(g - 1)[0].to_string()),
                "generation {g} without its own rule's total"
            );
            assert!(
                !s.by_text.contains_key(&nth_rule(g)[0].to_string()),
                "generation {g} with the next replacement's total"
            );
            assert!(
                counted + 1 == g as u64 || counted == g as u64,
                "generation {g} counted {counted} faults"
            );
        }
        writer.join().unwrap();
        let end = e.snapshot();
        assert_eq!(end.generation, rounds as u64);
        assert_eq!(
            end.by_text.values().sum::<u64>() + end.retired,
            rounds as u64
        );
    }

    #[test]
    fn a_retired_total_still_held_by_a_rule_set_in_use_is_dropped_only_once_that_set_is_gone() {
        let e = engine(&[], 1);
        e.replace(nth_rule(0), None);
        // A request in flight keeps deciding with round 0's rules.
        let held = e.current();
        for i in 1..=RETIRED_TOTALS_KEPT + 10 {
            e.replace(nth_rule(i), None);
        }
        fire(&e, &held, 0);
        let before = e.snapshot();
        assert_eq!(
            before.by_text[&nth_rule(0)[0].to_string()],
            1,
            "still listed"
        );
        assert_eq!(before.retired, 0);
        drop(held);
        e.replace(nth_rule(RETIRED_TOTALS_KEPT + 11), None);
        let after = e.snapshot();
        assert!(!after.by_text.contains_key(&nth_rule(0)[0].to_string()));
        assert_eq!(after.retired, 1, "its fault moved to the retired total");
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

    /// What the rules do to `n` requests that each send one SMS.
    fn journal(e: &FaultEngine, n: usize) -> Vec<(Duration, Option<u16>, SmsFate)> {
        (0..n)
            .map(|_| {
                let d = e.decide(&Method::POST, "/v1/mfa/challenges/sms", None);
                let status = match d.fate {
                    Some((_, FaultAction::Status { status, .. })) => Some(status),
                    _ => None,
                };
                let (sms, _) = e.decide_sms(&Method::POST, "/v1/mfa/challenges/sms", None);
                (d.delay, status, sms)
            })
            .collect()
    }

    #[test]
    fn the_same_seed_replays_delays_and_sms_faults_too() {
        let rules = [
            "* /v1/*: latency=lognormal(median=20ms,sigma=0.8)",
            "* /v1/*: latency=1ms..9ms p=0.5",
            "POST /v1/*: status=503 p=0.2",
            "POST /v1/*: sms_drop p=0.2",
            "POST /v1/*: sms_delay=1s..30s p=0.3",
            "POST /v1/*: sms_duplicate p=0.3",
            "POST /v1/*: sms_reorder",
        ];
        let a = journal(&engine(&rules, 99), 100);
        assert_eq!(a, journal(&engine(&rules, 99), 100));
        assert_ne!(a, journal(&engine(&rules, 100), 100));
        // Every kind of SMS fate turns up, and the last rule catches what the others leave.
        for wanted in [
            SmsFate::Drop,
            SmsFate::Duplicate(Duration::ZERO),
            SmsFate::Reorder,
        ] {
            assert!(a.iter().any(|(_, _, f)| *f == wanted), "{wanted:?}");
        }
        assert!(a.iter().any(|(_, _, f)| matches!(f, SmsFate::Delay(_))));
        assert!(a.iter().all(|(_, _, f)| *f != SmsFate::Deliver));
        let delays: std::collections::HashSet<_> = a.iter().map(|(d, _, _)| *d).collect();
        assert!(delays.len() > 90, "delays are drawn, not fixed");
    }

    #[test]
    fn request_rules_and_sms_rules_are_decided_apart() {
        let e = engine(
            &[
                "POST /v1/mfa/challenges/sms: sms_drop next=1",
                "POST /v1/mfa/challenges/sms: sms_duplicate",
                "POST /v1/mfa/challenges/sms: slow_body=4/1ms",
            ],
            1,
        );
        let d = e.decide(&Method::POST, "/v1/mfa/challenges/sms", None);
        assert_eq!(
            (d.fired.as_slice(), d.slow_body),
            (&[2][..], Some((4, Duration::from_millis(1))))
        );
        assert_eq!(d.label, "POST /v1/mfa/challenges/sms: slow_body=4/1ms");
        let sms = |e: &FaultEngine| e.decide_sms(&Method::POST, "/v1/mfa/challenges/sms", None);
        let (fate, rule) = sms(&e);
        assert_eq!(fate, SmsFate::Drop);
        assert_eq!(
            rule.unwrap(),
            "POST /v1/mfa/challenges/sms: sms_drop next=1"
        );
        assert_eq!(sms(&e).0, SmsFate::Duplicate(Duration::ZERO));
        assert_eq!(
            e.decide_sms(&Method::GET, "/v1/mfa/challenges/sms", None),
            (SmsFate::Deliver, None)
        );
        let counts: Vec<u64> = e.counts().iter().map(|c| c.injected).collect();
        assert_eq!(counts, [1, 1, 1]);
    }

    #[test]
    fn replacing_the_rules_resets_their_counts_and_a_new_seed_restarts_the_draws() {
        let rules = ["GET /v1/*: status=503 p=0.5"];
        let e = engine(&rules, 5);
        let first = fates(&e, 30);
        let parsed = || rules.iter().map(|r| FaultRule::parse(r).unwrap()).collect();
        e.replace(parsed(), Some(5));
        assert_eq!(e.counts()[0].injected, 0);
        assert_eq!(fates(&e, 30), first, "the same seed replays");
        e.replace(Vec::new(), None);
        assert!(e.is_empty() && e.counts().is_empty());
        assert_eq!(e.seed(), 5);
    }

    #[tokio::test]
    async fn a_slow_body_comes_in_pieces_of_the_given_size() {
        use futures::StreamExt;
        let body = Bytes::from_static(b"0123456789abcdefghij");
        let got: Vec<Bytes> = pieces(body.clone(), 8, Duration::from_millis(1))
            .map(|p| p.unwrap_or_default())
            .collect()
            .await;
        let sizes: Vec<usize> = got.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [8, 8, 4]);
        assert_eq!(got.concat(), body.to_vec());
        let response = trickle(
            axum::Json(serde_json::json!({"a": 1})).into_response(),
            3,
            Duration::from_millis(1),
        )
        .await;
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "7");
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
