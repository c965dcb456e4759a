//! The write path (one writer thread, group commit) and the pool of read connections.

use super::*;

/// Largest number of jobs committed together; bounds the latency of one batch.
const MAX_BATCH: usize = 512;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Stack of the writer thread, which also parses messages for the index: the size the
/// runtime's threads get.
pub(crate) const WRITER_STACK: usize = 8 << 20;

type Finish = Box<dyn FnOnce(Result<()>) + Send>;

/// What running a job gave: whether it succeeded, whether it failed for lack of disk space,
/// and how to answer its caller once the batch is committed.
pub(crate) struct Ran {
    ok: bool,
    disk_full: bool,
    finish: Finish,
}

/// A write for the writer thread. `grows` is about how many bytes it adds (a message's size;
/// 0 for small changes): when the disk is nearly full, such jobs are refused without running
/// (`run(None)`) so deletions keep their room (see `space`).
pub(crate) struct Job {
    pub(crate) grows: u64,
    pub(crate) run: RunJob,
}

/// Runs a job on the writer's connection, or refuses it (None).
pub(crate) type RunJob = Box<dyn FnOnce(Option<&Connection>) -> Ran + Send>;

/// What a caller gets for a job that panicked.
fn internal_error() -> StoreError {
    StoreError::Backend("internal error".into())
}

/// The text of a caught panic, for the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Runs `f`, catching a panic (logged as `what`): the writer thread must outlive any bug in
/// one job or step, or every later write would fail while the process stays up.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(panic) => {
            tracing::error!(panic = panic_message(&panic), "sqlite: {what} panicked");
            None
        }
    }
}

/// Ends a transaction a panic left open, so the next batch can begin.
fn roll_back_if_open(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::error!(error = %e, "sqlite: cannot roll back after a panic");
    }
}

/// Whether a job's error is SQLite saying the disk is full.
fn is_disk_full(e: &StoreError) -> bool {
    match e {
        StoreError::Backend(inner) => {
            inner
                .downcast_ref::<rusqlite::Error>()
                .and_then(|e| e.sqlite_error_code())
                == Some(rusqlite::ErrorCode::DiskFull)
        }
        _ => false,
    }
}

pub(crate) fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(backend)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
        .map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Runs `f` in the writer's transaction; returns once it is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_growing(0, f).await
    }

    /// Like [`SqliteStore::write`] for a job that adds about `grows` bytes (new mail): refused
    /// at once while the disk is nearly full.
    pub(crate) async fn write_growing<T, F>(&self, grows: u64, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let run = Box::new(move |conn: Option<&Connection>| {
            let result = match conn {
                // A panic in one job (a bug) fails that job alone: its savepoint is rolled
                // back and the writer goes on serving every other session (issue 14).
                Some(conn) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
                    .unwrap_or_else(|panic| {
                        tracing::error!(
                            panic = panic_message(&panic),
                            "sqlite: a write job panicked; rolled back"
                        );
                        Err(internal_error())
                    }),
                None => Err(StoreError::Backend(
                    "the disk is nearly full: new mail waits until space is freed".into(),
                )),
            };
            let ok = result.is_ok();
            let disk_full = result.as_ref().err().is_some_and(is_disk_full);
            let finish: Finish = Box::new(move |commit: Result<()>| {
                let _ = tx.send(commit.and(result));
            });
            Ran {
                ok,
                disk_full,
                finish,
            }
        });
        self.writer
            .lock()
            .expect("writer lock poisoned")
            .send(Job { grows, run })
            .map_err(|_| StoreError::Backend("the writer thread has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Backend("the writer thread dropped a job".into()))?
    }

    /// Runs `f` on a read connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().expect("reader pool poisoned").pop();
            let conn = match conn {
                Some(conn) => conn,
                None => open_connection(&path, true)?,
            };
            let result = f(&conn);
            let mut pool = readers.lock().expect("reader pool poisoned");
            if pool.len() < MAX_IDLE_READERS {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(backend)?
    }
}

/// The writer thread: commits batches of jobs and, between them, indexes (if `index`).
pub(crate) fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, dir: &Path, index: bool) {
    let space = space::Space::new(dir);
    let mut schedule = indexer::Schedule::new(index, std::time::Instant::now());
    loop {
        let first = match schedule.due() {
            Some(due) => {
                let now = std::time::Instant::now();
                if schedule.overdue(now) {
                    // Jobs may be waiting, but indexing has waited long enough.
                    index_step(&mut schedule, &conn, &space);
                    continue;
                }
                match rx.recv_timeout(due.saturating_duration_since(now)) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        index_step(&mut schedule, &conn, &space);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Jobs catch their own panics; this is for the batch's bookkeeping. The callers of
        // jobs not yet answered get an error (their reply channels are dropped).
        if guarded("a write batch", || commit_batch(&conn, batch, &space)).is_none() {
            roll_back_if_open(&conn);
        }
        schedule.after_batch(std::time::Instant::now());
    }
}

/// One index step; a panic in it rolls it back and counts as a failed step (backing off).
fn index_step(schedule: &mut indexer::Schedule, conn: &Connection, space: &space::Space) {
    let started = std::time::Instant::now();
    if guarded("an index step", || schedule.run(conn, space)).is_none() {
        roll_back_if_open(conn);
        schedule.after_step(indexer::Outcome::Failed, started, std::time::Instant::now());
    }
}

/// Runs every job of a batch in its own savepoint of one transaction, commits once, then
/// answers the callers.
fn commit_batch(conn: &Connection, batch: Vec<Job>, space: &space::Space) {
    let growth: u64 = batch.iter().map(|job| job.grows).sum();
    let mut budget = space.budget(conn, growth);
    let mut finishers = Vec::with_capacity(batch.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs drops their reply channels: every caller gets an error and
        // nothing was acknowledged.
        tracing::error!(error = %e, "sqlite: cannot begin a write transaction");
        return;
    }
    let mut disk_full = false;
    for job in batch {
        if job.grows > 0 {
            // Counted twice: the WAL and then the database hold it until a checkpoint.
            let needs = job.grows.saturating_mul(2);
            if budget < needs {
                let ran = (job.run)(None);
                finishers.push((ran.finish, None));
                continue;
            }
            budget -= needs;
        }
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            tracing::error!(error = %e, "sqlite: savepoint failed");
            continue;
        }
        // `write_growing` catches a job's panic and answers its caller; this keeps the
        // batch going should anything else in a job panic (its caller then gets an error
        // from its dropped reply channel).
        let Some(ran) = guarded("a write job", || (job.run)(Some(conn))) else {
            if let Err(e) = conn.execute_batch("ROLLBACK TO job; RELEASE job") {
                tracing::error!(error = %e, "sqlite: rollback of a panicked job failed");
            }
            continue;
        };
        disk_full |= ran.disk_full;
        let end = if ran.ok {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        finishers.push((ran.finish, end.err().map(backend)));
    }
    let commit = conn.execute_batch("COMMIT");
    if let Err(e) = &commit {
        disk_full |= e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull);
        let _ = conn.execute_batch("ROLLBACK");
    }
    if disk_full {
        space.disk_full();
    }
    let commit = commit.map_err(|e| e.to_string());
    for (finish, error) in finishers {
        match (&commit, error) {
            (Ok(()), None) => finish(Ok(())),
            (Ok(()), Some(e)) => finish(Err(e)),
            (Err(message), _) => finish(Err(StoreError::Backend(message.clone().into()))),
        }
    }
}
