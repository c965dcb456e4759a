//! The full-text indexer, run by the writer thread between write batches.
//!
//! Deliveries only record a blob in `index_queue`; this moves queued texts into the FTS5
//! `search` table (what is indexed of a message: `store::index`). Each step is one
//! transaction bounded by bytes read ([`store::index::STEP_BYTES`]), by count and by time,
//! and always indexes at least its first message, so the queue drains whatever the sizes. The
//! writer takes waiting write jobs between steps (a step waits for 20 ms without jobs, but
//! under a load that never pauses it runs anyway every 2 s), and rests a quarter of a step's
//! duration after it, so other processes on the same database (admin commands) get the write
//! lock too. A message whose text cannot be derived or stored goes to `index_failures` and
//! leaves the queue; errors of the database itself (disk full, I/O) end the step and the
//! indexer tries again later, waiting longer each time.

use std::io::Read;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use store::index;

/// Most queued texts one step looks at.
const STEP_COUNT: i64 = 512;
/// After this long a step commits what it has (once it has indexed one message). FTS5 writes
/// a segment per commit, so steps should not be tiny either.
const STEP_TIME: Duration = Duration::from_millis(30);
/// How long the writer must have had no jobs before it indexes.
const QUIET: Duration = Duration::from_millis(20);
/// Under a load that never pauses, index anyway this long after the last step.
const MAX_DEFER: Duration = Duration::from_secs(2);
/// First and longest wait after a failed step.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// When the writer should index next.
pub(crate) struct Schedule {
    enabled: bool,
    /// Texts may be waiting.
    pending: bool,
    /// Not before this.
    due: Instant,
    /// The last step ended then (or the writer started).
    last_step: Instant,
    backoff: Duration,
}

impl Schedule {
    /// Texts may be left from before a restart, so an enabled indexer starts by looking.
    pub(crate) fn new(enabled: bool) -> Schedule {
        let now = Instant::now();
        Schedule {
            enabled,
            pending: enabled,
            due: now,
            last_step: now,
            backoff: BACKOFF_MIN,
        }
    }

    /// When to run the next step, if texts may be waiting.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.pending.then_some(self.due)
    }

    /// Whether a step is owed now even though write jobs are waiting.
    pub(crate) fn overdue(&self, now: Instant) -> bool {
        self.pending && now >= self.due && now.duration_since(self.last_step) >= MAX_DEFER
    }

    /// The writer committed a batch (which may have queued texts): index after a quiet moment.
    pub(crate) fn after_batch(&mut self) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if !self.pending {
            self.pending = true;
            self.last_step = now;
        }
        self.due = self.due.max(now + QUIET);
    }

    /// Runs one step if the disk has room for it, and plans the next.
    pub(crate) fn run(&mut self, conn: &Connection, space: &crate::space::Space) {
        let started = Instant::now();
        // An index step adds up to a few MiB (text and its trigrams).
        if space.budget(conn, 4 * index::STEP_BYTES) < 8 * index::STEP_BYTES {
            self.due = started + BACKOFF_MAX;
            return;
        }
        match step(conn) {
            Ok(more) => {
                self.backoff = BACKOFF_MIN;
                self.pending = more;
                let took = started.elapsed();
                self.last_step = Instant::now();
                self.due = self.last_step + (took / 4).clamp(Duration::from_millis(1), QUIET * 10);
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?self.backoff, "sqlite: indexing failed");
                if e.sqlite_error_code() == Some(ErrorCode::DiskFull) {
                    space.disk_full();
                }
                self.last_step = Instant::now();
                self.due = self.last_step + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Indexes queued texts in one transaction; returns whether more wait. Fails only for errors
/// of the database itself, after rolling back.
pub(crate) fn step(conn: &Connection) -> rusqlite::Result<bool> {
    // Most of the time nothing waits: no write lock for that.
    let any: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM index_queue LIMIT 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if any.is_none() {
        return Ok(false);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match step_in_transaction(conn) {
        Ok(more) => {
            conn.execute_batch("COMMIT")?;
            Ok(more)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn step_in_transaction(conn: &Connection) -> rusqlite::Result<bool> {
    let started = Instant::now();
    // Ids and sizes only: a message's bytes are read when its turn comes, and only as far as
    // the index reads them.
    let queued: Vec<(String, Option<i64>)> = conn
        .prepare_cached(
            "SELECT q.blob_id, b.rowid FROM index_queue q LEFT JOIN blobs b ON b.id = q.blob_id \
             LIMIT ?1",
        )?
        .query_map([STEP_COUNT], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut done = 0;
    let mut bytes = 0u64;
    for (blob_id, rowid) in &queued {
        if done > 0 && (bytes >= index::STEP_BYTES || started.elapsed() >= STEP_TIME) {
            break;
        }
        done += 1;
        let Some(rowid) = rowid else {
            // The blob is gone (nothing should leave this behind, but it must not stay).
            dequeue(conn, blob_id)?;
            continue;
        };
        let prefix = read_prefix(conn, *rowid)?;
        bytes += prefix.len() as u64;
        match index::texts(&prefix) {
            Ok((headers, body)) => {
                conn.execute_batch("SAVEPOINT text")?;
                match insert(conn, blob_id, &headers, &body) {
                    Ok(()) => conn.execute_batch("RELEASE text")?,
                    Err(e) => {
                        conn.execute_batch("ROLLBACK TO text; RELEASE text")?;
                        if transient(&e) {
                            return Err(e);
                        }
                        record_failure(conn, blob_id, &format!("storing its text failed: {e}"))?;
                    }
                }
            }
            Err(reason) => record_failure(conn, blob_id, &reason)?,
        }
    }
    Ok(done < queued.len() || queued.len() as i64 == STEP_COUNT)
}

/// The first bytes of a blob, as many as the index reads, without loading the rest.
pub(crate) fn read_prefix(conn: &Connection, rowid: i64) -> rusqlite::Result<Vec<u8>> {
    let blob = conn.blob_open("main", "blobs", "data", rowid, true)?;
    let mut prefix = Vec::with_capacity(blob.len().min(index::READ_LIMIT));
    blob.take(index::READ_LIMIT as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok(prefix)
}

fn insert(conn: &Connection, blob_id: &str, headers: &str, body: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO search (blob_id, headers, body) VALUES (?1, ?2, ?3)")?
        .execute(params![blob_id, headers, body])?;
    let rowid = conn.last_insert_rowid();
    conn.prepare_cached("UPDATE summaries SET search_rowid = ?1 WHERE blob_id = ?2")?
        .execute(params![rowid, blob_id])?;
    dequeue(conn, blob_id)
}

fn dequeue(conn: &Connection, blob_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM index_queue WHERE blob_id = ?1")?
        .execute([blob_id])?;
    Ok(())
}

/// Gives up on a message: recorded, out of the queue, never tried again.
fn record_failure(conn: &Connection, blob_id: &str, reason: &str) -> rusqlite::Result<()> {
    tracing::warn!(
        blob = blob_id,
        reason,
        "sqlite: a message cannot be indexed; skipped"
    );
    conn.prepare_cached(
        "INSERT OR REPLACE INTO index_failures (blob_id, failed, error) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![blob_id, store::rules::now(), reason])?;
    dequeue(conn, blob_id)
}

/// Errors of the database or the machine rather than of one message: trying the same message
/// later may work.
fn transient(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OutOfMemory
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}
