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

mod directory;
mod import;
mod mailboxes;
mod messages;
mod notes;
mod queue;
mod schema;
mod uploads;
mod verify;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use store::rules::{
    apply_flags, normalise_alias_source, now, parse_keywords, sha256_hex, uid_validity_after,
    valid_mailbox_name,
};
use store::{
    Account, AccountId, Address, Alias, AttemptResult, Change, Credentials, Delivered, Delivery,
    DkimKey, FlagMode, FlagsUpdated, JobRecipient, Mailbox, MailboxId, Message, MessageFlags,
    MessageSummary, Notifier, Outbound, QueueEntry, QueueJob, QueueRecipient, RecipientStatus,
    Result, Ret, Role, Secrets, SpecialUse, StoreError, TextScope, VerifyReport,
    address::normalise_domain,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uploads::{free_uploads, upload_usage};

pub use notes::Note;

type Tx<'a> = deadpool_postgres::Transaction<'a>;
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// How often a transaction that lost a race is run again.
const RETRIES: u32 = 5;
/// Connections per node unless configured.
pub const DEFAULT_POOL_SIZE: usize = 16;

pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    match boxed.downcast::<tokio_postgres::Error>() {
        Ok(pg) => StoreError::Backend(Box::new(PgError(*pg))),
        Err(other) => StoreError::Backend(other),
    }
}

/// A PostgreSQL error that says what the server said (tokio-postgres prints only "db error").
#[derive(Debug)]
struct PgError(tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{} (SQLSTATE {})", db.message(), db.code().code()),
            None => match std::error::Error::source(&self.0) {
                Some(source) => write!(f, "{}: {source}", self.0),
                None => write!(f, "{}", self.0),
            },
        }
    }
}

impl std::error::Error for PgError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// Whether an error comes from a race with another transaction, so running the whole
/// transaction again can succeed.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend(inner) = e else {
        return false;
    };
    let Some(code) = inner.downcast_ref::<PgError>().and_then(|e| e.0.code()) else {
        return false;
    };
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::FOREIGN_KEY_VIOLATION,
        SqlState::UNIQUE_VIOLATION,
    ]
    .contains(code)
}

/// Runs `$body` (an expression using `$tx: &Tx`) in a transaction and commits it, running it
/// again if it lost a race.
macro_rules! transaction {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let mut client = match $store.client().await {
                Ok(client) => client,
                Err(e) => break Err(e),
            };
            let transaction = match client.transaction().await {
                Ok(transaction) => transaction,
                Err(e) => break Err(backend(e)),
            };
            let result = {
                let $tx = &transaction;
                $body.await
            };
            let error = match result {
                Ok(value) => match transaction.commit().await {
                    Ok(()) => break Ok(value),
                    Err(e) => backend(e),
                },
                Err(e) => {
                    let _ = transaction.rollback().await;
                    e
                }
            };
            if attempt < RETRIES && retryable(&error) {
                attempt += 1;
                tracing::debug!(error = %error, attempt, "postgres: transaction lost a race; again");
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                continue;
            }
            break Err(error);
        }
    }};
}
pub(crate) use transaction;

mod indexer;

use indexer::Activity;

async fn query<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query(&stmt, params).await.map_err(backend)
}

async fn query_opt<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query_opt(&stmt, params).await.map_err(backend)
}

async fn query_one<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<Row> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.query_one(&stmt, params).await.map_err(backend)
}

async fn execute<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(backend)?;
    c.execute(&stmt, params).await.map_err(backend)
}

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
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .map_err(backend)?;
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
        let client = self.client().await?;
        client
            .batch_execute(
                "TRUNCATE domains, accounts, aliases, mailboxes, blobs, messages, expunged, \
                 summaries, search, queue, queue_recipients, dkim_keys, uploads, upload_chunks, \
                 index_queue, index_failures, maildrop_locks \
                 RESTART IDENTITY CASCADE",
            )
            .await
            .map_err(backend)
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

fn mailbox_from_row(row: &Row) -> Mailbox {
    let special: Option<String> = row.get(3);
    Mailbox {
        id: row.get(0),
        account_id: row.get(1),
        name: row.get(2),
        special_use: special.as_deref().and_then(SpecialUse::from_attribute),
        uid_validity: row.get::<_, i64>(4) as u32,
        uid_next: row.get::<_, i64>(5) as u32,
        highest_modseq: row.get::<_, i64>(6) as u64,
        subscribed: row.get(7),
        messages: row.get::<_, i64>(8) as u32,
        unseen: row.get::<_, i64>(9) as u32,
        deleted: row.get::<_, i64>(10) as u32,
        size: row.get::<_, i64>(11) as u64,
    }
}

/// A [`MessageFlags`] from `uid, modseq, flags, keywords, internal_date, size`.
fn message_flags_row(r: &Row) -> MessageFlags {
    MessageFlags {
        uid: r.get::<_, i64>(0) as u32,
        modseq: r.get::<_, i64>(1) as u64,
        flags: r.get::<_, i32>(2) as u32,
        keywords: parse_keywords(r.get(3)),
        internal_date: r.get(4),
        size: r.get::<_, i64>(5) as u64,
    }
}

const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.name, m.special_use, m.uidvalidity, \
     m.uidnext, m.highestmodseq, m.subscribed, m.total, m.unseen, m.deleted, m.total_size";

/// PostgreSQL text cannot hold NUL.
fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

/// Publishes changes when the transaction commits.
async fn notify(tx: &Tx<'_>, notes: &[Note]) -> Result<()> {
    for payload in notes::encode(notes) {
        execute(tx, "SELECT pg_notify('pigeon', $1)", &[&payload]).await?;
    }
    Ok(())
}

