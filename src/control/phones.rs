//! The hosted phones: the profiles of one home directory, each loaded once and kept with
//! its user (policy, prompts) and its pushes. Routes: create, list, show, forget, and the
//! SMS a phone received.

use super::error::{Body, ControlError, QueryArgs};
use super::events::EventHub;
use super::policy::Prompt;
use super::push::PushLog;
use super::sms::SmsWatch;
use super::{Bank, ControlState, Routes, run_blocking};
use crate::api::{PersonId, PhoneNumber, SmsMessage, SmsQuery};
use crate::phone::{
    Home, Phone, PhoneError, PhoneName, Profile, ProfileError, SavedPhone, person_named,
    random_number,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use vphone_keystore::Passphrase;

/// One hosted phone.
pub struct Hosted {
    /// Its name.
    pub name: PhoneName,
    /// The phone; flows that change its state take it exclusively.
    pub phone: tokio::sync::RwLock<Phone>,
    /// Its user: policy and pending prompts.
    pub prompt: Arc<Prompt>,
    /// The challenges pushed to it.
    pub pushes: PushLog,
    /// What `show` answers, refreshed after every flow, so reading it never waits for a
    /// flow that holds the phone.
    view: Mutex<PhoneView>,
    /// Whether the phone was set up against the server this control API drives.
    here: bool,
    /// The number a running setup gives the phone, before the profile has it, so the SMS
    /// that verifies it is already the phone's.
    number_hint: Mutex<Option<PhoneNumber>>,
}

impl std::fmt::Debug for Hosted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosted")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A key as `show` lists it: no key material beyond the public fingerprint.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// `unrestricted` or `restricted`.
    pub purpose: String,
    /// The public key's fingerprint.
    pub fingerprint: String,
    /// The bank's id of the key, when known.
    pub key_id: Option<String>,
    /// Sent to the bank, but whether the bank added it is not known yet.
    pub pending: bool,
}

/// A phone as `GET /phones/{name}` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PhoneView {
    /// The saved state (person, number, device, bound, api base, key ids).
    #[serde(flatten)]
    pub profile: Profile,
    /// The keys the phone holds.
    pub keys: Vec<KeyView>,
    /// Whether the phone was set up against the server this control API drives; flows on
    /// other phones are refused.
    pub on_this_server: bool,
}

impl PhoneView {
    fn of(phone: &Phone, here: bool) -> PhoneView {
        let p = phone.profile();
        let keys = phone
            .vault()
            .keys()
            .map(|k| KeyView {
                purpose: k.purpose().to_string(),
                fingerprint: k.fingerprint(),
                key_id: p.key_id(k.purpose()).map(|id| id.to_string()),
                pending: p.pending_key == Some(k.purpose()),
            })
            .collect();
        PhoneView {
            profile: p.clone(),
            keys,
            on_this_server: here,
        }
    }
}

impl Hosted {
    /// The phone as last seen.
    pub fn view(&self) -> PhoneView {
        self.view.lock().clone()
    }

    /// Records the phone's state after a flow.
    pub fn refresh(&self, phone: &Phone) {
        *self.view.lock() = PhoneView::of(phone, self.here);
    }

    /// Refuses flows on a phone set up against another server.
    pub fn ensure_here(&self) -> Result<(), ControlError> {
        if self.here {
            return Ok(());
        }
        Err(ControlError::Conflict(format!(
            "phone {} was set up against {}, not the server this control API drives; forget it (DELETE /phones/{}) or serve with --api pointing at its server",
            self.name,
            self.view()
                .profile
                .api_base
                .as_deref()
                .unwrap_or("another server"),
            self.name
        )))
    }

    /// The phone's number, when it has one (or is being given one).
    pub fn number(&self) -> Option<PhoneNumber> {
        let saved = self.view.lock().profile.number.clone();
        saved.or_else(|| self.number_hint.lock().clone())
    }
}

/// Every hosted phone, loaded from the home directory on first use.
pub struct Phones {
    home: Home,
    passphrase: Option<Arc<Passphrase>>,
    bank: Bank,
    events: EventHub,
    approval_ids: Arc<AtomicU64>,
    approval_timeout: Duration,
    otp_timeout: Duration,
    hosted: Arc<Mutex<BTreeMap<PhoneName, Arc<Hosted>>>>,
    /// Turns SMS into `sms_received` events.
    pub(super) sms: SmsWatch,
}

