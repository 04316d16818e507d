//! Group commit: requests queue their rows while they hold their entities' locks, and one
//! thread commits everything queued so far in one transaction; each answer waits until what
//! its request changed (and everything it could have seen) is committed.
//!
//! Why: a transaction's cost is mostly its pages (each one appended to the WAL, checksummed,
//! later copied into the file), and rows changed close together in time share pages, so
//! committing many requests' rows at once costs far less than one transaction each. And no
//! request thread waits on SQLite with locks held: it queues and goes on serving.
//!
//! Order: rows are queued under the locks of the entities they hold, so versions of one
//! entity are queued, and committed, in the order they were made; transactions commit in
//! queue order, so a row is never committed before one queued earlier.
//!
//! A failed commit (disk full, I/O error) fails the store: the requests in it and every later
//! change are refused, and memory may then hold changes the file does not. A restart on the
//! file serves exactly what was committed, and acknowledged.

use super::{Row, Store};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::watch;

/// The store failed a commit: nothing queued since is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the state file failed a commit; changes are refused until the sandbox is restarted")]
pub struct StoreFailed;

/// Commits queued rows in groups on a thread of its own (`sandbox-commit`).
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when rows are queued or the queue closes.
    queued: Condvar,
    /// The number of the last queue entry committed (entries are numbered from 1).
    committed: AtomicU64,
    /// Set by the first failed commit; never cleared.
    failed: AtomicBool,
    /// Wakes the requests waiting for a commit, after `committed` or `failed` changed.
    progress: watch::Sender<()>,
}

#[derive(Default)]
struct Queue {
    rows: Vec<Row>,
    /// The number of the last entry queued.
    last: u64,
    closed: bool,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("committed", &self.shared.committed.load(Ordering::Relaxed))
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the committing thread; it owns `store` until this is dropped.
    pub fn start(store: Box<dyn Store>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            queued: Condvar::new(),
            committed: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            progress: watch::Sender::new(()),
        });
        let thread = std::thread::Builder::new()
            .name("sandbox-commit".to_owned())
            .spawn({
                let shared = shared.clone();
                move || commit_loop(&shared, &*store)
            })?;
        Ok(GroupCommit {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `rows` to be committed together, after everything queued before; returns the
    /// entry's number, to wait for with [`settled`](Self::settled). Refused once the store
    /// has failed.
    pub fn enqueue(&self, rows: Vec<Row>) -> Result<u64, StoreFailed> {
        if self.failed() {
            return Err(StoreFailed);
        }
        let mut queue = self.shared.queue.lock();
        if rows.is_empty() {
            // Nothing to wait for beyond what is queued already.
            return Ok(queue.last);
        }
        let first = queue.rows.is_empty();
        queue.rows.extend(rows);
        queue.last += 1;
        let number = queue.last;
        drop(queue);
        // The thread waits for the first entry only (it then takes all there are).
        if first {
            self.shared.queued.notify_one();
        }
        Ok(number)
    }

    /// The number of the last entry queued: a request that read the bank has seen nothing
    /// queued after it.
    pub fn last_queued(&self) -> u64 {
        self.shared.queue.lock().last
    }

    /// Whether a commit has failed (changes are then refused).
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::Acquire)
    }

    /// Waits until entry `number` and everything before it is committed; an error if the
    /// store failed first.
    pub async fn settled(&self, number: u64) -> Result<(), StoreFailed> {
        let done = || {
            if self.shared.committed.load(Ordering::Acquire) >= number {
                Some(Ok(()))
            } else if self.failed() {
                Some(Err(StoreFailed))
            } else {
                None
            }
        };
        if let Some(done) = done() {
            return done;
        }
        let mut progress = self.shared.progress.subscribe();
        loop {
            // Checked after subscribing: a commit that lands in between marks the channel
            // changed, so `changed` returns at once.
            if let Some(done) = done() {
                return done;
            }
            if progress.changed().await.is_err() {
                // The committing thread is gone (the sandbox is shutting down).
                return done().unwrap_or(Err(StoreFailed));
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // The thread commits what is queued, then ends (dropping the store).
        self.shared.queue.lock().closed = true;
        self.shared.queued.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Under load (the last group held more than one entry), how long the thread waits for more
/// entries to join a group smaller than [`GROUP_TARGET`] before committing it. Each entry
/// then waits this much longer for its answer, and a group costs far less than its entries
/// committed one by one.
const GATHER: std::time::Duration = std::time::Duration::from_micros(200);

/// The group size at which the thread commits without gathering.
const GROUP_TARGET: u64 = 16;

fn commit_loop(shared: &Shared, store: &dyn Store) {
    let mut rows = Vec::new();
    let (mut committed, mut last_group) = (0, 0);
    loop {
        let last = {
            let mut queue = shared.queue.lock();
            while queue.rows.is_empty() && !queue.closed {
                shared.queued.wait(&mut queue);
            }
            if queue.rows.is_empty() {
                return;
            }
            if last_group > 1 && !queue.closed && queue.last - committed < GROUP_TARGET {
                // Only closing wakes it early: entries queued meanwhile do not notify.
                let _ = shared.queued.wait_for(&mut queue, GATHER);
            }
            // The emptied vector goes back, so its allocation is reused.
            std::mem::swap(&mut queue.rows, &mut rows);
            queue.last
        };
        last_group = last - committed;
        committed = last;
        if !shared.failed.load(Ordering::Acquire) {
            // A panic inside the store fails the store like an error: the requests waiting
            // for this group must hear of it, not wait for ever.
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                commit_while_busy(store, &rows)
            }));
            match committed {
                Ok(Ok(())) => shared.committed.store(last, Ordering::Release),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "state commit failed; the sandbox refuses changes until it is restarted");
                    shared.failed.store(true, Ordering::Release);
                }
                Err(_) => {
                    tracing::error!(
                        "state commit panicked; the sandbox refuses changes until it is restarted"
                    );
                    shared.failed.store(true, Ordering::Release);
                }
            }
        }
        rows.clear();
        shared.progress.send_replace(());
    }
}

