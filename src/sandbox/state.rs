//! The sandbox's state: one sharded map per entity, each entry behind its own small lock, so
//! requests about different persons, devices or challenges never wait for each other.
//!
//! Lock order. Entity locks are taken only in this order, each level optional, never the
//! other way round:
//!
//! 1. a challenge's or a change request's lock (one at most);
//! 2. a person's lock (one at most);
//! 3. a device's lock (one at most);
//! 4. a `bound_keys` shard, or the generator (`rng`), innermost: nothing is locked while
//!    either is held, and neither is held while the other is taken.
//! 5. with `--state`, the commit queue's lock (`Inner::commit` queues rows under the entity
//!    locks of what it changed; nothing else is taken while the queue's lock is held).
//!
//! For example, binding (answering the signature challenge) takes challenge, person, device,
//! `bound_keys`; deleting a device takes person, device, `bound_keys`; adding a key takes
//! device, `bound_keys`; a change request's confirmation takes the change request, then the
//! device (to read its key) and later the person (to apply the change), one after the other.
//! A request refused because a key is bound takes the claiming device's lock once it holds
//! no device lock of its own ([`Inner::bound_once_queued`]).
//!
//! No lock is held while a signature is verified (a binding's, a device challenge's, a new
//! key's or a change request's): the handler reads what to verify under the entities' locks
//! (challenge or change request, and device), releases them, verifies, and takes the locks
//! again (in the order above) to check and commit (`core::preverify`).
//!
//! The connection pool's registry (`conn_pool`, shared by every listener) is locked only
//! for an insert, a removal, the scan that picks a connection to evict, or a stopping
//! listener's scan that asks its connections to close, with nothing else held; nothing is
//! taken while it is held but a connection's `Notify`.
//!
//! The entity tables' own shard locks (`persons`, `devices`, `challenges`, `change_requests`)
//! are held only for a lookup, insert or removal, never while waiting for an entity lock;
//! [`SandboxState::sweep`], which looks at entries inside `retain`, only `try_lock`s them,
//! and queues their Forget rows there (the commit queue's lock is innermost).

use super::clock::{Clock, SystemClock};
use super::config::{PartnerConfig, SandboxConfig};
use super::core::preverify::ToVerify;
use super::core::{KeyIndex, Refusal, SendOtp, Verifier};
use super::error::ApiError;
use super::ratelimit::Window;
use super::serve::{ConnCounters, ConnectionStats};
use super::sms::SmsCenter;
use super::store::{GroupCommit, Snapshot, Store, StoreError, Write};
use super::verify::{Point, VerifyingKey};
use crate::api::{
    ChallengeId, ChangeRequestId, DeviceId, PersonId, PhoneNumber, SmsMessage, Timestamp,
};
use dashmap::DashMap;
use parking_lot::Mutex;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::broadcast;

/// How far a restarted sandbox's SMS numbering jumps past the stored number.
const SMS_SEQ_GAP: u64 = 100_000;
// The stored number runs ahead of the messages sent; the gap still skips any in flight.
const _: () = assert!(super::store::SMS_SEQ_STRIDE * 10 <= SMS_SEQ_GAP);

/// Index of a partner in the configuration.
pub(crate) type PartnerIdx = u16;

/// A map entry owned by one partner, its data behind its own lock.
pub(crate) struct Owned<T> {
    pub partner: PartnerIdx,
    pub data: Mutex<T>,
}

/// A concurrent map hashed with foldhash: its seed is random per map, and it is several
/// times cheaper than the standard library's SipHash on the sandbox's short string keys.
pub(crate) type Map<K, V> = DashMap<K, V, foldhash::fast::RandomState>;

pub(crate) type Table<K, T> = Map<K, Arc<Owned<T>>>;

