//! The embedded default backend: one SQLite database (WAL, `synchronous=FULL`) under the data
//! directory.
//!
//! Implementation notes:
//! - **Group commit.** All writes go to one writer thread over a channel. It takes every job
//!   waiting, runs each in its own savepoint inside one transaction, commits once (one fsync for
//!   the batch) and only then answers the callers. A job that fails rolls back its savepoint and
//!   leaves the others in the batch alone.
//! - **Reads** run on a small pool of read-only connections in `spawn_blocking`; WAL lets them
//!   proceed while the writer commits.
//! - **Message bytes** live in the `blobs` table, keyed by SHA-256, so the bytes and their
//!   metadata commit in the same transaction (no separate file fsyncs) and a message in several
//!   mailboxes is stored once. Blobs nobody references are deleted in the same transaction that
//!   drops the last reference.
//!
//! # Layout
//! The same file set as `store-postgres`: `pool.rs` (the writer thread, group commit, the
//! reader pool), `rows.rs` (column lists, rows to values), then one file per concern of the
//! [`store::Store`] trait, methods in the trait's order: `directory.rs`, `mailboxes.rs`,
//! `messages.rs` (with `search.rs` for full-text search), `uploads.rs`, `queue.rs`,
//! `import.rs` (migration), `verify.rs` (integrity); `indexer.rs` (background indexing),
//! `schema.rs` (migrations), `space.rs` (the disk reserve, SQLite only) and `tests.rs`.
//! A helper lives in the file of the concern that uses it.

mod directory;
mod import;
mod indexer;
mod mailboxes;
mod messages;
mod pool;
mod queue;
mod rows;
mod schema;
mod search;
mod space;
mod uploads;
mod verify;

#[cfg(test)]
mod tests;

use pool::{Job, WRITER_STACK, open_connection, writer_loop};
use uploads::{free_uploads, server_lock};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use store::rules::{UidSet, apply_flags, now, parse_keywords, sha256_hex, uid_validity_after};
use store::{
    Account, AccountId, Address, Alias, AttemptResult, Change, Credentials, Delivered, Delivery,
    DkimKey, Envelope, FlagMode, FlagsUpdated, Mailbox, MailboxId, Message, MessageFlags,
    MessageSummary, Notifier, Outbound, QueueEntry, Recipient, RecipientStatus, Result, Ret, Role,
    Secrets, SpecialUse, StoreError, TextScope, VerifyReport,
};
use tokio::sync::oneshot;

/// The SQLite store.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<Job>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    notifier: Notifier,
    queue_signal: Arc<tokio::sync::Notify>,
    /// A server's shared lock on `<data>/pigeon.lock` while the store is open (see
    /// [`SqliteStore::open_as`]).
    _lock: Option<std::fs::File>,
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir` for a server, running schema migrations
    /// (see [`SqliteStore::open_as`]).
    pub fn open(dir: &Path) -> Result<SqliteStore> {
        SqliteStore::open_as(dir, Role::Server)
    }

    /// Opens (creating if needed) the store in `dir`, running schema migrations. A
    /// [`Role::Server`] indexes text in the background and, if no other server has the store
    /// open (a lock file says so), frees the uploads a previous run left; a [`Role::Admin`]
    /// does neither.
    pub fn open_as(dir: &Path, role: Role) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir).map_err(backend)?;
        let path = dir.join("pigeon.db");
        let conn = open_connection(&path, false)?;
        // WAL + FULL: a commit is durable when it returns, and readers never block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        schema::migrate(&conn)?;
        let lock = match role {
            Role::Server => {
                let (lock, alone) = server_lock(dir)?;
                // Best effort: on a full disk the DELETE needs room in the WAL it may not
                // get, and a server that cannot start cannot free any (issue 14). Uploads
                // left over are freed an hour after they were last touched anyway.
                if alone && let Err(e) = free_uploads(&conn) {
                    tracing::warn!(error = %e, "sqlite: cannot free the uploads of a previous run; left for later");
                }
                Some(lock)
            }
            Role::Admin => None,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let dir = dir.to_owned();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .stack_size(WRITER_STACK)
            .spawn(move || writer_loop(conn, rx, &dir, role == Role::Server))
            .map_err(backend)?;
        Ok(SqliteStore {
            path,
            writer: Mutex::new(tx),
            readers: Arc::new(Mutex::new(Vec::new())),
            notifier: Notifier::default(),
            queue_signal: Arc::default(),
            _lock: lock,
        })
    }
}