async fn domain_exists<C: GenericClient>(c: &C, domain: &str) -> Result<bool> {
    Ok(
        query_opt(c, "SELECT 1 FROM domains WHERE name = $1", &[&domain])
            .await?
            .is_some(),
    )
}

/// The account of a mailbox, locking the mailbox row: every change to a mailbox's messages
/// takes that row (the counters' trigger does), so taking it first keeps one lock order.
async fn mailbox_account(tx: &Tx<'_>, mailbox: MailboxId) -> Result<AccountId> {
    query_opt(
        tx,
        "SELECT account_id FROM mailboxes WHERE id = $1 FOR UPDATE",
        &[&mailbox],
    )
    .await?
    .map(|r| r.get(0))
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

/// Takes the next UID and MODSEQ of a mailbox (locking it until commit).
async fn allocate_uid(tx: &Tx<'_>, mailbox: MailboxId) -> Result<(u32, i64)> {
    query_opt(
        tx,
        "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 \
         WHERE id = $1 RETURNING uidnext - 1, highestmodseq",
        &[&mailbox],
    )
    .await?
    .map(|r| (r.get::<_, i64>(0) as u32, r.get(1)))
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

async fn bump_modseq(tx: &Tx<'_>, mailbox: MailboxId) -> Result<i64> {
    Ok(query_one(
        tx,
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1 \
         RETURNING highestmodseq",
        &[&mailbox],
    )
    .await?
    .get(0))
}

/// A UIDVALIDITY larger than any given before, so a re-created mailbox never reuses one.
async fn next_uid_validity(tx: &Tx<'_>) -> Result<i64> {
    let last: i64 = query_one(
        tx,
        "SELECT COALESCE(MAX(uidvalidity), 0) FROM mailboxes",
        &[],
    )
    .await?
    .get(0);
    Ok(uid_validity_after(last) as i64)
}

/// What a message's bytes become in the store, computed before the transaction.
struct Blob {
    id: String,
    data: Vec<u8>,
    size: i64,
    crlf_size: i64,
}

impl Blob {
    fn new(data: Vec<u8>) -> Blob {
        Blob {
            id: sha256_hex(&data),
            size: data.len() as i64,
            crlf_size: store::crlf_size(&data) as i64,
            data,
        }
    }
}

/// Stores a blob (once), its summary and its text.
async fn put_blob(tx: &Tx<'_>, blob: &Blob, summary: Option<&MessageSummary>) -> Result<()> {
    let stmt = tx.prepare_cached(PUT_BLOB).await.map_err(backend)?;
    let fields = SummaryFields::of(summary);
    tx.execute(&stmt, &blob_params(blob, &fields))
        .await
        .map_err(backend)?;
    Ok(())
}

/// Stores a message's bytes (once) and its summary (if given), and queues its text for the
/// full-text index, in one round trip.
const PUT_BLOB: &str = "WITH b AS (INSERT INTO blobs (id, data, size) VALUES ($1, $2, $3) \
     ON CONFLICT DO NOTHING RETURNING id), \
     s AS (INSERT INTO summaries (blob_id, envelope, body_structure, body, header) \
     SELECT $1, $4, $5, $6, $7 WHERE $4::BYTEA IS NOT NULL ON CONFLICT DO NOTHING) \
     INSERT INTO index_queue (blob_id) SELECT $1 WHERE NOT EXISTS \
     (SELECT 1 FROM search WHERE blob_id = $1) ON CONFLICT DO NOTHING";

/// Takes a UID in the recipient's INBOX and adds the message there, in one round trip.
const DELIVER_ONE: &str = "WITH m AS (UPDATE mailboxes SET uidnext = uidnext + 1, \
     highestmodseq = highestmodseq + 1 WHERE account_id = $1 AND name = 'INBOX' \
     RETURNING id, uidnext - 1 AS uid, highestmodseq) \
     INSERT INTO messages (mailbox_id, uid, blob_id, modseq, internal_date, size, crlf_size) \
     SELECT id, uid, $2, highestmodseq, $3, $4, $5 FROM m RETURNING mailbox_id, uid, modseq";

/// A summary's columns, NULL without one.
struct SummaryFields<'a>([Option<&'a [u8]>; 4]);

impl<'a> SummaryFields<'a> {
    fn of(summary: Option<&'a MessageSummary>) -> SummaryFields<'a> {
        SummaryFields(match summary {
            Some(s) => [
                Some(&s.envelope[..]),
                Some(&s.body_structure[..]),
                Some(&s.body[..]),
                Some(&s.header[..]),
            ],
            None => [None; 4],
        })
    }
}

fn blob_params<'a>(blob: &'a Blob, summary: &'a SummaryFields<'a>) -> [&'a (dyn ToSql + Sync); 7] {
    [
        &blob.id,
        &blob.data,
        &blob.size,
        &summary.0[0],
        &summary.0[1],
        &summary.0[2],
        &summary.0[3],
    ]
}

/// Deletes the blobs `ids` that no message or queue entry references any more (their
/// summaries and texts go with them).
async fn drop_blobs_if_unreferenced(tx: &Tx<'_>, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "DELETE FROM blobs b WHERE b.id = ANY($1) \
         AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = b.id) \
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = b.id)",
        &[&ids],
    )
    .await?;
    Ok(())
}

/// Deletes every blob nothing references (after deleting a whole account or mailbox).
async fn collect_garbage(tx: &Tx<'_>) -> Result<()> {
    execute(
        tx,
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = blobs.id) \
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = blobs.id)",
        &[],
    )
    .await?;
    Ok(())
}

