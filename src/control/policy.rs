//! A hosted phone's policy: how its user answers the prompt (approve, deny, after a delay,
//! or `manual`: wait for a person or a test to decide through the API), and which
//! device-side fault it commits when it answers a pushed challenge.
//!
//! The prompt is a [`UserPresence`], so the library asks it before every use of a restricted
//! key, and a pushed challenge asks it once for its approval sheet. `UserPresence::confirm`
//! blocks; the control API therefore runs flows on blocking threads (see `run_blocking`),
//! never on the async workers.

use super::ControlState;
use super::error::{Body, ControlError, QueryArgs};
use super::events::EventHub;
use crate::api::{Timestamp, now_utc};
use axum::Json;
use axum::extract::{Path, State};
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vphone_keystore::{PresenceError, PresenceRequest, UserPresence};

/// How the phone's user answers a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptPolicy {
    /// Approve at once.
    Approve,
    /// Deny at once.
    Deny,
    /// Approve after this long.
    Delay(Duration),
    /// Wait for `POST .../approvals/{id}/approve` or `/deny`.
    Manual,
}

/// What the phone does wrong when it answers a pushed challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a correct answer.
    None,
    /// A well-formed signature over another message (the bank counts a failed attempt).
    WrongSignature,
    /// A signature that is not DER (the bank refuses it as malformed).
    MalformedSignature,
    /// The correct answer, sent twice.
    AnswerTwice,
    /// The correct answer, after this long.
    Late(Duration),
    /// Approves but never sends an answer.
    NeverAnswer,
}

/// A phone's policy, as `PUT /phones/{name}/policy` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The prompt.
    pub prompt: PromptPolicy,
    /// The fault for pushed challenges.
    pub fault: Fault,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            prompt: PromptPolicy::Approve,
            fault: Fault::None,
        }
    }
}

fn duration_word(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

impl std::fmt::Display for PromptPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PromptPolicy::Approve => f.write_str("approve"),
            PromptPolicy::Deny => f.write_str("deny"),
            PromptPolicy::Delay(d) => write!(f, "delay:{}", duration_word(*d)),
            PromptPolicy::Manual => f.write_str("manual"),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::None => f.write_str("none"),
            Fault::WrongSignature => f.write_str("wrong_signature"),
            Fault::MalformedSignature => f.write_str("malformed_signature"),
            Fault::AnswerTwice => f.write_str("answer_twice"),
            Fault::Late(d) => write!(f, "late:{}", duration_word(*d)),
            Fault::NeverAnswer => f.write_str("never_answer"),
        }
    }
}

/// The longest delay a policy may ask for.
const MAX_DELAY: Duration = Duration::from_secs(600);

fn parse_delay(word: &str, d: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(d).map_err(|e| format!("bad duration in {word:?}: {e}"))?;
    if d > MAX_DELAY {
        return Err(format!("{word:?} is longer than 10m"));
    }
    Ok(d)
}

impl std::str::FromStr for PromptPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "approve" => Ok(PromptPolicy::Approve),
            "deny" => Ok(PromptPolicy::Deny),
            "manual" => Ok(PromptPolicy::Manual),
            other => match other.strip_prefix("delay:") {
                Some(d) => parse_delay(other, d).map(PromptPolicy::Delay),
                None => Err(format!(
                    "prompt {other:?} is not one of approve, deny, manual, delay:DURATION"
                )),
            },
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Fault::None),
            "wrong_signature" => Ok(Fault::WrongSignature),
            "malformed_signature" => Ok(Fault::MalformedSignature),
            "answer_twice" => Ok(Fault::AnswerTwice),
            "never_answer" => Ok(Fault::NeverAnswer),
            other => match other.strip_prefix("late:") {
                Some(d) => parse_delay(other, d).map(Fault::Late),
                None => Err(format!(
                    "fault {other:?} is not one of none, wrong_signature, malformed_signature, answer_twice, late:DURATION, never_answer"
                )),
            },
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PolicyDoc {
            prompt: Some(self.prompt.to_string()),
            fault: Some(self.fault.to_string()),
        }
        .serialize(s)
    }
}

