//! The full-text indexer, run by the writer thread between write batches.
//!
//! Deliveries only record a blob in `index_queue`; this moves queued texts into the FTS5
//! `search` table (what is indexed of a message: `store::index`), and deletes the index
//! entries of deleted messages that EXPUNGE left in `search_trash` (deleting from FTS5 writes
//! about as much as indexing did). Each step is one transaction bounded by bytes read
//! ([`store::index::STEP_BYTES`]), by count and by time, and always does at least one thing
//! (a deleted entry or a message, whatever its size), so the queue drains. The writer takes
//! waiting write jobs between steps (a step waits for 20 ms without jobs, but under a load
//! that never pauses it runs anyway every 2 s), and rests a quarter of a step's duration after
//! it, so other processes on the same database (admin commands) get the write lock too. A
//! message whose text cannot be derived, or cannot be stored for a reason of its own (too big,
//! refused by a constraint), goes to `index_failures` and leaves the queue; any other error
//! (disk full, I/O, a damaged index) is the database's: it ends the step and the indexer tries
//! again later, waiting longer each time. Steps wait while the disk is nearly full
//! (`crate::space`).

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
/// Room (beyond the disk reserve) an index step needs.
const INDEX_ROOM: u64 = 24 << 20;
/// How often to look again while the disk has no room for a step.
const ROOM_WAIT: Duration = Duration::from_secs(5);
/// First and longest wait after a failed step.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// When the writer should index next. Pure bookkeeping: every method is told the time.
pub(crate) struct Schedule {
    enabled: bool,
    /// Texts may be waiting.
    pending: bool,
    /// The writer's last batch ended then: a step waits for [`QUIET`] after it.
    last_batch: Instant,
    /// The last step ended then (or texts became pending): under a load that never pauses, a
    /// step runs [`MAX_DEFER`] after it anyway.
    last_step: Instant,
    /// Not before this: the rest after a step, the back-off after a failure, the wait for
    /// disk room.
    not_before: Instant,
    backoff: Duration,
}

/// How a step went.
pub(crate) enum Outcome {
    /// It ran; more texts may wait.
    Done { more: bool },
    /// The database failed.
    Failed,
    /// The disk has no room for it.
    NoRoom,
}

impl Schedule {
    /// Texts may be left from before a restart, so an enabled indexer starts by looking.
    pub(crate) fn new(enabled: bool, now: Instant) -> Schedule {
        Schedule {
            enabled,
            pending: enabled,
            last_batch: now,
            last_step: now,
            not_before: now,
            backoff: BACKOFF_MIN,
        }
    }

    /// When to run the next step if no job comes first, if texts may be waiting.
    pub(crate) fn due(&self) -> Option<Instant> {
        let quiet = (self.last_batch + QUIET).min(self.last_step + MAX_DEFER);
        self.pending.then_some(quiet.max(self.not_before))
    }

    /// Whether a step is owed now even though write jobs are waiting.
    pub(crate) fn overdue(&self, now: Instant) -> bool {
        self.pending && now >= self.not_before && now >= self.last_step + MAX_DEFER
    }

    /// The writer committed a batch (which may have queued texts).
    pub(crate) fn after_batch(&mut self, now: Instant) {
        if !self.enabled {
            return;
        }
        if !self.pending {
            self.pending = true;
            self.last_step = now;
        }
        self.last_batch = now;
    }

    /// Plans the next step after one that began at `started` and ended at `now`.
    pub(crate) fn after_step(&mut self, outcome: Outcome, started: Instant, now: Instant) {
        match outcome {
            Outcome::Done { more } => {
                self.backoff = BACKOFF_MIN;
                self.pending = more;
                self.last_step = now;
                // The rest lets other processes take the write lock.
                let rest = ((now - started) / 4).clamp(Duration::from_millis(1), QUIET * 10);
                self.not_before = now + rest;
            }
            Outcome::Failed => {
                self.last_step = now;
                self.not_before = now + self.backoff;
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
            }
            Outcome::NoRoom => {
                self.last_step = now;
                self.not_before = now + ROOM_WAIT;
            }
        }
    }

