//! The per-node full-text indexer: moves texts from `index_queue` into `search` when idle.
//!
//! It runs while this node delivers nothing; `store::index` says what of a message is indexed.
//! Any node may take any queued text (`FOR UPDATE SKIP LOCKED`). A step is one transaction
//! bounded by bytes read ([`store::index::STEP_BYTES`], each message counted up to
//! [`store::index::READ_LIMIT`], read with `substring` so a big message is never loaded whole)
//! and by count, and always takes at least one message, so the queue drains whatever the
//! sizes. If storing a step's texts fails, its messages are indexed again one per transaction,
//! and one that still fails for a reason of its own (a data exception or a program limit) goes
//! to `index_failures` and leaves the queue, like a message whose text cannot be derived: never
//! tried again in a loop. Any other error is the database's (connection lost, disk full,
//! shutdown, a damaged index, permissions): it ends the step; the indexer tries again later,
//! waiting longer each time.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use store::index;
use store::{Result, StoreError};
use tokio_postgres::types::ToSql;

use crate::pool::{PgError, PoolHandle, Tx, backend, execute, query, transaction};
use crate::search::without_nul;

/// Most queued texts one step looks at.
const STEP_COUNT: i64 = 256;
/// How long a node must see no delivery before it indexes.
const QUIET: Duration = Duration::from_millis(20);
/// Under a delivery load that never pauses, index anyway after this long.
const MAX_DEFER: Duration = Duration::from_secs(2);
/// First and longest wait after a failed step.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Moves queued texts into the full-text index, as long as the queue has any, while this
/// node delivers nothing.
pub(crate) async fn run(pool: Pool, activity: Arc<Activity>) {
    let pool = PoolHandle(pool);
    let mut backoff = BACKOFF_MIN;
    loop {
        let deferred = std::time::Instant::now();
        while activity.recent(QUIET) && deferred.elapsed() < MAX_DEFER {
            tokio::time::sleep(QUIET).await;
        }
        match step(&pool).await {
            Ok(n) if n > 0 => {
                backoff = BACKOFF_MIN;
                continue;
            }
            Ok(_) => backoff = BACKOFF_MIN,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "postgres: indexing failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        }
        // Nothing queued: wait for deliveries (from this node) or look again in a while
        // (other nodes' deliveries).
        let _ = tokio::time::timeout(Duration::from_secs(5), activity.delivered.notified()).await;
    }
}

/// One step; returns how many queued texts it took off the queue (indexed or given up on).
pub(crate) async fn step(pool: &PoolHandle) -> Result<usize> {
    let mut chosen = Vec::new();
    let batch = transaction!(pool, |tx| async {
        chosen = choose(tx, None).await?;
        let texts = derive(tx, &chosen).await?;
        store_texts(tx, &texts).await?;
        Ok(texts.len())
    });
    match batch {
        Ok(n) => Ok(n),
        Err(e) if transient(&e) || chosen.is_empty() => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, messages = chosen.len(), "postgres: an index step failed; one by one");
            let mut done = 0;
            for id in chosen {
                let one = transaction!(pool, |tx| async {
                    let ids = choose(tx, Some(&id)).await?;
                    let texts = derive(tx, &ids).await?;
                    store_texts(tx, &texts).await?;
                    Ok(texts.len())
                });
                match one {
                    Ok(n) => done += n,
                    // Alone in its transaction and still failing for a reason that is not its
                    // own (a damaged index, a missing table, permissions): the database's
                    // problem, which would fail every message in turn. Back off, keep them
                    // queued (issue 14).
                    Err(e) if !of_this_message(&e) => return Err(e),
                    Err(e) => {
                        let reason = format!("storing its text failed: {e}");
                        done += transaction!(pool, |tx| async {
                            record_failure(tx, &id, &reason).await?;
                            Ok(1)
                        })?;
                    }
                }
            }
            Ok(done)
        }
    }
}

