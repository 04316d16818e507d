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
//! So:
//! - an entity is one row keyed by a row number the store gives it when it is first written,
//!   counting up, not by its (random) id: entities made close together in time share leaf
//!   pages, and so do their next versions (a binding's device and challenge are made and
//!   changed within moments), so a transaction holding many requests' rows (see
//!   [`GroupCommit`](super::GroupCommit)) writes few pages. The store keeps each id's row
//!   number in memory; a row also holds its id, which is how the numbers are found on start;
//! - the SMS sequence number is written once per [`SMS_SEQ_STRIDE`] messages;
//! - checkpoints run on a thread of their own every [`CHECKPOINT_EVERY`] commits instead of
//!   inside the commit that crosses SQLite's threshold, so no commit waits for one.

use super::records::{ChallengeRecord, ChangeRequestRecord, DeviceRecord, PersonRecord};
use super::{Kind, Row, Snapshot, Store, StoreError};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};

/// The entity tables, indexed by [`Kind`] (in its order).
const TABLES: [&str; 4] = ["persons", "devices", "challenges", "change_requests"];

/// One row per entity, keyed by its row number (see the module's documentation); no index
/// on `id`, which only the store's map looks up.
fn create_table(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (row INTEGER PRIMARY KEY, id TEXT NOT NULL, partner TEXT NOT NULL, data TEXT NOT NULL);"
    )
}

const META: &str =
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);";

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
    conn: Mutex<Db>,
    checkpointer: Checkpointer,
    /// The SMS sequence number stored: numbers up to it may have been used. Changed only
    /// with `conn` locked, after the commit that stored it.
    sms_reserved: AtomicU64,
}

/// The connection, and each table's row number per entity id.
struct Db {
    conn: Connection,
    rows: [Rows; 4],
}

/// A table's row numbers: which row holds each id, and the next number to give.
struct Rows {
    of: HashMap<String, i64>,
    next: i64,
}

impl Rows {
    fn read(conn: &Connection, table: &str) -> Result<Self, StoreError> {
        // Numbered from 1, as SQLite numbers rows.
        let mut rows = Rows {
            of: HashMap::new(),
            next: 1,
        };
        let mut stmt = conn.prepare(&format!("SELECT row, id FROM {table}"))?;
        let mut found = stmt.query([])?;
        while let Some(r) = found.next()? {
            let (row, id): (i64, String) = (r.get(0)?, r.get(1)?);
            rows.next = rows.next.max(row + 1);
            rows.of.insert(id, row);
        }
        Ok(rows)
    }
}

/// The file's layout, kept in SQLite's `user_version`: 1 is tables keyed by row number.
/// Files made before kept 0 there (tables keyed by id) and are moved to this layout; a file
/// with a larger number was written by a newer vphone and is refused rather than misread.
const LAYOUT: i64 = 1;

/// Files made before row numbers keyed each table by `id`: their rows move to tables of the
/// current layout, in one transaction, when such a file is opened.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    let layout: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if layout > LAYOUT {
        return Err(StoreError::Layout(format!(
            "the file was written by a newer vphone (layout {layout}; this one reads layouts up to {LAYOUT}); use that vphone, or another file"
        )));
    }
    for table in TABLES {
        let has_table: bool = tx.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        let has_row: bool = tx.query_row(
            &format!("SELECT count(*) > 0 FROM pragma_table_info('{table}') WHERE name = 'row'"),
            [],
            |r| r.get(0),
        )?;
        if has_table && !has_row {
            tx.execute_batch(&format!(
                "ALTER TABLE {table} RENAME TO {table}_by_id;
                 {create}
                 INSERT INTO {table} (id, partner, data) SELECT id, partner, data FROM {table}_by_id;
                 DROP TABLE {table}_by_id;",
                create = create_table(table),
            ))?;
        } else {
            tx.execute_batch(&create_table(table))?;
        }
    }
    tx.execute_batch(META)?;
    tx.pragma_update(None, "user_version", LAYOUT)?;
    tx.commit()?;
    Ok(())
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
        let mut conn = open_connection(path, sync)?;
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        migrate(&mut conn)?;
        let sms_reserved = stored_sms_seq(&conn)?;
        let rows = [
            Rows::read(&conn, TABLES[0])?,
            Rows::read(&conn, TABLES[1])?,
            Rows::read(&conn, TABLES[2])?,
            Rows::read(&conn, TABLES[3])?,
        ];
        Ok(SqliteStore {
            conn: Mutex::new(Db { conn, rows }),
            checkpointer: Checkpointer::start(path, sync)?,
            sms_reserved: AtomicU64::new(sms_reserved),
        })
    }

    /// `PRAGMA integrity_check`'s answer (`ok` when the file is sound).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        Ok(self
            .conn
            .lock()
            .conn
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