    /// Runs one step if the disk has room for it, and plans the next.
    pub(crate) fn run(&mut self, conn: &Connection, space: &crate::space::Space) {
        let started = Instant::now();
        // A step adds its texts (a few MiB at most) and their trigrams (up to three times
        // as much): it waits while the disk has less room than that left over.
        let outcome = if space.budget(conn, INDEX_ROOM) < INDEX_ROOM {
            Outcome::NoRoom
        } else {
            match step(conn) {
                Ok(more) => Outcome::Done { more },
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?self.backoff, "sqlite: indexing failed");
                    if e.sqlite_error_code() == Some(ErrorCode::DiskFull) {
                        space.disk_full();
                    }
                    Outcome::Failed
                }
            }
        };
        self.after_step(outcome, started, Instant::now());
    }
}

/// Indexes queued texts in one transaction; returns whether more wait. Fails only for errors
/// of the database itself, after rolling back.
pub(crate) fn step(conn: &Connection) -> rusqlite::Result<bool> {
    // Most of the time nothing waits: no write lock for that.
    let any: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM index_queue UNION ALL SELECT 1 FROM search_trash LIMIT 1")?
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
    // Index entries of deleted messages first: each costs about what indexing it did.
    let trash: Vec<i64> = conn
        .prepare_cached("SELECT search_rowid FROM search_trash LIMIT ?1")?
        .query_map([STEP_COUNT], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut emptied = 0;
    for rowid in &trash {
        if emptied > 0 && started.elapsed() >= STEP_TIME {
            return Ok(true);
        }
        emptied += 1;
        conn.prepare_cached("DELETE FROM search WHERE rowid = ?1")?
            .execute([rowid])?;
        conn.prepare_cached("DELETE FROM search_trash WHERE search_rowid = ?1")?
            .execute([rowid])?;
    }
    if trash.len() as i64 == STEP_COUNT {
        return Ok(true);
    }
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
        if (done > 0 || emptied > 0)
            && (bytes >= index::STEP_BYTES || started.elapsed() >= STEP_TIME)
        {
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
                        if !of_this_message(&e) {
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

/// Whether storing a message's text failed for a reason of that message (too big, refused
/// by a constraint on its row), so trying it again would fail again. Anything else (disk full,
/// I/O, a damaged index, a schema or internal error) is the database's: recording it against
/// each message in turn would drop every queued text from search for good, so it ends the
/// step and the indexer tries again later (issue 14).
fn of_this_message(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::TooBig | ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch)
    )
}

#[cfg(test)]
mod schedule_tests {
    use std::time::{Duration, Instant};

    use super::{MAX_DEFER, Outcome, QUIET, Schedule};

    #[test]
    fn a_quiet_writer_indexes_soon_after_its_last_batch() {
        let t0 = Instant::now();
        let mut s = Schedule::new(true, t0);
        assert_eq!(
            s.due(),
            Some(t0 + QUIET),
            "leftovers from before a restart soon"
        );
        s.after_step(Outcome::Done { more: false }, t0, t0);
        assert_eq!(s.due(), None, "nothing waits");
        let t1 = t0 + Duration::from_secs(10);
        s.after_batch(t1);
        assert_eq!(s.due(), Some(t1 + QUIET));
        assert!(
            Schedule::new(false, t0).due().is_none(),
            "admin commands never index"
        );
    }

    #[test]
    fn a_load_that_never_pauses_does_not_starve_indexing() {
        let t0 = Instant::now();
        let mut s = Schedule::new(true, t0);
        s.after_step(Outcome::Done { more: true }, t0, t0);
        let mut t = t0;
        while !s.overdue(t) {
            t += Duration::from_millis(5);
            s.after_batch(t);
            assert!(
                t < t0 + 2 * MAX_DEFER,
                "a step is owed within {MAX_DEFER:?}"
            );
        }
    }

    #[test]
    fn steps_rest_and_failures_back_off() {
        let t0 = Instant::now();
        let mut s = Schedule::new(true, t0);
        let end = t0 + Duration::from_millis(400);
        s.after_step(Outcome::Done { more: true }, t0, end);
        assert_eq!(
            s.due(),
            Some(end + Duration::from_millis(100)),
            "a quarter of the step"
        );
        s.after_step(Outcome::Failed, end, end);
        assert_eq!(s.due(), Some(end + Duration::from_secs(1)));
        s.after_step(Outcome::Failed, end, end);
        assert_eq!(
            s.due(),
            Some(end + Duration::from_secs(2)),
            "longer each time"
        );
        assert!(
            !s.overdue(end + Duration::from_millis(1500)),
            "not even under load"
        );
        s.after_step(Outcome::Done { more: true }, end, end);
        assert_eq!(s.due(), Some(end + Duration::from_millis(1)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};
    use store::prelude::*;

    use rusqlite::Connection;
    use store::{Address, Delivery, MessageSummary, Role, Secrets, TextScope};

    use crate::SqliteStore;

    async fn account(store: &SqliteStore) -> i64 {
        store.add_domain("i.test").await.unwrap();
        store
            .create_account(
                &Address::parse("i@i.test").unwrap(),
                &Secrets {
                    password_hash: "h".into(),
                    scram: None,
                },
            )
            .await
            .unwrap()
    }

    fn delivery(account: i64, raw: Vec<u8>) -> Delivery {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(raw.len(), |p| p + 4);
        Delivery {
            summary: Some(MessageSummary {
                envelope: b"(NIL)".to_vec(),
                body_structure: b"()".to_vec(),
                body: b"()".to_vec(),
                header: raw[..end].to_vec(),
            }),
            data: raw,
            recipients: vec![account],
            internal_date: 0,
        }
    }

    async fn drained(store: &SqliteStore) {
        let deadline = Instant::now() + Duration::from_secs(180);
        while store.index_backlog().await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "the index backlog drains");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Issue 14: a message of 40 MB or more made every index step load it whole, find its
    /// time budget spent before indexing anything and start over, holding the write lock all
    /// along: indexing stopped for good and other processes' writes failed after 30 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_50_mb_message_is_indexed_while_another_process_writes() {
        let dir = tempfile::tempdir().unwrap();
        let server = SqliteStore::open(dir.path()).unwrap();
        let id = account(&server).await;
        let mut raw = b"Subject: huge\r\n\r\nwordnearthestart\r\n".to_vec();
        let line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwx\r\n";
        while raw.len() < 50_000_000 {
            raw.extend_from_slice(line);
        }
        server.deliver(delivery(id, raw)).await.unwrap();
        // An admin command is another process with its own connection: its writes need the
        // write lock the indexer takes between them.
        let admin = SqliteStore::open_as(dir.path(), Role::Admin).unwrap();
        for i in 0..5 {
            admin.add_domain(&format!("a{i}.test")).await.unwrap();
        }
        server
            .deliver(delivery(
                id,
                b"Subject: small\r\n\r\nwordofthesmallone\r\n".to_vec(),
            ))
            .await
            .unwrap();
        drained(&server).await;
        let inbox = server.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        for (word, uid) in [("wordnearthestart", 1), ("wordofthesmallone", 2)] {
            assert_eq!(
                server
                    .search_text(inbox, word, TextScope::Body)
                    .await
                    .unwrap(),
                [uid]
            );
        }
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        let indexed: i64 = conn
            .query_row("SELECT COUNT(*) FROM search", [], |r| r.get(0))
            .unwrap();
        assert_eq!(indexed, 2);
    }

    /// EXPUNGE leaves the index entry to the indexer, which deletes it when idle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deleted_texts_leave_the_index_when_the_writer_is_idle() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let id = account(&store).await;
        for word in ["firstword", "secondword"] {
            store
                .deliver(delivery(
                    id,
                    format!("Subject: s\r\n\r\n{word}\r\n").into_bytes(),
                ))
                .await
                .unwrap();
        }
        drained(&store).await;
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        store.expunge(inbox, &[1]).await.unwrap();
        assert!(
            store
                .search_text(inbox, "firstword", TextScope::Body)
                .await
                .unwrap()
                .is_empty()
        );
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while count("SELECT COUNT(*) FROM search_trash") > 0 {
            assert!(Instant::now() < deadline, "the trash is emptied");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(count("SELECT COUNT(*) FROM search"), 1);
        assert_eq!(
            store
                .search_text(inbox, "secondword", TextScope::Body)
                .await
                .unwrap(),
            [2]
        );
    }

    /// Issue 14: an error of the database itself (here a schema error, as a damaged index or
    /// an internal error would be) was recorded against each queued message in turn, dropping
    /// them all from search for good. It ends the step; the texts wait and are indexed once the
    /// database works again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_error_leaves_the_texts_queued_not_failed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let id = account(&store).await;
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER broken BEFORE UPDATE OF search_rowid ON summaries \
             BEGIN SELECT * FROM no_such_table; END;",
        )
        .unwrap();
        for i in 0..3 {
            store
                .deliver(delivery(
                    id,
                    format!("Subject: m{i}\r\n\r\nqueuedword\r\n").into_bytes(),
                ))
                .await
                .unwrap();
        }
        // The first step runs 20 ms after the last delivery and fails.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            store.index_failures().await.unwrap(),
            0,
            "nothing given up on"
        );
        assert_eq!(store.index_backlog().await.unwrap(), 3, "all still queued");
        conn.execute_batch("DROP TRIGGER broken").unwrap();
        drained(&store).await;
        assert_eq!(store.index_failures().await.unwrap(), 0);
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        assert_eq!(
            store
                .search_text(inbox, "queuedword", TextScope::Body)
                .await
                .unwrap(),
            [1, 2, 3]
        );
    }

    /// Issue 14: a message that fails to index is skipped and recorded, never retried in a
    /// loop, and does not hold up the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_that_fails_to_index_is_skipped_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let id = account(&store).await;
        // The database refuses one message's index entry, as a damaged index would.
        let conn = Connection::open(dir.path().join("pigeon.db")).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER poison BEFORE UPDATE OF search_rowid ON summaries \
             WHEN instr(OLD.header, 'X-Poison') > 0 BEGIN SELECT RAISE(ABORT, 'poisoned'); END;",
        )
        .unwrap();
        store
            .deliver(delivery(
                id,
                b"Subject: bad\r\nX-Poison: yes\r\n\r\npoisonword\r\n".to_vec(),
            ))
            .await
            .unwrap();
        for i in 0..3 {
            store
                .deliver(delivery(
                    id,
                    format!("Subject: good{i}\r\n\r\ngoodword\r\n").into_bytes(),
                ))
                .await
                .unwrap();
        }
        drained(&store).await;
        assert_eq!(store.index_failures().await.unwrap(), 1);
        let report = store.verify().await.unwrap();
        assert_eq!(report.index_failures, 1);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let reason: String = conn
            .query_row("SELECT error FROM index_failures", [], |r| r.get(0))
            .unwrap();
        assert!(reason.contains("poisoned"), "{reason}");
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        assert_eq!(
            store
                .search_text(inbox, "goodword", TextScope::Body)
                .await
                .unwrap(),
            [2, 3, 4]
        );
        assert!(
            store
                .search_text(inbox, "poisonword", TextScope::Body)
                .await
                .unwrap()
                .is_empty()
        );
        // Not tried again: more mail comes and goes through the indexer, the failure stays one.
        store
            .deliver(delivery(id, b"Subject: later\r\n\r\nlater\r\n".to_vec()))
            .await
            .unwrap();
        drained(&store).await;
        assert_eq!(store.index_failures().await.unwrap(), 1);
        // Its record goes with the message.
        store.expunge(inbox, &[1]).await.unwrap();
        assert_eq!(store.index_failures().await.unwrap(), 0);
    }
}
