//! The embedded default backend: one SQLite database (WAL, `synchronous=FULL`) under the data
//! directory.
//!
//! Implementation notes:
//! - **Group commit.** All writes go to one writer thread over a channel. It takes every job
//!   waiting, runs each in its own savepoint inside one transaction, commits once (one fsync for
//!   the batch) and only then answers the callers. A job that fails rolls back its savepoint and
//!   leaves the others in the batch alone.
//! - **Reads** run on a small pool of read-only connections in `spawn_blocking`; WAL lets them
//!   proceed while the writer commits.
//! - **Message bytes** live in the `blobs` table, keyed by SHA-256, so the bytes and their
//!   metadata commit in the same transaction (no separate file fsyncs) and a message in several
//!   mailboxes is stored once. Blobs nobody references are deleted in the same transaction that
//!   drops the last reference.

mod indexer;
mod schema;
mod space;
mod uploads;

use uploads::{UPLOAD_IDLE_SECS, free_uploads, server_lock, upload_usage};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use store::rules::{
    apply_flags, normalise_alias_source, now, parse_keywords, sha256_hex, uid_validity_after,
    valid_mailbox_name,
};
use store::{
    Account, AccountId, Address, Alias, AttemptResult, Change, Credentials, Delivered, Delivery,
    DkimKey, FlagMode, FlagsUpdated, JobRecipient, Mailbox, MailboxId, Message, MessageFlags,
    MessageSummary, Notifier, Outbound, QueueEntry, QueueJob, QueueRecipient, RecipientStatus,
    Result, Ret, Role, Secrets, SpecialUse, Store, StoreError, TextScope, VerifyReport,
    address::normalise_domain,
};
use tokio::sync::oneshot;

/// Largest number of jobs committed together; bounds the latency of one batch.
const MAX_BATCH: usize = 512;
/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;
/// Stack of the writer thread, which also parses messages for the index: the size the
/// runtime's threads get.
const WRITER_STACK: usize = 8 << 20;

type Finish = Box<dyn FnOnce(Result<()>) + Send>;

/// What running a job gave: whether it succeeded, whether it failed for lack of disk space,
/// and how to answer its caller once the batch is committed.
struct Ran {
    ok: bool,
    disk_full: bool,
    finish: Finish,
}

/// A write for the writer thread. `grows` is about how many bytes it adds (a message's size;
/// 0 for small changes): when the disk is nearly full, such jobs are refused without running
/// (`run(None)`) so deletions keep their room (see `space`).
struct Job {
    grows: u64,
    run: RunJob,
}

/// Runs a job on the writer's connection, or refuses it (None).
type RunJob = Box<dyn FnOnce(Option<&Connection>) -> Ran + Send>;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    notifier: Notifier,
    queue_signal: Arc<tokio::sync::Notify>,
    /// A server's shared lock on `<data>/pigeon.lock` while the store is open (see
    /// [`SqliteStore::open_as`]).
    _lock: Option<std::fs::File>,
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

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

fn open_connection(path: &Path, read_only: bool) -> Result<Connection> {
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
    /// Opens (creating if needed) the store in `dir` for a server, running schema migrations
    /// (see [`SqliteStore::open_as`]).
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        SqliteStore::open_as(dir, Role::Server)
    }

    /// Opens (creating if needed) the store in `dir`, running schema migrations. A
    /// [`Role::Server`] indexes text in the background and, if no other server has the store
    /// open (a lock file says so), frees the uploads a previous run left; a [`Role::Admin`]
    /// does neither.
    pub fn open_as(dir: &Path, role: Role) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let path = dir.join("pigeon.db");
        let conn = open_connection(&path, false)?;
        // WAL + FULL: a commit is durable when it returns, and readers never block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        schema::migrate(&conn)?;
        let lock = match role {
            Role::Server => {
                let (lock, alone) = server_lock(dir)?;
                // Best effort: on a full disk the DELETE needs room in the WAL it may not
                // get, and a server that cannot start cannot free any (issue 14). Uploads
                // left over are freed an hour after they were last touched anyway.
                if alone && let Err(e) = free_uploads(&conn) {
                    tracing::warn!(error = %e, "sqlite: cannot free the uploads of a previous run; left for later");
                }
                Some(lock)
            }
            Role::Admin => None,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let dir = dir.to_owned();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || writer_loop(conn, rx, &dir, role == Role::Server))
            .map_err(backend)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(tx),
            readers: Arc::new(Mutex::new(Vec::new())),
            notifier: Notifier::default(),
            queue_signal: Arc::default(),
            _lock: lock,
        })
    }

    /// Runs `f` in the writer's transaction; returns once it is committed.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.write_growing(0, f).await
    }

    /// Like [`SqliteStore::write`] for a job that adds about `grows` bytes (new mail): refused
    /// at once while the disk is nearly full.
    async fn write_growing<T, F>(&self, grows: u64, f: F) -> Result<T>
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
    async fn read<T, F>(&self, f: F) -> Result<T>
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
fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, dir: &Path, index: bool) {
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

fn special_use_name(usage: Option<SpecialUse>) -> Option<&'static str> {
    usage.map(|u| u.attribute())
}

fn mailbox_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    let special: Option<String> = row.get(3)?;
    Ok(Mailbox {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        special_use: special.as_deref().and_then(SpecialUse::from_attribute),
        uid_validity: row.get(4)?,
        uid_next: row.get(5)?,
        highest_modseq: row.get::<_, i64>(6)? as u64,
        subscribed: row.get(7)?,
        messages: row.get(8)?,
        unseen: row.get(9)?,
        deleted: row.get(10)?,
        size: row.get::<_, i64>(11)? as u64,
    })
}

/// A [`MessageFlags`] from `uid, modseq, flags, keywords, internal_date, size`.
fn message_flags_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageFlags> {
    // Borrowed: an empty keyword list (the common case) costs no allocation.
    let keywords = r.get_ref(3)?.as_str().unwrap_or("");
    Ok(MessageFlags {
        uid: r.get(0)?,
        modseq: r.get::<_, i64>(1)? as u64,
        flags: r.get(2)?,
        keywords: parse_keywords(keywords),
        internal_date: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
    })
}

const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.name, m.special_use, m.uidvalidity, \
     m.uidnext, m.highestmodseq, m.subscribed, m.total, m.unseen, m.deleted, m.total_size";

/// The account a mailbox belongs to, or NotFound.
fn mailbox_account(conn: &Connection, mailbox: MailboxId) -> Result<AccountId> {
    conn.prepare_cached("SELECT account_id FROM mailboxes WHERE id = ?1")
        .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)).optional())
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

/// Takes the next UID and MODSEQ of a mailbox.
fn allocate_uid(conn: &Connection, mailbox: MailboxId) -> Result<(u32, i64)> {
    conn.prepare_cached(
        "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 \
         WHERE id = ?1 RETURNING uidnext - 1, highestmodseq",
    )
    .and_then(|mut s| {
        s.query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(backend)?
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

fn bump_modseq(conn: &Connection, mailbox: MailboxId) -> Result<i64> {
    conn.prepare_cached("UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq")
        .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)))
        .map_err(backend)
}

/// Stores a blob's summary and indexes its text, once per blob.
fn put_summary(conn: &Connection, blob_id: &str, summary: &MessageSummary) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO summaries (blob_id, envelope, body_structure, body, header) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                blob_id,
                summary.envelope,
                summary.body_structure,
                summary.body,
                summary.header
            ])
        })
        .map_err(backend)?;
    if inserted > 0 {
        conn.prepare_cached("INSERT OR IGNORE INTO index_queue (blob_id) VALUES (?1)")
            .and_then(|mut s| s.execute([blob_id]))
            .map_err(backend)?;
    }
    Ok(())
}

