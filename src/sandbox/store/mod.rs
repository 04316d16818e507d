//! Where the bank's entities are kept beyond the process: a [`Store`] behind the in-memory
//! maps of `state`.
//!
//! The maps always hold everything and serve every read, so a store is write-through: each
//! request that changes an entity queues the entity's new version, with everything else the
//! request changed, while the entities' locks are held (so versions of one entity are
//! queued, and committed, in the order they were made); [`GroupCommit`] commits what is
//! queued in one transaction, and the request's answer waits until it is committed
//! (`sandbox::settle`). On start the store's snapshot fills the maps.
//!
//! - [`MemoryStore`] keeps nothing beyond the maps (the default; no cost per request).
//! - [`SqliteStore`] keeps persons, numbers, devices, keys, challenges and change requests
//!   in one SQLite file (WAL): a restarted sandbox serves the same bank.
//!
//! Not kept: access tokens (clients ask for a new one), the SMS outbox's messages (only its
//! sequence number, so `after=` markers stay valid) and the rate-limit windows.

mod group;
mod records;
mod sqlite;

pub use group::{GroupCommit, StoreFailed};
pub use sqlite::{SMS_SEQ_STRIDE, SqliteStore, SyncMode};

use super::core::challenges::ChallengeEntry;
use super::core::change_requests::ChangeRequestEntry;
use super::core::devices::DeviceEntry;
use super::core::persons::PersonEntry;
use crate::api::{ChallengeId, ChangeRequestId, DeviceId};
use records::{ChallengeRecord, ChangeRequestRecord, DeviceRecord, PersonRecord};

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

/// The kinds of entity a store keeps, one table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Persons (with their number).
    Person,
    /// Devices (with their keys).
    Device,
    /// Challenges.
    Challenge,
    /// Change requests.
    ChangeRequest,
}

/// A [`Write`] made owned and ready to store: the entity's record already encoded, so it can
/// wait in a queue after the entity's lock is released.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// An entity's current version, as its JSON record.
    Put {
        /// Its table.
        kind: Kind,
        /// Its id.
        id: String,
        /// Its partner's client id.
        partner: String,
        /// Its record, encoded.
        data: String,
    },
    /// An entity to forget.
    Forget {
        /// Its table.
        kind: Kind,
        /// Its id.
        id: String,
    },
    /// The SMS outbox's latest sequence number.
    SmsSeq(u64),
}

/// Encodes `writes` as rows.
pub fn rows(writes: &[Write<'_>]) -> Result<Vec<Row>, StoreError> {
    fn json<T: serde::Serialize>(record: &T) -> Result<String, StoreError> {
        serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))
    }
    let put = |kind, id: &str, partner: &str, data| Row::Put {
        kind,
        id: id.to_owned(),
        partner: partner.to_owned(),
        data,
    };
    let forget = |kind, id: &str| Row::Forget {
        kind,
        id: id.to_owned(),
    };
    writes
        .iter()
        .map(|write| {
            Ok(match write {
                Write::Person(partner, p) => put(
                    Kind::Person,
                    p.person.id.as_str(),
                    partner,
                    json(&PersonRecord::from(*p))?,
                ),
                Write::Device(partner, d) => put(
                    Kind::Device,
                    d.id.as_str(),
                    partner,
                    json(&DeviceRecord::from(*d))?,
                ),
                Write::Challenge(partner, id, c) => put(
                    Kind::Challenge,
                    id.as_str(),
                    partner,
                    json(&ChallengeRecord::of(id, c))?,
                ),
                Write::ChangeRequest(partner, c) => put(
                    Kind::ChangeRequest,
                    c.id.as_str(),
                    partner,
                    json(&ChangeRequestRecord::from(*c))?,
                ),
                Write::ForgetChallenge(id) => forget(Kind::Challenge, id.as_str()),
                Write::ForgetDevice(id) => forget(Kind::Device, id.as_str()),
                Write::ForgetChangeRequest(id) => forget(Kind::ChangeRequest, id.as_str()),
                Write::SmsSeq(seq) => Row::SmsSeq(*seq),
            })
        })
        .collect()
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
    /// The thread that commits could not be started.
    #[error("state database: cannot start its committing thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The file's layout is one this vphone cannot read (written by a newer one).
    #[error("state database: {0}")]
    Layout(String),
    /// A stored record could not be read back.
    #[error("state database: a stored record is unreadable: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the database was only busy (locked by another connection, e.g. a checkpoint
    /// or an outside `sqlite3` session, for longer than its busy timeout): the same commit
    /// may succeed when tried again.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Database(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
        )
    }
}

/// Keeps the bank's entities beyond the process.
pub trait Store: Send + Sync {
    /// Whether commits keep anything; when false, callers may skip building writes.
    fn is_durable(&self) -> bool;
    /// Everything stored, to fill the maps on start.
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// Commits `rows` as one transaction (in their order: a later version of an entity
    /// replaces an earlier one); returns once they are committed.
    fn commit(&self, rows: &[Row]) -> Result<(), StoreError>;
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
    fn commit(&self, _rows: &[Row]) -> Result<(), StoreError> {
        Ok(())
    }
}
