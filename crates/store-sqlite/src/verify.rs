//! Integrity and notifications.

use super::*;

#[async_trait]
impl store::IntegrityStore for SqliteStore {
    async fn verify(&self) -> Result<VerifyReport> {
        self.read(|conn| verify(conn).map_err(backend)).await
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

    fn subscribe(&self, account: AccountId) -> tokio::sync::broadcast::Receiver<Change> {
        self.notifier.subscribe(account)
    }
}
