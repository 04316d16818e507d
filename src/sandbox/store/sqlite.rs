//! The bank in one SQLite file (bundled SQLite, WAL).
//!
//! What an acknowledged write means: the transaction holding it was committed to the WAL
//! before the answer was sent. With `synchronous = NORMAL` (SQLite's recommendation for WAL)
//! a commit survives the process being killed at any point (SIGKILL, a crash); an operating
//! system crash or power loss may lose the last commits before a checkpoint, never corrupt
//! the file. `--state-sync full` makes every commit wait for fsync, surviving those too.

use super::records::{ChallengeRecord, ChangeRequestRecord, DeviceRecord, PersonRecord};
use super::{Snapshot, Store, StoreError, Write};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS persons (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS challenges (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS change_requests (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// How long a commit waits for an fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Committed to the WAL; survives a killed process (SQLite's `NORMAL` in WAL mode).
    #[default]
    Normal,
    /// Also fsynced on every commit; survives power loss (`FULL`).
    Full,
}

/// The bank in one SQLite file; one connection, commits serialized.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the state file at `path`, in WAL mode; the file is made readable
    /// by its owner only, since it holds open OTPs.
    pub fn open(path: &Path, sync: SyncMode) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        restrict_permissions(path);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match sync {
                SyncMode::Normal => "NORMAL",
                SyncMode::Full => "FULL",
            },
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// `PRAGMA integrity_check`'s answer (`ok` when the file is sound).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .lock()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Best effort: a file on a filesystem without modes still works.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

fn json<T: serde::Serialize>(record: &T) -> Result<String, StoreError> {
    serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn rows<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    table: &str,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT partner, data FROM {table}"))?;
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let partner: String = row.get(0)?;
        let data: String = row.get(1)?;
        let record = serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("{table}: {e}")))?;
        out.push((partner, record));
    }
    Ok(out)
}

impl Store for SqliteStore {
    fn is_durable(&self) -> bool {
        true
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let conn = self.conn.lock();
        let persons = rows::<PersonRecord>(&conn, "persons")?
            .into_iter()
            .map(|(p, r)| (p, r.into()))
            .collect();
        let devices = rows::<DeviceRecord>(&conn, "devices")?
            .into_iter()
            .map(|(p, r)| Ok((p, r.try_into()?)))
            .collect::<Result<_, StoreError>>()?;
        let challenges = rows::<ChallengeRecord>(&conn, "challenges")?
            .into_iter()
            .map(|(p, r)| {
                let (id, entry) = r.into_entry();
                (p, id, entry)
            })
            .collect();
        let change_requests = rows::<ChangeRequestRecord>(&conn, "change_requests")?
            .into_iter()
            .map(|(p, r)| (p, r.into()))
            .collect();
        let sms_seq: Option<i64> = conn
            .query_row("SELECT value FROM meta WHERE key = 'sms_seq'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(Snapshot {
            persons,
            devices,
            challenges,
            change_requests,
            sms_seq: sms_seq.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
        })
    }

    fn commit(&self, writes: &[Write<'_>]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        for write in writes {
            match write {
                Write::Person(partner, p) => {
                    let data = json(&PersonRecord::from(*p))?;
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO persons (id, partner, data) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![p.person.id.as_str(), partner, data])?;
                }
                Write::Device(partner, d) => {
                    let data = json(&DeviceRecord::from(*d))?;
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO devices (id, partner, data) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![d.id.as_str(), partner, data])?;
                }
                Write::Challenge(partner, id, c) => {
                    let data = json(&ChallengeRecord::of(id, c))?;
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO challenges (id, partner, data) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![id.as_str(), partner, data])?;
                }
                Write::ChangeRequest(partner, c) => {
                    let data = json(&ChangeRequestRecord::from(*c))?;
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO change_requests (id, partner, data) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![c.id.as_str(), partner, data])?;
                }
                Write::ForgetChallenge(id) => {
                    tx.prepare_cached("DELETE FROM challenges WHERE id = ?1")?
                        .execute(params![id.as_str()])?;
                }
                Write::ForgetDevice(id) => {
                    tx.prepare_cached("DELETE FROM devices WHERE id = ?1")?
                        .execute(params![id.as_str()])?;
                }
                Write::ForgetChangeRequest(id) => {
                    tx.prepare_cached("DELETE FROM change_requests WHERE id = ?1")?
                        .execute(params![id.as_str()])?;
                }
                Write::SmsSeq(seq) => {
                    let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
                    tx.prepare_cached(
                        "INSERT INTO meta (key, value) VALUES ('sms_seq', ?1)
                         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                    )?
                    .execute(params![seq])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