/// Locks queued texts for this step: the first few whose bytes add up to a step (at least
/// one), or just `only` if it is still queued and free.
async fn choose(tx: &Tx<'_>, only: Option<&String>) -> Result<Vec<String>> {
    let rows = match only {
        None => {
            query(
                tx,
                "SELECT q.blob_id, b.size FROM index_queue q JOIN blobs b ON b.id = q.blob_id \
                 LIMIT $1 FOR UPDATE OF q SKIP LOCKED",
                &[&STEP_COUNT],
            )
            .await?
        }
        Some(id) => {
            query(
                tx,
                "SELECT q.blob_id, b.size FROM index_queue q JOIN blobs b ON b.id = q.blob_id \
                 WHERE q.blob_id = $1 FOR UPDATE OF q SKIP LOCKED",
                &[id],
            )
            .await?
        }
    };
    let mut chosen = Vec::new();
    let mut bytes = 0u64;
    for row in &rows {
        if !chosen.is_empty() && bytes >= index::STEP_BYTES {
            break;
        }
        bytes += (row.get::<_, i64>(1).max(0) as u64).min(index::READ_LIMIT as u64);
        chosen.push(row.get::<_, String>(0));
    }
    Ok(chosen)
}

/// What the index holds of a message, or why it cannot have it.
type Derived = (String, std::result::Result<(String, String), String>);

/// Reads the chosen messages' first bytes and derives their texts (off the async threads).
async fn derive(tx: &Tx<'_>, ids: &[String]) -> Result<Vec<Derived>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        tx,
        "SELECT id, substring(data FROM 1 FOR $2) FROM blobs WHERE id = ANY($1)",
        &[&ids, &(index::READ_LIMIT as i32)],
    )
    .await?;
    tokio::task::spawn_blocking(move || {
        rows.iter()
            .map(|row| {
                let texts = index::texts(row.get::<_, &[u8]>(1))
                    .map(|(headers, body)| (without_nul(headers), without_nul(body)));
                (row.get::<_, String>(0), texts)
            })
            .collect()
    })
    .await
    .map_err(backend)
}

