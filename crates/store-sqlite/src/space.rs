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
