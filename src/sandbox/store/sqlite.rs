//! The bank in one SQLite file (bundled SQLite, WAL).
//!
//! What an acknowledged write means: the transaction holding it was committed to the WAL
//! before the answer was sent. With `synchronous = NORMAL` (SQLite's recommendation for WAL)
//! a commit survives the process being killed at any point (SIGKILL, a crash); an operating
//! system crash or power loss may lose the last commits before a checkpoint, never corrupt
//! the file. `--state-sync full` makes every commit wait for fsync, surviving those too.
//!
//! What a commit costs is mostly the pages it appends to the WAL (each one a write into the
//! file, checksummed) and, later, copying them into the file (a checkpoint, with two fsyncs).
//! So: an entity is one row of a `WITHOUT ROWID` table, updated in place (one leaf page,
//! where `INSERT OR REPLACE` on a rowid table touched about three); the SMS sequence number
//! is written once per [`SMS_SEQ_STRIDE`] messages; and checkpoints run on a thread of their
//! own every [`CHECKPOINT_EVERY`] commits instead of inside the commit that crosses SQLite's
//! threshold, so a request never waits for one.

use super::records::{ChallengeRecord, ChangeRequestRecord, DeviceRecord, PersonRecord};
use super::{Row, Snapshot, Store, StoreError};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};

// One row per entity, keyed by its id. `WITHOUT ROWID`: the row lives in the primary key's
// B-tree, so a commit changes one leaf page per entity instead of a table page and an index
// page. Files made before keep their tables (same columns; the statements work on both).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS persons (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS challenges (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS change_requests (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Pages SQLite may cache (negative: KiB), 64 MiB: the bank is in memory anyway, and a page
/// that must be read back (an entity's leaf, to write its new version) then costs no
/// system call.
const CACHE_KIB: i64 = 64 * 1024;

/// Commits after which the checkpointer is woken.
const CHECKPOINT_EVERY: u64 = 2048;

/// WAL frames (pages) above which the checkpointer, having copied what it could without
/// waiting, waits for the writer once so the next commit starts the WAL over (64 MiB of 4 KiB
/// pages): under steady load a passive checkpoint rarely catches the last commit.
const RESTART_FRAMES: i64 = 16384;

/// How long a commit waits for an fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Committed to the WAL; survives a killed process (SQLite's `NORMAL` in WAL mode).
    #[default]
    Normal,
    /// Also fsynced on every commit; survives power loss (`FULL`).
    Full,
}

/// The bank in one SQLite file; one connection, commits serialized, and a thread that
/// checkpoints the WAL into the file off the request path.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    checkpointer: Checkpointer,
    /// The SMS sequence number stored: numbers up to it may have been used. Changed only
    /// with `conn` locked, after the commit that stored it.
    sms_reserved: AtomicU64,
}

