//! The sandbox's state: one sharded map per entity, each entry behind its own small lock, so
//! requests about different persons, devices or challenges never wait for each other.
//!
//! Lock order. Entity locks are taken only in this order, each level optional, never the
//! other way round:
//!
//! 1. a challenge's or a change request's lock (one at most);
//! 2. a person's lock (one at most);
//! 3. a device's lock (one at most);
//! 4. a `bound_keys` shard, innermost: nothing is locked while it is held.
//!
//! For example, binding (answering the signature challenge) takes challenge, person, device,
//! `bound_keys`; deleting a device takes person, device, `bound_keys`; adding a key takes
//! device, `bound_keys`; a change request's confirmation takes the change request, then the
//! device (to read its key) and later the person (to apply the change), one after the other.
//!
//! The entity tables' own shard locks (`persons`, `devices`, `challenges`, `change_requests`)
//! are held only for a lookup, insert or removal, never while waiting for an entity lock;
//! [`SandboxState::sweep`], which looks at entries inside `retain`, only `try_lock`s them.

use super::attempts::Attempts;
use super::change_requests::ChangeRequestEntry;
use super::clock::{Clock, SystemClock};
use super::config::{PartnerConfig, SandboxConfig};
use super::error::ApiError;
use super::ratelimit::Window;
use super::serve::{ConnCounters, ConnectionStats};
use super::sms::SmsCenter;
use super::verify::VerifyingKey;
use crate::api::{
    ChallengeId, ChangeRequestId, DeviceId, KeyId, KeyPurpose, MobileNumberId, Otp, Person,
    PersonId, PhoneNumber, SmsMessage, Timestamp,
};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::broadcast;

/// Index of a partner in the configuration.
pub(crate) type PartnerIdx = u16;

/// A map entry owned by one partner, its data behind its own lock.
pub(crate) struct Owned<T> {
    pub partner: PartnerIdx,
    pub data: Mutex<T>,
}

pub(crate) type Table<K, T> = DashMap<K, Arc<Owned<T>>>;

/// A person and what hangs off it.
pub(crate) struct PersonEntry {
    pub person: Person,
    pub mobile: Option<MobileEntry>,
    /// Every device that was ever bound, in binding order (deleted ones included).
    pub devices: Vec<DeviceId>,
    /// Bound and not deleted devices; the device-limit rule is checked against this.
    pub bound: usize,
    /// The latest SMS with a code sent to the person, for [`SandboxConfig::sms_rate_limit`].
    pub sms_sent: Window,
}

/// A person's mobile number.
pub(crate) struct MobileEntry {
    pub id: MobileNumberId,
    pub number: PhoneNumber,
    pub verified: bool,
    pub otp: Option<(Otp, Attempts)>,
}

/// One public key of a device.
pub(crate) struct KeyEntry {
    pub id: KeyId,
    pub purpose: KeyPurpose,
    pub key: VerifyingKey,
    pub created_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// A device, bound once its binding challenge is answered.
pub(crate) struct DeviceEntry {
    pub id: DeviceId,
    pub person_id: PersonId,
    pub name: String,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    pub verified: bool,
    pub keys: Vec<KeyEntry>,
    pub device_data: Option<String>,
}

impl PersonEntry {
    /// The person's verified number, where an OTP or TAN `for_what` can be sent; else the
    /// bank's `telephone_number_not_found` refusal ending in `next_step`.
    pub fn verified_number(
        &self,
        for_what: &str,
        next_step: &str,
    ) -> Result<PhoneNumber, ApiError> {
        self.mobile
            .as_ref()
            .filter(|m| m.verified)
            .map(|m| m.number.clone())
            .ok_or_else(|| {
                ApiError::telephone_number_not_found(format!(
                    "the person has no verified mobile number to send the {for_what} to; {next_step}"
                ))
            })
    }
}

impl PersonEntry {
    /// Refuses with 403 `mobile_number_changed` unless the person's verified number is still
    /// `sent_to`, the number the `what` (an OTP or TAN) was sent to; `start_again` says what
    /// to start anew.
    pub fn check_still_verified(
        &self,
        sent_to: &PhoneNumber,
        what: &str,
        start_again: &str,
    ) -> Result<(), ApiError> {
        match &self.mobile {
            Some(m) if m.verified && m.number == *sent_to => Ok(()),
            _ => Err(ApiError::mobile_number_changed(format!(
                "the {what} was sent to a mobile number that is no longer the person's verified number; {start_again}"
            ))),
        }
    }
}

impl DeviceEntry {
    /// The key of a purpose, if the device has one.
    pub fn key(&self, purpose: KeyPurpose) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.purpose == purpose)
    }
}

