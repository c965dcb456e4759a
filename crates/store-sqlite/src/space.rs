//! Room to delete mail on a full disk.
//!
//! SQLite needs free disk space even to delete: a transaction's pages go to the WAL first, and
//! a checkpoint may grow the database file. On a disk filled to the last block (by mail or by
//! anything else), EXPUNGE would fail and users could not free space. So the writer keeps two
//! margins of [`RESERVE`] bytes:
//! - a reserve file (`<data>/pigeon.reserve`, allocated, not sparse) that it deletes the moment
//!   the room left (free disk space plus the database's free pages) drops below [`RESERVE`],
//!   or a write fails with "disk full": then deletes, flag changes and checkpoints have room;
//! - room itself: work that adds data (deliveries, APPENDs, uploads, queued mail, indexing)
//!   runs only while at least [`RESERVE`] bytes of room would remain after it (counted twice:
//!   WAL and database), else it is refused at once ("the disk is nearly full"; SMTP answers
//!   451 and senders retry), so new mail can never eat the space deletions need.
//!
//! The reserve file comes back once the disk has twice its size free again.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// Size of the reserve file, and room kept free for deletions.
pub(crate) const RESERVE: u64 = 16 << 20;

/// The writer's view of free space.
pub(crate) struct Space {
    reserve: PathBuf,
    dir: PathBuf,
}

impl Space {
    /// For the store in `dir`; makes the reserve file if there is room for it.
    pub(crate) fn new(dir: &Path) -> Space {
        let space = Space {
            reserve: dir.join("pigeon.reserve"),
            dir: dir.to_owned(),
        };
        if let Some(avail) = space.available() {
            space.restore(avail);
        }
        space
    }

    /// Bytes free on the data directory's file system for us, or None if it cannot tell.
    fn available(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// How many bytes work that adds data may add before the next commit (each counted twice,
    /// for the WAL and the database); deletes the reserve file first if room is short.
    pub(crate) fn budget(&self, conn: &Connection, growth: u64) -> u64 {
        let Some(avail) = self.available() else {
            return u64::MAX;
        };
        if avail >= 2 * RESERVE + 2 * growth {
            self.restore(avail);
            return u64::MAX;
        }
        let free_pages = conn
            .query_row(
                "SELECT freelist_count * page_size FROM pragma_freelist_count, pragma_page_size",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            .max(0) as u64;
        let mut room = avail + free_pages;
        if room < RESERVE && self.release() {
            room = self.available().unwrap_or(avail) + free_pages;
        }
        room.saturating_sub(RESERVE)
    }

    /// A write failed for lack of space: give the next ones the reserve.
    pub(crate) fn disk_full(&self) {
        self.release();
    }

    /// Deletes the reserve file; true if there was one.
    fn release(&self) -> bool {
        match std::fs::remove_file(&self.reserve) {
            Ok(()) => {
                tracing::warn!(
                    file = %self.reserve.display(),
                    "the disk is nearly full: released the reserve so mail can still be deleted; \
                     new mail is refused until space is freed"
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Makes the reserve file again if it is missing and the disk has room for it twice.
    fn restore(&self, avail: u64) {
        if avail < 2 * RESERVE || self.reserve.exists() {
            return;
        }
        if let Err(e) = allocate(&self.reserve, RESERVE) {
            let _ = std::fs::remove_file(&self.reserve);
            tracing::warn!(error = %e, file = %self.reserve.display(), "cannot make the disk reserve");
        }
    }

    /// Whether the reserve file exists (tests).
    #[cfg(test)]
    pub(crate) fn has_reserve(&self) -> bool {
        self.reserve.exists()
    }
}

/// Writes a file of `size` bytes whose blocks are allocated (a sparse file would reserve
/// nothing).
fn allocate(path: &Path, size: u64) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, size) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::OPNOTSUPP) => {
            // File systems without fallocate: write the zeros.
            use std::io::Write;
            let zeros = vec![0u8; 1 << 20];
            let mut file = file;
            let mut left = size;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use store::prelude::*;

    use store::{Address, Delivery, Secrets};

    use crate::SqliteStore;

    /// Fills the file system to the last block with a file; returns its path.
    fn fill(dir: &Path) -> PathBuf {
        let path = dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0xA5u8; 64 << 10];
        while file.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
        path
    }

    /// Issue 14: on a full disk EXPUNGE failed, so users could not free space.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mail_can_be_deleted_on_a_full_disk() {
        let dir = tempfile::tempdir().unwrap();
        let Some(disk) = test_support::Tmpfs::mount(dir.path(), "128m") else {
            return;
        };
        let store = SqliteStore::open(disk.path()).unwrap();
        assert!(crate::space::Space::new(disk.path()).has_reserve());
        store.add_domain("f.test").await.unwrap();
        let id = store
            .create_account(
                &Address::parse("f@f.test").unwrap(),
                &Secrets {
                    password_hash: "h".into(),
                    scram: None,
                },
            )
            .await
            .unwrap();
        // Text of random words, indexed: deleting it from the index writes much more than
        // the delete itself (this is what failed).
        let message = |n: usize, indexed: bool| {
            let mut raw = format!("Subject: {n}\r\n\r\n").into_bytes();
            let header = raw.clone();
            let mut x = n as u64 * 7919 + 1;
            // Indexed ones of 512 KiB, the others (which only fill the disk) of 2 MiB.
            let size = if indexed { 512 << 10 } else { 2 << 20 };
            while raw.len() < size {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                for k in 0..(x >> 61) + 2 {
                    raw.push(b'a' + ((x >> ((k % 11) * 5 + 3)) % 26) as u8);
                }
                raw.push(b' ');
            }
            Delivery {
                data: raw,
                recipients: vec![id],
                internal_date: 0,
                summary: indexed.then(|| store::MessageSummary {
                    envelope: b"(NIL)".to_vec(),
                    body_structure: b"()".to_vec(),
                    body: b"()".to_vec(),
                    header,
                }),
            }
        };
        let mut delivered = 0;
        while delivered < 20 {
            store.deliver(message(delivered, true)).await.unwrap();
            delivered += 1;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.index_backlog().await.unwrap() > 0 {
            assert!(std::time::Instant::now() < deadline, "indexed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Mail is refused before the disk is full: room for deletions stays. (Unindexed, to
        // fill quickly.)
        while store.deliver(message(delivered, false)).await.is_ok() {
            delivered += 1;
            assert!(delivered < 200, "deliveries stop before the disk is full");
        }
        // Something else takes the rest, to the last block.
        let filler = fill(disk.path());
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        store
            .set_flags(inbox, &[1, 2, 3], store::flags::DELETED, 0)
            .await
            .expect("flags change on a full disk");
        assert!(
            !disk.path().join("pigeon.reserve").exists(),
            "the reserve made room"
        );
        assert_eq!(
            store
                .expunge(inbox, &[1, 2, 3])
                .await
                .expect("expunge on a full disk"),
            [1, 2, 3]
        );
        let uids: Vec<u32> = (4..=delivered as u32).collect();
        assert_eq!(store.expunge(inbox, &uids).await.unwrap(), uids);
        let report = store.verify().await.unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // Once there is space again, mail comes in, and the index catches up.
        std::fs::remove_file(filler).unwrap();
        store
            .deliver(message(0, true))
            .await
            .expect("delivery after space came back");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while store.index_backlog().await.unwrap() > 0 {
            assert!(std::time::Instant::now() < deadline, "indexed again");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        drop(store);
    }
}