/// Copies the WAL into the database file on a thread of its own (`sandbox-checkpt`), with
/// its own connection, so no request waits for a checkpoint's copying and fsyncs (SQLite's
/// automatic checkpoint runs them inside the commit that crosses its threshold).
struct Checkpointer {
    commits: Arc<AtomicU64>,
    wake: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path, sync: SyncMode) -> Result<Self, StoreError> {
        let conn = open_connection(path, sync)?;
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        let thread = std::thread::Builder::new()
            .name("sandbox-checkpt".to_owned())
            .spawn(move || checkpoint_loop(&conn, &woken, &counted))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            commits,
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Counts a commit; every [`CHECKPOINT_EVERY`] wakes the thread (never waits for it).
    fn committed(&self) {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(CHECKPOINT_EVERY)
            && let Some(wake) = &self.wake
        {
            // Full means it is awake already and will see these commits.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the channel ends the loop; the last connection to close (the store's)
        // then checkpoints what is left.
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checkpoints when woken, and after a second without a wake if there were commits since
/// the last checkpoint.
fn checkpoint_loop(conn: &Connection, woken: &Receiver<()>, commits: &AtomicU64) {
    let mut checkpointed_at = 0;
    loop {
        match woken.recv_timeout(std::time::Duration::from_secs(1)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = commits.load(Ordering::Relaxed);
        if now == checkpointed_at {
            continue;
        }
        checkpointed_at = now;
        match checkpoint(conn, "PASSIVE") {
            Ok((frames, copied)) if frames > RESTART_FRAMES && copied < frames => {
                if let Err(e) = checkpoint(conn, "RESTART") {
                    tracing::warn!(error = %e, "state file: WAL checkpoint failed");
                }
            }
            Ok(_) => {}
            // Not lost: the frames stay in the WAL and are copied by a later checkpoint.
            Err(e) => tracing::warn!(error = %e, "state file: WAL checkpoint failed"),
        }
    }
}

/// `PRAGMA wal_checkpoint(MODE)`: the WAL's frames and how many of them are in the file now.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

/// A connection to the state file in WAL mode with `sync`, that never checkpoints by itself.
fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // Reading the header refuses a file that is not a database, before its mode is touched.
    conn.query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))?;
    // Before the WAL exists: SQLite gives it the file's mode.
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
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
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
        let conn = open_connection(path, sync)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        conn.execute_batch(SCHEMA)?;
        let sms_reserved = stored_sms_seq(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            checkpointer: Checkpointer::start(path, sync)?,
            sms_reserved: AtomicU64::new(sms_reserved),
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

/// How far ahead of the SMS sent the stored sequence number is kept: it is written only
/// when a message's number passes it, once per this many messages rather than with each
/// (one page less per commit that sends an SMS). A restart resumes far beyond it (state's
/// `SMS_SEQ_GAP`, much larger), so numbers are never reused.
pub const SMS_SEQ_STRIDE: u64 = 1_000;

/// The stored SMS sequence number (0 if none).
fn stored_sms_seq(conn: &Connection) -> Result<u64, StoreError> {
    let seq: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'sms_seq'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(seq.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
}

/// Each kind's upsert, indexed by [`Kind`] (in its order).
const UPSERT: [&str; 4] = [
    "INSERT INTO persons (id, partner, data) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
    "INSERT INTO devices (id, partner, data) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
    "INSERT INTO challenges (id, partner, data) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
    "INSERT INTO change_requests (id, partner, data) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET data = excluded.data",
];

/// Each kind's delete, indexed by [`Kind`].
const DELETE: [&str; 4] = [
    "DELETE FROM persons WHERE id = ?1",
    "DELETE FROM devices WHERE id = ?1",
    "DELETE FROM challenges WHERE id = ?1",
    "DELETE FROM change_requests WHERE id = ?1",
];

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
        Ok(Snapshot {
            persons,
            devices,
            challenges,
            change_requests,
            sms_seq: stored_sms_seq(&conn)?,
        })
    }

    fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let mut reserved = None;
        for row in rows {
            match row {
                Row::Put {
                    kind,
                    id,
                    partner,
                    data,
                } => {
                    tx.prepare_cached(UPSERT[*kind as usize])?
                        .execute(params![id, partner, data])?;
                }
                Row::Forget { kind, id } => {
                    tx.prepare_cached(DELETE[*kind as usize])?
                        .execute(params![id])?;
                }
                Row::SmsSeq(seq) => {
                    if *seq <= self.sms_reserved.load(Ordering::Relaxed)
                        || reserved.is_some_and(|r| *seq <= r)
                    {
                        continue;
                    }
                    let reserve = seq.saturating_add(SMS_SEQ_STRIDE);
                    reserved = Some(reserve);
                    let seq = i64::try_from(reserve).unwrap_or(i64::MAX);
                    tx.prepare_cached(
                        "INSERT INTO meta (key, value) VALUES ('sms_seq', ?1)
                         ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                    )?
                    .execute(params![seq])?;
                }
            }
        }
        tx.commit()?;
        if let Some(reserve) = reserved {
            self.sms_reserved.store(reserve, Ordering::Relaxed);
        }
        self.checkpointer.committed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "not a database, but someone's notes\n".repeat(200)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = SqliteStore::open(&path, SyncMode::Normal).unwrap_err();
        assert!(refused.to_string().contains("not a database"), "{refused}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "a refused file keeps its mode");

        let fresh = dir.path().join("bank.sqlite");
        drop(SqliteStore::open(&fresh, SyncMode::Normal).unwrap());
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new state file is its owner's only");
    }

    #[test]
    fn the_stored_sms_number_is_never_below_one_sent_and_is_written_once_per_stride() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.sqlite");
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        let mut writes_seen = Vec::new();
        for seq in [
            1,
            2,
            500,
            SMS_SEQ_STRIDE + 1,
            SMS_SEQ_STRIDE + 2,
            5 * SMS_SEQ_STRIDE,
        ] {
            store.commit(&[Row::SmsSeq(seq)]).unwrap();
            let stored = store.load().unwrap().sms_seq;
            assert!(stored >= seq, "stored {stored} below sent {seq}");
            writes_seen.push(stored);
        }
        // Written when a number passed the stored one: at 1, STRIDE + 2 and 5 * STRIDE.
        writes_seen.dedup();
        assert_eq!(
            writes_seen,
            vec![
                1 + SMS_SEQ_STRIDE,
                SMS_SEQ_STRIDE + 2 + SMS_SEQ_STRIDE,
                6 * SMS_SEQ_STRIDE
            ]
        );
        drop(store);
        // A store opened again on the file goes on from what is stored.
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        store
            .commit(&[Row::SmsSeq(5 * SMS_SEQ_STRIDE + 1)])
            .unwrap();
        assert_eq!(store.load().unwrap().sms_seq, 6 * SMS_SEQ_STRIDE);
        assert_eq!(store.integrity_check().unwrap(), "ok");
    }
}