/// A message row, as [`insert_message`] writes it.
struct NewMessage<'a> {
    uid: u32,
    blob: &'a str,
    flags: u32,
    keywords: &'a str,
    modseq: i64,
    date: i64,
    size: i64,
    crlf_size: i64,
}

async fn insert_message(tx: &Tx<'_>, mailbox: MailboxId, m: NewMessage<'_>) -> Result<()> {
    execute(
        tx,
        "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, internal_date, \
         size, crlf_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &mailbox,
            &(m.uid as i64),
            &m.blob,
            &(m.flags as i32),
            &m.keywords,
            &m.modseq,
            &m.date,
            &m.size,
            &m.crlf_size,
        ],
    )
    .await?;
    Ok(())
}

/// Remembers removed UIDs with the MODSEQ of their removal (QRESYNC), in one statement.
async fn record_expunged(tx: &Tx<'_>, mailbox: MailboxId, removed: &[(u32, i64)]) -> Result<()> {
    if removed.is_empty() {
        return Ok(());
    }
    let uids: Vec<i64> = removed.iter().map(|r| r.0 as i64).collect();
    let modseqs: Vec<i64> = removed.iter().map(|r| r.1).collect();
    execute(
        tx,
        "INSERT INTO expunged (mailbox_id, uid, modseq) \
         SELECT $1, u, m FROM unnest($2::BIGINT[], $3::BIGINT[]) AS t(u, m) \
         ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq",
        &[&mailbox, &uids, &modseqs],
    )
    .await?;
    Ok(())
}

fn queue_job(row: &Row, recipients: Vec<JobRecipient>) -> QueueJob {
    let ret: Option<String> = row.get(6);
    QueueJob {
        id: row.get(0),
        sender: row.get(1),
        size: row.get::<_, i64>(2) as u64,
        created: row.get(3),
        expires: row.get(4),
        envid: row.get(5),
        ret: ret.as_deref().and_then(Ret::parse),
        smtputf8: row.get(7),
        recipients,
    }
}

async fn queue_entries<C: GenericClient>(c: &C, only: Option<i64>) -> Result<Vec<QueueEntry>> {
    let rows = query(
        c,
        "SELECT q.id, q.sender, q.size, q.created, q.expires, q.envid, q.ret, q.smtputf8, \
         r.address, r.status, r.attempts, r.next_attempt, r.last_error, r.notify, r.orcpt \
         FROM queue q \
         JOIN queue_recipients r ON r.queue_id = q.id \
         WHERE $1::BIGINT IS NULL OR q.id = $1 ORDER BY q.id, r.seq",
        &[&only],
    )
    .await?;
    let mut entries: Vec<QueueEntry> = Vec::new();
    for row in &rows {
        let id: i64 = row.get(0);
        let status: String = row.get(9);
        let recipient = QueueRecipient {
            address: row.get(8),
            status: RecipientStatus::parse(&status).unwrap_or(RecipientStatus::Pending),
            attempts: row.get::<_, i32>(10) as u32,
            next_attempt: row.get(11),
            last_error: row.get(12),
            notify: row.get::<_, i16>(13) as u8,
            orcpt: row.get(14),
        };
        QueueEntry::push_row(&mut entries, id, recipient, || {
            Ok::<_, StoreError>(queue_job(row, Vec::new()))
        })?;
    }
    Ok(entries)
}

async fn drop_queued(tx: &Tx<'_>, id: i64) -> Result<bool> {
    let blob = query_opt(
        tx,
        "DELETE FROM queue WHERE id = $1 RETURNING blob_id",
        &[&id],
    )
    .await?;
    match blob {
        Some(row) => {
            drop_blobs_if_unreferenced(tx, &[row.get(0)]).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

// --- the bodies of the write methods, each run inside `transaction!` ---

async fn create_account_tx(tx: &Tx<'_>, address: &Address, secrets: &Secrets) -> Result<i64> {
    if !domain_exists(tx, address.domain()).await? {
        return Err(StoreError::Invalid(format!(
            "unknown domain {}: add it with `pigeon domain add {}` first",
            address.domain(),
            address.domain()
        )));
    }
    let row = query_opt(
        tx,
        "INSERT INTO accounts (address, domain, password_hash, scram, created) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
        &[
            &address.as_str(),
            &address.domain(),
            &secrets.password_hash,
            &secrets.scram,
            &now(),
        ],
    )
    .await?;
    let Some(row) = row else {
        return Err(StoreError::AlreadyExists(format!("user {address}")));
    };
    let id: i64 = row.get(0);
    let uid_validity = next_uid_validity(tx).await?;
    let mut boxes: Vec<(&str, Option<SpecialUse>)> = vec![("INBOX", None)];
    boxes.extend(SpecialUse::ALL.iter().map(|u| (u.default_name(), Some(*u))));
    for (name, usage) in boxes {
        execute(
            tx,
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity) \
             VALUES ($1, $2, $3, $4)",
            &[&id, &name, &usage.map(|u| u.attribute()), &uid_validity],
        )
        .await?;
    }
    Ok(id)
}

/// A delivery waiting for its node's delivery writer.
struct DeliverJob {
    blob: Blob,
    summary: Option<MessageSummary>,
    /// Sorted, without duplicates.
    recipients: Vec<AccountId>,
    internal_date: i64,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Delivered>>>,
}

/// Delivery writers per node. Deliveries are spread by first recipient, so single-recipient
/// mail to one account always meets the same writer and rarely waits on its INBOX lock.
const DELIVERY_WRITERS: usize = 4;
/// Most deliveries committed together.
const MAX_DELIVERY_BATCH: usize = 64;

/// What the `transaction!` macro needs of a store: a pooled connection.
struct PoolHandle(Pool);

impl PoolHandle {
    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.0
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("PostgreSQL pool: {e}").into()))
    }
}

