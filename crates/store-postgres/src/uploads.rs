//! Uploads: a message arriving in pieces (a big IMAP APPEND) goes to the store as it comes.
//!
//! Uploads nobody will take are freed: those of this node's previous run when its server
//! connects, and abandoned ones of any node.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use store::rules::now;
use store::{Result, StoreError};

use crate::PostgresStore;
use crate::pool::{execute, query, query_one, transaction};

/// An upload nobody added to for this long is abandoned (an IMAP session idle that long has
/// been logged out).
pub(crate) const UPLOAD_IDLE_SECS: i64 = 3600;

#[async_trait]
impl store::UploadStore for PostgresStore {
    async fn begin_upload(&self) -> Result<i64> {
        let client = self.client().await?;
        // Uploads nobody added to for an hour are abandoned (those of this node's previous run
        // are freed when it starts).
        execute(
            &client,
            "DELETE FROM uploads WHERE touched < $1",
            &[&(now() - UPLOAD_IDLE_SECS)],
        )
        .await?;
        Ok(query_one(
            &client,
            "INSERT INTO uploads (created, touched, node) VALUES ($1, $1, $2) RETURNING id",
            &[&now(), &self.node],
        )
        .await?
        .get(0))
    }

    async fn upload_chunk(&self, upload: i64, data: Vec<u8>) -> Result<()> {
        let client = self.client().await?;
        // One statement: the upload is marked active and the piece added, or neither.
        let n = execute(
            &client,
            "WITH u AS (UPDATE uploads SET touched = $3 WHERE id = $1 RETURNING id) \
             INSERT INTO upload_chunks (upload_id, seq, data) SELECT u.id, \
             COALESCE((SELECT MAX(seq) + 1 FROM upload_chunks WHERE upload_id = $1), 0), $2 \
             FROM u",
            &[&upload, &data, &now()],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("upload {upload}")));
        }
        Ok(())
    }

    async fn take_upload(&self, upload: i64) -> Result<Vec<u8>> {
        transaction!(self, |tx| async {
            let rows = query(
                tx,
                "SELECT data FROM upload_chunks WHERE upload_id = $1 ORDER BY seq",
                &[&upload],
            )
            .await?;
            let mut data = Vec::new();
            for row in &rows {
                data.extend_from_slice(row.get::<_, &[u8]>(0));
            }
            if execute(tx, "DELETE FROM uploads WHERE id = $1", &[&upload]).await? == 0 {
                return Err(StoreError::NotFound(format!("upload {upload}")));
            }
            Ok(data)
        })
    }

    async fn discard_upload(&self, upload: i64) -> Result<()> {
        let client = self.client().await?;
        execute(&client, "DELETE FROM uploads WHERE id = $1", &[&upload]).await?;
        Ok(())
    }
}

/// Frees the uploads of `node`'s previous run and every abandoned one.
pub(crate) async fn free_uploads(client: &deadpool_postgres::Client, node: &str) -> Result<()> {
    let row = query_one(
        client,
        "WITH gone AS (DELETE FROM uploads WHERE node = $1 OR touched < $2 RETURNING id) \
         SELECT COUNT(*), COALESCE(SUM((SELECT SUM(octet_length(c.data)) FROM upload_chunks c \
         WHERE c.upload_id = gone.id)), 0)::BIGINT FROM gone",
        &[&node, &(now() - UPLOAD_IDLE_SECS)],
    )
    .await?;
    let (count, bytes): (i64, i64) = (row.get(0), row.get(1));
    if count > 0 {
        tracing::info!(
            uploads = count,
            bytes,
            "freed the uploads of interrupted APPENDs"
        );
    }
    Ok(())
}

/// How many uploads there are and the bytes they hold.
pub(crate) async fn upload_usage<C: GenericClient>(c: &C) -> Result<(u64, u64)> {
    let row = query_one(
        c,
        "SELECT (SELECT COUNT(*) FROM uploads), \
         (SELECT COALESCE(SUM(octet_length(data)), 0)::BIGINT FROM upload_chunks)",
        &[],
    )
    .await?;
    Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64))
}

#[cfg(test)]
mod tests {
    use store::Role;
    use store::prelude::*;

    use crate::PostgresStore;

    async fn uploads(url: &str) -> (u64, u64) {
        let admin = PostgresStore::connect_as(url, 2, "n1", Role::Admin)
            .await
            .unwrap();
        let report = admin.verify().await.unwrap();
        (report.uploads, report.upload_bytes)
    }

    /// Issue 14: interrupted big APPENDs left their pieces for a day, unseen by `verify`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_nodes_previous_uploads_are_freed_when_it_starts_again() {
        let Some(cluster) = test_support::PgCluster::start() else {
            return;
        };
        let url = cluster.create_database();
        let n1 = PostgresStore::connect(&url, 2, "n1").await.unwrap();
        let upload = n1.begin_upload().await.unwrap();
        n1.upload_chunk(upload, vec![b'x'; 1000]).await.unwrap();
        assert_eq!(uploads(&url).await, (1, 1000), "verify sees them");
        // Another node starting must not free them: n1 may be busy with them.
        let n2 = PostgresStore::connect(&url, 2, "n2").await.unwrap();
        assert_eq!(uploads(&url).await, (1, 1000));
        let upload2 = n2.begin_upload().await.unwrap();
        n2.upload_chunk(upload2, vec![b'y'; 10]).await.unwrap();
        // n1 dies with its upload unfinished, and an admin command on n1 leaves it alone...
        drop(n1);
        assert_eq!(uploads(&url).await, (2, 1010));
        // ...but n1's next start frees it, and only it.
        let n1 = PostgresStore::connect(&url, 2, "n1").await.unwrap();
        assert_eq!(uploads(&url).await, (1, 10));
        assert!(matches!(
            n1.upload_chunk(upload, b"late".to_vec()).await,
            Err(store::StoreError::NotFound(_))
        ));
        assert_eq!(n2.take_upload(upload2).await.unwrap(), vec![b'y'; 10]);
    }
}
