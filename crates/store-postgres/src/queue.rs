//! The outbound queue.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use store::rules::sha256_hex;
use store::{AttemptResult, Envelope, Outbound, QueueEntry, Recipient, Result, Ret, StoreError};

use crate::PostgresStore;
use crate::messages::drop_blobs_if_unreferenced;
use crate::notes::{Note, notify};
use crate::pool::{Tx, execute, query, query_one, query_opt, transaction};
use crate::rows::{RECIPIENT_COLUMNS, queue_entry, queue_recipient};

#[async_trait]
impl store::QueueStore for PostgresStore {
    async fn enqueue(&self, message: Outbound) -> Result<i64> {
        let blob_id = sha256_hex(&message.data);
        let id = transaction!(self, |tx| enqueue_tx(tx, &message, &blob_id))?;
        // Other nodes hear it through NOTIFY; this one need not wait for the echo.
        self.queue_signal.notify_one();
        Ok(id)
    }

    async fn list_queue(&self) -> Result<Vec<QueueEntry>> {
        queue_entries(&self.client().await?, None).await
    }

    async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>> {
        Ok(queue_entries(&self.client().await?, Some(id)).await?.pop())
    }

    async fn queue_data(&self, id: i64) -> Result<Vec<u8>> {
        let client = self.client().await?;
        query_opt(
            &client,
            "SELECT b.data FROM queue q JOIN blobs b ON b.id = q.blob_id WHERE q.id = $1",
            &[&id],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound(format!("queued message {id}")))
    }

    async fn claim_queue(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<QueueEntry>> {
        transaction!(self, |tx| claim_tx(tx, now, lease_until, limit, &self.node))
    }

    async fn record_attempt(&self, id: i64, results: Vec<AttemptResult>) -> Result<()> {
        transaction!(self, |tx| record_attempt_tx(tx, id, &results))
    }

    async fn next_queue_due(&self) -> Result<Option<i64>> {
        let client = self.client().await?;
        Ok(query_one(
            &client,
            "SELECT MIN(GREATEST(next_attempt, lease_until)) FROM queue_recipients \
             WHERE status IN ('pending', 'deferred')",
            &[],
        )
        .await?
        .get(0))
    }

    async fn retry_queue(&self, id: Option<i64>, now: i64) -> Result<u64> {
        let n = transaction!(self, |tx| async {
            let n = execute(
                tx,
                "UPDATE queue_recipients SET next_attempt = $2 \
                 WHERE ($1::BIGINT IS NULL OR queue_id = $1) AND status IN ('pending', 'deferred')",
                &[&id, &now],
            )
            .await?;
            notify(tx, &[Note::Queue]).await?;
            Ok(n)
        })?;
        self.queue_signal.notify_one();
        Ok(n)
    }

    async fn drop_queue(&self, id: i64) -> Result<bool> {
        transaction!(self, |tx| drop_queued(tx, id))
    }

    async fn release_queue_leases(&self) -> Result<()> {
        // Only this node's: other nodes may be alive and delivering what they claimed.
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE queue_recipients SET lease_until = 0 WHERE lease_owner = $1 AND lease_until != 0",
            &[&self.node],
        )
        .await?;
        Ok(())
    }

    fn queue_signal(&self) -> Arc<tokio::sync::Notify> {
        self.queue_signal.clone()
    }
}

/// Queues a message and its recipients, all due now.
async fn enqueue_tx(tx: &Tx<'_>, message: &Outbound, blob_id: &str) -> Result<i64> {
    let id = insert_queued(tx, blob_id, &message.data, &message.envelope).await?;
    for r in &message.recipients {
        execute(
            tx,
            "INSERT INTO queue_recipients (queue_id, address, status, next_attempt, notify, orcpt) \
             VALUES ($1, $2, 'pending', $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &id,
                &r.address,
                &message.envelope.created,
                &(r.notify as i16),
                &r.orcpt,
            ],
        )
        .await?;
    }
    notify(tx, &[Note::Queue]).await?;
    Ok(id)
}

/// Every queued message with its recipients, or just `only`.
async fn queue_entries<C: GenericClient>(c: &C, only: Option<i64>) -> Result<Vec<QueueEntry>> {
    let rows = query(
        c,
        &format!(
            "SELECT q.id, q.sender, q.size, q.created, q.expires, q.envid, q.ret, q.smtputf8, \
             {RECIPIENT_COLUMNS} FROM queue q \
             JOIN queue_recipients r ON r.queue_id = q.id \
             WHERE $1::BIGINT IS NULL OR q.id = $1 ORDER BY q.id, r.seq"
        ),
        &[&only],
    )
    .await?;
    let mut entries: Vec<QueueEntry> = Vec::new();
    for row in &rows {
        let id: i64 = row.get(0);
        let recipient = queue_recipient(row, 8);
        QueueEntry::push_row(&mut entries, id, recipient, || {
            Ok::<_, StoreError>(queue_entry(row, Vec::new()))
        })?;
    }
    Ok(entries)
}