/// Group commit: takes every delivery waiting and commits them in one transaction (one WAL
/// flush, and the INBOX locks held for one commit instead of one each). If a batch fails, its
/// deliveries run again one by one, so one bad message cannot fail the others.
async fn delivery_writer(
    pool: Pool,
    mut jobs: tokio::sync::mpsc::UnboundedReceiver<DeliverJob>,
    activity: Arc<Activity>,
) {
    let pool = PoolHandle(pool);
    while let Some(first) = jobs.recv().await {
        activity.touch();
        let mut batch = vec![first];
        while batch.len() < MAX_DELIVERY_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match transaction!(pool, |tx| deliver_batch(tx, &batch)) {
            Ok(results) => {
                for (job, delivered) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(delivered));
                }
            }
            Err(e) if batch.len() == 1 => {
                let _ = batch.pop().expect("one job").reply.send(Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = batch.len(), "postgres: a delivery batch failed; one by one");
                for job in batch {
                    let one = std::slice::from_ref(&job);
                    let result = transaction!(pool, |tx| deliver_batch(tx, one));
                    let _ = job.reply.send(result.map(|mut all| all.remove(0)));
                }
            }
        }
    }
}

/// Delivers a batch inside `tx`, pipelined: every statement goes out before the first answer
/// is awaited, so the batch costs a few round trips, not a few per message.
async fn deliver_batch(tx: &Tx<'_>, jobs: &[DeliverJob]) -> Result<Vec<Vec<Delivered>>> {
    let put_blob = tx.prepare_cached(PUT_BLOB).await.map_err(backend)?;
    let deliver_one = tx.prepare_cached(DELIVER_ONE).await.map_err(backend)?;
    let summaries: Vec<SummaryFields> = jobs
        .iter()
        .map(|j| SummaryFields::of(j.summary.as_ref()))
        .collect();
    let blob_rows: Vec<[&(dyn ToSql + Sync); 7]> = jobs
        .iter()
        .zip(&summaries)
        .map(|(j, s)| blob_params(&j.blob, s))
        .collect();
    let message_rows: Vec<[&(dyn ToSql + Sync); 5]> = jobs
        .iter()
        .flat_map(|j| {
            j.recipients.iter().map(move |account| {
                [
                    account as &(dyn ToSql + Sync),
                    &j.blob.id,
                    &j.internal_date,
                    &j.blob.size,
                    &j.blob.crlf_size,
                ]
            })
        })
        .collect();
    // INBOXes are locked in account order, as every other node's batches lock them, so two
    // batches cannot deadlock; the sort is stable, so one INBOX still gets its messages in
    // arrival order.
    let accounts: Vec<AccountId> = jobs
        .iter()
        .flat_map(|j| j.recipients.iter().copied())
        .collect();
    let mut order: Vec<usize> = (0..message_rows.len()).collect();
    order.sort_by_key(|&i| accounts[i]);
    // Each job's blob goes in before its messages: statements run in the order sent.
    let mut pending = Vec::with_capacity(blob_rows.len() + message_rows.len());
    for row in &blob_rows {
        pending.push(tx.query(&put_blob, row));
    }
    for &i in &order {
        pending.push(tx.query(&deliver_one, &message_rows[i]));
    }
    let answers = futures_util::future::try_join_all(pending)
        .await
        .map_err(backend)?;
    // Back in job order.
    let mut by_row: Vec<Option<&Vec<Row>>> = vec![None; message_rows.len()];
    for (k, &i) in order.iter().enumerate() {
        by_row[i] = Some(&answers[blob_rows.len() + k]);
    }
    let mut inserted = by_row
        .into_iter()
        .map(|rows| rows.expect("every row answered"));
    let mut results = Vec::with_capacity(jobs.len());
    let mut notes = Vec::with_capacity(message_rows.len());
    for job in jobs {
        let mut delivered = Vec::with_capacity(job.recipients.len());
        for &account in &job.recipients {
            let row = inserted
                .next()
                .and_then(|rows| rows.first())
                .ok_or_else(|| StoreError::NotFound(format!("INBOX of account {account}")))?;
            let (mailbox, uid, modseq): (i64, u32, i64) =
                (row.get(0), row.get::<_, i64>(1) as u32, row.get(2));
            delivered.push(Delivered {
                account_id: account,
                mailbox_id: mailbox,
                uid,
            });
            notes.push(Note::Change(
                account,
                Change::MessageAdded {
                    mailbox_id: mailbox,
                    uid,
                    modseq: modseq as u64,
                },
            ));
        }
        results.push(delivered);
    }
    notify(tx, &notes).await?;
    Ok(results)
}

