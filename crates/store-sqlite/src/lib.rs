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

mod directory;
mod import;
mod indexer;
mod mailboxes;
mod messages;
mod queue;
mod schema;
mod space;
mod uploads;
mod verify;

use uploads::{free_uploads, server_lock, upload_usage};

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
    Result, Ret, Role, Secrets, SpecialUse, StoreError, TextScope, VerifyReport,
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
    use store::prelude::*;

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