/// Stores derived texts (all statements pipelined), records the ones that could not be
/// derived, and takes them all off the queue.
async fn store_texts(tx: &Tx<'_>, texts: &[Derived]) -> Result<()> {
    if texts.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO search (blob_id, headers, body) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(backend)?;
    let mut params: Vec<[&(dyn ToSql + Sync); 3]> = Vec::new();
    for (id, derived) in texts {
        match derived {
            Ok((headers, body)) => params.push([id as &(dyn ToSql + Sync), headers, body]),
            Err(reason) => record_failure(tx, id, reason).await?,
        }
    }
    let pending: Vec<_> = params.iter().map(|p| tx.execute(&insert, p)).collect();
    futures_util::future::try_join_all(pending)
        .await
        .map_err(backend)?;
    let ids: Vec<&String> = texts.iter().map(|t| &t.0).collect();
    execute(
        tx,
        "DELETE FROM index_queue WHERE blob_id = ANY($1)",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// Gives up on a message: recorded, out of the queue, never tried again.
async fn record_failure(tx: &Tx<'_>, id: &String, reason: &str) -> Result<()> {
    tracing::warn!(blob = %id, reason, "postgres: a message cannot be indexed; skipped");
    let reason = without_nul(reason.to_owned());
    execute(
        tx,
        "INSERT INTO index_failures (blob_id, failed, error) VALUES ($1, $2, $3) \
         ON CONFLICT (blob_id) DO UPDATE SET failed = EXCLUDED.failed, error = EXCLUDED.error",
        &[id, &store::rules::now(), &reason],
    )
    .await?;
    execute(tx, "DELETE FROM index_queue WHERE blob_id = $1", &[id]).await?;
    Ok(())
}

/// Errors of the database or the connection rather than of one message: trying the same
/// message later may work.
fn transient(e: &StoreError) -> bool {
    let StoreError::Backend(inner) = e else {
        return false;
    };
    let Some(pg) = inner.downcast_ref::<PgError>() else {
        // The pool or the blocking pool failed, not a statement.
        return true;
    };
    match pg.0.code() {
        // Connection, transaction rollback, resources (disk full, memory), operator
        // intervention (shutdown), system errors, lock not available.
        Some(code) => {
            let code = code.code();
            ["08", "40", "53", "57", "58"]
                .iter()
                .any(|c| code.starts_with(c))
                || code == "55P03"
        }
        None => true,
    }
}

/// Whether a message's statement failed for a reason of that message, so trying it again
/// would fail again: a data exception (class 22: a value the column or function refuses) or a
/// program limit (class 54: e.g. a text too big for the index).
fn of_this_message(e: &StoreError) -> bool {
    let StoreError::Backend(inner) = e else {
        return false;
    };
    inner
        .downcast_ref::<PgError>()
        .and_then(|pg| pg.0.code())
        .is_some_and(|code| {
            let code = code.code();
            code.starts_with("22") || code.starts_with("54")
        })
}

/// When this node last delivered, so its indexer can wait for a quiet moment.
#[derive(Default)]
pub(crate) struct Activity {
    /// Milliseconds since `start` of the last delivery.
    last: std::sync::atomic::AtomicU64,
    start: std::sync::OnceLock<std::time::Instant>,
    delivered: tokio::sync::Notify,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.start
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }

    pub(crate) fn touch(&self) {
        self.last
            .store(self.now_ms().max(1), std::sync::atomic::Ordering::Relaxed);
        self.delivered.notify_one();
    }

    fn recent(&self, within: Duration) -> bool {
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        last != 0 && self.now_ms().saturating_sub(last) < within.as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};
    use store::prelude::*;

    use store::{Delivery, TextScope};

    use crate::pool::query_one;
    use crate::tests::test_store;

    /// Issue 14: an error of the database itself (here XX000, as a damaged index gives) was
    /// recorded against each queued message in turn, dropping them all from search for good.
    /// It ends the step; the texts wait and are indexed once the database works again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_database_error_leaves_the_texts_queued_not_failed() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        let client = store.client().await.unwrap();
        client
            .batch_execute(
                "CREATE FUNCTION broken() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 RAISE EXCEPTION 'index damaged' USING ERRCODE = 'XX000'; END $$; \
                 CREATE TRIGGER broken BEFORE INSERT ON search FOR EACH ROW EXECUTE FUNCTION broken();",
            )
            .await
            .unwrap();
        for i in 0..3 {
            store
                .deliver(Delivery {
                    data: format!("Subject: m{i}\r\n\r\nqueuedword\r\n").into_bytes(),
                    recipients: vec![id],
                    internal_date: 0,
                    summary: None,
                })
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
        client
            .batch_execute("DROP TRIGGER broken ON search")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.index_backlog().await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "the index backlog drains");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
    /// loop, and does not hold up the others (which share its step).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_that_fails_to_index_is_skipped_and_recorded() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        // The database refuses one message's index row, as a damaged index would.
        let client = store.client().await.unwrap();
        client
            .batch_execute(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.body LIKE '%poisonword%' THEN RAISE EXCEPTION 'poisoned' USING ERRCODE = '22000'; \
                 END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER poison BEFORE INSERT ON search FOR EACH ROW EXECUTE FUNCTION poison();",
            )
            .await
            .unwrap();
        let deliver = |raw: String| {
            store.deliver(Delivery {
                data: raw.into_bytes(),
                recipients: vec![id],
                internal_date: 0,
                summary: None,
            })
        };
        deliver("Subject: bad\r\n\r\npoisonword\r\n".into())
            .await
            .unwrap();
        for i in 0..3 {
            deliver(format!("Subject: good{i}\r\n\r\ngoodword\r\n"))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while store.index_backlog().await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "the index backlog drains");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.index_failures().await.unwrap(), 1);
        let report = store.verify().await.unwrap();
        assert_eq!(report.index_failures, 1);
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let reason: String = query_one(&client, "SELECT error FROM index_failures", &[])
            .await
            .unwrap()
            .get(0);
        assert!(reason.contains("poisoned"), "{reason}");
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        assert_eq!(
            store
                .search_text(inbox, "goodword", TextScope::Body)
                .await
                .unwrap(),
            [2, 3, 4]
        );
        // Not tried again: later mail is indexed, the failure stays one.
        deliver("Subject: later\r\n\r\nlaterword\r\n".into())
            .await
            .unwrap();
        while store.index_backlog().await.unwrap() > 0 {
            assert!(Instant::now() < deadline, "the index backlog drains");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(store.index_failures().await.unwrap(), 1);
        // Its record goes with the message.
        store.expunge(inbox, &[1]).await.unwrap();
        assert_eq!(store.index_failures().await.unwrap(), 0);
    }
}