/// The policy on the wire: `{"prompt": "manual", "fault": "none"}`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// `approve`, `deny`, `delay:2s` or `manual`; default `approve`.
    pub prompt: Option<String>,
    /// `none`, `wrong_signature`, `malformed_signature`, `answer_twice`, `late:3s` or
    /// `never_answer`; default `none`.
    pub fault: Option<String>,
}

impl PolicyDoc {
    /// The policy it describes; missing fields take their defaults.
    pub fn parse(&self) -> Result<Policy, ControlError> {
        let prompt = match &self.prompt {
            Some(p) => p.parse().map_err(ControlError::BadRequest)?,
            None => PromptPolicy::Approve,
        };
        let fault = match &self.fault {
            Some(f) => f.parse().map_err(ControlError::BadRequest)?,
            None => Fault::None,
        };
        Ok(Policy { prompt, fault })
    }
}

/// A prompt waiting for a decision (manual mode).
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    /// Its id, unique in this server.
    pub id: u64,
    /// What the user is asked.
    pub reason: String,
    /// The pushed challenge it is about, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
    /// The key that would sign.
    pub key_purpose: String,
    /// When it was shown.
    pub shown_at: Timestamp,
}

/// The decision on a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Approved.
    Approved,
    /// Denied.
    Denied,
}

struct Pending {
    approval: Approval,
    decision: Option<Decision>,
}

/// One phone's user: its policy and its pending prompts.
pub struct Prompt {
    phone: String,
    policy: Mutex<Policy>,
    pending: Mutex<BTreeMap<u64, Pending>>,
    decided: Condvar,
    events: EventHub,
    ids: Arc<AtomicU64>,
    timeout: Duration,
}

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompt")
            .field("phone", &self.phone)
            .field("policy", &*self.policy.lock())
            .finish_non_exhaustive()
    }
}

tokio::task_local! {
    /// Set while the user has already approved this flow (a pushed challenge's sheet), so
    /// the library's own prompt for the restricted key does not ask a second time.
    pub static PRE_APPROVED: bool;
}

/// What a prompt is about.
#[derive(Debug, Clone)]
pub struct Ask {
    /// The sentence shown.
    pub reason: String,
    /// The challenge, for a push.
    pub challenge_id: Option<String>,
    /// The key that would sign.
    pub key_purpose: String,
    /// The latest moment to decide (e.g. the challenge's expiry).
    pub deadline: Option<Instant>,
}

impl Prompt {
    /// The user of phone `phone`, numbering approvals from `ids`, deciding manual prompts
    /// within `timeout`.
    pub fn new(phone: String, events: EventHub, ids: Arc<AtomicU64>, timeout: Duration) -> Prompt {
        Prompt {
            phone,
            policy: Mutex::new(Policy::default()),
            pending: Mutex::new(BTreeMap::new()),
            decided: Condvar::new(),
            events,
            ids,
            timeout,
        }
    }

    /// The current policy.
    pub fn policy(&self) -> Policy {
        *self.policy.lock()
    }

    /// Replaces the policy.
    pub fn set_policy(&self, policy: Policy) {
        *self.policy.lock() = policy;
        self.events.publish(
            Some(&self.phone),
            "policy_changed",
            serde_json::json!({"policy": policy}),
        );
    }

    /// The prompts waiting for a decision, oldest first.
    pub fn pending(&self) -> Vec<Approval> {
        self.pending
            .lock()
            .values()
            .filter(|p| p.decision.is_none())
            .map(|p| p.approval.clone())
            .collect()
    }