#[allow(clippy::too_many_arguments)]
async fn store_flags_tx(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    uids: &[u32],
    mode: FlagMode,
    flags: u32,
    keywords: &[String],
    unchanged_since: Option<u64>,
) -> Result<(Vec<FlagsUpdated>, Vec<u32>)> {
    let account = mailbox_account(tx, mailbox).await?;
    let mut updated = Vec::new();
    let mut failed = Vec::new();
    let uid_list: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
    // Lock the mailbox first (the MODSEQ counter), then the messages, in UID order.
    let rows = query(
        tx,
        "SELECT uid, flags, keywords, modseq FROM messages \
         WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid FOR UPDATE",
        &[&mailbox, &uid_list],
    )
    .await?;
    for row in rows {
        let uid = row.get::<_, i64>(0) as u32;
        let old_flags = row.get::<_, i32>(1) as u32;
        let old_keywords = parse_keywords(row.get(2));
        let modseq: i64 = row.get(3);
        if unchanged_since.is_some_and(|since| modseq as u64 > since) {
            failed.push(uid);
            continue;
        }
        let (new_flags, new_keywords) =
            apply_flags(old_flags, &old_keywords, mode, flags, keywords);
        if new_flags == old_flags && new_keywords == old_keywords {
            continue;
        }
        let modseq = bump_modseq(tx, mailbox).await?;
        execute(
            tx,
            "UPDATE messages SET flags = $1, keywords = $2, modseq = $3 \
             WHERE mailbox_id = $4 AND uid = $5",
            &[
                &(new_flags as i32),
                &new_keywords.join(" "),
                &modseq,
                &mailbox,
                &(uid as i64),
            ],
        )
        .await?;
        updated.push(FlagsUpdated {
            uid,
            modseq: modseq as u64,
            flags: new_flags,
            keywords: new_keywords,
        });
    }
    // Ask for UIDs in the caller's order, as SQLite gives them.
    let position = |uid: u32| uids.iter().position(|&u| u == uid).unwrap_or(usize::MAX);
    updated.sort_by_key(|u| position(u.uid));
    failed.sort_by_key(|&u| position(u));
    let notes: Vec<Note> = updated
        .iter()
        .map(|u| {
            Note::Change(
                account,
                Change::FlagsChanged {
                    mailbox_id: mailbox,
                    uid: u.uid,
                    modseq: u.modseq,
                    flags: u.flags,
                    keywords: u.keywords.clone(),
                },
            )
        })
        .collect();
    notify(tx, &notes).await?;
    Ok((updated, failed))
}

async fn append_tx(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    blob: &Blob,
    flags: u32,
    keywords: &str,
    internal_date: i64,
    summary: Option<&MessageSummary>,
) -> Result<u32> {
    let account = mailbox_account(tx, mailbox).await?;
    put_blob(tx, blob, summary).await?;
    let (uid, modseq) = allocate_uid(tx, mailbox).await?;
    insert_message(
        tx,
        mailbox,
        NewMessage {
            uid,
            blob: &blob.id,
            flags,
            keywords,
            modseq,
            date: internal_date,
            size: blob.size,
            crlf_size: blob.crlf_size,
        },
    )
    .await?;
    notify(
        tx,
        &[Note::Change(
            account,
            Change::MessageAdded {
                mailbox_id: mailbox,
                uid,
                modseq: modseq as u64,
            },
        )],
    )
    .await?;
    Ok(uid)
}

async fn copy_tx(
    tx: &Tx<'_>,
    from: MailboxId,
    uids: &[u32],
    to: MailboxId,
    move_them: bool,
) -> Result<Vec<(u32, u32)>> {
    // Both mailboxes, in id order, so opposite moves cannot deadlock.
    let rows = query(
        tx,
        "SELECT id, account_id FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&vec![from, to]],
    )
    .await?;
    let account_of = |id: MailboxId| {
        rows.iter()
            .find(|r| r.get::<_, i64>(0) == id)
            .map(|r| r.get::<_, i64>(1))
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {id}")))
    };
    let account = account_of(from)?;
    if account_of(to)? != account {
        return Err(StoreError::Invalid("copy across accounts".into()));
    }
    let uid_list: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
    let rows = query(
        tx,
        "SELECT uid, blob_id, flags, keywords, internal_date, size, crlf_size FROM messages \
         WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid FOR UPDATE",
        &[&from, &uid_list],
    )
    .await?;
    let mut pairs = Vec::new();
    let mut notes = Vec::new();
    for row in rows {
        let uid = row.get::<_, i64>(0) as u32;
        let blob: String = row.get(1);
        let keywords: String = row.get(3);
        let (new_uid, modseq) = allocate_uid(tx, to).await?;
        insert_message(
            tx,
            to,
            NewMessage {
                uid: new_uid,
                blob: &blob,
                flags: row.get::<_, i32>(2) as u32,
                keywords: &keywords,
                modseq,
                date: row.get(4),
                size: row.get(5),
                crlf_size: row.get(6),
            },
        )
        .await?;
        pairs.push((uid, new_uid));
        notes.push(Note::Change(
            account,
            Change::MessageAdded {
                mailbox_id: to,
                uid: new_uid,
                modseq: modseq as u64,
            },
        ));
    }
    if move_them && !pairs.is_empty() {
        let modseq = bump_modseq(tx, from).await?;
        let moved: Vec<i64> = pairs.iter().map(|p| p.0 as i64).collect();
        execute(
            tx,
            "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2)",
            &[&from, &moved],
        )
        .await?;
        let removed: Vec<(u32, i64)> = pairs.iter().map(|p| (p.0, modseq)).collect();
        record_expunged(tx, from, &removed).await?;
        notes.push(Note::Change(
            account,
            Change::Expunged {
                mailbox_id: from,
                uids: pairs.iter().map(|p| p.0).collect(),
                modseq: modseq as u64,
            },
        ));
    }
    notify(tx, &notes).await?;
    Ok(pairs)
}

async fn expunge_tx(tx: &Tx<'_>, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>> {
    let account = mailbox_account(tx, mailbox).await?;
    let uid_list: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
    let modseq = bump_modseq(tx, mailbox).await?;
    let rows = query(
        tx,
        "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2) RETURNING uid, blob_id",
        &[&mailbox, &uid_list],
    )
    .await?;
    if rows.is_empty() {
        // Nothing changed: give the MODSEQ back so it does not move for nothing.
        execute(
            tx,
            "UPDATE mailboxes SET highestmodseq = highestmodseq - 1 WHERE id = $1",
            &[&mailbox],
        )
        .await?;
        return Ok(Vec::new());
    }
    let mut removed: Vec<u32> = rows.iter().map(|r| r.get::<_, i64>(0) as u32).collect();
    removed.sort_unstable();
    let mut blobs: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    blobs.sort_unstable();
    blobs.dedup();
    let records: Vec<(u32, i64)> = removed.iter().map(|&u| (u, modseq)).collect();
    record_expunged(tx, mailbox, &records).await?;
    drop_blobs_if_unreferenced(tx, &blobs).await?;
    notify(
        tx,
        &[Note::Change(
            account,
            Change::Expunged {
                mailbox_id: mailbox,
                uids: removed.clone(),
                modseq: modseq as u64,
            },
        )],
    )
    .await?;
    Ok(removed)
}