/// What a challenge asks for.
pub(crate) enum ChallengeWhat {
    /// Binding: the new device signs the OTP sent by SMS to `sent_to`, which must still be
    /// the person's verified number when it is answered.
    Binding {
        device_id: DeviceId,
        otp: Otp,
        sent_to: PhoneNumber,
    },
    /// Device signing: the device signs `string_to_sign` with the key of `purpose`.
    Device {
        device_id: DeviceId,
        purpose: KeyPurpose,
        string_to_sign: String,
    },
    /// SMS: the person types the OTP sent to `sent_to`, which must still be their verified
    /// number when it is answered.
    Sms {
        person_id: PersonId,
        otp: Otp,
        sent_to: PhoneNumber,
    },
}

/// A challenge of any kind.
pub(crate) struct ChallengeEntry {
    pub what: ChallengeWhat,
    pub attempts: Attempts,
}

/// What one [`SandboxState::sweep`] forgot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Challenges (any kind) finished for longer than the retention window.
    pub challenges: usize,
    /// Unverified devices whose binding challenge was forgotten.
    pub devices: usize,
    /// Change requests finished for longer than the retention window.
    pub change_requests: usize,
}

/// What the bank recorded about one challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeRecord {
    /// Open, completed, or spent by wrong answers.
    pub status: super::attempts::Status,
    /// Wrong answers so far.
    pub failed: u32,
}

/// Counters of the sandbox's work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SandboxStats {
    /// HTTP requests served (all routes).
    pub requests: u64,
    /// ECDSA verifications performed.
    pub verifications: u64,
    /// Time spent inside those verifications, in nanoseconds (wall time of the verify call on
    /// its worker thread; the call does no I/O, so this is its CPU time).
    pub verify_nanos: u64,
    /// Devices that became bound.
    pub bindings: u64,
    /// SMS delivered.
    pub sms_sent: u64,
    /// Persons held now.
    pub live_persons: u64,
    /// Devices held now (bound, deleted, and unverified ones waiting for their binding).
    pub live_devices: u64,
    /// Challenges of every kind held now (open ones, and finished ones within retention).
    pub live_challenges: u64,
    /// Change requests held now (open ones, and finished ones within retention).
    pub live_change_requests: u64,
    /// Entries forgotten by sweeps so far (challenges, devices and change requests).
    pub swept: u64,
    /// Requests refused with 429 `too_many_requests` (SMS per person, tokens per partner).
    pub rate_limited: u64,
    /// `/sandbox/sms` long-polls answered at once because the long-poll cap was reached.
    pub long_polls_capped: u64,
    /// Connections: accepted, open, the cap, accept errors, timeouts, evictions.
    pub connections: ConnectionStats,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub verifications: AtomicU64,
    pub verify_nanos: AtomicU64,
    pub bindings: AtomicU64,
    pub sms_sent: AtomicU64,
    pub swept: AtomicU64,
    pub rate_limited: AtomicU64,
    pub long_polls_capped: AtomicU64,
}

pub(crate) struct TokenEntry {
    pub partner: PartnerIdx,
    pub expires_at: Timestamp,
}

