//! Push: what a bank backend does through a push service in real life. The phone receives
//! a device-signing challenge someone else created (`POST /phones/{name}/push`), shows its
//! approval sheet (the prompt, by policy), and answers it in the background, committing
//! the policy's fault if it has one. Each push is recorded (`GET .../pushes/{id}`) and
//! every step raises an event: `challenge_pushed`, `prompt_shown`, `approved`/`denied`,
//! `answered` (one per answer sent), `push_finished`.

use super::error::{Body, ControlError, QueryArgs, phone_error_json};
use super::phones::Hosted;
use super::policy::{Ask, Fault, PRE_APPROVED};
use super::{ControlState, Routes, run_blocking};
use crate::api::{
    AnswerDeviceChallenge, ChallengeId, CreateDeviceChallenge, DeviceChallenge, KeyPurpose,
    SignatureHex, Timestamp, now_utc,
};
use crate::phone::{ANSWER_DEVICE_CHALLENGE, Phone, PhoneError, SignOutcome, logic};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pushes kept per phone; older records are dropped.
pub const PUSH_LOG: usize = 100;

static PUSH_IDS: AtomicU64 = AtomicU64::new(0);

/// Where a push stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// Received; the challenge is being fetched.
    Received,
    /// The approval sheet is shown.
    Prompting,
    /// Approved; answers are being sent.
    Answering,
    /// Finished (see `outcome`).
    Done,
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushOutcome {
    /// The bank accepted an answer.
    Answered,
    /// The bank refused every answer sent (a fault, or the challenge was no longer open).
    Refused,
    /// The user denied (or did not decide in time); nothing was sent.
    Denied,
    /// The policy's `never_answer`: approved, nothing sent; the challenge stays open.
    NeverAnswered,
    /// The phone could not handle it (challenge unknown or expired, no key for it).
    Failed,
}

/// One answer sent to the bank.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerRecord {
    /// 1 for the first answer, 2 for the repeat of `answer_twice`.
    pub attempt: u32,
    /// Whether the bank accepted it.
    pub ok: bool,
    /// What was sent: `signature`, `wrong_signature` or `malformed_signature`.
    pub sent: &'static str,
    /// The bank's HTTP status, when it refused (a success is any 2xx).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The bank's error code, when it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Milliseconds from the phone starting this answer to the bank's reply. With no fault
    /// policy that is the phone's whole handling (fetching the challenge again, checking it,
    /// signing, the answer call); with one, signing and the answer call.
    pub ms: f64,
}

/// A push as `GET /phones/{name}/pushes/{id}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PushRecord {
    /// Its id, unique in this server.
    pub id: u64,
    /// The challenge.
    pub challenge_id: ChallengeId,
    /// Where it stands.
    pub state: PushState,
    /// How it ended, once done.
    pub outcome: Option<PushOutcome>,
    /// The key the challenge asks for, once fetched.
    pub key_purpose: Option<KeyPurpose>,
    /// The fault the policy committed (`none` for a correct answer).
    pub fault: String,
    /// The answers sent, in order.
    pub answers: Vec<AnswerRecord>,
    /// The library's outcome, when the phone answered correctly.
    pub result: Option<SignOutcome>,
    /// Why it failed, in the API's error shape.
    pub error: Option<serde_json::Value>,
    /// When the phone received it.
    pub received_at: Timestamp,
    /// When it finished.
    pub finished_at: Option<Timestamp>,
}

/// A phone's recent pushes.
#[derive(Debug, Default)]
pub struct PushLog(Mutex<VecDeque<PushRecord>>);

impl PushLog {
    fn insert(&self, record: PushRecord) {
        let mut log = self.0.lock();
        if log.len() >= PUSH_LOG {
            log.pop_front();
        }
        log.push_back(record);
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut PushRecord)) {
        if let Some(r) = self.0.lock().iter_mut().find(|r| r.id == id) {
            f(r);
        }
    }

    /// The push `id`, if still kept.
    pub fn get(&self, id: u64) -> Option<PushRecord> {
        self.0.lock().iter().find(|r| r.id == id).cloned()
    }

    /// Every kept push, oldest first.
    pub fn all(&self) -> Vec<PushRecord> {
        self.0.lock().iter().cloned().collect()
    }
}