async fn rename_tx(tx: &Tx<'_>, mailbox: MailboxId, new_name: &str) -> Result<AccountId> {
    let row = query_opt(
        tx,
        "SELECT account_id, name FROM mailboxes WHERE id = $1 FOR UPDATE",
        &[&mailbox],
    )
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
    let account: AccountId = row.get(0);
    let old: String = row.get(1);
    if query_opt(
        tx,
        "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2",
        &[&account, &new_name],
    )
    .await?
    .is_some()
    {
        return Err(StoreError::AlreadyExists(format!("mailbox {new_name}")));
    }
    if old == "INBOX" {
        // RFC 9051 §6.3.6: the messages move to a new mailbox; INBOX stays, empty.
        let uid_validity = next_uid_validity(tx).await?;
        let target: i64 = query_one(
            tx,
            "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) \
             VALUES ($1, $2, $3, FALSE) RETURNING id",
            &[&account, &new_name, &uid_validity],
        )
        .await?
        .get(0);
        let uids: Vec<i64> = query(
            tx,
            "SELECT uid FROM messages WHERE mailbox_id = $1 ORDER BY uid",
            &[&mailbox],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let modseq = bump_modseq(tx, mailbox).await?;
        for &uid in &uids {
            let (new_uid, new_modseq) = allocate_uid(tx, target).await?;
            execute(
                tx,
                "UPDATE messages SET mailbox_id = $1, uid = $2, modseq = $3 \
                 WHERE mailbox_id = $4 AND uid = $5",
                &[&target, &(new_uid as i64), &new_modseq, &mailbox, &uid],
            )
            .await?;
        }
        let removed: Vec<(u32, i64)> = uids.iter().map(|&u| (u as u32, modseq)).collect();
        record_expunged(tx, mailbox, &removed).await?;
    } else {
        // Children move along: "a" -> "b" renames "a/x" to "b/x".
        let prefix = format!("{old}/");
        let children = query(
            tx,
            "SELECT id, name FROM mailboxes WHERE account_id = $1",
            &[&account],
        )
        .await?;
        for child in children {
            let name: String = child.get(1);
            if let Some(rest) = name.strip_prefix(&prefix) {
                execute(
                    tx,
                    "UPDATE mailboxes SET name = $1 WHERE id = $2",
                    &[&format!("{new_name}/{rest}"), &child.get::<_, i64>(0)],
                )
                .await?;
            }
        }
        execute(
            tx,
            "UPDATE mailboxes SET name = $1 WHERE id = $2",
            &[&new_name, &mailbox],
        )
        .await?;
    }
    notify(tx, &[Note::Change(account, Change::MailboxesChanged)]).await?;
    Ok(account)
}

/// Stores a queued message's bytes and envelope; returns its id (the recipients follow).
async fn insert_queued(
    tx: &Tx<'_>,
    blob_id: &str,
    data: &[u8],
    envelope: &Envelope<'_>,
) -> Result<i64> {
    let size = data.len() as i64;
    execute(
        tx,
        "INSERT INTO blobs (id, data, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&blob_id, &data, &size],
    )
    .await?;
    Ok(query_one(
        tx,
        "INSERT INTO queue (blob_id, sender, size, created, expires, envid, ret, smtputf8) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        &[
            &blob_id,
            &envelope.sender,
            &size,
            &envelope.created,
            &envelope.expires,
            &envelope.envid,
            &envelope.ret.map(Ret::as_str),
            &envelope.smtputf8,
        ],
    )
    .await?
    .get(0))
}

/// The envelope part of a queue row, from an `Outbound` or an imported `QueueEntry`.
struct Envelope<'a> {
    sender: &'a str,
    created: i64,
    expires: i64,
    envid: Option<&'a str>,
    ret: Option<Ret>,
    smtputf8: bool,
}

async fn enqueue_tx(tx: &Tx<'_>, message: &Outbound, blob_id: &str) -> Result<i64> {
    let id = insert_queued(
        tx,
        blob_id,
        &message.data,
        &Envelope {
            sender: &message.sender,
            created: message.created,
            expires: message.expires,
            envid: message.envid.as_deref(),
            ret: message.ret,
            smtputf8: message.smtputf8,
        },
    )
    .await?;
    for r in &message.recipients {
        execute(
            tx,
            "INSERT INTO queue_recipients (queue_id, address, status, next_attempt, notify, orcpt) \
             VALUES ($1, $2, 'pending', $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &id,
                &r.address,
                &message.created,
                &(r.notify as i16),
                &r.orcpt,
            ],
        )
        .await?;
    }
    notify(tx, &[Note::Queue]).await?;
    Ok(id)
}

