//! Uploads: messages arriving in pieces, and freeing those nobody will take.

use super::*;

/// An upload nobody added to for this long is abandoned (an IMAP session idle that long has
/// been logged out) and freed when the next one begins.
pub(crate) const UPLOAD_IDLE_SECS: i64 = 3600;

#[async_trait]
impl store::UploadStore for SqliteStore {
    async fn begin_upload(&self) -> Result<i64> {
        self.write(|conn| {
            // Uploads nobody added to for an hour are abandoned (those of a previous run are
            // freed when the server starts).
            conn.execute(
                "DELETE FROM uploads WHERE touched < ?1",
                [now() - UPLOAD_IDLE_SECS],
            )
            .map_err(backend)?;
            // Never an id given out before (see schema migration 9).
            let id: i64 = conn
                .query_row(
                    "UPDATE upload_ids SET last = \
                     max(last, COALESCE((SELECT MAX(id) FROM uploads), 0)) + 1 RETURNING last",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            conn.execute(
                "INSERT INTO uploads (id, created, touched) VALUES (?1, ?2, ?2)",
                params![id, now()],
            )
            .map_err(backend)?;
            Ok(id)
        })
        .await
    }

    async fn upload_chunk(&self, upload: i64, data: Vec<u8>) -> Result<()> {
        self.write_growing(data.len() as u64, move |conn| {
            let touched = conn
                .prepare_cached("UPDATE uploads SET touched = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![upload, now()]))
                .map_err(backend)?;
            if touched == 0 {
                return Err(StoreError::NotFound(format!("upload {upload}")));
            }
            conn.prepare_cached(
                "INSERT INTO upload_chunks (upload_id, seq, data) SELECT ?1, \
                 COALESCE((SELECT MAX(seq) + 1 FROM upload_chunks WHERE upload_id = ?1), 0), ?2",
            )
            .and_then(|mut s| s.execute(params![upload, data]))
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    async fn take_upload(&self, upload: i64) -> Result<Vec<u8>> {
        self.write(move |conn| {
            let mut data = Vec::new();
            {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT data FROM upload_chunks WHERE upload_id = ?1 ORDER BY seq",
                    )
                    .map_err(backend)?;
                let mut rows = stmt.query([upload]).map_err(backend)?;
                while let Some(row) = rows.next().map_err(backend)? {
                    let chunk = row.get_ref(0).map_err(backend)?;
                    data.extend_from_slice(chunk.as_blob().map_err(backend)?);
                }
            }
            let deleted = conn
                .execute("DELETE FROM uploads WHERE id = ?1", [upload])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound(format!("upload {upload}")));
            }
            Ok(data)
        })
        .await
    }

    async fn discard_upload(&self, upload: i64) -> Result<()> {
        self.write(move |conn| {
            conn.execute("DELETE FROM uploads WHERE id = ?1", [upload])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }
}

/// Takes the server's lock on the data directory: true if no other server has the store open
/// (then every upload in it belongs to a process that is gone). The lock is shared while held.
pub(crate) fn server_lock(dir: &Path) -> Result<(std::fs::File, bool)> {
    use rustix::fs::{FlockOperation, flock};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("pigeon.lock"))
        .map_err(backend)?;
    let alone = flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok();
    if let Err(e) = flock(&file, FlockOperation::LockShared) {
        // Some file systems (CIFS, FUSE) have no flock: serve anyway, but without the lock
        // nothing says another server is not using the uploads, so none are freed at start.
        tracing::warn!(error = %std::io::Error::from(e), "sqlite: cannot lock pigeon.lock; uploads of a previous run are not freed at start");
        return Ok((file, false));
    }
    Ok((file, alone))
}

/// Frees every upload (at the start of the only server: big APPENDs a crash interrupted).
pub(crate) fn free_uploads(conn: &Connection) -> Result<()> {
    let (count, bytes) = upload_usage(conn).map_err(backend)?;
    if count > 0 {
        conn.execute("DELETE FROM uploads", []).map_err(backend)?;
        tracing::info!(
            uploads = count,
            bytes,
            "freed the uploads of interrupted APPENDs"
        );
    }
    Ok(())
}

/// How many uploads there are and the bytes they hold.
pub(crate) fn upload_usage(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    conn.query_row(
        "SELECT (SELECT COUNT(*) FROM uploads), \
         (SELECT COALESCE(SUM(length(data)), 0) FROM upload_chunks)",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

#[cfg(test)]
mod tests {
    use crate::SqliteStore;
    use store::Role;
    use store::prelude::*;

    async fn uploads(dir: &std::path::Path) -> (u64, u64) {
        let admin = SqliteStore::open_as(dir, Role::Admin).unwrap();
        let report = admin.verify().await.unwrap();
        (report.uploads, report.upload_bytes)
    }

    /// Issue 14: interrupted big APPENDs left their pieces for a day, unseen by `verify`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_previous_runs_uploads_are_freed_when_the_only_server_opens_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let running = SqliteStore::open(dir.path()).unwrap();
        let upload = running.begin_upload().await.unwrap();
        running
            .upload_chunk(upload, vec![b'x'; 1000])
            .await
            .unwrap();
        assert_eq!(uploads(dir.path()).await, (1, 1000), "verify sees them");
        // A second server process beside a running one must not free its live uploads.
        drop(SqliteStore::open(dir.path()).unwrap());
        assert_eq!(uploads(dir.path()).await, (1, 1000));
        running.upload_chunk(upload, vec![b'y'; 10]).await.unwrap();
        // The server stops without finishing the upload (a crash)...
        drop(running);
        assert_eq!(
            uploads(dir.path()).await,
            (1, 1010),
            "an admin command leaves them alone"
        );
        // ...and its next start frees them.
        let restarted = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(uploads(dir.path()).await, (0, 0));
        assert!(matches!(
            restarted.upload_chunk(upload, b"late".to_vec()).await,
            Err(store::StoreError::NotFound(_))
        ));
    }

    /// Issue 14: a freed upload's id was given to the next upload (`INTEGER PRIMARY KEY`
    /// takes the highest id + 1), so a session still holding the old id (a webmail draft, an
    /// APPEND cut short) could add to or take another account's upload.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upload_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let first = store.begin_upload().await.unwrap();
        let second = store.begin_upload().await.unwrap();
        store.discard_upload(second).await.unwrap();
        let third = store.begin_upload().await.unwrap();
        assert!(third > second, "{third} after {second}");
        store.upload_chunk(third, b"mine".to_vec()).await.unwrap();
        drop(store);
        // A restart frees every upload; the ids still do not come back.
        let store = SqliteStore::open(dir.path()).unwrap();
        let fourth = store.begin_upload().await.unwrap();
        assert!(fourth > third && third > first, "{fourth} after {third}");
        assert!(matches!(
            store.upload_chunk(third, b"stale".to_vec()).await,
            Err(store::StoreError::NotFound(_))
        ));
    }

    /// Issue 14: freeing a previous run's uploads at start needs room in the WAL; on a full
    /// disk it failed, so the server failed to start (and restarted in a loop) instead of
    /// serving the EXPUNGEs that would free space.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_server_starts_even_if_freeing_old_uploads_fails() {
        let dir = tempfile::tempdir().unwrap();
        let running = SqliteStore::open(dir.path()).unwrap();
        let upload = running.begin_upload().await.unwrap();
        running.upload_chunk(upload, vec![b'x'; 10]).await.unwrap();
        drop(running);
        // The DELETE fails, as it does when SQLite cannot grow the WAL on a full disk.
        let conn = rusqlite::Connection::open(dir.path().join("pigeon.db")).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER full BEFORE DELETE ON uploads \
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
        let store = SqliteStore::open(dir.path()).expect("the server starts");
        store.add_domain("still.test").await.unwrap();
        assert_eq!(uploads(dir.path()).await, (1, 10), "left for later");
    }
}