/// How many times a group is tried while the database only reports itself busy (each try
/// already waits out the store's busy timeout) before the store is failed.
const BUSY_TRIES: u32 = 12;

/// Commits `rows`, trying again while the database is only busy: a lock held a while by a
/// checkpoint or an outside session must not fail the store for good.
fn commit_while_busy(store: &dyn Store, rows: &[Row]) -> Result<(), super::StoreError> {
    let mut tries = 1;
    loop {
        match store.commit(rows) {
            Err(e) if e.is_busy() && tries < BUSY_TRIES => {
                tracing::warn!(error = %e, tries, "state file busy; the commit is tried again");
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sandbox::store::{Snapshot, StoreError};

    /// A store whose commits do what `outcome` says, given how many commits it was asked for
    /// before this one; holds `gate` through each commit (a test holds it to keep the
    /// committing thread inside a commit) and records the rows of each commit that succeeds.
    struct Scripted<F> {
        outcome: F,
        tried: Mutex<usize>,
        commits: Commits,
        gate: Arc<Mutex<()>>,
    }

    impl<F: Fn(usize) -> Result<(), StoreError> + Send + Sync> Store for Scripted<F> {
        fn is_durable(&self) -> bool {
            true
        }
        fn load(&self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn commit(&self, rows: &[Row]) -> Result<(), StoreError> {
            let _gate = self.gate.lock();
            let mut tried = self.tried.lock();
            let outcome = (self.outcome)(*tried);
            *tried += 1;
            outcome?;
            self.commits.lock().push(rows.to_vec());
            Ok(())
        }
    }

    /// Starts a group over a [`Scripted`] store.
    fn scripted(
        outcome: impl Fn(usize) -> Result<(), StoreError> + Send + Sync + 'static,
    ) -> (GroupCommit, Commits, Arc<Mutex<()>>) {
        let commits = Commits::default();
        let gate = Arc::new(Mutex::new(()));
        let store = Scripted {
            outcome,
            tried: Mutex::new(0),
            commits: commits.clone(),
            gate: gate.clone(),
        };
        (GroupCommit::start(Box::new(store)).unwrap(), commits, gate)
    }

    /// The transactions committed, each one's rows.
    type Commits = Arc<Mutex<Vec<Vec<Row>>>>;

    /// Bounds a wait, so a regression that hangs fails the test instead of stalling it.
    async fn within<T>(wait: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(std::time::Duration::from_secs(30), wait)
            .await
            .expect("settled within 30 s")
    }

    fn seq(n: u64) -> Vec<Row> {
        vec![Row::SmsSeq(n)]
    }

    /// A group whose store commits everything, or fails from its `fail_at`-th commit on (as
    /// on a full disk).
    fn group(fail_at: usize) -> (GroupCommit, Commits, Arc<Mutex<()>>) {
        scripted(move |tried| {
            if tried + 1 >= fail_at {
                Err(StoreError::Corrupt("disk full".to_owned()))
            } else {
                Ok(())
            }
        })
    }

    #[tokio::test]
    async fn entries_queued_during_a_commit_are_committed_together_in_queue_order() {
        let (group, commits, gate) = group(usize::MAX);
        let first = group.enqueue(seq(1)).unwrap();
        within(group.settled(first)).await.unwrap();
        // While the thread is held inside the next commit, three more entries queue up.
        let held = gate.lock();
        let second = group.enqueue(seq(2)).unwrap();
        // The thread has taken entry 2 once it waits at the gate; bounded wait for that.
        for _ in 0..1000 {
            if group.shared.queue.lock().rows.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let later: Vec<u64> = (3..=5).map(|n| group.enqueue(seq(n)).unwrap()).collect();
        assert_eq!(later, vec![3, 4, 5]);
        drop(held);
        within(group.settled(5)).await.unwrap();
        within(group.settled(second)).await.unwrap();
        assert_eq!(
            *commits.lock(),
            vec![
                seq(1),
                seq(2),
                vec![Row::SmsSeq(3), Row::SmsSeq(4), Row::SmsSeq(5)]
            ]
        );
    }

    #[tokio::test]
    async fn a_failed_commit_fails_its_waiters_and_refuses_later_entries() {
        let (group, commits, _gate) = group(2);
        let ok = group.enqueue(seq(1)).unwrap();
        within(group.settled(ok)).await.unwrap();
        let lost = group.enqueue(seq(2)).unwrap();
        assert_eq!(within(group.settled(lost)).await, Err(StoreFailed));
        assert!(group.failed());
        assert_eq!(group.enqueue(seq(3)), Err(StoreFailed));
        // What was committed before stays settled.
        within(group.settled(ok)).await.unwrap();
        assert_eq!(*commits.lock(), vec![seq(1)]);
    }

    #[tokio::test]
    async fn an_empty_entry_waits_for_nothing_new() {
        let (group, commits, _gate) = group(usize::MAX);
        let first = group.enqueue(seq(1)).unwrap();
        within(group.settled(first)).await.unwrap();
        // On an idle queue an empty entry is settled at once (it never reaches the thread).
        let empty = group.enqueue(Vec::new()).unwrap();
        assert_eq!(empty, first);
        within(group.settled(empty)).await.unwrap();
        assert_eq!(*commits.lock(), vec![seq(1)]);
    }

    #[tokio::test]
    async fn a_panicking_commit_fails_the_store_instead_of_leaving_its_waiters_waiting() {
        let (group, _, _) = scripted(|_| panic!("a store bug"));
        let lost = group.enqueue(seq(1)).unwrap();
        assert_eq!(within(group.settled(lost)).await, Err(StoreFailed));
        assert_eq!(group.enqueue(seq(2)), Err(StoreFailed));
    }

    #[tokio::test]
    async fn a_busy_database_is_tried_again_and_does_not_fail_the_store() {
        // Busy for its first three commits.
        let (group, commits, _) = scripted(|tried| {
            if tried < 3 {
                Err(StoreError::Database(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    None,
                )))
            } else {
                Ok(())
            }
        });
        let entry = group.enqueue(seq(1)).unwrap();
        within(group.settled(entry)).await.unwrap();
        assert!(!group.failed());
        assert_eq!(*commits.lock(), vec![seq(1)]);
    }

    #[tokio::test]
    async fn dropping_commits_what_is_queued() {
        let (group, commits, gate) = group(usize::MAX);
        let held = gate.lock();
        for n in 1..=3 {
            group.enqueue(seq(n)).unwrap();
        }
        drop(held);
        drop(group);
        let all: Vec<Row> = commits.lock().concat();
        assert_eq!(all, vec![Row::SmsSeq(1), Row::SmsSeq(2), Row::SmsSeq(3)]);
    }
}