async fn claim_tx(
    tx: &Tx<'_>,
    now: i64,
    lease_until: i64,
    limit: usize,
    node: &str,
) -> Result<Vec<QueueJob>> {
    // Lock messages with due recipients, skipping those another node is claiming right now;
    // the UPDATE then rechecks each recipient, so a claim that just committed elsewhere is
    // never taken twice.
    let ids: Vec<i64> = query(
        tx,
        "SELECT q.id FROM queue q WHERE EXISTS (SELECT 1 FROM queue_recipients r \
         WHERE r.queue_id = q.id AND r.status IN ('pending', 'deferred') \
         AND r.next_attempt <= $1 AND r.lease_until <= $1) \
         ORDER BY (SELECT MIN(r.next_attempt) FROM queue_recipients r WHERE r.queue_id = q.id \
         AND r.status IN ('pending', 'deferred')), q.id LIMIT $2 FOR UPDATE SKIP LOCKED",
        &[&now, &(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let claimed = query(
        tx,
        "UPDATE queue_recipients SET lease_until = $3, lease_owner = $4 WHERE queue_id = ANY($1) \
         AND status IN ('pending', 'deferred') AND next_attempt <= $2 AND lease_until <= $2 \
         RETURNING queue_id, address, notify, orcpt, attempts, seq",
        &[&ids, &now, &lease_until, &node],
    )
    .await?;
    let envelopes = query(
        tx,
        "SELECT id, sender, size, created, expires, envid, ret, smtputf8 FROM queue \
         WHERE id = ANY($1) ORDER BY id",
        &[&ids],
    )
    .await?;
    let mut claimed: Vec<(i64, i64, JobRecipient)> = claimed
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(5),
                JobRecipient {
                    address: r.get(1),
                    notify: r.get::<_, i16>(2) as u8,
                    orcpt: r.get(3),
                    attempts: r.get::<_, i32>(4) as u32,
                },
            )
        })
        .collect();
    claimed.sort_by_key(|c| (c.0, c.1));
    let mut jobs = Vec::new();
    for envelope in &envelopes {
        let id: i64 = envelope.get(0);
        let recipients: Vec<JobRecipient> = claimed
            .iter()
            .filter(|c| c.0 == id)
            .map(|c| c.2.clone())
            .collect();
        if !recipients.is_empty() {
            jobs.push(queue_job(envelope, recipients));
        }
    }
    Ok(jobs)
}

async fn record_attempt_tx(tx: &Tx<'_>, id: i64, results: &[AttemptResult]) -> Result<()> {
    // Attempts on one message's recipients in several domains settle concurrently: the queue
    // row's lock makes the later one see the earlier one's results, so one of them finds the
    // message finished and removes it.
    if query_opt(tx, "SELECT 1 FROM queue WHERE id = $1 FOR UPDATE", &[&id])
        .await?
        .is_none()
    {
        return Ok(());
    }
    for r in results {
        execute(
            tx,
            "UPDATE queue_recipients SET status = $3, last_error = $4, next_attempt = $5, \
             attempts = attempts + 1, lease_until = 0 WHERE queue_id = $1 AND address = $2",
            &[
                &id,
                &r.address,
                &r.status.as_str(),
                &r.error,
                &r.next_attempt,
            ],
        )
        .await?;
    }
    let open = query_opt(
        tx,
        "SELECT 1 FROM queue_recipients WHERE queue_id = $1 \
         AND status IN ('pending', 'deferred') LIMIT 1",
        &[&id],
    )
    .await?
    .is_some();
    if !open {
        drop_queued(tx, id).await?;
    }
    Ok(())
}

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

