//! The outbound queue.

use super::*;
use crate::messages::drop_blob_if_unreferenced;
use crate::rows::{QUEUE_COLUMNS, RECIPIENT_COLUMNS, queue_entry, queue_recipient};

#[async_trait]
impl store::QueueStore for SqliteStore {
    async fn enqueue(&self, message: Outbound) -> Result<i64> {
        let blob_id = sha256_hex(&message.data);
        let grows = message.data.len() as u64;
        let id = self
            .write_growing(grows, move |conn| {
                let id = insert_queued(conn, &blob_id, &message.data, &message.envelope)?;
                let mut insert = conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO queue_recipients \
                         (queue_id, address, status, next_attempt, notify, orcpt) \
                         VALUES (?1, ?2, 'pending', ?3, ?4, ?5)",
                    )
                    .map_err(backend)?;
                for r in message.recipients {
                    insert
                        .execute(params![
                            id,
                            r.address,
                            message.envelope.created,
                            r.notify,
                            r.orcpt
                        ])
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

    async fn claim_queue(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<QueueEntry>> {
        self.write(move |conn| {
            let mut jobs: Vec<QueueEntry> = Vec::new();
            {
                // Due recipients, oldest due first, whole messages up to `limit`.
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT {QUEUE_COLUMNS}, {RECIPIENT_COLUMNS} \
                         FROM queue_recipients r JOIN queue q ON q.id = r.queue_id \
                         WHERE r.status IN ('pending', 'deferred') AND r.next_attempt <= ?1 \
                         AND r.lease_until <= ?1 ORDER BY r.next_attempt, q.id"
                    ))
                    .map_err(backend)?;
                let mut rows = stmt.query([now]).map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    let id: i64 = row.get(0).map_err(backend)?;
                    let recipient = queue_recipient(row)?;
                    if let Some(job) = jobs.iter_mut().find(|j| j.id == id) {
                        job.recipients.push(recipient);
                        continue;
                    }
                    if jobs.len() == limit {
                        break;
                    }
                    jobs.push(queue_entry(row, vec![recipient])?);
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
}

/// Queue entries (all, or one) with their recipients.
pub(crate) fn queue_entries(conn: &Connection, only: Option<i64>) -> Result<Vec<QueueEntry>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {QUEUE_COLUMNS}, {RECIPIENT_COLUMNS} FROM queue q \
             JOIN queue_recipients r ON r.queue_id = q.id \
             WHERE ?1 IS NULL OR q.id = ?1 ORDER BY q.id, r.rowid"
        ))
        .map_err(backend)?;
    let mut rows = stmt.query([only]).map_err(backend)?;
    let mut entries: Vec<QueueEntry> = Vec::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let id: i64 = row.get(0).map_err(backend)?;
        let recipient = queue_recipient(row)?;
        QueueEntry::push_row(&mut entries, id, recipient, || queue_entry(row, Vec::new()))?;
    }
    Ok(entries)
}

/// Removes a queue entry (its recipients cascade) and its blob if nothing else uses it.
pub(crate) fn drop_queued(conn: &Connection, id: i64) -> Result<bool> {
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

/// Stores a queued message's bytes and envelope; returns its id (the recipients follow).
pub(crate) fn insert_queued(
    conn: &Connection,
    blob_id: &str,
    data: &[u8],
    envelope: &store::Envelope,
) -> Result<i64> {
    let size = data.len() as i64;
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![blob_id, data, size]))
        .map_err(backend)?;
    conn.prepare_cached(
        "INSERT INTO queue (blob_id, sender, size, created, expires, envid, ret, smtputf8) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            blob_id,
            envelope.sender,
            size,
            envelope.created,
            envelope.expires,
            envelope.envid,
            envelope.ret.map(Ret::as_str),
            envelope.smtputf8
        ])
    })
    .map_err(backend)?;
    Ok(conn.last_insert_rowid())
}