/// Each kind's insert of a new entity, indexed by [`Kind`] (in its order).
const INSERT: [&str; 4] = [
    "INSERT INTO persons (row, id, partner, data) VALUES (?1, ?2, ?3, ?4)",
    "INSERT INTO devices (row, id, partner, data) VALUES (?1, ?2, ?3, ?4)",
    "INSERT INTO challenges (row, id, partner, data) VALUES (?1, ?2, ?3, ?4)",
    "INSERT INTO change_requests (row, id, partner, data) VALUES (?1, ?2, ?3, ?4)",
];

/// Each kind's new version of an entity stored before, by its row number.
const UPDATE: [&str; 4] = [
    "UPDATE persons SET data = ?2 WHERE row = ?1",
    "UPDATE devices SET data = ?2 WHERE row = ?1",
    "UPDATE challenges SET data = ?2 WHERE row = ?1",
    "UPDATE change_requests SET data = ?2 WHERE row = ?1",
];

/// Each kind's delete, by row number.
const DELETE: [&str; 4] = [
    "DELETE FROM persons WHERE row = ?1",
    "DELETE FROM devices WHERE row = ?1",
    "DELETE FROM challenges WHERE row = ?1",
    "DELETE FROM change_requests WHERE row = ?1",
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
        let db = self.conn.lock();
        let conn = &db.conn;
        let persons = rows::<PersonRecord>(conn, "persons")?
            .into_iter()
            .map(|(p, r)| (p, r.into()))
            .collect();
        let devices = rows::<DeviceRecord>(conn, "devices")?
            .into_iter()
            .map(|(p, r)| Ok((p, r.try_into()?)))
            .collect::<Result<_, StoreError>>()?;
        let challenges = rows::<ChallengeRecord>(conn, "challenges")?
            .into_iter()
            .map(|(p, r)| {
                let (id, entry) = r.into_entry();
                (p, id, entry)
            })
            .collect();
        let change_requests = rows::<ChangeRequestRecord>(conn, "change_requests")?
            .into_iter()
            .map(|(p, r)| (p, r.into()))
            .collect();
        Ok(Snapshot {
            persons,
            devices,
            challenges,
            change_requests,
            sms_seq: stored_sms_seq(conn)?,
        })
    }

    fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut db = self.conn.lock();
        let Db {
            conn,
            rows: numbers,
        } = &mut *db;
        // Row numbers given or taken in this transaction, undone if it fails.
        let mut undo: Vec<(Kind, &str, Option<i64>)> = Vec::new();
        let result = commit_rows(conn, numbers, rows, &mut undo, &self.sms_reserved);
        match result {
            Ok(reserved) => {
                if let Some(reserve) = reserved {
                    self.sms_reserved.store(reserve, Ordering::Relaxed);
                }
                self.checkpointer.committed();
                Ok(())
            }
            Err(e) => {
                for (kind, id, before) in undo.into_iter().rev() {
                    let of = &mut numbers[kind as usize];
                    match before {
                        Some(row) => of.of.insert(id.to_owned(), row),
                        None => of.of.remove(id),
                    };
                }
                Err(e)
            }
        }
    }
}