/// Test set-up: a throwaway cluster, a store on a fresh database, domain `t.test` and the
/// account `u@t.test` (None when PostgreSQL is not installed and the test is skipped).
#[cfg(test)]
async fn test_store() -> Option<(test_support::PgCluster, PostgresStore, AccountId)> {
    use store::prelude::*;
    let cluster = test_support::PgCluster::start()?;
    let store = PostgresStore::connect(&cluster.create_database(), 4, "test")
        .await
        .unwrap();
    store.add_domain("t.test").await.unwrap();
    let id = store
        .create_account(
            &Address::parse("u@t.test").unwrap(),
            &Secrets {
                password_hash: "h".into(),
                scram: None,
            },
        )
        .await
        .unwrap();
    Some((cluster, store, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::PgCluster;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let Some(cluster) = PgCluster::start() else {
            return;
        };
        let store = PostgresStore::connect(&cluster.create_database(), 8, "test")
            .await
            .unwrap();
        store::conformance::run(Arc::new(store)).await;
    }
}

#[cfg(test)]
mod nodes {
    use super::*;
    use store::Delivery;
    use store::prelude::*;
    use test_support::PgCluster;

    /// Two stores on one database (two nodes): deliveries from both into one INBOX, and a
    /// reader that follows them incrementally, as an IMAP session does, never sees a gap.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_become_visible_in_uid_order() {
        let Some(cluster) = PgCluster::start() else {
            return;
        };
        let url = cluster.create_database();
        let a = Arc::new(PostgresStore::connect(&url, 8, "a").await.unwrap());
        let b = Arc::new(PostgresStore::connect(&url, 8, "b").await.unwrap());
        a.add_domain("n.test").await.unwrap();
        let secrets = Secrets {
            password_hash: "h".into(),
            scram: None,
        };
        let id = a
            .create_account(&Address::parse("u@n.test").unwrap(), &secrets)
            .await
            .unwrap();
        let inbox = a.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = if t % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for i in 0..40 {
                    store
                        .deliver(Delivery {
                            data: format!("Subject: {t}-{i}\r\n\r\nx\r\n").into_bytes(),
                            recipients: vec![id],
                            internal_date: 0,
                            summary: None,
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        let mut seen: Vec<u32> = Vec::new();
        while seen.len() < 320 {
            let last = seen.last().copied().unwrap_or(0);
            for m in b.message_flags(inbox, last).await.unwrap() {
                seen.push(m.uid);
            }
            assert_eq!(seen, (1..=seen.len() as u32).collect::<Vec<_>>());
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
}

#[cfg(test)]
mod errors {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn errors_say_what_the_server_said_and_races_are_retried() {
        let Some(cluster) = test_support::PgCluster::start() else {
            return;
        };
        let store = PostgresStore::connect(&cluster.create_database(), 2, "e")
            .await
            .unwrap();
        let client = store.client().await.unwrap();
        let error = backend(
            client
                .batch_execute("SELECT * FROM nowhere")
                .await
                .unwrap_err(),
        );
        let text = error.to_string();
        assert!(
            text.contains("relation \"nowhere\" does not exist") && text.contains("42P01"),
            "{text}"
        );
        assert!(!retryable(&error));
        let error = backend(
            client
                .batch_execute("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40P01'; END $$")
                .await
                .unwrap_err(),
        );
        assert!(retryable(&error), "a deadlock is run again: {error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_url_or_a_missing_server_is_a_clear_error() {
        let Err(StoreError::Invalid(text)) =
            PostgresStore::connect("postgres://localhost:notaport/db", 2, "n").await
        else {
            panic!("a malformed URL is refused");
        };
        assert!(text.contains("bad PostgreSQL URL"), "{text}");
        let port = test_support::free_port();
        let Err(error) =
            PostgresStore::connect(&format!("postgres://u@127.0.0.1:{port}/db"), 2, "n").await
        else {
            panic!("nobody listens there");
        };
        assert!(
            error.to_string().contains("cannot connect to PostgreSQL"),
            "{error}"
        );
    }
}

#[cfg(test)]
mod index {
    use super::*;
    use store::Delivery;
    use store::prelude::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_texts_reach_the_index_and_are_found_before_and_after() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        for i in 0..30 {
            store
                .deliver(Delivery {
                    data: format!("Subject: n{i}\r\n\r\nneedle{i} Straße 草\r\n").into_bytes(),
                    recipients: vec![id],
                    internal_date: 0,
                    summary: None,
                })
                .await
                .unwrap();
        }
        let inbox = store.mailbox(id, "INBOX").await.unwrap().unwrap().id;
        assert_eq!(
            store
                .search_text(inbox, "NEEDLE17", TextScope::Body)
                .await
                .unwrap(),
            [18],
            "found at once, indexed or not"
        );
        let mut waited = 0;
        while store.index_backlog().await.unwrap() > 0 {
            assert!(waited < 200, "the index queue drains");
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += 1;
        }
        let client = store.client().await.unwrap();
        let indexed: i64 = query_one(&client, "SELECT COUNT(*) FROM search", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(indexed, 30);
        assert_eq!(
            store
                .search_text(inbox, "needle17", TextScope::Body)
                .await
                .unwrap(),
            [18]
        );
        assert_eq!(
            store
                .search_text(inbox, "STRASSE", TextScope::All)
                .await
                .unwrap()
                .len(),
            0,
            "a substring match, not a stemmer"
        );
        assert_eq!(
            store
                .search_text(inbox, "STRAßE 草", TextScope::Body)
                .await
                .unwrap()
                .len(),
            30,
            "case-insensitive beyond ASCII"
        );
        assert_eq!(
            store
                .search_text(inbox, "n2", TextScope::Headers)
                .await
                .unwrap(),
            [3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30],
            "n2 and n20..n29"
        );
    }
}

#[cfg(test)]
mod listen {
    use super::*;
    use store::Delivery;
    use store::prelude::*;

    /// A node whose LISTEN connection dies (a database restart, a network cut) listens again
    /// and goes on hearing changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_listen_connection_comes_back() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        let mut changes = store.subscribe(id);
        let client = store.client().await.unwrap();
        let killed: i64 = query_one(
            &client,
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE query = 'LISTEN pigeon' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
        assert_eq!(killed, 1, "the node's one listening connection");
        // Deliver until the listener is back (it retries every second).
        let deliver = || {
            store.deliver(Delivery {
                data: b"Subject: again\r\n\r\n".to_vec(),
                recipients: vec![id],
                internal_date: 0,
                summary: None,
            })
        };
        let started = std::time::Instant::now();
        let mut resync = false;
        loop {
            deliver().await.unwrap();
            match tokio::time::timeout(Duration::from_millis(500), changes.recv()).await {
                Ok(Ok(Change::MessageAdded { .. })) => {
                    assert!(resync, "sessions are told to reload first");
                    break;
                }
                // What was missed while not listening: sessions reload.
                Ok(Ok(Change::Resync)) => resync = true,
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "no notification 10 s after the LISTEN connection died"
                ),
            }
        }
    }
}

#[cfg(test)]
mod maildrop {
    use super::*;
    use store::prelude::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_pop3_session_per_maildrop_across_nodes() {
        let Some((_cluster, store, id)) = test_store().await else {
            return;
        };
        let later = now() + 600;
        assert!(store.lock_maildrop(id, "node1-a", later).await.unwrap());
        assert!(
            !store.lock_maildrop(id, "node2-b", later).await.unwrap(),
            "held"
        );
        assert!(
            store
                .lock_maildrop(id, "node1-a", later + 60)
                .await
                .unwrap(),
            "renewed"
        );
        store.unlock_maildrop(id, "node2-b").await.unwrap();
        assert!(
            !store.lock_maildrop(id, "node2-b", later).await.unwrap(),
            "only the holder unlocks"
        );
        store.unlock_maildrop(id, "node1-a").await.unwrap();
        assert!(store.lock_maildrop(id, "node2-b", now() - 1).await.unwrap());
        // A dead holder's lock lapses at its time.
        assert!(
            store.lock_maildrop(id, "node1-c", later).await.unwrap(),
            "lapsed"
        );
    }
}