/// Body of `POST /phones/{name}/push`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushArg {
    /// The device-signing challenge a backend created for this phone's device. Without
    /// it, the control server creates one itself, as a backend would (with `key_purpose`).
    pub challenge_id: Option<ChallengeId>,
    /// Only without `challenge_id`: the key the new challenge asks for.
    pub key_purpose: Option<KeyPurpose>,
}

/// `POST /phones/{name}/push`: 202 with the push record; the phone handles it in the
/// background.
async fn push(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    Body(arg): Body<PushArg>,
) -> Result<impl IntoResponse, ControlError> {
    let h = state.phones().get(&name).await?;
    h.ensure_here()?;
    let challenge_id = match arg.challenge_id {
        Some(id) => id,
        None => create_challenge(&h, arg.key_purpose).await?,
    };
    let policy = h.prompt.policy();
    let record = PushRecord {
        id: PUSH_IDS.fetch_add(1, Ordering::Relaxed) + 1,
        challenge_id: challenge_id.clone(),
        state: PushState::Received,
        outcome: None,
        key_purpose: None,
        fault: policy.fault.to_string(),
        answers: Vec::new(),
        result: None,
        error: None,
        received_at: now_utc(),
        finished_at: None,
    };
    h.pushes.insert(record.clone());
    let (run, events) = (h.clone(), state.clone());
    let id = record.id;
    // Detached: the push is handled whatever the caller does next, like a notification.
    tokio::spawn(async move {
        if let Err(e) = run_blocking(handle(
            events.clone(),
            run.clone(),
            id,
            challenge_id,
            policy.fault,
        ))
        .await
        {
            run.pushes.update(id, |r| {
                r.state = PushState::Done;
                r.outcome = Some(PushOutcome::Failed);
                r.error = Some(e.to_json()["error"].clone());
            });
            events.events().publish(
                Some(run.name.as_str()),
                "push_finished",
                serde_json::json!({"push_id": id, "outcome": PushOutcome::Failed}),
            );
        }
    });
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// Creates a device-signing challenge for the phone's bound device, as a backend would.
async fn create_challenge(
    h: &Hosted,
    purpose: Option<KeyPurpose>,
) -> Result<ChallengeId, ControlError> {
    let phone = h.phone.read().await;
    let device_id = match (&phone.profile().device_id, phone.profile().bound) {
        (Some(d), true) => d.clone(),
        _ => {
            return Err(PhoneError::NotBound {
                name: h.name.to_string(),
            }
            .into());
        }
    };
    let req = CreateDeviceChallenge {
        device_id,
        key_purpose: purpose,
        device_data: None,
    };
    let challenge = phone
        .client()
        .create_device_challenge(&req)
        .await
        .map_err(|source| PhoneError::Bank {
            step: "push: create challenge",
            phone: h.name.to_string(),
            source,
        })?;
    Ok(challenge.id)
}

/// Handles one push to the end; runs on a blocking thread (the prompt may wait).
async fn handle(
    state: ControlState,
    h: Arc<Hosted>,
    id: u64,
    challenge_id: ChallengeId,
    fault: Fault,
) {
    let events = state.events().clone();
    let name = h.name.to_string();
    let phone = h.phone.read().await;
    let publish = |kind: &'static str, data: serde_json::Value| {
        events.publish(Some(&name), kind, data);
    };
    let finish = |outcome: PushOutcome, error: Option<&PhoneError>| {
        let error = error.map(phone_error_json);
        h.pushes.update(id, |r| {
            r.state = PushState::Done;
            r.outcome = Some(outcome);
            r.error = error.clone();
            r.finished_at = Some(now_utc());
        });
        publish(
            "push_finished",
            serde_json::json!({"push_id": id, "challenge_id": challenge_id, "outcome": outcome, "error": error}),
        );
    };
    let fetched = phone
        .client()
        .get_device_challenge(&challenge_id)
        .await
        .map_err(|source| PhoneError::Bank {
            step: "push: fetch challenge",
            phone: name.clone(),
            source,
        });
    let challenge = match fetched {
        Ok(c) => c,
        Err(e) => return finish(PushOutcome::Failed, Some(&e)),
    };
    let purpose =
        match logic::plan_device_answer(&challenge, None, &phone.key_purposes(), now_utc()) {
            Ok(p) => p,
            Err(problem) => {
                let e = PhoneError::Challenge {
                    phone: name.clone(),
                    problem,
                };
                return finish(PushOutcome::Failed, Some(&e));
            }
        };
    h.pushes.update(id, |r| {
        r.key_purpose = Some(purpose);
        r.state = PushState::Prompting;
    });
    publish(
        "challenge_pushed",
        serde_json::json!({"push_id": id, "challenge_id": challenge_id, "key_purpose": purpose, "expires_at": challenge.expires_at}),
    );
    // A server that sends no expires_at still expires challenges after the API's 5 minutes.
    let left = challenge
        .expires_at
        .map_or(300, |at| at.unix() - now_utc().unix());
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0));
    let asked = h.prompt.ask(Ask {
        reason: format!("Approve device challenge {challenge_id} with the {purpose} key?"),
        challenge_id: Some(challenge_id.to_string()),
        key_purpose: purpose.to_string(),
        deadline: Some(deadline),
    });
    if asked.is_err() {
        return finish(PushOutcome::Denied, None);
    }
    h.pushes.update(id, |r| r.state = PushState::Answering);
    let answer = |attempt: u32, sent: &'static str, refused: Option<&PhoneError>, ms: f64| {
        let remote = refused
            .and_then(PhoneError::client_error)
            .and_then(crate::client::ClientError::remote);
        let record = AnswerRecord {
            attempt,
            ok: refused.is_none(),
            sent,
            status: remote.map(|r| r.status),
            code: remote.and_then(|r| r.code.as_ref().map(|c| c.as_str().to_owned())),
            ms,
        };
        publish(
            "answered",
            serde_json::json!({"push_id": id, "challenge_id": challenge_id, "answer": record}),
        );
        h.pushes.update(id, |r| r.answers.push(record));
    };
    match fault {
        Fault::None => {
            let started = Instant::now();
            let result = PRE_APPROVED
                .scope(true, phone.sign_challenge(&challenge_id))
                .await;
            let ms = millis(started);
            match result {
                Ok(outcome) => {
                    answer(1, "signature", None, ms);
                    h.pushes.update(id, |r| r.result = Some(outcome));
                    finish(PushOutcome::Answered, None);
                }
                Err(e) => {
                    // The phone fetches the challenge again before it answers: a failure
                    // there sent no answer, and its status is not the answer's.
                    let sent = e.bank_step() == Some(ANSWER_DEVICE_CHALLENGE);
                    if sent {
                        answer(1, "signature", Some(&e), ms);
                    }
                    let outcome = if sent && e.status().is_some() {
                        PushOutcome::Refused
                    } else {
                        PushOutcome::Failed
                    };
                    finish(outcome, Some(&e));
                }
            }
        }
        Fault::NeverAnswer => finish(PushOutcome::NeverAnswered, None),
        fault => {
            if let Fault::Late(d) = fault {
                tokio::time::sleep(d).await;
            }
            let sends: &[&'static str] = match fault {
                Fault::WrongSignature => &["wrong_signature"],
                Fault::MalformedSignature => &["malformed_signature"],
                Fault::AnswerTwice => &["signature", "signature"],
                _ => &["signature"],
            };
            let mut accepted = false;
            let mut last_error = None;
            for (i, sent) in sends.iter().enumerate() {
                let started = Instant::now();
                let result = send_answer(&phone, &challenge, purpose, sent).await;
                let ms = millis(started);
                accepted |= result.is_ok();
                let attempt = u32::try_from(i + 1).unwrap_or(u32::MAX);
                match result {
                    Ok(()) => answer(attempt, sent, None, ms),
                    Err(e) => {
                        answer(attempt, sent, Some(&e), ms);
                        last_error = Some(e);
                    }
                }
            }
            let outcome = if accepted {
                PushOutcome::Answered
            } else {
                PushOutcome::Refused
            };
            // A refused repeat of `answer_twice` is the point of the fault, not the outcome.
            finish(outcome, if accepted { None } else { last_error.as_ref() });
        }
    }
}