pub(crate) struct Inner {
    pub config: SandboxConfig,
    pub clock: Arc<dyn Clock>,
    pub tokens: DashMap<String, TokenEntry>,
    pub persons: Table<PersonId, PersonEntry>,
    pub devices: Table<DeviceId, DeviceEntry>,
    pub challenges: Table<ChallengeId, ChallengeEntry>,
    pub change_requests: Table<ChangeRequestId, ChangeRequestEntry>,
    /// Public keys of bound, not deleted devices, per partner.
    pub bound_keys: DashMap<(PartnerIdx, Box<[u8]>), DeviceId>,
    /// Unverified devices of forgotten bindings that were busy when last swept.
    pub orphans: Mutex<Vec<DeviceId>>,
    pub sms: SmsCenter,
    pub counters: Counters,
    pub conn_counters: ConnCounters,
    /// The fault rules in force, with their counters and seeded generator.
    pub faults: super::faults::FaultEngine,
    /// `/sandbox/sms` long-polls waiting now.
    pub long_polls: AtomicUsize,
    /// Tokens issued lately, per partner (indexed like the config's partners).
    pub tokens_issued: Vec<Mutex<Window>>,
}

/// The whole sandbox: configuration, clock and data. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct SandboxState(pub(crate) Arc<Inner>);

impl std::fmt::Debug for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxState")
            .field("partners", &self.0.config.partners.len())
            .field("persons", &self.0.persons.len())
            .field("devices", &self.0.devices.len())
            .finish_non_exhaustive()
    }
}