    /// Decides pending prompt `id`.
    pub fn decide(&self, id: u64, decision: Decision) -> Result<Approval, ControlError> {
        let mut pending = self.pending.lock();
        match pending.get_mut(&id) {
            Some(p) if p.decision.is_none() => {
                p.decision = Some(decision);
                let approval = p.approval.clone();
                drop(pending);
                self.decided.notify_all();
                Ok(approval)
            }
            _ => Err(ControlError::NotFound(format!(
                "phone {} has no pending approval {id}; see GET /phones/{}/approvals",
                self.phone, self.phone
            ))),
        }
    }

    /// Shows the prompt and returns the user's answer by the policy. Blocks: call it only
    /// on a blocking thread.
    pub fn ask(&self, ask: Ask) -> Result<(), PresenceError> {
        let policy = self.policy().prompt;
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let approval = Approval {
            id,
            reason: ask.reason,
            challenge_id: ask.challenge_id,
            key_purpose: ask.key_purpose,
            shown_at: now_utc(),
        };
        if policy == PromptPolicy::Manual {
            // Pending before it is announced, so whoever reacts to `prompt_shown` finds it.
            self.pending.lock().insert(
                id,
                Pending {
                    approval: approval.clone(),
                    decision: None,
                },
            );
        }
        self.events.publish(
            Some(&self.phone),
            "prompt_shown",
            serde_json::json!({"approval": approval, "mode": policy.to_string()}),
        );
        let (decision, by) = match policy {
            PromptPolicy::Approve => (Some(Decision::Approved), "policy"),
            PromptPolicy::Deny => (Some(Decision::Denied), "policy"),
            PromptPolicy::Delay(d) => {
                std::thread::sleep(d);
                (Some(Decision::Approved), "policy")
            }
            PromptPolicy::Manual => (self.wait_for_decision(id, ask.deadline), "api"),
        };
        let (kind, result, by) = match decision {
            Some(Decision::Approved) => ("approved", Ok(()), by),
            Some(Decision::Denied) => ("denied", Err(PresenceError::Denied), by),
            None => ("denied", Err(PresenceError::Timeout), "timeout"),
        };
        self.events.publish(
            Some(&self.phone),
            kind,
            serde_json::json!({"approval_id": id, "challenge_id": approval.challenge_id, "by": by}),
        );
        result
    }

    /// Waits for the decision on pending prompt `id`, then forgets it.
    fn wait_for_decision(&self, id: u64, deadline: Option<Instant>) -> Option<Decision> {
        let mut until = Instant::now() + self.timeout;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let mut pending = self.pending.lock();
        loop {
            if let Some(d) = pending.get(&id).and_then(|p| p.decision) {
                pending.remove(&id);
                return Some(d);
            }
            if self.decided.wait_until(&mut pending, until).timed_out() {
                let d = pending.remove(&id).and_then(|p| p.decision);
                return d;
            }
        }
    }
}

impl UserPresence for Prompt {
    fn confirm(&self, request: &PresenceRequest) -> Result<(), PresenceError> {
        if PRE_APPROVED.try_with(|v| *v).unwrap_or(false) {
            return Ok(());
        }
        self.ask(Ask {
            reason: request.reason.clone(),
            challenge_id: None,
            key_purpose: request.key.purpose.to_string(),
            deadline: None,
        })
    }
}

/// `GET /phones/{name}/policy`.
pub async fn get(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Policy>, ControlError> {
    let hosted = state.phones().get(&name).await?;
    Ok(Json(hosted.prompt.policy()))
}

/// `PUT /phones/{name}/policy`.
pub async fn put(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(doc): Body<PolicyDoc>,
) -> Result<Json<Policy>, ControlError> {
    let policy = doc.parse()?;
    let hosted = state.phones().get(&name).await?;
    hosted.prompt.set_policy(policy);
    Ok(Json(policy))
}

/// Query of `GET /phones/{name}/approvals`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsQuery {
    /// Wait up to this long (at most 60000) for one to be pending.
    pub wait_ms: Option<u64>,
}