impl std::fmt::Debug for Phones {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Phones")
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl Phones {
    pub(super) fn new(
        home: Home,
        passphrase: Option<Arc<Passphrase>>,
        bank: Bank,
        events: EventHub,
        approval_timeout: Duration,
        otp_timeout: Duration,
    ) -> Phones {
        let hosted = Arc::new(Mutex::new(BTreeMap::new()));
        let sms = SmsWatch::new(bank.clone(), events.clone(), Arc::clone(&hosted));
        Phones {
            home,
            passphrase,
            bank,
            events,
            approval_ids: Arc::new(AtomicU64::new(0)),
            approval_timeout,
            otp_timeout,
            sms,
            hosted,
        }
    }

    /// The home directory.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The passphrase sealing the phones' files, if any.
    pub fn passphrase(&self) -> Option<Arc<Passphrase>> {
        self.passphrase.clone()
    }

    /// Validates a phone name from a path.
    pub fn known_name(&self, name: &str) -> Result<PhoneName, ControlError> {
        Ok(PhoneName::parse(name)?)
    }

    fn host(&self, phone: Phone) -> Arc<Hosted> {
        let name = phone.name().clone();
        let here = phone
            .profile()
            .api_base
            .as_deref()
            .is_none_or(|b| same_server(b, self.bank.client.base_url()));
        let prompt = Arc::new(Prompt::new(
            name.to_string(),
            self.events.clone(),
            self.approval_ids.clone(),
            self.approval_timeout,
        ));
        let phone = phone
            .with_presence(prompt.clone())
            .with_otp_timeout(self.otp_timeout);
        let view = PhoneView::of(&phone, here);
        let hosted = Arc::new(Hosted {
            name: name.clone(),
            phone: tokio::sync::RwLock::new(phone),
            prompt,
            pushes: PushLog::default(),
            view: Mutex::new(view),
            here,
            number_hint: Mutex::new(None),
        });
        self.hosted.lock().entry(name).or_insert(hosted).clone()
    }

    /// The hosted phone `name`, loading it from the home directory if needed.
    pub async fn get(&self, name: &str) -> Result<Arc<Hosted>, ControlError> {
        let name = PhoneName::parse(name)?;
        if let Some(h) = self.hosted.lock().get(&name) {
            return Ok(h.clone());
        }
        if !self.home.exists(&name) {
            return Err(ControlError::NoPhone(name.to_string()));
        }
        let (home, passphrase) = (self.home.clone(), self.passphrase.clone());
        let load_name = name.clone();
        // Unsealing a vault runs Argon2id: not on an async worker.
        let saved =
            tokio::task::spawn_blocking(move || SavedPhone::load(&home, load_name, passphrase))
                .await
                .map_err(|e| ControlError::Internal(format!("loading phone {name} failed: {e}")))?
                .map_err(ControlError::Phone)?;
        let phone = saved.into_phone(self.bank.client.clone(), self.bank.source.clone());
        let hosted = self.host(phone);
        if let Some(number) = hosted.number() {
            self.sms.watch(number).await;
        }
        Ok(hosted)
    }

    /// Loads every phone of the home directory (those that do not load are logged and
    /// skipped), so their SMS raise events from the start.
    pub async fn load_all(&self) {
        let names = match self.home.list() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the phones");
                return;
            }
        };
        for name in names {
            if let Err(e) = self.get(name.as_str()).await {
                tracing::warn!(phone = %name, error = %e, "cannot load phone");
            }
        }
    }

    /// The phones hosted now, by name.
    pub fn hosted(&self) -> Vec<Arc<Hosted>> {
        self.hosted.lock().values().cloned().collect()
    }
}

/// Whether two base URLs name the same server (ignoring a trailing slash).
fn same_server(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Body of `POST /phones`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePhone {
    /// The phone's name (1-64 letters, digits, `-`, `_`).
    pub name: String,
    /// Its mobile number (E.164). Default: a fresh random `+49151...` number with the
    /// embedded sandbox, `+15550101` (the test number) otherwise.
    pub number: Option<String>,
    /// First name of the new person (default `Vera`).
    pub first_name: Option<String>,
    /// Last name of the new person (default `Phone`).
    pub last_name: Option<String>,
    /// Join this existing person (whose `number` is already verified) instead of creating one.
    pub person_id: Option<String>,
}

/// `POST /phones`: a new person with a verified number, or an existing person.
async fn create(
    State(state): State<ControlState>,
    Body(req): Body<CreatePhone>,
) -> Result<impl IntoResponse, ControlError> {
    let phones = state.phones();
    let name = PhoneName::parse(&req.name)?;
    let number = match &req.number {
        Some(n) => {
            PhoneNumber::parse(n).map_err(|e| ControlError::BadRequest(format!("number: {e}")))?
        }
        None if state.bank().embedded.is_some() => random_number(),
        None => PhoneNumber::test_number(),
    };
    let person = req
        .person_id
        .as_deref()
        .map(PersonId::from_user)
        .transpose()
        .map_err(|e| ControlError::BadRequest(format!("person_id: {e}")))?;
    let hosted = match phones.get(name.as_str()).await {
        Ok(h) => {
            // A phone whose setup stopped half-way is finished by creating it again.
            let p = h.view().profile;
            if p.is_registered() || (person.is_some() && p.person_id.is_some()) {
                return Err(ProfileError::Exists {
                    name: name.to_string(),
                    path: phones.home().path_of(&name),
                }
                .into());
            }
            h.ensure_here()?;
            h
        }
        Err(ControlError::NoPhone(_)) => {
            let phone = Phone::create(
                phones.home(),
                name.clone(),
                state.bank().client.clone(),
                state.bank().source.clone(),
                phones.passphrase.clone(),
            )?;
            phones.host(phone)
        }
        Err(e) => return Err(e),
    };
    let first = req.first_name.unwrap_or_else(|| "Vera".to_owned());
    let last = req.last_name.unwrap_or_else(|| "Phone".to_owned());
    let events = state.events().clone();
    *hosted.number_hint.lock() = Some(number.clone());
    // Watching before the first SMS is sent, so it is announced.
    phones.sms.watch(number.clone()).await;
    let h = hosted.clone();
    let outcome = run_blocking(async move {
        let mut phone = h.phone.write().await;
        let result = match person {
            Some(person) => phone.join_person(person, number).map(|()| None),
            None => phone
                .register(person_named(&first, &last), number)
                .await
                .map(Some),
        };
        h.refresh(&phone);
        result
    })
    .await?;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            super::flows::publish_failure(&events, &hosted.name, "create", &e);
            return Err(e.into());
        }
    };
    let view = hosted.view();
    events.publish(
        Some(name.as_str()),
        "phone_created",
        serde_json::json!({"phone": view, "outcome": outcome}),
    );
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"phone": view, "outcome": outcome})),
    ))
}