/// Writes `rows` in one transaction, noting in `undo` each row number it gives or takes;
/// returns the SMS sequence number it stored, if any.
fn commit_rows<'r>(
    conn: &mut Connection,
    numbers: &mut [Rows; 4],
    rows: &'r [Row],
    undo: &mut Vec<(Kind, &'r str, Option<i64>)>,
    sms_reserved: &AtomicU64,
) -> Result<Option<u64>, StoreError> {
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
                let table = &mut numbers[*kind as usize];
                if let Some(&number) = table.of.get(id.as_str()) {
                    tx.prepare_cached(UPDATE[*kind as usize])?
                        .execute(params![number, data])?;
                } else {
                    let number = table.next;
                    table.next += 1;
                    table.of.insert(id.clone(), number);
                    undo.push((*kind, id, None));
                    tx.prepare_cached(INSERT[*kind as usize])?
                        .execute(params![number, id, partner, data])?;
                }
            }
            Row::Forget { kind, id } => {
                if let Some(number) = numbers[*kind as usize].of.remove(id.as_str()) {
                    undo.push((*kind, id, Some(number)));
                    tx.prepare_cached(DELETE[*kind as usize])?
                        .execute(params![number])?;
                }
            }
            Row::SmsSeq(seq) => {
                if *seq <= sms_reserved.load(Ordering::Relaxed)
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
    Ok(reserved)
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

    fn put(kind: Kind, id: &str, data: &str) -> Row {
        Row::Put {
            kind,
            id: id.to_owned(),
            partner: "partner".to_owned(),
            data: data.to_owned(),
        }
    }

    fn stored(path: &Path, table: &str) -> Vec<(i64, String, String)> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare(&format!("SELECT row, id, data FROM {table} ORDER BY row"))
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn entities_get_row_numbers_in_the_order_first_written_and_keep_them_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.sqlite");
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        store
            .commit(&[
                put(Kind::Device, "zz", "1"),
                put(Kind::Device, "aa", "1"),
                put(Kind::Device, "zz", "2"),
            ])
            .unwrap();
        store
            .commit(&[
                Row::Forget {
                    kind: Kind::Device,
                    id: "zz".to_owned(),
                },
                put(Kind::Device, "mm", "1"),
            ])
            .unwrap();
        drop(store);
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        store
            .commit(&[put(Kind::Device, "aa", "2"), put(Kind::Device, "bb", "1")])
            .unwrap();
        drop(store);
        assert_eq!(
            stored(&path, "devices"),
            vec![
                (2, "aa".to_owned(), "2".to_owned()),
                (3, "mm".to_owned(), "1".to_owned()),
                (4, "bb".to_owned(), "1".to_owned()),
            ]
        );
    }

    /// A transaction that fails gives back the row numbers it gave and took: the group never
    /// commits after a failure, so only a store called directly can show it.
    #[test]
    fn a_failed_transaction_puts_back_the_row_numbers_it_gave_and_took() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.sqlite");
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        store
            .commit(&[
                put(Kind::Device, "kept", "1"),
                put(Kind::Device, "other", "1"),
            ])
            .unwrap();
        // Another connection makes inserting device `boom` fail, as a full disk would.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER fail BEFORE INSERT ON devices WHEN NEW.id = 'boom'
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let failed = store.commit(&[
            Row::Forget {
                kind: Kind::Device,
                id: "kept".to_owned(),
            },
            put(Kind::Device, "new", "1"),
            put(Kind::Device, "boom", "1"),
        ]);
        assert!(
            failed.is_err(),
            "the injected failure fails the transaction"
        );
        assert_eq!(
            stored(&path, "devices"),
            vec![
                (1, "kept".to_owned(), "1".to_owned()),
                (2, "other".to_owned(), "1".to_owned()),
            ],
            "nothing of it is in the file"
        );
        Connection::open(&path)
            .unwrap()
            .execute_batch("DROP TRIGGER fail;")
            .unwrap();
        // `kept` is updated in its own row (not inserted again), and `new` is inserted
        // (not updated in a row that was never written).
        store
            .commit(&[
                put(Kind::Device, "kept", "2"),
                put(Kind::Device, "new", "2"),
            ])
            .unwrap();
        drop(store);
        let ids: Vec<(String, String)> = stored(&path, "devices")
            .into_iter()
            .map(|(_, id, data)| (id, data))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("kept".to_owned(), "2".to_owned()),
                ("other".to_owned(), "1".to_owned()),
                ("new".to_owned(), "2".to_owned()),
            ]
        );
    }

    #[test]
    fn a_file_names_its_layout_and_one_from_a_newer_vphone_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.sqlite");
        drop(SqliteStore::open(&path, SyncMode::Normal).unwrap());
        let layout = |path: &Path| -> i64 {
            Connection::open(path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(layout(&path), LAYOUT);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", LAYOUT + 1)
            .unwrap();
        let refused = SqliteStore::open(&path, SyncMode::Normal).unwrap_err();
        assert!(refused.to_string().contains("newer vphone"), "{refused}");
        assert_eq!(
            layout(&path),
            LAYOUT + 1,
            "a refused file is left as it was"
        );
    }

    #[test]
    fn a_file_keyed_by_id_is_moved_to_row_numbers_with_every_entity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            for table in TABLES {
                conn.execute_batch(&format!(
                    "CREATE TABLE {table} (id TEXT PRIMARY KEY, partner TEXT NOT NULL, data TEXT NOT NULL) WITHOUT ROWID;"
                ))
                .unwrap();
            }
            conn.execute_batch(
                "INSERT INTO persons VALUES ('p2', 'partner', 'two'), ('p1', 'partner', 'one');
                 INSERT INTO challenges VALUES ('c1', 'partner', 'open');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, SyncMode::Normal).unwrap();
        store
            .commit(&[
                put(Kind::Person, "p1", "one, changed"),
                put(Kind::Person, "p3", "three"),
            ])
            .unwrap();
        assert_eq!(store.integrity_check().unwrap(), "ok");
        drop(store);
        let persons = stored(&path, "persons");
        let mut ids: Vec<(&str, &str)> = persons
            .iter()
            .map(|(_, id, data)| (id.as_str(), data.as_str()))
            .collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            vec![("p1", "one, changed"), ("p2", "two"), ("p3", "three")]
        );
        assert_eq!(persons.last().unwrap().1, "p3", "a new entity comes last");
        let layout: i64 = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(layout, LAYOUT);
        assert_eq!(stored(&path, "challenges").len(), 1);
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
