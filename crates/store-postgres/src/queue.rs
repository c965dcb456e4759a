//! The outbound queue.

use super::*;

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

    async fn claim_queue(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<QueueJob>> {
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
