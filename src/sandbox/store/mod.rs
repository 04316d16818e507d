//! Where the bank's entities are kept beyond the process: a [`Store`] behind the in-memory
//! maps of `state`.
//!
//! The maps always hold everything and serve every read, so a store is write-through: each
//! request that changes an entity commits the entity's new version, in one transaction with
//! everything else the request changed, *before its answer is sent* (and while the entities'
//! locks are held, so versions of one entity are committed in the order they were made).
//! On start the store's snapshot fills the maps.
//!
//! - [`MemoryStore`] keeps nothing beyond the maps (the default; no cost per request).
//! - [`SqliteStore`] keeps persons, numbers, devices, keys, challenges and change requests
//!   in one SQLite file (WAL): a restarted sandbox serves the same bank.
//!
//! Not kept: access tokens (clients ask for a new one), the SMS outbox's messages (only its
//! sequence number, so `after=` markers stay valid) and the rate-limit windows.

mod records;
mod sqlite;

pub use sqlite::{SMS_SEQ_STRIDE, SqliteStore, SyncMode};

use super::core::challenges::ChallengeEntry;
use super::core::change_requests::ChangeRequestEntry;
use super::core::devices::DeviceEntry;
use super::core::persons::PersonEntry;
use crate::api::{ChallengeId, ChangeRequestId, DeviceId};

/// One change to commit: the new version of an entity of the partner with this client id,
/// or an entity to forget.
pub enum Write<'a> {
    /// A person's current version.
    Person(&'a str, &'a PersonEntry),
    /// A device's current version.
    Device(&'a str, &'a DeviceEntry),
    /// A challenge's current version.
    Challenge(&'a str, &'a ChallengeId, &'a ChallengeEntry),
    /// A change request's current version.
    ChangeRequest(&'a str, &'a ChangeRequestEntry),
    /// A challenge the sweep forgot.
    ForgetChallenge(&'a ChallengeId),
    /// An unverified device the sweep forgot.
    ForgetDevice(&'a DeviceId),
    /// A change request the sweep forgot.
    ForgetChangeRequest(&'a ChangeRequestId),
    /// The SMS outbox's latest sequence number (a store may keep a larger one: numbers up
    /// to what it keeps may have been used).
    SmsSeq(u64),
}

/// Everything a store holds, to fill the maps on start; entities are tagged with their
/// partner's client id.
#[derive(Default)]
pub struct Snapshot {
    /// Persons.
    pub persons: Vec<(String, PersonEntry)>,
    /// Devices.
    pub devices: Vec<(String, DeviceEntry)>,
    /// Challenges.
    pub challenges: Vec<(String, ChallengeId, ChallengeEntry)>,
    /// Change requests.
    pub change_requests: Vec<(String, ChangeRequestEntry)>,
    /// The SMS outbox's sequence number as stored: no message sent had a larger one (up to
    /// a store's `SMS_SEQ_STRIDE` above the last one sent).
    pub sms_seq: u64,
}

/// Why a store could not load or commit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (I/O, full disk, locked, ...).
    #[error("state database: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored record could not be read back.
    #[error("state database: a stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Keeps the bank's entities beyond the process.
pub trait Store: Send + Sync {
    /// Whether commits keep anything; when false, callers may skip building writes.
    fn is_durable(&self) -> bool;
    /// Everything stored, to fill the maps on start.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Commits `writes` as one transaction; returns once they are committed.
    fn commit(&self, writes: &[Write<'_>]) -> Result<(), StoreError>;
}

/// Keeps nothing beyond the in-memory maps: a restart starts an empty bank.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn is_durable(&self) -> bool {
        false
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }
    fn commit(&self, _writes: &[Write<'_>]) -> Result<(), StoreError> {
        Ok(())
    }
}