pub(crate) use super::core::challenges::{ChallengeEntry, ChallengeWhat};
pub(crate) use super::core::change_requests::ChangeRequestEntry;
pub(crate) use super::core::devices::DeviceEntry;
pub(crate) use super::core::persons::PersonEntry;

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
    pub tokens: Map<String, TokenEntry>,
    pub persons: Table<PersonId, PersonEntry>,
    pub devices: Table<DeviceId, DeviceEntry>,
    pub challenges: Table<ChallengeId, ChallengeEntry>,
    pub change_requests: Table<ChangeRequestId, ChangeRequestEntry>,
    /// Public keys of bound, not deleted devices, per partner. An entry naming a device is
    /// made and removed only under that device's lock, which is held until the change's rows
    /// are queued (or the change is undone): see [`Inner::bound_once_queued`].
    pub bound_keys: Map<(PartnerIdx, Point), DeviceId>,
    /// Unverified devices of forgotten bindings that were busy when last swept.
    pub orphans: Mutex<Vec<DeviceId>>,
    pub sms: SmsCenter,
    pub counters: Counters,
    pub conn_counters: ConnCounters,
    /// The connection cap and registry every listener of this sandbox shares.
    pub conn_pool: super::serve::ConnPool,
    /// The fault rules in force, with their counters and seeded generator.
    pub faults: super::faults::FaultEngine,
    /// This process's instance id (see [`SandboxState::instance`]).
    pub instance: String,
    /// `/sandbox/sms` long-polls waiting now.
    pub long_polls: AtomicUsize,
    /// Tokens issued lately, per partner (indexed like the config's partners).
    pub tokens_issued: Vec<Mutex<Window>>,
    /// The generator every id, OTP and string to sign draws from (innermost lock: held only
    /// while drawing bytes, see [`SharedRng`]).
    pub rng: Mutex<StdRng>,
    /// Commits to the store that keeps entities beyond the process (see [`super::store`]);
    /// `None` when nothing is kept beyond memory (then no writes are built).
    pub group: Option<GroupCommit>,
}

/// The answer to a change the sandbox could not save to its state file.
pub fn storage_error() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        crate::api::ErrorCode::Other("storage_error".to_owned()),
        "Storage Error",
        "the sandbox could not save this change to its state file; it refuses changes until it is restarted, and a restart serves what was saved",
    )
}