/// `GET /phones`: every phone of the home directory.
async fn list(State(state): State<ControlState>) -> Result<Json<Vec<PhoneView>>, ControlError> {
    let names = state.phones().home().list().map_err(PhoneError::from)?;
    let mut views = Vec::with_capacity(names.len());
    for name in names {
        match state.phones().get(name.as_str()).await {
            Ok(h) => views.push(h.view()),
            // Removed between listing and loading: not a phone any more.
            Err(ControlError::NoPhone(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Json(views))
}

/// `GET /phones/{name}`.
async fn show(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ControlError> {
    let h = state.phones().get(&name).await?;
    let mut value = serde_json::to_value(h.view())
        .map_err(|e| ControlError::Internal(format!("cannot render phone {name}: {e}")))?;
    value["policy"] = serde_json::to_value(h.prompt.policy()).unwrap_or_default();
    value["pending_approvals"] = h.prompt.pending().len().into();
    Ok(Json(value))
}

/// `DELETE /phones/{name}`: forgets the phone here (its file); the bank keeps its device.
async fn forget(
    State(state): State<ControlState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ControlError> {
    let phones = state.phones();
    let h = phones.get(&name).await?;
    // Waits for a running flow, so the file is not rewritten after it is removed.
    let _phone = h.phone.write().await;
    let path = phones.home().path_of(&h.name);
    std::fs::remove_file(&path).map_err(|source| {
        ControlError::Phone(PhoneError::Profile(ProfileError::Io {
            path: path.clone(),
            source,
        }))
    })?;
    phones.hosted.lock().remove(&h.name);
    state.events().publish(
        Some(h.name.as_str()),
        "phone_forgotten",
        serde_json::json!({}),
    );
    Ok(Json(serde_json::json!({"forgotten": h.name.as_str()})))
}

/// Query of `GET /phones/{name}/sms`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsArgs {
    /// Only SMS with a sequence number above this.
    pub after: Option<u64>,
    /// Wait up to this long (at most 60000) for the first one.
    pub wait_ms: Option<u64>,
}

/// `GET /phones/{name}/sms`: the SMS the phone's number received, oldest first.
async fn sms(
    State(state): State<ControlState>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<SmsArgs>,
) -> Result<Json<Vec<SmsMessage>>, ControlError> {
    let h = state.phones().get(&name).await?;
    let Some(number) = h.number() else {
        return Ok(Json(Vec::new()));
    };
    let after = q.after.unwrap_or(0);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(super::events::MAX_WAIT);
    if let Some(sandbox) = &state.bank().embedded {
        return Ok(Json(sandbox.wait_sms(&number, after, wait).await));
    }
    let query = SmsQuery {
        number,
        after,
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(0),
    };
    match state.bank().client.sandbox_sms(&query).await {
        Ok(list) => Ok(Json(list)),
        Err(e) if matches!(e.status(), Some(404 | 405)) => Err(ControlError::Conflict(format!(
            "{} has no vphone SMS outbox, so the SMS of phone {name} cannot be read here",
            state.bank().client.base_url()
        ))),
        Err(source) => Err(ControlError::Phone(PhoneError::Bank {
            step: "read SMS",
            phone: name,
            source,
        })),
    }
}

/// The phone routes.
pub fn routes(r: Routes) -> Routes {
    r.add(Method::GET, "/phones", get(list))
        .add(Method::POST, "/phones", post(create))
        .add(Method::GET, "/phones/{name}", get(show))
        .add(Method::DELETE, "/phones/{name}", delete(forget))
        .add(Method::GET, "/phones/{name}/sms", get(sms))
}