/// Removes the summary of a blob that is gone; its index entry goes to `search_trash`, for
/// the indexer to delete when the writer is idle (deleting a text from the index writes much
/// more than the delete itself, so EXPUNGE stays quick and works on a full disk). Searches
/// never see it: they join the index with the messages.
fn drop_summary(conn: &Connection, blob_id: &str) -> rusqlite::Result<()> {
    let rowid: Option<Option<i64>> = conn
        .prepare_cached("DELETE FROM summaries WHERE blob_id = ?1 RETURNING search_rowid")?
        .query_row([blob_id], |r| r.get(0))
        .optional()?;
    if let Some(Some(rowid)) = rowid {
        conn.prepare_cached("INSERT OR IGNORE INTO search_trash (search_rowid) VALUES (?1)")?
            .execute([rowid])?;
    }
    conn.prepare_cached("DELETE FROM index_queue WHERE blob_id = ?1")?
        .execute([blob_id])?;
    conn.prepare_cached("DELETE FROM index_failures WHERE blob_id = ?1")?
        .execute([blob_id])?;
    Ok(())
}

/// A queued message's envelope from a row whose first columns are `q.id, q.sender, q.size,
/// q.created, q.expires, q.envid, q.ret, q.smtputf8`.
fn queue_job(row: &rusqlite::Row<'_>, recipients: Vec<JobRecipient>) -> Result<QueueJob> {
    let ret: Option<String> = row.get(6).map_err(backend)?;
    Ok(QueueJob {
        id: row.get(0).map_err(backend)?,
        sender: row.get(1).map_err(backend)?,
        size: row.get::<_, i64>(2).map_err(backend)? as u64,
        created: row.get(3).map_err(backend)?,
        expires: row.get(4).map_err(backend)?,
        envid: row.get(5).map_err(backend)?,
        ret: ret.as_deref().and_then(Ret::parse),
        smtputf8: row.get(7).map_err(backend)?,
        recipients,
    })
}

/// Queue entries (all, or one) with their recipients.
fn queue_entries(conn: &Connection, only: Option<i64>) -> Result<Vec<QueueEntry>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT q.id, q.sender, q.size, q.created, q.expires, q.envid, q.ret, q.smtputf8, \
             r.address, r.status, r.attempts, r.next_attempt, r.last_error, r.notify, r.orcpt \
             FROM queue q \
             JOIN queue_recipients r ON r.queue_id = q.id \
             WHERE ?1 IS NULL OR q.id = ?1 ORDER BY q.id, r.rowid",
        )
        .map_err(backend)?;
    let mut rows = stmt.query([only]).map_err(backend)?;
    let mut entries: Vec<QueueEntry> = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let id: i64 = row.get(0).map_err(backend)?;
        let status: String = row.get(9).map_err(backend)?;
        let recipient = QueueRecipient {
            address: row.get(8).map_err(backend)?,
            status: RecipientStatus::parse(&status).unwrap_or(RecipientStatus::Pending),
            attempts: row.get(10).map_err(backend)?,
            next_attempt: row.get(11).map_err(backend)?,
            last_error: row.get(12).map_err(backend)?,
            notify: row.get(13).map_err(backend)?,
            orcpt: row.get(14).map_err(backend)?,
        };
        QueueEntry::push_row(&mut entries, id, recipient, || queue_job(row, Vec::new()))?;
    }
    Ok(entries)
}

/// Removes a queue entry (its recipients cascade) and its blob if nothing else uses it.
fn drop_queued(conn: &Connection, id: i64) -> Result<bool> {
    let blob: Option<String> = conn
        .prepare_cached("DELETE FROM queue WHERE id = ?1 RETURNING blob_id")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(backend)?;
    match blob {
        Some(blob) => {
            drop_blob_if_unreferenced(conn, &blob).map_err(backend)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Deletes the blob `id` if no message or queue entry references it any more. Used on the
/// hot path (expunge), where scanning every blob would stall the writer.
fn drop_blob_if_unreferenced(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM blobs WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?1) \
             AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = ?1)",
        )?
        .execute([id])?;
    if deleted > 0 {
        drop_summary(conn, id)?;
    }
    Ok(())
}

/// Deletes every blob that no message or queue entry references any more (after deleting a
/// whole account or mailbox; a full scan).
fn collect_garbage(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = blobs.id) \
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = blobs.id)",
        [],
    )?;
    conn.execute(
        "DELETE FROM summaries WHERE blob_id NOT IN (SELECT id FROM blobs)",
        [],
    )?;
    conn.execute(
        "DELETE FROM index_failures WHERE blob_id NOT IN (SELECT id FROM blobs)",
        [],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO search_trash (search_rowid) SELECT rowid FROM search \
         WHERE rowid NOT IN (SELECT search_rowid FROM summaries WHERE search_rowid IS NOT NULL)",
        [],
    )?;
    Ok(())
}

