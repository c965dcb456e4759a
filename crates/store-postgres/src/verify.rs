//! Integrity and notifications.

use super::*;

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