/// `GET /phones/{name}/approvals`: the pending prompts, long-polling with `wait_ms`.
pub async fn list(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<ApprovalsQuery>,
) -> Result<Json<Vec<Approval>>, ControlError> {
    let hosted = state.phones().get(&name).await?;
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(super::events::MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Woken by the phone's prompt_shown events; bounded by the deadline.
    let mut rx = state.events().subscribe_live();
    loop {
        let pending = hosted.prompt.pending();
        if !pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(pending));
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return Ok(Json(hosted.prompt.pending())),
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return Ok(Json(hosted.prompt.pending()));
            }
            Ok(_) => {}
        }
    }
}

/// `POST /phones/{name}/approvals/{id}/approve`.
pub async fn approve(
    State(state): State<ControlState>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, ControlError> {
    decide(state, name, id, Decision::Approved).await
}

/// `POST /phones/{name}/approvals/{id}/deny`.
pub async fn deny(
    State(state): State<ControlState>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, ControlError> {
    decide(state, name, id, Decision::Denied).await
}

async fn decide(
    state: ControlState,
    name: String,
    id: u64,
    decision: Decision,
) -> Result<Json<serde_json::Value>, ControlError> {
    let hosted = state.phones().get(&name).await?;
    let approval = hosted.prompt.decide(id, decision)?;
    Ok(Json(
        serde_json::json!({"approval": approval, "decision": decision}),
    ))
}

/// The policy and approval routes.
pub fn routes(r: super::Routes) -> super::Routes {
    use axum::http::Method;
    use axum::routing::{get as get_, post, put as put_};
    r.add(Method::GET, "/phones/{name}/policy", get_(get))
        .add(Method::PUT, "/phones/{name}/policy", put_(put))
        .add(Method::GET, "/phones/{name}/approvals", get_(list))
        .add(
            Method::POST,
            "/phones/{name}/approvals/{approval_id}/approve",
            post(approve),
        )
        .add(
            Method::POST,
            "/phones/{name}/approvals/{approval_id}/deny",
            post(deny),
        )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_print_the_same_words() {
        for word in ["approve", "deny", "manual", "delay:2s"] {
            assert_eq!(word.parse::<PromptPolicy>().unwrap().to_string(), word);
        }
        for word in [
            "none",
            "wrong_signature",
            "malformed_signature",
            "answer_twice",
            "late:1m",
            "never_answer",
        ] {
            assert_eq!(word.parse::<Fault>().unwrap().to_string(), word);
        }
        assert!("maybe".parse::<PromptPolicy>().is_err());
        assert!("late:11m".parse::<Fault>().is_err());
    }

    #[test]
    fn a_manual_prompt_waits_for_the_decision() {
        let prompt = Arc::new(Prompt::new(
            "p".into(),
            EventHub::new(16),
            Arc::new(AtomicU64::new(0)),
            Duration::from_secs(30),
        ));
        prompt.set_policy(Policy {
            prompt: PromptPolicy::Manual,
            fault: Fault::None,
        });
        let asker = prompt.clone();
        let answer = std::thread::spawn(move || {
            asker.ask(Ask {
                reason: "pay".into(),
                challenge_id: None,
                key_purpose: "restricted".into(),
                deadline: None,
            })
        });
        // Bounded: the prompt shows up within the 30 s timeout or the test fails.
        let started = Instant::now();
        let id = loop {
            if let Some(a) = prompt.pending().first() {
                break a.id;
            }
            assert!(started.elapsed() < Duration::from_secs(30));
            std::thread::yield_now();
        };
        prompt.decide(id, Decision::Denied).unwrap();
        assert_eq!(answer.join().unwrap(), Err(PresenceError::Denied));
        assert!(prompt.pending().is_empty());
        assert!(prompt.decide(id, Decision::Approved).is_err());
    }
}