impl SandboxState {
    /// A sandbox on the system clock.
    pub fn new(config: SandboxConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// A sandbox on the given clock (use a `ManualClock` to expire challenges in tests).
    pub fn with_clock(config: SandboxConfig, clock: Arc<dyn Clock>) -> Self {
        let tokens_issued = config
            .partners
            .iter()
            .map(|_| Mutex::new(Window::default()))
            .collect();
        let rules = config
            .latency
            .map(super::faults::FaultRule::fixed_latency)
            .into_iter()
            .chain(config.faults.iter().cloned())
            .collect();
        let seed = config.faults_seed.unwrap_or_else(rand::random);
        SandboxState(Arc::new(Inner {
            faults: super::faults::FaultEngine::new(rules, seed),
            tokens_issued,
            conn_counters: ConnCounters::default(),
            long_polls: AtomicUsize::new(0),
            config,
            clock,
            tokens: DashMap::new(),
            persons: DashMap::new(),
            devices: DashMap::new(),
            challenges: DashMap::new(),
            change_requests: DashMap::new(),
            bound_keys: DashMap::new(),
            orphans: Mutex::new(Vec::new()),
            sms: SmsCenter::new(),
            counters: Counters::default(),
        }))
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SandboxConfig {
        &self.0.config
    }

    /// Now, by the sandbox's clock.
    pub fn now(&self) -> Timestamp {
        self.0.clock.now()
    }

    /// Every SMS delivered from now on.
    pub fn subscribe_sms(&self) -> broadcast::Receiver<SmsMessage> {
        self.0.sms.subscribe()
    }

    /// The SMS delivered to `number` with `seq > after_seq`, oldest first.
    pub fn sms_since(&self, number: &PhoneNumber, after_seq: u64) -> Vec<SmsMessage> {
        self.0.sms.release_due(self.0.clock.now());
        self.0.sms.since(number, after_seq)
    }

    /// Like [`SandboxState::sms_since`], waiting up to `wait` (at most a minute) for one.
    pub async fn wait_sms(
        &self,
        number: &PhoneNumber,
        after_seq: u64,
        wait: std::time::Duration,
    ) -> Vec<SmsMessage> {
        self.0.sms.release_due(self.0.clock.now());
        self.0.sms.wait_since(number, after_seq, wait).await
    }

    /// Where challenge `id` (of any kind) stands at the bank and how many wrong answers it
    /// had, for tests and tools that check what the bank recorded; `None` when the sandbox
    /// does not know it (never issued, or forgotten after retention).
    pub fn challenge_status(&self, id: &ChallengeId) -> Option<ChallengeRecord> {
        let entry = self.0.challenges.get(id)?.clone();
        let c = entry.data.lock();
        Some(ChallengeRecord {
            status: c.attempts.status,
            failed: c.attempts.failed,
        })
    }

    /// Every fault rule in force with the faults it injected so far.
    pub fn fault_counts(&self) -> Vec<super::faults::FaultCount> {
        self.0.faults.counts()
    }

    /// The seed fault decisions draw from.
    pub fn faults_seed(&self) -> u64 {
        self.0.faults.seed()
    }

    /// `/sandbox/sms` long-polls waiting right now.
    pub fn long_polls_waiting(&self) -> usize {
        self.0.long_polls.load(Ordering::Acquire)
    }

    /// The work counters so far.
    pub fn stats(&self) -> SandboxStats {
        let c = &self.0.counters;
        SandboxStats {
            requests: c.requests.load(Ordering::Relaxed),
            verifications: c.verifications.load(Ordering::Relaxed),
            verify_nanos: c.verify_nanos.load(Ordering::Relaxed),
            bindings: c.bindings.load(Ordering::Relaxed),
            sms_sent: c.sms_sent.load(Ordering::Relaxed),
            live_persons: self.0.persons.len() as u64,
            live_devices: self.0.devices.len() as u64,
            live_challenges: self.0.challenges.len() as u64,
            live_change_requests: self.0.change_requests.len() as u64,
            swept: c.swept.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            long_polls_capped: c.long_polls_capped.load(Ordering::Relaxed),
            connections: self.0.conn_counters.snapshot(),
        }
    }

    /// Forgets every challenge and change request that has been finished (completed, spent or
    /// expired) for longer than [`SandboxConfig::retention`], and the unverified device of
    /// every forgotten binding challenge; their ids answer 404 from now on.
    ///
    /// Takes no global lock: each map is walked one shard at a time, and an entry whose own
    /// lock is busy (a request is answering it right now) is skipped until the next sweep, so
    /// the sweep never waits for a request. [`spawn`](super::spawn) and
    /// [`spawn_with`](super::spawn_with) run it every [`SandboxConfig::sweep_interval`]; a
    /// test on a `ManualClock` can call it directly.
    pub fn sweep(&self) -> Swept {
        let inner = &*self.0;
        let now = inner.clock.now();
        let retention = inner.config.retention;
        let lifetime = inner.config.challenge_lifetime;
        let mut swept = Swept::default();
        let mut orphans = Vec::new();
        inner.challenges.retain(|_, entry| {
            let Some(c) = entry.data.try_lock() else {
                return true;
            };
            if !c.attempts.forgettable(now, retention) {
                return true;
            }
            if let ChallengeWhat::Binding { device_id, .. } = &c.what {
                orphans.push(device_id.clone());
            }
            swept.challenges += 1;
            false
        });
        // Only a finished binding's challenge could verify the device, so an unverified
        // device here stays unverified. One whose lock is busy is tried again next sweep.
        orphans.append(&mut inner.orphans.lock());
        let mut busy = Vec::new();
        for id in orphans {
            let mut gone = false;
            let mut unlocked = true;
            inner
                .devices
                .remove_if(&id, |_, d| match d.data.try_lock() {
                    Some(d) => {
                        gone = !d.verified;
                        gone
                    }
                    None => {
                        unlocked = false;
                        false
                    }
                });
            if gone {
                swept.devices += 1;
            } else if !unlocked {
                busy.push(id);
            }
        }
        inner.orphans.lock().append(&mut busy);
        inner.change_requests.retain(|_, entry| {
            let Some(cr) = entry.data.try_lock() else {
                return true;
            };
            let forget = cr.forgettable(now, lifetime, retention);
            swept.change_requests += usize::from(forget);
            !forget
        });
        let total = swept.challenges + swept.devices + swept.change_requests;
        inner
            .counters
            .swept
            .fetch_add(total as u64, Ordering::Relaxed);
        swept
    }

    /// Runs [`SandboxState::sweep`] every [`SandboxConfig::sweep_interval`] on the blocking
    /// pool until the sandbox is dropped or the returned task is aborted. [`spawn`](super::spawn)
    /// and [`spawn_with`](super::spawn_with) start one; call this when serving
    /// [`router`](super::router) yourself.
    pub fn start_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.0);
        let every = self.0.config.sweep_interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let state = SandboxState(inner);
                match tokio::task::spawn_blocking(move || state.sweep()).await {
                    Ok(swept) if swept != Swept::default() => {
                        tracing::debug!(?swept, "sandbox sweep");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sandbox sweep failed"),
                }
            }
        })
    }

    /// The partners it serves.
    pub fn partners(&self) -> &[PartnerConfig] {
        &self.0.config.partners
    }
}

