//! The PostgreSQL backend: several stateless `pigeon serve` nodes share one database.
//!
//! Implementation notes:
//! - **Transactions** run on a pooled connection (deadpool) with cached prepared statements.
//!   A transaction that loses a race to another node (deadlock, serialization failure, a blob
//!   deleted under it) is run again, a few times, before the error reaches the caller.
//! - **UIDs** come from `UPDATE mailboxes SET uidnext = uidnext + 1 .. RETURNING`: the row lock
//!   lasts until commit, so deliveries to one mailbox from any node commit in UID order and a
//!   reader never sees UID n+1 before n.
//! - **Notifications cross nodes** with LISTEN/NOTIFY. Every change is `pg_notify`'d inside the
//!   transaction that makes it (PostgreSQL sends it only if that commits); each node keeps one
//!   listening connection and republishes what it hears, its own changes included, to its local
//!   subscribers. Queue work is announced the same way, so every node's workers wake.
//! - **The queue** is claimed with `FOR UPDATE SKIP LOCKED` on the queue rows and a lease on
//!   the recipients, so nodes never deliver the same recipient at once and a dead node's claims
//!   come back when the lease lapses.
//! - **Message bytes** live in `blobs`, keyed by SHA-256, as with SQLite; the decoded text goes
//!   to `search`, whose trigram indexes serve IMAP SEARCH BODY/TEXT.
//!
//! Files by concern, as in `store-sqlite`: the trait's concerns (`directory`, `mailboxes`,
//! `messages`, `uploads`, `queue`, `import`, `verify`) with their own write helpers, and beside
//! them `pool` (connections, `transaction!`, retries), `rows` (row conversions), `search`,
//! `indexer`, `schema`, `notes` (LISTEN/NOTIFY) and `tests`.

mod directory;
mod import;
mod indexer;
mod mailboxes;
mod messages;
mod notes;
mod pool;
mod queue;
mod rows;
mod schema;
mod search;
mod uploads;
mod verify;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use store::{Notifier, Result, Role, StoreError};

use indexer::Activity;
use messages::{DELIVERY_WRITERS, DeliverJob, delivery_writer};
use pool::{PoolHandle, query_one};
use uploads::free_uploads;

pub use notes::Note;
pub use pool::DEFAULT_POOL_SIZE;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PoolHandle,
    notifier: Arc<Notifier>,
    queue_signal: Arc<tokio::sync::Notify>,
    listener: tokio::task::JoinHandle<()>,
    /// Names this node's queue leases.
    node: String,
    deliveries: Vec<tokio::sync::mpsc::UnboundedSender<DeliverJob>>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.abort();
        for writer in &self.writers {
            writer.abort();
        }
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`) for a server (see
    /// [`PostgresStore::connect_as`]).
    pub async fn connect(url: &str, pool_size: usize, node: &str) -> Result<PostgresStore> {
        PostgresStore::connect_as(url, pool_size, node, Role::Server).await
    }

    /// Connects to `url` (`postgres://user:password@host:port/db`), runs schema migrations and
    /// starts listening for other nodes' changes. `node` names this node's queue claims and
    /// uploads: it must differ between nodes and stay the same across restarts of one. A
    /// [`Role::Server`] indexes text in the background and frees the uploads its node's
    /// previous run left (one server runs per node, so they are all dead) and any node's that
    /// nobody added to for an hour (a node that never came back); a [`Role::Admin`] (a command
    /// beside a running server of the same node) does neither.
    pub async fn connect_as(
        url: &str,
        pool_size: usize,
        node: &str,
        role: Role,
    ) -> Result<PostgresStore> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("bad PostgreSQL URL: {e}")))?;
        let pool = pool::build(config.clone(), pool_size)?;
        let mut client = pool.get().await.map_err(|e| {
            StoreError::Backend(format!("cannot connect to PostgreSQL: {e}").into())
        })?;
        schema::migrate(&mut client).await?;
        if role == Role::Server {
            free_uploads(&client, node).await?;
        }
        drop(client);
        let notifier = Arc::new(Notifier::default());
        let queue_signal = Arc::new(tokio::sync::Notify::new());
        let ready = Arc::new(tokio::sync::Notify::new());
        let listener = tokio::spawn(notes::listen(
            config,
            notifier.clone(),
            queue_signal.clone(),
            ready.clone(),
        ));
        // Changes made after `connect` returns must reach this node's subscribers.
        if tokio::time::timeout(Duration::from_secs(10), ready.notified())
            .await
            .is_err()
        {
            listener.abort();
            return Err(StoreError::Backend(
                "PostgreSQL LISTEN did not start within 10 s".into(),
            ));
        }
        let mut deliveries = Vec::new();
        let activity = Arc::new(Activity::default());
        let mut writers = Vec::new();
        if role == Role::Server {
            writers.push(tokio::spawn(indexer::run(pool.clone(), activity.clone())));
        }
        for _ in 0..DELIVERY_WRITERS {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            deliveries.push(tx);
            writers.push(tokio::spawn(delivery_writer(
                pool.clone(),
                rx,
                activity.clone(),
            )));
        }
        Ok(PostgresStore {
            deliveries,
            writers,
            pool: PoolHandle(pool),
            notifier,
            queue_signal,
            listener,
            node: node.to_owned(),
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.client().await
    }

    /// Deletes every table of the schema (tests and `pigeon migrate --force`).
    pub async fn wipe(&self) -> Result<()> {
        schema::wipe(&self.client().await?).await
    }

    /// Whether the store holds no domain and no account (a migration's target must be empty).
    pub async fn is_empty(&self) -> Result<bool> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            "SELECT (SELECT COUNT(*) FROM domains) + (SELECT COUNT(*) FROM accounts)",
            &[],
        )
        .await?;
        Ok(row.get::<_, i64>(0) == 0)
    }
}

#[cfg(test)]
mod tests;