/// Leases due recipients to `node` (see `QueueStore::claim_queue`).
async fn claim_tx(
    tx: &Tx<'_>,
    now: i64,
    lease_until: i64,
    limit: usize,
    node: &str,
) -> Result<Vec<QueueEntry>> {
    // Lock messages with due recipients, skipping those another node is claiming right now;
    // the UPDATE then rechecks each recipient, so a claim that just committed elsewhere is
    // never taken twice.
    let ids: Vec<i64> = query(
        tx,
        "SELECT q.id FROM queue q WHERE EXISTS (SELECT 1 FROM queue_recipients r \
         WHERE r.queue_id = q.id AND r.status IN ('pending', 'deferred') \
         AND r.next_attempt <= $1 AND r.lease_until <= $1) \
         ORDER BY (SELECT MIN(r.next_attempt) FROM queue_recipients r WHERE r.queue_id = q.id \
         AND r.status IN ('pending', 'deferred')), q.id LIMIT $2 FOR UPDATE SKIP LOCKED",
        &[&now, &(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let claimed = query(
        tx,
        &format!(
            "UPDATE queue_recipients r SET lease_until = $3, lease_owner = $4 \
             WHERE queue_id = ANY($1) AND status IN ('pending', 'deferred') \
             AND next_attempt <= $2 AND lease_until <= $2 \
             RETURNING r.queue_id, r.seq, {RECIPIENT_COLUMNS}"
        ),
        &[&ids, &now, &lease_until, &node],
    )
    .await?;
    let envelopes = query(
        tx,
        "SELECT id, sender, size, created, expires, envid, ret, smtputf8 FROM queue \
         WHERE id = ANY($1) ORDER BY id",
        &[&ids],
    )
    .await?;
    let mut claimed: Vec<(i64, i64, Recipient)> = claimed
        .iter()
        .map(|r| (r.get(0), r.get(1), queue_recipient(r, 2)))
        .collect();
    claimed.sort_by_key(|c| (c.0, c.1));
    let mut jobs = Vec::new();
    for envelope in &envelopes {
        let id: i64 = envelope.get(0);
        let recipients: Vec<Recipient> = claimed
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| c.2.clone())
            .collect();
        if !recipients.is_empty() {
            jobs.push(queue_entry(envelope, recipients));
        }
    }
    Ok(jobs)
}

/// Records an attempt's results; a message left with no open recipient leaves the queue.
async fn record_attempt_tx(tx: &Tx<'_>, id: i64, results: &[AttemptResult]) -> Result<()> {
    // Attempts on one message's recipients in several domains settle concurrently: the queue
    // row's lock makes the later one see the earlier one's results, so one of them finds the
    // message finished and removes it.
    if query_opt(tx, "SELECT 1 FROM queue WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .is_none()
    {
        return Ok(());
    }
    for r in results {
        execute(
            tx,
            "UPDATE queue_recipients SET status = $3, last_error = $4, next_attempt = $5, \
             attempts = attempts + 1, lease_until = 0 WHERE queue_id = $1 AND address = $2",
            &[
                &id,
                &r.address,
                &r.status.as_str(),
                &r.error,
                &r.next_attempt,
            ],
        )
        .await?;
    }
    let open = query_opt(
        tx,
        "SELECT 1 FROM queue_recipients WHERE queue_id = $1 \
         AND status IN ('pending', 'deferred') LIMIT 1",
        &[&id],
    )
    .await?
    .is_some();
    if !open {
        drop_queued(tx, id).await?;
    }
    Ok(())
}

/// Removes a queued message (its blob too, unless a message shares it).
async fn drop_queued(tx: &Tx<'_>, id: i64) -> Result<bool> {
    let blob = query_opt(
        tx,
        "DELETE FROM queue WHERE id = $1 RETURNING blob_id",
        &[&id],
    )
    .await?;
    match blob {
        Some(row) => {
            drop_blobs_if_unreferenced(tx, &[row.get(0)]).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Stores a queued message's bytes and envelope; returns its id (the recipients follow).
pub(crate) async fn insert_queued(
    tx: &Tx<'_>,
    blob_id: &str,
    data: &[u8],
    envelope: &Envelope,
) -> Result<i64> {
    let size = data.len() as i64;
    execute(
        tx,
        "INSERT INTO blobs (id, data, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&blob_id, &data, &size],
    )
    .await?;
    Ok(query_one(
        tx,
        "INSERT INTO queue (blob_id, sender, size, created, expires, envid, ret, smtputf8) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[
            &blob_id,
            &envelope.sender,
            &size,
            &envelope.created,
            &envelope.expires,
            &envelope.envid,
            &envelope.ret.map(Ret::as_str),
            &envelope.smtputf8,
        ],
    )
    .await?
    .get(0))
}