/// The generator's seed for a sandbox started with `--seed` on a stored bank: a digest of
/// `seed` and every stored id, so a restart does not draw the ids of the entities it restored
/// again; `None` for an empty store (the seed is used as given).
fn seed_after_restart(seed: u64, snapshot: &Snapshot) -> Option<[u8; 32]> {
    let mut ids: Vec<&str> = Vec::new();
    for (_, p) in &snapshot.persons {
        ids.push(p.person.id.as_str());
        ids.extend(p.mobile.as_ref().map(|m| m.id.as_str()));
    }
    for (_, d) in &snapshot.devices {
        ids.push(d.id.as_str());
        ids.extend(d.keys.iter().map(|k| k.id.as_str()));
    }
    ids.extend(snapshot.challenges.iter().map(|(_, id, _)| id.as_str()));
    ids.extend(snapshot.change_requests.iter().map(|(_, c)| c.id.as_str()));
    if ids.is_empty() && snapshot.sms_seq == 0 {
        return None;
    }
    // Sorted: the store's row order is not part of the history.
    ids.sort_unstable();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"vphone-sandbox/seed-after-restart/v1");
    ctx.update(&seed.to_le_bytes());
    ctx.update(&snapshot.sms_seq.to_le_bytes());
    for id in ids {
        ctx.update(&(id.len() as u64).to_le_bytes());
        ctx.update(id.as_bytes());
    }
    let mut mixed = [0u8; 32];
    mixed.copy_from_slice(ctx.finish().as_ref());
    Some(mixed)
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
        Self::build(config, clock, None)
    }

    /// A sandbox that keeps its bank in `store`, starting from what the store holds.
    /// Entities of partners no longer configured are left in the store and not served.
    pub fn with_store(
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
        store: Box<dyn Store>,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load()?;
        let seed = config.seed;
        let group = if store.is_durable() {
            Some(GroupCommit::start(store)?)
        } else {
            None
        };
        let state = Self::build(config, clock, group);
        if let Some(mixed) = seed.and_then(|seed| seed_after_restart(seed, &snapshot)) {
            // The seed alone would draw the ids the stored bank already holds once more, and
            // a new person would take an old one's id. Mixed with what is stored, a restart
            // goes on with ids not drawn before, and the same history still replays alike.
            *state.0.rng.lock() = StdRng::from_seed(mixed);
        }
        state.restore(snapshot);
        Ok(state)
    }

    fn restore(&self, snapshot: Snapshot) {
        let inner = &*self.0;
        let partner = |client_id: &str| {
            inner
                .config
                .partners
                .iter()
                .position(|p| p.client_id == client_id)
                .and_then(|i| PartnerIdx::try_from(i).ok())
        };
        let mut skipped = 0usize;
        // Unverified devices, and the devices binding challenges name (see below).
        let mut unverified = Vec::new();
        let mut reached = std::collections::HashSet::new();
        for (client_id, entry) in snapshot.persons {
            match partner(&client_id) {
                Some(p) => Inner::insert(&inner.persons, p, entry.person.id.clone(), entry),
                None => skipped += 1,
            }
        }
        for (client_id, entry) in snapshot.devices {
            let Some(p) = partner(&client_id) else {
                skipped += 1;
                continue;
            };
            if entry.verified && entry.deleted_at.is_none() {
                for key in &entry.keys {
                    inner
                        .bound_keys
                        .insert((p, *key.key.point()), entry.id.clone());
                }
            }
            if !entry.verified {
                unverified.push(entry.id.clone());
            }
            Inner::insert(&inner.devices, p, entry.id.clone(), entry);
        }
        for (client_id, id, entry) in snapshot.challenges {
            match partner(&client_id) {
                Some(p) => {
                    if let ChallengeWhat::Binding { device_id, .. } = &entry.what {
                        reached.insert(device_id.clone());
                    }
                    Inner::insert(&inner.challenges, p, id, entry);
                }
                None => skipped += 1,
            }
        }
        for (client_id, entry) in snapshot.change_requests {
            match partner(&client_id) {
                Some(p) => Inner::insert(&inner.change_requests, p, entry.id.clone(), entry),
                None => skipped += 1,
            }
        }
        // An unverified device is reached only through its binding challenge. The sweep
        // forgets such a challenge and then its device, in two commits, and keeps a device
        // that was busy in `orphans` for the next sweep; a process that ended in between
        // leaves a device whose challenge is gone. Such devices are orphans again, so the
        // next sweep forgets them as it would have without the restart.
        inner
            .orphans
            .lock()
            .extend(unverified.into_iter().filter(|id| !reached.contains(id)));
        // Messages delivered but not yet committed when the process died have numbers above
        // the stored one; a gap larger than any number of requests in flight skips them.
        if snapshot.sms_seq > 0 {
            inner.sms.resume_after(snapshot.sms_seq + SMS_SEQ_GAP);
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "stored entities of partners that are no longer configured are not served"
            );
        }
    }

    fn build(config: SandboxConfig, clock: Arc<dyn Clock>, group: Option<GroupCommit>) -> Self {
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
        let rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        SandboxState(Arc::new(Inner {
            rng: Mutex::new(rng),
            group,
            faults: super::faults::FaultEngine::new(rules, seed),
            // From the OS, never from `--seed`: two sandboxes started alike must still tell
            // their counters apart.
            instance: format!("{:032x}", rand::random::<u128>()),
            tokens_issued,
            conn_counters: ConnCounters::default(),
            conn_pool: super::serve::ConnPool::new(config.max_connections),
            long_polls: AtomicUsize::new(0),
            config,
            clock,
            tokens: Map::default(),
            persons: Map::default(),
            devices: Map::default(),
            challenges: Map::default(),
            change_requests: Map::default(),
            bound_keys: Map::default(),
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

    /// Faults injected per rule text since the sandbox started (through rule replacements),
    /// those of retired texts no longer listed, and the generation, read in one go (see
    /// [`FaultEngine::snapshot`](super::faults::FaultEngine::snapshot)).
    pub fn fault_totals(&self) -> super::faults::FaultTotals {
        self.0.faults.snapshot()
    }

    /// A random id made when this sandbox started (32 hex digits): counters read from two
    /// sandboxes, or from one before and after a restart, carry different ids, so a reader
    /// never subtracts or merges counts that do not belong to one counter set.
    pub fn instance(&self) -> &str {
        &self.0.instance
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
            connections: self.0.conn_counters.snapshot(&self.0.conn_pool),
        }
    }

    /// Forgets every challenge and change request that has been finished (completed, spent or
    /// expired) for longer than [`SandboxConfig::retention`], and the unverified device of
    /// every forgotten binding challenge; their ids answer 404 from now on.
    ///
    /// Takes no global lock: each map is walked one shard at a time, and an entry a request
    /// holds right now (it looked it up and may still change it) is skipped until the next
    /// sweep, so the sweep never waits for a request. [`spawn`](super::spawn) and
    /// [`spawn_with`](super::spawn_with) run it every [`SandboxConfig::sweep_interval`]; a
    /// test on a `ManualClock` can call it directly.
    pub fn sweep(&self) -> Swept {
        let inner = &*self.0;
        let now = inner.clock.now();
        let retention = inner.config.retention;
        let lifetime = inner.config.challenge_lifetime;
        let mut swept = Swept::default();
        let mut orphans = Vec::new();
        // Each Forget is queued inside `retain`/`remove_if`, with the entry's shard locked:
        // no request can find the entry missing before its Forget is queued, so an answer
        // that says it is gone waits for the Forget's commit. An entry a request still holds
        // (its `Arc` is shared) is kept until the next sweep: that request may yet queue a
        // new version of it, which must not come after the Forget. Forgetting is not urgent:
        // if the commit fails, the entries come back on restart and are swept again.
        let forget = |write: Write<'_>| {
            let _ = inner.commit(&[write]);
        };
        inner.challenges.retain(|id, entry| {
            if Arc::strong_count(entry) > 1 {
                return true;
            }
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
            forget(Write::ForgetChallenge(id));
            false
        });
        // Only a finished binding's challenge could verify the device, so an unverified
        // device here stays unverified. One that is busy is tried again next sweep.
        orphans.append(&mut inner.orphans.lock());
        let mut busy = Vec::new();
        for id in orphans {
            let mut gone = false;
            let mut unlocked = true;
            inner.devices.remove_if(&id, |id, d| {
                let locked = (Arc::strong_count(d) == 1)
                    .then(|| d.data.try_lock())
                    .flatten();
                match locked {
                    Some(d) => {
                        gone = !d.verified;
                        if gone {
                            forget(Write::ForgetDevice(id));
                        }
                        gone
                    }
                    None => {
                        unlocked = false;
                        false
                    }
                }
            });
            if gone {
                swept.devices += 1;
            } else if !unlocked {
                busy.push(id);
            }
        }
        inner.orphans.lock().append(&mut busy);
        inner.change_requests.retain(|id, entry| {
            if Arc::strong_count(entry) > 1 {
                return true;
            }
            let Some(cr) = entry.data.try_lock() else {
                return true;
            };
            let forgotten = cr.forgettable(now, lifetime, retention);
            if forgotten {
                swept.change_requests += 1;
                forget(Write::ForgetChangeRequest(id));
            }
            !forgotten
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

    /// What a signed answer to `challenge` would verify, and the device that must sign it:
    /// read under the challenge's lock and then the device's (the module's lock order)
    /// and released again, so the signature can be verified with no lock held (see
    /// `core::preverify`). `device_of` names the challenge's device (refusing the wrong
    /// kind of challenge); `to_verify` is the rule's own reading.
    pub(crate) fn to_verify(
        &self,
        partner: PartnerIdx,
        challenge: &Owned<ChallengeEntry>,
        device_of: impl FnOnce(&ChallengeEntry) -> Result<&DeviceId, Refusal>,
        to_verify: impl FnOnce(&ChallengeEntry, &DeviceEntry, Timestamp) -> Result<ToVerify, Refusal>,
    ) -> Result<(Arc<Owned<DeviceEntry>>, ToVerify), ApiError> {
        let challenge = challenge.data.lock();
        let device = self.owned(&self.devices, partner, device_of(&challenge)?, "device")?;
        let to_verify = to_verify(&challenge, &device.data.lock(), self.clock.now())?;
        Ok((device, to_verify))
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

    /// Delivers an OTP a rule asked to send, in `language` (English by default), with the
    /// app's signature for SMS retrievers, as the fault rules allow. Returns the SMS
    /// high-water mark to store ([`super::sms::SmsCenter::high_water`]).
    pub fn send_otp(
        &self,
        send: &SendOtp,
        language: Option<crate::api::Language>,
        app_signature: Option<&str>,
    ) -> u64 {
        let language = language.unwrap_or(crate::api::Language::En);
        let text = super::sms::sms_text(
            &send.otp,
            language,
            self.config.challenge_lifetime,
            app_signature,
        );
        // Fault rules may delay, drop, repeat or reorder it (decided per request).
        let fate = super::faults::sms_fate(&self.faults);
        self.sms
            .send(&send.number, text, language, self.clock.now(), fate);
        // Stored so a restart numbers after every SMS sent so far, held ones included.
        let seq = self.sms.high_water();
        self.counters.sms_sent.fetch_add(1, Ordering::Relaxed);
        seq
    }

    /// The client id of a partner, as entities are stored under it.
    pub fn partner_name(&self, partner: PartnerIdx) -> &str {
        self.config
            .partners
            .get(usize::from(partner))
            .map_or("", |p| p.client_id.as_str())
    }

    /// A copy of `entity`, taken before a rule changes it, to put back with [`restore`] (or
    /// [`Inner::restore_device`]) if the change's commit fails, so that memory keeps
    /// agreeing with the state file. `None` (nothing is copied) when the store keeps
    /// nothing: a commit to memory only cannot fail.
    pub fn saved<T: Clone>(&self, entity: &T) -> Option<T> {
        self.group.is_some().then(|| entity.clone())
    }

    /// Puts a device back as it was before a change whose commit failed, its keys' entries
    /// in `bound_keys` with it (a binding's claim released, a deletion's releases claimed
    /// again). Called with the device's lock held, as the change was made.
    pub fn restore_device(
        &self,
        partner: PartnerIdx,
        device: &mut DeviceEntry,
        saved: Option<DeviceEntry>,
    ) {
        let Some(saved) = saved else {
            return;
        };
        let keys = self.keys(partner);
        let bound = |d: &DeviceEntry| d.verified && d.deleted_at.is_none();
        if bound(device) {
            for k in &device.keys {
                let kept =
                    bound(&saved) && saved.keys.iter().any(|s| s.key.point() == k.key.point());
                if !kept {
                    keys.release(k.key.point());
                }
            }
        }
        if bound(&saved) {
            for k in &saved.keys {
                // Already bound to this device when the change did not release it.
                keys.claim(k.key.point(), &saved.id);
            }
        }
        *device = saved;
    }

    /// Queues `writes` to be committed to the store; the request's answer waits until they
    /// are ([`settle`](super::settle)). Called with the changed entities' locks held, so
    /// versions of an entity are committed in the order they were made. Refused (a 500)
    /// once the store has failed a commit, or when a record cannot be encoded: a caller that
    /// changed entities in place then puts them back with [`restore`], and memory keeps only
    /// changes that were queued.
    pub fn commit(&self, writes: &[Write<'_>]) -> Result<(), ApiError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        super::store::rows(writes)
            .map_err(|e| {
                tracing::error!(error = %e, "state commit failed");
                storage_error()
            })
            .and_then(|rows| group.enqueue(rows).map_err(|_| storage_error()))?;
        Ok(())
    }

    /// A refusal of the core as the bank's error, counting rate-limit refusals.
    pub fn refused(&self, refusal: Refusal) -> ApiError {
        if matches!(refusal.reason, super::core::Reason::TooManyRequests { .. }) {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        ApiError::from(refusal)
    }

    /// The generator the core draws from.
    pub fn rng(&self) -> SharedRng<'_> {
        SharedRng(&self.rng)
    }

    /// Whether `point` is bound for `partner` by a claim whose rows are queued, waiting for
    /// the claiming device's lock if its claim may not be queued yet. A refusal because a key
    /// is bound must not be answered before the claim is queued: if the claim's commit then
    /// failed, the answer would depend on a binding no restart serves (the settle layer waits
    /// only for what is queued when the handler ends). `false`: the key is free by now (the
    /// claim was undone because its commit was refused, or its device was deleted), so the
    /// caller checks again.
    ///
    /// Lock order: called with no device lock held (it takes the claiming device's).
    pub fn bound_once_queued(&self, partner: PartnerIdx, point: &Point) -> bool {
        let key = (partner, *point);
        loop {
            let Some(owner) = self.bound_keys.get(&key).map(|o| o.clone()) else {
                return false;
            };
            let Some(device) = self.devices.get(&owner).map(|d| d.clone()) else {
                // Bound keys belong to devices in the map; nothing can be changing this one.
                return true;
            };
            let _device = device.data.lock();
            // The claim is made and queued (or undone) under this lock: if it is still
            // there, it is queued.
            if self.bound_keys.get(&key).is_some_and(|o| *o == owner) {
                return true;
            }
            // Undone, or released and claimed by another device since: look again.
        }
    }

    /// The partner's bound keys, for the core.
    pub fn keys(&self, partner: PartnerIdx) -> PartnerKeys<'_> {
        PartnerKeys {
            map: &self.bound_keys,
            partner,
        }
    }
}

impl Verifier for Inner {
    fn verify(&self, key: &VerifyingKey, message: &[u8], der: &[u8]) -> bool {
        Inner::verify(self, key, message, der)
    }
}

/// The sandbox's generator as an [`rand::RngCore`]: each draw locks it briefly, so a rule can
/// draw while entity locks are held (it is the innermost lock).
pub(crate) struct SharedRng<'a>(&'a Mutex<StdRng>);

impl rand::RngCore for SharedRng<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.lock().next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.lock().next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.lock().fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.0.lock().try_fill_bytes(dest)
    }
}

/// Puts `saved` (from [`Inner::saved`]) back into `entity`: the change whose commit failed is
/// undone in memory, as it never reached the state file.
pub fn restore<T>(entity: &mut T, saved: Option<T>) {
    if let Some(saved) = saved {
        *entity = saved;
    }
}

/// One partner's view of the bound keys, for the core's [`KeyIndex`].
pub(crate) struct PartnerKeys<'a> {
    map: &'a Map<(PartnerIdx, Point), DeviceId>,
    partner: PartnerIdx,
}

impl KeyIndex for PartnerKeys<'_> {
    fn is_bound(&self, point: &Point) -> bool {
        self.map.contains_key(&(self.partner, *point))
    }
    fn claim(&self, point: &Point, device: &DeviceId) -> bool {
        match self.map.entry((self.partner, *point)) {
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(device.clone());
                true
            }
        }
    }
    fn release(&self, point: &Point) {
        self.map.remove(&(self.partner, *point));
    }
}