fn millis(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Signs `challenge` with `purpose` (the user already approved) and sends the answer the
/// fault asks for: the real signature, one over another message, or a truncated one.
async fn send_answer(
    phone: &Phone,
    challenge: &DeviceChallenge,
    purpose: KeyPurpose,
    sent: &str,
) -> Result<(), PhoneError> {
    let key = phone.vault().key(purpose).ok_or(PhoneError::Keystore(
        vphone_keystore::KeystoreError::NoKey(purpose),
    ))?;
    let message = logic::challenge_message(&challenge.string_to_sign);
    let hex = match sent {
        "wrong_signature" => {
            let mut other = message.to_vec();
            other.extend_from_slice(b"-not-this");
            key.sign_hex(&other)
        }
        // Cut inside the DER structure: valid hex, not a signature the bank can parse.
        "malformed_signature" => key.sign_hex(message)[..16].to_owned(),
        _ => key.sign_hex(message),
    };
    let signature = SignatureHex::parse(&hex).map_err(|source| PhoneError::Value {
        step: "push: signature",
        source,
    })?;
    phone
        .client()
        .answer_device_challenge(
            &challenge.id,
            &AnswerDeviceChallenge {
                signature,
                device_data: None,
            },
        )
        .await
        .map_err(|source| PhoneError::Bank {
            step: "push: answer challenge",
            phone: phone.name().to_string(),
            source,
        })
}

/// `GET /phones/{name}/pushes`: the phone's recent pushes, oldest first.
async fn list(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<PushRecord>>, ControlError> {
    let h = state.phones().get(&name).await?;
    Ok(Json(h.pushes.all()))
}

/// Query of `GET /phones/{name}/pushes/{push_id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushQuery {
    /// Wait up to this long (at most 60000) for the push to finish.
    pub wait_ms: Option<u64>,
}

/// `GET /phones/{name}/pushes/{push_id}`: one push, long-polling with `wait_ms` until done.
async fn show(
    State(state): State<ControlState>,
    Path((name, push_id)): Path<(String, String)>,
    QueryArgs(q): QueryArgs<PushQuery>,
) -> Result<Json<PushRecord>, ControlError> {
    let h = state.phones().get(&name).await?;
    let id: u64 = push_id
        .parse()
        .map_err(|_| ControlError::BadRequest(format!("{push_id:?} is not a push id")))?;
    let missing = || ControlError::NotFound(format!("phone {name} has no push {id}"));
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(super::events::MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    // Subscribed before looking, so a finish between the look and the wait wakes us.
    let mut rx = state.events().subscribe_live();
    loop {
        let record = h.pushes.get(id).ok_or_else(missing)?;
        if record.state == PushState::Done || tokio::time::Instant::now() >= deadline {
            return Ok(Json(record));
        }
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                return h.pushes.get(id).map(Json).ok_or_else(missing);
            }
            Ok(_) => {}
        }
    }
}

/// The push routes.
pub fn routes(r: Routes) -> Routes {
    r.add(Method::POST, "/phones/{name}/push", post(push))
        .add(Method::GET, "/phones/{name}/pushes", get(list))
        .add(Method::GET, "/phones/{name}/pushes/{push_id}", get(show))
}