fn domain_in_use(conn: &Connection, domain: &str) -> rusqlite::Result<(i64, i64)> {
    let users: i64 = conn.query_row(
        "SELECT COUNT(*) FROM accounts WHERE domain = ?1",
        [domain],
        |r| r.get(0),
    )?;
    let aliases: i64 = conn.query_row(
        "SELECT COUNT(*) FROM aliases WHERE domain = ?1",
        [domain],
        |r| r.get(0),
    )?;
    Ok((users, aliases))
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_domain(&self, name: &str) -> Result<()> {
        let name = normalise_domain(name)?;
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO domains (name, created) VALUES (?1, ?2)",
                    params![name, now()],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<String>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name FROM domains ORDER BY name")
                .map_err(backend)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        })
        .await
    }

    async fn has_domain(&self, name: &str) -> Result<bool> {
        let name = name.trim_end_matches('.').to_lowercase();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([name]))
                .map_err(backend)
        })
        .await
    }

    async fn delete_domain(&self, name: &str) -> Result<()> {
        let name = name.trim_end_matches('.').to_lowercase();
        self.write(move |conn| {
            let (users, aliases) = domain_in_use(conn, &name).map_err(backend)?;
            if users > 0 || aliases > 0 {
                return Err(StoreError::InUse(format!(
                    "domain {name} still has {users} user(s) and {aliases} alias(es); delete them first"
                )));
            }
            let deleted = conn
                .execute("DELETE FROM domains WHERE name = ?1", [&name])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn create_account(&self, address: &Address, secrets: &Secrets) -> Result<AccountId> {
        let address = address.clone();
        let secrets = secrets.clone();
        self.write(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([address.domain()]))
                .map_err(backend)?;
            if !known {
                return Err(StoreError::Invalid(format!(
                    "unknown domain {}: add it with `pigeon domain add {}` first",
                    address.domain(),
                    address.domain()
                )));
            }
            let created = now();
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO accounts (address, domain, password_hash, scram, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![address.as_str(), address.domain(), secrets.password_hash, secrets.scram, created],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("user {address}")));
            }
            let id = conn.last_insert_rowid();
            let uid_validity = next_uid_validity(conn).map_err(backend)?;
            let mut boxes: Vec<(&str, Option<SpecialUse>)> = vec![("INBOX", None)];
            boxes.extend(SpecialUse::ALL.iter().map(|u| (u.default_name(), Some(*u))));
            for (name, usage) in boxes {
                conn.execute(
                    "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![id, name, special_use_name(usage), uid_validity],
                )
                .map_err(backend)?;
            }
            Ok(id)
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, address, created FROM accounts ORDER BY address")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Account {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        created: r.get(2)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn account(&self, address: &Address) -> Result<Option<Account>> {
        let address = address.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT id, address, created FROM accounts WHERE address = ?1")
                .and_then(|mut s| {
                    s.query_row([address], |r| {
                        Ok(Account {
                            id: r.get(0)?,
                            address: r.get(1)?,
                            created: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(backend)
        })
        .await
    }

    async fn credentials(&self, address: &Address) -> Result<Option<Credentials>> {
        let address = address.as_str().to_owned();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, address, password_hash, scram FROM accounts WHERE address = ?1",
            )
            .and_then(|mut s| {
                s.query_row([address], |r| {
                    Ok(Credentials {
                        account_id: r.get(0)?,
                        address: r.get(1)?,
                        secrets: Secrets {
                            password_hash: r.get(2)?,
                            scram: r.get(3)?,
                        },
                    })
                })
                .optional()
            })
            .map_err(backend)
        })
        .await
    }

    async fn set_password(&self, address: &Address, secrets: &Secrets) -> Result<()> {
        let address = address.clone();
        let secrets = secrets.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE accounts SET password_hash = ?1, scram = ?2 WHERE address = ?3",
                    params![secrets.password_hash, secrets.scram, address.as_str()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            Ok(())
        })
        .await
    }

    async fn delete_account(&self, address: &Address) -> Result<()> {
        let address = address.clone();
        self.write(move |conn| {
            let n = conn
                .execute(
                    "DELETE FROM accounts WHERE address = ?1",
                    [address.as_str()],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("user {address}")));
            }
            collect_garbage(conn).map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn add_alias(&self, address: &str, targets: &[String]) -> Result<()> {
        let (source, domain) = normalise_alias_source(address)?;
        let mut clean = Vec::new();
        for target in targets {
            clean.push(Address::parse(target)?.as_str().to_owned());
        }
        if clean.is_empty() {
            return Err(StoreError::Invalid(
                "an alias needs at least one target".into(),
            ));
        }
        self.write(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([&domain]))
                .map_err(backend)?;
            if !known {
                return Err(StoreError::Invalid(format!("unknown domain {domain}")));
            }
            for target in clean {
                conn.execute(
                    "INSERT OR IGNORE INTO aliases (address, target, domain) VALUES (?1, ?2, ?3)",
                    params![source, target, domain],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<Alias>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT address, target FROM aliases ORDER BY address, rowid")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
                .map_err(backend)?;
            let mut aliases: Vec<Alias> = Vec::new();
            for row in rows {
                let (address, target) = row.map_err(backend)?;
                match aliases.last_mut() {
                    Some(last) if last.address == address => last.targets.push(target),
                    _ => aliases.push(Alias {
                        address,
                        targets: vec![target],
                    }),
                }
            }
            Ok(aliases)
        })
        .await
    }

    async fn alias_targets(&self, address: &str) -> Result<Vec<String>> {
        let address = address.to_lowercase();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT target FROM aliases WHERE address = ?1 ORDER BY rowid")
                .map_err(backend)?;
            let rows = stmt.query_map([address], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        })
        .await
    }

    async fn alias_sources(&self, target: &str) -> Result<Vec<String>> {
        let target = target.to_lowercase();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached("SELECT address FROM aliases WHERE target = ?1 ORDER BY address")
                .map_err(backend)?;
            let rows = stmt.query_map([target], |r| r.get(0)).map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
                .map_err(backend)
        })
        .await
    }

    async fn delete_alias(&self, address: &str) -> Result<()> {
        let (source, _) = normalise_alias_source(address)?;
        self.write(move |conn| {
            let n = conn
                .execute("DELETE FROM aliases WHERE address = ?1", [&source])
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("alias {source}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = ?1 ORDER BY m.id"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map([account], mailbox_from_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        // RFC 9051 §5.1: INBOX is case-insensitive; other names are exact.
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_owned()
        } else {
            name.to_owned()
        };
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = ?1 AND m.name = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![account, name], mailbox_from_row)
                    .optional()
            })
            .map_err(backend)
        })
        .await
    }

    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<Message>> {
        self.messages_after(mailbox, 0).await
    }

    async fn messages_after(&self, mailbox: MailboxId, after: u32) -> Result<Vec<Message>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq, flags, keywords, internal_date, size, blob_id, crlf_size \
                     FROM messages WHERE mailbox_id = ?1 AND uid > ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, after], |r| {
                    let keywords: String = r.get(3)?;
                    Ok(Message {
                        mailbox_id: mailbox,
                        uid: r.get(0)?,
                        modseq: r.get::<_, i64>(1)? as u64,
                        flags: r.get(2)?,
                        keywords: parse_keywords(&keywords),
                        internal_date: r.get(4)?,
                        size: r.get::<_, i64>(5)? as u64,
                        blob_id: r.get(6)?,
                        crlf_size: r.get::<_, i64>(7)? as u64,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn message_flags(&self, mailbox: MailboxId, after: u32) -> Result<Vec<MessageFlags>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq, flags, keywords, internal_date, size \
                     FROM messages WHERE mailbox_id = ?1 AND uid > ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, after], message_flags_row)
                .map_err(backend)?;
            let mut rows = rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            // An IMAP session keeps this list while the mailbox is selected; drop the
            // doubling slack (up to half of it) rather than hold it for hours.
            rows.shrink_to_fit();
            Ok(rows)
        })
        .await
    }

    async fn message_meta(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<MessageFlags>> {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq, flags, keywords, internal_date, size \
                     FROM messages WHERE mailbox_id = ?1 AND uid = ?2",
                )
                .map_err(backend)?;
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                let row = stmt
                    .query_row(params![mailbox, uid], message_flags_row)
                    .optional()
                    .map_err(backend)?;
                out.extend(row);
            }
            Ok(out)
        })
        .await
    }

    async fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<u8>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id \
                 WHERE m.mailbox_id = ?1 AND m.uid = ?2",
            )
            .and_then(|mut s| s.query_row(params![mailbox, uid], |r| r.get(0)).optional())
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("message {uid}")))
        })
        .await
    }

    async fn deliver(&self, delivery: Delivery) -> Result<Vec<Delivered>> {
        let Delivery {
            data,
            mut recipients,
            internal_date,
            summary,
        } = delivery;
        recipients.sort_unstable();
        recipients.dedup();
        // Hashing happens here, on the caller's task, so the writer thread only writes.
        let blob_id = sha256_hex(&data);
        let size = data.len() as i64;
        let crlf_size = store::crlf_size(&data) as i64;
        let delivered = self
            .write_growing(size as u64, move |conn| {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![blob_id, data, size]))
                .map_err(backend)?;
                if let Some(summary) = &summary {
                    put_summary(conn, &blob_id, summary)?;
                }
                let mut delivered = Vec::with_capacity(recipients.len());
                for account in recipients {
                    let (mailbox, uid, modseq): (i64, u32, i64) = conn
                        .prepare_cached(
                            "UPDATE mailboxes SET uidnext = uidnext + 1, \
                             highestmodseq = highestmodseq + 1 \
                             WHERE account_id = ?1 AND name = 'INBOX' \
                             RETURNING id, uidnext - 1, highestmodseq",
                        )
                        .and_then(|mut s| {
                            s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        })
                        .optional()
                        .map_err(backend)?
                        .ok_or_else(|| StoreError::NotFound(format!("INBOX of account {account}")))?;
                    conn.prepare_cached(
                        "INSERT INTO messages (mailbox_id, uid, blob_id, modseq, internal_date, size, crlf_size) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![mailbox, uid, blob_id, modseq, internal_date, size, crlf_size])
                    })
                    .map_err(backend)?;
                    delivered.push((account, mailbox, uid, modseq));
                }
                Ok(delivered)
            })
            .await?;
        Ok(delivered
            .into_iter()
            .map(|(account_id, mailbox_id, uid, modseq)| {
                self.notifier.publish(
                    account_id,
                    Change::MessageAdded {
                        mailbox_id,
                        uid,
                        modseq: modseq as u64,
                    },
                );
                Delivered {
                    account_id,
                    mailbox_id,
                    uid,
                }
            })
            .collect())
    }

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        mode: FlagMode,
        flags: u32,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<FlagsUpdated>, Vec<u32>)> {
        let uids = uids.to_vec();
        let keywords = keywords.to_vec();
        let (account, updated, failed) = self
            .write(move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                let mut updated = Vec::new();
                let mut failed = Vec::new();
                for uid in uids {
                    let row: Option<(u32, String, i64)> = conn
                        .prepare_cached("SELECT flags, keywords, modseq FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                        .and_then(|mut s| s.query_row(params![mailbox, uid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                        .map_err(backend)?;
                    let Some((old_flags, old_keywords, modseq)) = row else { continue };
                    if unchanged_since.is_some_and(|since| modseq as u64 > since) {
                        failed.push(uid);
                        continue;
                    }
                    let old_keywords = parse_keywords(&old_keywords);
                    let (new_flags, new_keywords) =
                        apply_flags(old_flags, &old_keywords, mode, flags, &keywords);
                    if new_flags == old_flags && new_keywords == old_keywords {
                        continue;
                    }
                    let modseq = bump_modseq(conn, mailbox)?;
                    conn.prepare_cached("UPDATE messages SET flags = ?1, keywords = ?2, modseq = ?3 WHERE mailbox_id = ?4 AND uid = ?5")
                        .and_then(|mut s| s.execute(params![new_flags, new_keywords.join(" "), modseq, mailbox, uid]))
                        .map_err(backend)?;
                    updated.push(FlagsUpdated {
                        uid,
                        modseq: modseq as u64,
                        flags: new_flags,
                        keywords: new_keywords,
                    });
                }
                Ok((account, updated, failed))
            })
            .await?;
        for u in &updated {
            self.notifier.publish(
                account,
                Change::FlagsChanged {
                    mailbox_id: mailbox,
                    uid: u.uid,
                    modseq: u.modseq,
                    flags: u.flags,
                    keywords: u.keywords.clone(),
                },
            );
        }
        Ok((updated, failed))
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        data: Vec<u8>,
        flags: u32,
        keywords: Vec<String>,
        internal_date: i64,
        summary: Option<MessageSummary>,
    ) -> Result<u32> {
        let blob_id = sha256_hex(&data);
        let size = data.len() as i64;
        let crlf_size = store::crlf_size(&data) as i64;
        let (account, uid, modseq) = self
            .write_growing(size as u64, move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                conn.prepare_cached("INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)")
                    .and_then(|mut s| s.execute(params![blob_id, data, size]))
                    .map_err(backend)?;
                if let Some(summary) = &summary {
                    put_summary(conn, &blob_id, summary)?;
                }
                let (uid, modseq) = allocate_uid(conn, mailbox)?;
                conn.prepare_cached(
                    "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, internal_date, size, crlf_size) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| s.execute(params![mailbox, uid, blob_id, flags, keywords.join(" "), modseq, internal_date, size, crlf_size]))
                .map_err(backend)?;
                Ok((account, uid, modseq))
            })
            .await?;
        self.notifier.publish(
            account,
            Change::MessageAdded {
                mailbox_id: mailbox,
                uid,
                modseq: modseq as u64,
            },
        );
        Ok(uid)
    }

    async fn begin_upload(&self) -> Result<i64> {
        self.write(|conn| {
            // Uploads nobody added to for an hour are abandoned (those of a previous run are
            // freed when the server starts).
            conn.execute(
                "DELETE FROM uploads WHERE touched < ?1",
                [now() - UPLOAD_IDLE_SECS],
            )
            .map_err(backend)?;
            // Never an id given out before (see schema migration 9).
            let id: i64 = conn
                .query_row(
                    "UPDATE upload_ids SET last = \
                     max(last, COALESCE((SELECT MAX(id) FROM uploads), 0)) + 1 RETURNING last",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            conn.execute(
                "INSERT INTO uploads (id, created, touched) VALUES (?1, ?2, ?2)",
                params![id, now()],
            )
            .map_err(backend)?;
            Ok(id)
        })
        .await
    }

    async fn upload_chunk(&self, upload: i64, data: Vec<u8>) -> Result<()> {
        self.write_growing(data.len() as u64, move |conn| {
            let touched = conn
                .prepare_cached("UPDATE uploads SET touched = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![upload, now()]))
                .map_err(backend)?;
            if touched == 0 {
                return Err(StoreError::NotFound(format!("upload {upload}")));
            }
            conn.prepare_cached(
                "INSERT INTO upload_chunks (upload_id, seq, data) SELECT ?1, \
                 COALESCE((SELECT MAX(seq) + 1 FROM upload_chunks WHERE upload_id = ?1), 0), ?2",
            )
            .and_then(|mut s| s.execute(params![upload, data]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn take_upload(&self, upload: i64) -> Result<Vec<u8>> {
        self.write(move |conn| {
            let mut data = Vec::new();
            {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT data FROM upload_chunks WHERE upload_id = ?1 ORDER BY seq",
                    )
                    .map_err(backend)?;
                let mut rows = stmt.query([upload]).map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    let chunk = row.get_ref(0).map_err(backend)?;
                    data.extend_from_slice(chunk.as_blob().map_err(backend)?);
                }
            }
            let deleted = conn
                .execute("DELETE FROM uploads WHERE id = ?1", [upload])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("upload {upload}")));
            }
            Ok(data)
        })
        .await
    }

    async fn discard_upload(&self, upload: i64) -> Result<()> {
        self.write(move |conn| {
            conn.execute("DELETE FROM uploads WHERE id = ?1", [upload])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn copy(
        &self,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
        move_them: bool,
    ) -> Result<Vec<(u32, u32)>> {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let (account, pairs, added, expunge_modseq) = self
            .write(move |conn| {
                let account = mailbox_account(conn, from)?;
                if mailbox_account(conn, to)? != account {
                    return Err(StoreError::Invalid("copy across accounts".into()));
                }
                let mut pairs = Vec::new();
                let mut added = Vec::new();
                for uid in uids {
                    let row: Option<(String, u32, String, i64, i64, i64)> = conn
                        .prepare_cached(
                            "SELECT blob_id, flags, keywords, internal_date, size, crlf_size FROM messages \
                             WHERE mailbox_id = ?1 AND uid = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![from, uid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                                .optional()
                        })
                        .map_err(backend)?;
                    let Some((blob, flags, keywords, date, size, crlf_size)) = row else { continue };
                    let (new_uid, modseq) = allocate_uid(conn, to)?;
                    conn.prepare_cached(
                        "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, internal_date, size, crlf_size) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .and_then(|mut s| s.execute(params![to, new_uid, blob, flags, keywords, modseq, date, size, crlf_size]))
                    .map_err(backend)?;
                    pairs.push((uid, new_uid));
                    added.push((new_uid, modseq as u64));
                }
                let mut expunge_modseq = None;
                if move_them && !pairs.is_empty() {
                    let modseq = bump_modseq(conn, from)?;
                    for (uid, _) in &pairs {
                        conn.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                            .and_then(|mut s| s.execute(params![from, uid]))
                            .map_err(backend)?;
                        conn.prepare_cached("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)")
                            .and_then(|mut s| s.execute(params![from, uid, modseq]))
                            .map_err(backend)?;
                    }
                    expunge_modseq = Some(modseq as u64);
                }
                Ok((account, pairs, added, expunge_modseq))
            })
            .await?;
        for (uid, modseq) in added {
            self.notifier.publish(
                account,
                Change::MessageAdded {
                    mailbox_id: to,
                    uid,
                    modseq,
                },
            );
        }
        if let Some(modseq) = expunge_modseq {
            self.notifier.publish(
                account,
                Change::Expunged {
                    mailbox_id: from,
                    uids: pairs.iter().map(|p| p.0).collect(),
                    modseq,
                },
            );
        }
        Ok(pairs)
    }

    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, modseq as i64], |r| r.get(0))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<u32>>>()
                .map_err(backend)
        })
        .await
    }

    async fn summaries(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<Vec<(u32, MessageSummary)>> {
        let uids = uids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.envelope, s.body_structure, s.body, s.header FROM messages m \
                     JOIN summaries s ON s.blob_id = m.blob_id WHERE m.mailbox_id = ?1 AND m.uid = ?2",
                )
                .map_err(backend)?;
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                let row = stmt
                    .query_row(params![mailbox, uid], |r| {
                        Ok(MessageSummary {
                            envelope: r.get(0)?,
                            body_structure: r.get(1)?,
                            body: r.get(2)?,
                            header: r.get(3)?,
                        })
                    })
                    .optional()
                    .map_err(backend)?;
                if let Some(summary) = row {
                    out.push((uid, summary));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn search_text(
        &self,
        mailbox: MailboxId,
        needle: &str,
        scope: TextScope,
    ) -> Result<Vec<u32>> {
        let needle = needle.to_owned();
        self.read(move |conn| {
            // The trigram index answers MATCH for needles of three characters or more; shorter
            // ones use LIKE, which the trigram table also serves (by scanning).
            let (condition, pattern) = if needle.chars().count() >= 3 {
                let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
                let query = match scope {
                    TextScope::Headers => format!("headers : {phrase}"),
                    TextScope::Body => format!("body : {phrase}"),
                    TextScope::All => format!("{{headers body}} : {phrase}"),
                };
                ("search MATCH ?2", query)
            } else {
                let like = format!(
                    "%{}%",
                    needle
                        .replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                let condition = match scope {
                    TextScope::Headers => "s.headers LIKE ?2 ESCAPE '\\'",
                    TextScope::Body => "s.body LIKE ?2 ESCAPE '\\'",
                    TextScope::All => {
                        "(s.headers LIKE ?2 ESCAPE '\\' OR s.body LIKE ?2 ESCAPE '\\')"
                    }
                };
                (condition, like)
            };
            let sql = format!(
                "SELECT m.uid FROM search s JOIN messages m ON m.blob_id = s.blob_id \
                 WHERE m.mailbox_id = ?1 AND {condition} ORDER BY m.uid"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, pattern], |r| r.get(0))
                .map_err(backend)?;
            let mut uids: Vec<u32> = rows.collect::<rusqlite::Result<_>>().map_err(backend)?;
            // Texts not indexed yet (the indexer runs when the writer is idle) are matched
            // here, so a search never misses fresh mail.
            // They are read only as far as the index will read them, so a result does not
            // change when the message is indexed.
            let lower = needle.to_lowercase();
            let mut pending = conn
                .prepare_cached(
                    "SELECT m.uid, b.rowid FROM index_queue q CROSS JOIN messages m ON m.blob_id = q.blob_id \
                     CROSS JOIN blobs b ON b.id = q.blob_id WHERE m.mailbox_id = ?1",
                )
                .map_err(backend)?;
            let rows: Vec<(u32, i64)> = pending
                .query_map([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(backend)?;
            for (uid, rowid) in rows {
                let prefix = indexer::read_prefix(conn, rowid).map_err(backend)?;
                // One the indexer will give up on is not found once it has.
                let Ok((headers, body)) = store::index::texts(&prefix) else {
                    continue;
                };
                let hit = |text: &str| store::index::matches(text, &lower);
                let matched = match scope {
                    TextScope::Headers => hit(&headers),
                    TextScope::Body => hit(&body),
                    TextScope::All => hit(&headers) || hit(&body),
                };
                if matched {
                    uids.push(uid);
                }
            }
            uids.sort_unstable();
            uids.dedup();
            Ok(uids)
        })
        .await
    }

    async fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<Option<Mailbox>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.id = ?1"
            ))
            .and_then(|mut s| s.query_row([mailbox], mailbox_from_row).optional())
            .map_err(backend)
        })
        .await
    }

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId> {
        valid_mailbox_name(name)?;
        if name.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::AlreadyExists("mailbox INBOX".into()));
        }
        let name = name.to_owned();
        let id = self
            .write(move |conn| {
                let uid_validity = next_uid_validity(conn).map_err(backend)?;
                let n = conn
                    .execute(
                        "INSERT OR IGNORE INTO mailboxes (account_id, name, special_use, uidvalidity, subscribed) \
                         VALUES (?1, ?2, ?3, ?4, 0)",
                        params![account, name, special_use_name(special_use), uid_validity],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(format!("mailbox {name}")));
                }
                Ok(conn.last_insert_rowid())
            })
            .await?;
        self.notifier.publish(account, Change::MailboxesChanged);
        Ok(id)
    }

    async fn delete_mailbox(&self, mailbox: MailboxId) -> Result<()> {
        let account = self
            .write(move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                let name: String = conn
                    .query_row("SELECT name FROM mailboxes WHERE id = ?1", [mailbox], |r| {
                        r.get(0)
                    })
                    .map_err(backend)?;
                if name == "INBOX" {
                    return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
                }
                conn.execute("DELETE FROM mailboxes WHERE id = ?1", [mailbox])
                    .map_err(backend)?;
                collect_garbage(conn).map_err(backend)?;
                Ok(account)
            })
            .await?;
        self.notifier.publish(account, Change::MailboxesChanged);
        Ok(())
    }

    async fn rename_mailbox(&self, mailbox: MailboxId, new_name: &str) -> Result<()> {
        valid_mailbox_name(new_name)?;
        if new_name.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::AlreadyExists("mailbox INBOX".into()));
        }
        let new_name = new_name.to_owned();
        let account = self
            .write(move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                let old: String = conn
                    .query_row("SELECT name FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))
                    .map_err(backend)?;
                let exists = conn
                    .prepare_cached("SELECT 1 FROM mailboxes WHERE account_id = ?1 AND name = ?2")
                    .and_then(|mut s| s.exists(params![account, new_name]))
                    .map_err(backend)?;
                if exists {
                    return Err(StoreError::AlreadyExists(format!("mailbox {new_name}")));
                }
                if old == "INBOX" {
                    // RFC 9051 §6.3.6: the messages move to a new mailbox; INBOX stays, empty.
                    let uid_validity = next_uid_validity(conn).map_err(backend)?;
                    conn.execute(
                        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (?1, ?2, ?3, 0)",
                        params![account, new_name, uid_validity],
                    )
                    .map_err(backend)?;
                    let target = conn.last_insert_rowid();
                    let uids: Vec<u32> = conn
                        .prepare("SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid")
                        .and_then(|mut s| s.query_map([mailbox], |r| r.get(0))?.collect())
                        .map_err(backend)?;
                    let modseq = bump_modseq(conn, mailbox)?;
                    for uid in uids {
                        let (new_uid, new_modseq) = allocate_uid(conn, target)?;
                        conn.execute(
                            "UPDATE messages SET mailbox_id = ?1, uid = ?2, modseq = ?3 WHERE mailbox_id = ?4 AND uid = ?5",
                            params![target, new_uid, new_modseq, mailbox, uid],
                        )
                        .map_err(backend)?;
                        conn.execute(
                            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
                            params![mailbox, uid, modseq],
                        )
                        .map_err(backend)?;
                    }
                } else {
                    // Children move along: "a" -> "b" renames "a/x" to "b/x".
                    let mut stmt = conn
                        .prepare("SELECT id, name FROM mailboxes WHERE account_id = ?1")
                        .map_err(backend)?;
                    let children: Vec<(i64, String)> = stmt
                        .query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect())
                        .map_err(backend)?;
                    let prefix = format!("{old}/");
                    for (id, name) in children {
                        if let Some(rest) = name.strip_prefix(&prefix) {
                            conn.execute("UPDATE mailboxes SET name = ?1 WHERE id = ?2", params![format!("{new_name}/{rest}"), id])
                                .map_err(backend)?;
                        }
                    }
                    conn.execute("UPDATE mailboxes SET name = ?1 WHERE id = ?2", params![new_name, mailbox])
                        .map_err(backend)?;
                }
                Ok(account)
            })
            .await?;
        self.notifier.publish(account, Change::MailboxesChanged);
        Ok(())
    }

    async fn set_subscribed(&self, mailbox: MailboxId, subscribed: bool) -> Result<()> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE mailboxes SET subscribed = ?1 WHERE id = ?2",
                    params![subscribed, mailbox],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("mailbox {mailbox}")));
            }
            Ok(())
        })
        .await
    }

    async fn expunged_records(&self, mailbox: MailboxId) -> Result<Vec<(u32, u64)>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = ?1 ORDER BY uid",
                )
                .map_err(backend)?;
            stmt.query_map([mailbox], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .and_then(|rows| rows.collect())
                .map_err(backend)
        })
        .await
    }

    async fn import_mailbox(&self, account: AccountId, mailbox: &Mailbox) -> Result<MailboxId> {
        valid_mailbox_name(&mailbox.name)?;
        let m = mailbox.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, uidnext, \
                 highestmodseq, subscribed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (account_id, name) DO UPDATE SET special_use = excluded.special_use, \
                 uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext, \
                 highestmodseq = excluded.highestmodseq, subscribed = excluded.subscribed",
                params![
                    account,
                    m.name,
                    special_use_name(m.special_use),
                    m.uid_validity,
                    m.uid_next,
                    m.highest_modseq as i64,
                    m.subscribed
                ],
            )
            .map_err(backend)?;
            conn.query_row(
                "SELECT id FROM mailboxes WHERE account_id = ?1 AND name = ?2",
                params![account, m.name],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<store::ImportedMessage>,
        expunged: Vec<(u32, u64)>,
    ) -> Result<()> {
        let rows: Vec<(String, i64, i64, store::ImportedMessage)> = messages
            .into_iter()
            .map(|mut m| {
                // The full-text index is built from summarised messages only.
                if m.summary.is_none() {
                    m.summary = Some(message::summary::summarize(&m.data));
                }
                (
                    sha256_hex(&m.data),
                    m.data.len() as i64,
                    store::crlf_size(&m.data) as i64,
                    m,
                )
            })
            .collect();
        let grows = rows.iter().map(|row| row.1 as u64).sum();
        self.write_growing(grows, move |conn| {
            mailbox_account(conn, mailbox)?;
            for (blob_id, size, crlf_size, m) in &rows {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![blob_id, m.data, size]))
                .map_err(backend)?;
                if let Some(summary) = &m.summary {
                    put_summary(conn, blob_id, summary)?;
                }
                let msg = &m.message;
                conn.prepare_cached(
                    "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, \
                     internal_date, size, crlf_size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        mailbox,
                        msg.uid,
                        blob_id,
                        msg.flags,
                        msg.keywords.join(" "),
                        msg.modseq as i64,
                        msg.internal_date,
                        size,
                        crlf_size
                    ])
                })
                .map_err(backend)?;
            }
            for (uid, modseq) in &expunged {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![mailbox, uid, *modseq as i64]))
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn import_queued(&self, entry: QueueEntry, data: Vec<u8>) -> Result<i64> {
        let blob_id = sha256_hex(&data);
        self.write_growing(data.len() as u64, move |conn| {
            let size = data.len() as i64;
            conn.execute(
                "INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)",
                params![blob_id, data, size],
            )
            .map_err(backend)?;
            conn.execute(
                "INSERT INTO queue (blob_id, sender, size, created, expires, envid, ret, smtputf8) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    blob_id,
                    entry.sender,
                    size,
                    entry.created,
                    entry.expires,
                    entry.envid,
                    entry.ret.map(Ret::as_str),
                    entry.smtputf8
                ],
            )
            .map_err(backend)?;
            let id = conn.last_insert_rowid();
            for r in &entry.recipients {
                conn.execute(
                    "INSERT OR IGNORE INTO queue_recipients (queue_id, address, status, attempts, \
                     next_attempt, last_error, notify, orcpt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        id,
                        r.address,
                        r.status.as_str(),
                        r.attempts,
                        r.next_attempt,
                        r.last_error,
                        r.notify,
                        r.orcpt
                    ],
                )
                .map_err(backend)?;
            }
            Ok(id)
        })
        .await
    }

    async fn expunge(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>> {
        let uids = uids.to_vec();
        let (account, removed, modseq) = self
            .write(move |conn| {
                let account: AccountId = conn
                    .query_row("SELECT account_id FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))
                    .optional()
                    .map_err(backend)?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let modseq: i64 = conn
                    .prepare_cached(
                        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1 \
                         RETURNING highestmodseq",
                    )
                    .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)))
                    .map_err(backend)?;
                let mut removed = Vec::new();
                let mut blobs = Vec::new();
                for uid in uids {
                    let blob: Option<String> = conn
                        .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING blob_id")
                        .and_then(|mut s| s.query_row(params![mailbox, uid], |r| r.get(0)).optional())
                        .map_err(backend)?;
                    if let Some(blob) = blob {
                        blobs.push(blob);
                        conn.prepare_cached(
                            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![mailbox, uid, modseq]))
                        .map_err(backend)?;
                        removed.push(uid);
                    }
                }
                if removed.is_empty() {
                    // Nothing changed: give the MODSEQ back so it does not move for nothing.
                    conn.execute("UPDATE mailboxes SET highestmodseq = highestmodseq - 1 WHERE id = ?1", [mailbox])
                        .map_err(backend)?;
                }
                blobs.sort_unstable();
                blobs.dedup();
                for blob in blobs {
                    drop_blob_if_unreferenced(conn, &blob).map_err(backend)?;
                }
                Ok((account, removed, modseq as u64))
            })
            .await?;
        if !removed.is_empty() {
            self.notifier.publish(
                account,
                Change::Expunged {
                    mailbox_id: mailbox,
                    uids: removed.clone(),
                    modseq,
                },
            );
        }
        Ok(removed)
    }

    async fn enqueue(&self, message: Outbound) -> Result<i64> {
        let blob_id = sha256_hex(&message.data);
        let grows = message.data.len() as u64;
        let id = self
            .write_growing(grows, move |conn| {
                let size = message.data.len() as i64;
                conn.execute(
                    "INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)",
                    params![blob_id, message.data, size],
                )
                .map_err(backend)?;
                conn.prepare_cached(
                    "INSERT INTO queue (blob_id, sender, size, created, expires, envid, ret, smtputf8) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        blob_id,
                        message.sender,
                        size,
                        message.created,
                        message.expires,
                        message.envid,
                        message.ret.map(Ret::as_str),
                        message.smtputf8
                    ])
                })
                .map_err(backend)?;
                let id = conn.last_insert_rowid();
                let mut insert = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO queue_recipients \
                         (queue_id, address, status, next_attempt, notify, orcpt) \
                         VALUES (?1, ?2, 'pending', ?3, ?4, ?5)",
                    )
                    .map_err(backend)?;
                for r in message.recipients {
                    insert
                        .execute(params![id, r.address, message.created, r.notify, r.orcpt])
                        .map_err(backend)?;
                }
                Ok(id)
            })
            .await?;
        self.queue_signal.notify_one();
        Ok(id)
    }

    async fn list_queue(&self) -> Result<Vec<QueueEntry>> {
        self.read(|conn| queue_entries(conn, None)).await
    }

    async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>> {
        self.read(move |conn| Ok(queue_entries(conn, Some(id))?.pop()))
            .await
    }

    async fn queue_data(&self, id: i64) -> Result<Vec<u8>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT b.data FROM queue q JOIN blobs b ON b.id = q.blob_id WHERE q.id = ?1",
            )
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("queued message {id}")))
        })
        .await
    }

    async fn claim_queue(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<QueueJob>> {
        self.write(move |conn| {
            let mut jobs: Vec<QueueJob> = Vec::new();
            {
                // Due recipients, oldest due first, whole messages up to `limit`.
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT q.id, q.sender, q.size, q.created, q.expires, q.envid, q.ret, \
                         q.smtputf8, r.address, r.notify, r.orcpt, r.attempts \
                         FROM queue_recipients r JOIN queue q ON q.id = r.queue_id \
                         WHERE r.status IN ('pending', 'deferred') AND r.next_attempt <= ?1 \
                         AND r.lease_until <= ?1 ORDER BY r.next_attempt, q.id",
                    )
                    .map_err(backend)?;
                let mut rows = stmt.query([now]).map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    let id: i64 = row.get(0).map_err(backend)?;
                    let recipient = JobRecipient {
                        address: row.get(8).map_err(backend)?,
                        notify: row.get(9).map_err(backend)?,
                        orcpt: row.get(10).map_err(backend)?,
                        attempts: row.get(11).map_err(backend)?,
                    };
                    if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
                        job.recipients.push(recipient);
                        continue;
                    }
                    if jobs.len() == limit {
                        break;
                    }
                    jobs.push(queue_job(row, vec![recipient])?);
                }
            }
            let mut lease = conn
                .prepare_cached(
                    "UPDATE queue_recipients SET lease_until = ?3 WHERE queue_id = ?1 AND address = ?2",
                )
                .map_err(backend)?;
            for job in &jobs {
                for r in &job.recipients {
                    lease
                        .execute(params![job.id, r.address, lease_until])
                        .map_err(backend)?;
                }
            }
            Ok(jobs)
        })
        .await
    }

    async fn record_attempt(&self, id: i64, results: Vec<AttemptResult>) -> Result<()> {
        self.write(move |conn| {
            let mut update = conn
                .prepare_cached(
                    "UPDATE queue_recipients SET status = ?3, last_error = ?4, next_attempt = ?5, \
                     attempts = attempts + 1, lease_until = 0 WHERE queue_id = ?1 AND address = ?2",
                )
                .map_err(backend)?;
            for r in &results {
                update
                    .execute(params![
                        id,
                        r.address,
                        r.status.as_str(),
                        r.error,
                        r.next_attempt
                    ])
                    .map_err(backend)?;
            }
            let open: bool = conn
                .prepare_cached(
                    "SELECT 1 FROM queue_recipients WHERE queue_id = ?1 \
                     AND status IN ('pending', 'deferred')",
                )
                .and_then(|mut s| s.exists([id]))
                .map_err(backend)?;
            if !open {
                drop_queued(conn, id)?;
            }
            Ok(())
        })
        .await
    }

    async fn next_queue_due(&self) -> Result<Option<i64>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT MIN(MAX(next_attempt, lease_until)) FROM queue_recipients \
                 WHERE status IN ('pending', 'deferred')",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(backend)
        })
        .await
    }

    async fn retry_queue(&self, id: Option<i64>, now: i64) -> Result<u64> {
        let n = self
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE queue_recipients SET next_attempt = ?2 \
                     WHERE (?1 IS NULL OR queue_id = ?1) AND status IN ('pending', 'deferred')",
                )
                .and_then(|mut s| s.execute(params![id, now]))
                .map(|n| n as u64)
                .map_err(backend)
            })
            .await?;
        self.queue_signal.notify_one();
        Ok(n)
    }

    async fn drop_queue(&self, id: i64) -> Result<bool> {
        self.write(move |conn| drop_queued(conn, id)).await
    }

    async fn release_queue_leases(&self) -> Result<()> {
        self.write(|conn| {
            conn.execute(
                "UPDATE queue_recipients SET lease_until = 0 WHERE lease_until != 0",
                [],
            )
            .map(|_| ())
            .map_err(backend)
        })
        .await
    }

    fn queue_signal(&self) -> Arc<tokio::sync::Notify> {
        self.queue_signal.clone()
    }

    async fn add_dkim_key(&self, key: DkimKey) -> Result<()> {
        self.write(move |conn| {
            let known = conn
                .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")
                .and_then(|mut s| s.exists([&key.domain]))
                .map_err(backend)?;
            if !known {
                return Err(StoreError::NotFound(format!("domain {}", key.domain)));
            }
            let inserted = conn
                .execute(
                    "INSERT OR IGNORE INTO dkim_keys \
                     (domain, selector, algorithm, private_key, public_key, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        key.domain,
                        key.selector,
                        key.algorithm,
                        key.private_key,
                        key.public_key,
                        key.created
                    ],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "DKIM selector {} of {}",
                    key.selector, key.domain
                )));
            }
            Ok(())
        })
        .await
    }

    async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKey>> {
        let domain = domain.to_lowercase();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT domain, selector, algorithm, private_key, public_key, created \
                     FROM dkim_keys WHERE domain = ?1 ORDER BY created, selector",
                )
                .map_err(backend)?;
            stmt.query_map([domain], |r| {
                Ok(DkimKey {
                    domain: r.get(0)?,
                    selector: r.get(1)?,
                    algorithm: r.get(2)?,
                    private_key: r.get(3)?,
                    public_key: r.get(4)?,
                    created: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(backend)
        })
        .await
    }

    async fn index_backlog(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM index_queue", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn index_failures(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM index_failures", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn verify(&self) -> Result<VerifyReport> {
        self.read(|conn| verify(conn).map_err(backend)).await
    }

    fn subscribe(&self, account: AccountId) -> tokio::sync::broadcast::Receiver<Change> {
        self.notifier.subscribe(account)
    }
}

/// A UIDVALIDITY larger than any given before, so a re-created mailbox never reuses one.
fn next_uid_validity(conn: &Connection) -> rusqlite::Result<u32> {
    let last: i64 = conn.query_row(
        "SELECT COALESCE(MAX(uidvalidity), 0) FROM mailboxes",
        [],
        |r| r.get(0),
    )?;
    Ok(uid_validity_after(last))
}

fn verify(conn: &Connection) -> rusqlite::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    report.accounts = count("SELECT COUNT(*) FROM accounts")? as u64;
    report.mailboxes = count("SELECT COUNT(*) FROM mailboxes")? as u64;
    report.messages = count("SELECT COUNT(*) FROM messages")? as u64;
    report.blobs = count("SELECT COUNT(*) FROM blobs")? as u64;
    report.index_backlog = count("SELECT COUNT(*) FROM index_queue")? as u64;
    report.index_failures = count("SELECT COUNT(*) FROM index_failures")? as u64;
    (report.uploads, report.upload_bytes) = upload_usage(conn)?;

    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        report
            .problems
            .push(format!("sqlite integrity_check: {integrity}"));
    }
    let mut fk = conn.prepare("PRAGMA foreign_key_check")?;
    let fk_problems = fk.query_map([], |r| r.get::<_, String>(0))?.count();
    if fk_problems > 0 {
        report
            .problems
            .push(format!("{fk_problems} rows break foreign keys"));
    }
    let dangling = count(
        "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = m.blob_id)",
    )?;
    if dangling > 0 {
        report
            .problems
            .push(format!("{dangling} messages have no stored bytes"));
    }
    let bad_uids = count(
        "SELECT COUNT(*) FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id \
         WHERE m.uid >= x.uidnext OR m.modseq > x.highestmodseq",
    )?;
    if bad_uids > 0 {
        report.problems.push(format!(
            "{bad_uids} messages have a UID or MODSEQ beyond their mailbox's counters"
        ));
    }
    let bad_counters = count(
        "SELECT COUNT(*) FROM mailboxes x WHERE \
         x.total != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id) \
         OR x.unseen != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id AND (flags & 1) = 0) \
         OR x.deleted != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id AND (flags & 8) != 0) \
         OR x.total_size != (SELECT COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = x.id)",
    )?;
    if bad_counters > 0 {
        report.problems.push(format!(
            "{bad_counters} mailboxes have wrong message counters"
        ));
    }
    let bad_sizes = count(
        "SELECT COUNT(*) FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.size != b.size \
         OR length(b.data) != b.size",
    )?;
    if bad_sizes > 0 {
        report
            .problems
            .push(format!("{bad_sizes} messages have a wrong size"));
    }
    let mut stmt = conn.prepare("SELECT id, data FROM blobs")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let data: Vec<u8> = row.get(1)?;
        if sha256_hex(&data) != id {
            report
                .problems
                .push(format!("blob {id} does not match its hash"));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: a panic in one write job ended the writer thread, and every later write of
    /// every session failed ("the writer thread has stopped") while the process stayed up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_job_fails_alone_and_later_writes_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let result: Result<()> = store
            .write(|conn| {
                conn.execute(
                    "INSERT INTO domains (name, created) VALUES ('half.test', 0)",
                    [],
                )
                .map_err(backend)?;
                panic!("a bug in a write job");
            })
            .await;
        match result {
            Err(StoreError::Backend(e)) => assert_eq!(e.to_string(), "internal error"),
            other => panic!("expected an internal error, got {other:?}"),
        }
        // A job that panics outside the caught part (the backstop in the batch loop).
        store
            .writer
            .lock()
            .unwrap()
            .send(Job {
                grows: 0,
                run: Box::new(|conn| {
                    if let Some(conn) = conn {
                        let _ = conn.execute(
                            "INSERT INTO domains (name, created) VALUES ('raw.test', 0)",
                            [],
                        );
                    }
                    panic!("a bug around a write job")
                }),
            })
            .unwrap();
        store.add_domain("after.test").await.unwrap();
        let domains: Vec<String> = store
            .read(|conn| {
                conn.prepare("SELECT name FROM domains ORDER BY name")
                    .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                    .map_err(backend)
            })
            .await
            .unwrap();
        assert_eq!(
            domains,
            vec!["after.test".to_owned()],
            "the panicked jobs rolled back"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store::conformance::run(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.add_domain("keep.test").await.unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.list_domains().await.unwrap(), ["keep.test"]);
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::MIGRATIONS.len() as i64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_job_does_not_spoil_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        // Many concurrent adds of the same domain land in shared batches: exactly one wins and
        // the others fail alone.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            tasks.push(tokio::spawn(
                async move { store.add_domain("race.test").await },
            ));
        }
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok, 1);
        assert_eq!(store.list_domains().await.unwrap(), ["race.test"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_texts_reach_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("i.test").await.unwrap();
        let id = store
            .create_account(
                &Address::parse("i@i.test").unwrap(),
                &Secrets {
                    password_hash: "h".into(),
                    scram: None,
                },
            )
            .await
            .unwrap();
        for i in 0..30 {
            let raw = format!("Subject: n{i}\r\n\r\nneedle{i} haystack\r\n").into_bytes();
            let summary = message_summary(&raw);
            store
                .deliver(Delivery {
                    data: raw,
                    recipients: vec![id],
                    internal_date: 0,
                    summary: Some(summary),
                })
                .await
                .unwrap();
        }
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap();
        // Found at once (queued or indexed)...
        assert_eq!(
            store
                .search_text(inbox.id, "NEEDLE17", TextScope::Body)
                .await
                .unwrap(),
            [18]
        );
        // ...and the idle writer drains the queue into the index.
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        let mut waited = 0;
        while conn
            .query_row("SELECT COUNT(*) FROM index_queue", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
            > 0
        {
            assert!(waited < 100, "the index queue drains");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }
        let indexed: i64 = conn
            .query_row("SELECT COUNT(*) FROM search", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 30);
        assert_eq!(
            store
                .search_text(inbox.id, "needle17", TextScope::Body)
                .await
                .unwrap(),
            [18]
        );
        assert_eq!(
            store
                .search_text(inbox.id, "haystack", TextScope::All)
                .await
                .unwrap()
                .len(),
            30
        );
    }

    fn message_summary(raw: &[u8]) -> MessageSummary {
        MessageSummary {
            envelope: b"(NIL)".to_vec(),
            body_structure: b"()".to_vec(),
            body: b"()".to_vec(),
            header: raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4].to_vec(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_detects_a_corrupted_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("v.test").await.unwrap();
        let id = store
            .create_account(
                &Address::parse("v@v.test").unwrap(),
                &Secrets {
                    password_hash: "h".into(),
                    scram: None,
                },
            )
            .await
            .unwrap();
        store
            .deliver(Delivery {
                data: b"Subject: x\r\n\r\n".to_vec(),
                recipients: vec![id],
                internal_date: 0,
                summary: None,
            })
            .await
            .unwrap();
        assert!(store.verify().await.unwrap().problems.is_empty());
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        conn.execute("UPDATE blobs SET data = X'00'", []).unwrap();
        let problems = store.verify().await.unwrap().problems;
        assert!(problems.iter().any(|p| p.contains("hash")), "{problems:?}");
    }
}
