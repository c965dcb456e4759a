//! Integrity and notifications.

use async_trait::async_trait;
use store::{AccountId, Change, Result, VerifyReport};

use crate::PostgresStore;
use crate::pool::query_one;
use crate::uploads::upload_usage;

#[async_trait]
impl store::IntegrityStore for PostgresStore {
    async fn verify(&self) -> Result<VerifyReport> {
        let client = self.client().await?;
        verify(&client).await
    }

    async fn index_backlog(&self) -> Result<u64> {
        let client = self.client().await?;
        Ok(query_one(&client, "SELECT COUNT(*) FROM index_queue", &[])
            .await?
            .get::<_, i64>(0) as u64)
    }

    async fn index_failures(&self) -> Result<u64> {
        let client = self.client().await?;
        Ok(
            query_one(&client, "SELECT COUNT(*) FROM index_failures", &[])
                .await?
                .get::<_, i64>(0) as u64,
        )
    }

    fn subscribe(&self, account: AccountId) -> tokio::sync::broadcast::Receiver<Change> {
        self.notifier.subscribe(account)
    }
}

/// Counts what the store holds and checks its invariants.
async fn verify(client: &deadpool_postgres::Client) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let count = async |sql: &str| -> Result<i64> { Ok(query_one(client, sql, &[]).await?.get(0)) };
    report.accounts = count("SELECT COUNT(*) FROM accounts").await? as u64;
    report.mailboxes = count("SELECT COUNT(*) FROM mailboxes").await? as u64;
    report.messages = count("SELECT COUNT(*) FROM messages").await? as u64;
    report.blobs = count("SELECT COUNT(*) FROM blobs").await? as u64;
    report.index_backlog = count("SELECT COUNT(*) FROM index_queue").await? as u64;
    report.index_failures = count("SELECT COUNT(*) FROM index_failures").await? as u64;
    (report.uploads, report.upload_bytes) = upload_usage(client).await?;
    let checks = [
        (
            "SELECT COUNT(*) FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id \
             WHERE m.uid >= x.uidnext OR m.modseq > x.highestmodseq",
            "messages have a UID or MODSEQ beyond their mailbox's counters",
        ),
        (
            "SELECT COUNT(*) FROM mailboxes x WHERE \
             x.total != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id) \
             OR x.unseen != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id AND (flags & 1) = 0) \
             OR x.deleted != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id AND (flags & 8) != 0) \
             OR x.total_size != (SELECT COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = x.id)",
            "mailboxes have wrong message counters",
        ),
        (
            "SELECT COUNT(*) FROM messages m JOIN blobs b ON b.id = m.blob_id \
             WHERE m.size != b.size OR length(b.data) != b.size",
            "messages have a wrong size",
        ),
        (
            "SELECT COUNT(*) FROM blobs WHERE encode(sha256(data), 'hex') != id",
            "blobs do not match their hash",
        ),
        (
            "SELECT COUNT(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = b.id) \
             AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = b.id)",
            "blobs are referenced by nothing",
        ),
        (
            "SELECT COUNT(*) FROM queue q WHERE NOT EXISTS \
             (SELECT 1 FROM queue_recipients r WHERE r.queue_id = q.id)",
            "queued messages have no recipients",
        ),
    ];
    for (sql, problem) in checks {
        let n = count(sql).await?;
        if n > 0 {
            report.problems.push(format!("{n} {problem}"));
        }
    }
    Ok(report)
}