impl Inner {
    /// Finds an entry the calling partner owns; anything else is `not_found`.
    pub fn owned<K, T>(
        &self,
        table: &Table<K, T>,
        partner: PartnerIdx,
        id: &K,
        what: &str,
    ) -> Result<Arc<Owned<T>>, ApiError>
    where
        K: std::hash::Hash + Eq + std::fmt::Display,
    {
        match table.get(id) {
            Some(entry) if entry.partner == partner => Ok(entry.clone()),
            _ => Err(ApiError::not_found(format!(
                "there is no {what} {id} for this partner; check the id"
            ))),
        }
    }

    /// Like [`Inner::owned`] for challenges and change requests, whose 404 also says that
    /// finished ones are forgotten after the retention window.
    pub fn answerable<K, T>(
        &self,
        table: &Table<K, T>,
        partner: PartnerIdx,
        id: &K,
        what: &str,
    ) -> Result<Arc<Owned<T>>, ApiError>
    where
        K: std::hash::Hash + Eq + std::fmt::Display,
    {
        self.owned(table, partner, id, what).map_err(|_| {
            ApiError::not_found(format!(
                "there is no {what} {id} for this partner; check the id (a {what} is forgotten {} after it was completed, spent or expired)",
                humantime::format_duration(self.config.retention)
            ))
        })
    }

    /// Inserts a fresh entry.
    pub fn insert<K: std::hash::Hash + Eq, T>(
        table: &Table<K, T>,
        partner: PartnerIdx,
        id: K,
        data: T,
    ) {
        table.insert(
            id,
            Arc::new(Owned {
                partner,
                data: Mutex::new(data),
            }),
        );
    }

    /// Admits one more SMS with a code to a person under [`SandboxConfig::sms_rate_limit`],
    /// or refuses with 429 `too_many_requests`. Called with the person's lock held.
    pub fn admit_sms(&self, person: &mut PersonEntry) -> Result<(), ApiError> {
        let limit = self.config.sms_rate_limit;
        person.sms_sent.admit(limit, self.clock.now()).map_err(|r| {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            r.refusal("SMS with a code to this person", limit)
        })
    }

    /// Admits one more access token for a partner under [`SandboxConfig::token_rate_limit`].
    pub fn admit_token(&self, partner: PartnerIdx) -> Result<(), ApiError> {
        let limit = self.config.token_rate_limit;
        let Some(window) = self.tokens_issued.get(usize::from(partner)) else {
            return Ok(());
        };
        window.lock().admit(limit, self.clock.now()).map_err(|r| {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            r.refusal("access tokens for this client", limit)
        })
    }

    /// Verifies a signature, counting the work. With [`SandboxConfig::strict_low_s`], a
    /// high-S signature does not verify.
    pub fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
        if self.config.strict_low_s && super::verify::is_high_s(der) {
            return false;
        }
        let start = std::time::Instant::now();
        let ok = key.verify(message, der);
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.counters.verifications.fetch_add(1, Ordering::Relaxed);
        self.counters
            .verify_nanos
            .fetch_add(nanos, Ordering::Relaxed);
        ok
    }

    /// Sends an OTP to a number by SMS.
    pub fn send_otp(
        &self,
        number: &PhoneNumber,
        language: Option<crate::api::Language>,
        app_signature: Option<&str>,
    ) -> Otp {
        let otp = super::sms::new_otp(number, self.config.static_otp);
        let language = language.unwrap_or(crate::api::Language::En);
        let text = super::sms::sms_text(
            &otp,
            language,
            self.config.challenge_lifetime,
            app_signature,
        );
        // Fault rules may delay, drop, repeat or reorder it (decided per request).
        let fate = super::faults::sms_fate(&self.faults);
        self.sms
            .send(number, text, language, self.clock.now(), fate);
        self.counters.sms_sent.fetch_add(1, Ordering::Relaxed);
        otp
    }

    /// A new, open attempt budget starting now.
    pub fn new_attempts(&self) -> Attempts {
        Attempts::new(self.clock.now(), self.config.challenge_lifetime)
    }
}
