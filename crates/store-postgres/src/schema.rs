//! The PostgreSQL schema and its forward migrations, tracked in `schema_version`.
//!
//! Migrations only ever append. Several nodes may start at once: each runs the missing
//! migrations in one transaction under an advisory lock, so exactly one applies them and the
//! others then find the schema current.

use deadpool_postgres::Client;
use store::{Result, StoreError};

use crate::pool::backend;

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: the whole model of SQLite's migrations 1-7 in one step.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE TABLE domains (
        name TEXT PRIMARY KEY,
        created BIGINT NOT NULL
    );
    CREATE TABLE accounts (
        id BIGSERIAL PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL REFERENCES domains(name),
        password_hash TEXT NOT NULL,
        scram TEXT,
        created BIGINT NOT NULL
    );
    CREATE INDEX accounts_domain ON accounts(domain);
    CREATE TABLE aliases (
        seq BIGSERIAL,
        address TEXT NOT NULL,
        target TEXT NOT NULL,
        domain TEXT NOT NULL REFERENCES domains(name),
        PRIMARY KEY (address, target)
    );
    CREATE INDEX aliases_domain ON aliases(domain);
    CREATE INDEX aliases_target ON aliases(target);
    CREATE TABLE mailboxes (
        id BIGSERIAL PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        special_use TEXT,
        uidvalidity BIGINT NOT NULL,
        uidnext BIGINT NOT NULL DEFAULT 1,
        highestmodseq BIGINT NOT NULL DEFAULT 1,
        subscribed BOOLEAN NOT NULL DEFAULT TRUE,
        total BIGINT NOT NULL DEFAULT 0,
        unseen BIGINT NOT NULL DEFAULT 0,
        deleted BIGINT NOT NULL DEFAULT 0,
        total_size BIGINT NOT NULL DEFAULT 0,
        UNIQUE (account_id, name)
    );
    CREATE TABLE blobs (
        id TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        data BYTEA NOT NULL
    );
    CREATE TABLE messages (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid BIGINT NOT NULL,
        blob_id TEXT NOT NULL REFERENCES blobs(id),
        flags INTEGER NOT NULL DEFAULT 0,
        keywords TEXT NOT NULL DEFAULT '',
        modseq BIGINT NOT NULL,
        internal_date BIGINT NOT NULL,
        size BIGINT NOT NULL,
        crlf_size BIGINT NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    );
    CREATE INDEX messages_blob ON messages(blob_id);
    CREATE TABLE expunged (
        mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid BIGINT NOT NULL,
        modseq BIGINT NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    );
    CREATE TABLE summaries (
        blob_id TEXT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
        envelope BYTEA NOT NULL,
        body_structure BYTEA NOT NULL,
        body BYTEA NOT NULL,
        header BYTEA NOT NULL
    );
    -- The full-text index: trigram GIN indexes serve IMAP SEARCH's case-insensitive
    -- substring match (ILIKE) on big mailboxes.
    CREATE TABLE search (
        blob_id TEXT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
        headers TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX search_headers ON search USING gin (headers gin_trgm_ops);
    CREATE INDEX search_body ON search USING gin (body gin_trgm_ops);
    CREATE TABLE queue (
        id BIGSERIAL PRIMARY KEY,
        blob_id TEXT NOT NULL REFERENCES blobs(id),
        sender TEXT NOT NULL,
        size BIGINT NOT NULL,
        created BIGINT NOT NULL,
        expires BIGINT NOT NULL DEFAULT 0,
        envid TEXT,
        ret TEXT,
        smtputf8 BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE INDEX queue_blob ON queue(blob_id);
    CREATE TABLE queue_recipients (
        seq BIGSERIAL,
        queue_id BIGINT NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt BIGINT NOT NULL,
        last_error TEXT,
        notify SMALLINT NOT NULL DEFAULT 0,
        orcpt TEXT,
        lease_until BIGINT NOT NULL DEFAULT 0,
        -- The node holding the lease, so a restarted node frees only its own claims.
        lease_owner TEXT,
        PRIMARY KEY (queue_id, address)
    );
    CREATE INDEX queue_recipients_due ON queue_recipients(status, next_attempt);
    CREATE TABLE dkim_keys (
        domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
        selector TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        private_key BYTEA NOT NULL,
        public_key TEXT NOT NULL,
        created BIGINT NOT NULL,
        PRIMARY KEY (domain, selector)
    );
    CREATE TABLE uploads (
        id BIGSERIAL PRIMARY KEY,
        created BIGINT NOT NULL
    );
    CREATE TABLE upload_chunks (
        upload_id BIGINT NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (upload_id, seq)
    );
    -- Per-mailbox counters kept by a trigger, so SELECT and STATUS never count rows.
    CREATE FUNCTION messages_counters() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('DELETE', 'UPDATE') THEN
            UPDATE mailboxes SET total = total - 1,
                unseen = unseen - CASE WHEN OLD.flags & 1 = 0 THEN 1 ELSE 0 END,
                deleted = deleted - CASE WHEN OLD.flags & 8 <> 0 THEN 1 ELSE 0 END,
                total_size = total_size - OLD.size
            WHERE id = OLD.mailbox_id;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            UPDATE mailboxes SET total = total + 1,
                unseen = unseen + CASE WHEN NEW.flags & 1 = 0 THEN 1 ELSE 0 END,
                deleted = deleted + CASE WHEN NEW.flags & 8 <> 0 THEN 1 ELSE 0 END,
                total_size = total_size + NEW.size
            WHERE id = NEW.mailbox_id;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER messages_counters AFTER INSERT OR DELETE OR UPDATE OF flags, mailbox_id, size
        ON messages FOR EACH ROW EXECUTE FUNCTION messages_counters();",
    // 2: text waits in `index_queue` until a node's indexer is idle: trigram indexing costs
    // more than the delivery it must not slow down.
    "CREATE TABLE index_queue (
        blob_id TEXT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE
    );",
    // 3: POP3 maildrop locks shared by the nodes (RFC 1939: one session per maildrop).
    "CREATE TABLE maildrop_locks (
        account_id BIGINT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
        holder TEXT NOT NULL,
        until BIGINT NOT NULL
    );",
    // 4: messages the indexer gave up on (skipped, never retried in a loop); uploads name the
    // node that takes them and when they last grew, so a restarting node frees its own
    // interrupted ones and anybody frees those idle for an hour.
    "CREATE TABLE index_failures (
        blob_id TEXT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
        failed BIGINT NOT NULL,
        error TEXT NOT NULL
    );
    ALTER TABLE uploads ADD COLUMN node TEXT NOT NULL DEFAULT '';
    ALTER TABLE uploads ADD COLUMN touched BIGINT NOT NULL DEFAULT 0;
    UPDATE uploads SET touched = created;
    CREATE INDEX uploads_node ON uploads(node);",
];

/// Any number, the same on every node: the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x7069_6765_6f6e;

/// Brings the database up to the newest schema.
pub(crate) async fn migrate(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await.map_err(backend)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(backend)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await
        .map_err(backend)?;
    let version: i32 = tx
        .query_opt("SELECT version FROM schema_version", &[])
        .await
        .map_err(backend)?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::Invalid(format!(
            "the database has schema version {version}, newer than this pigeon knows ({}); \
             upgrade pigeon",
            MIGRATIONS.len()
        )));
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.batch_execute(sql).await.map_err(backend)?;
    }
    let newest = MIGRATIONS.len() as i32;
    tx.execute("DELETE FROM schema_version", &[])
        .await
        .map_err(backend)?;
    tx.execute("INSERT INTO schema_version VALUES ($1)", &[&newest])
        .await
        .map_err(backend)?;
    tx.commit().await.map_err(backend)
}

/// Empties every table of the schema (tests and `pigeon migrate --force`). Kept beside the
/// migrations: a migration that adds a table adds it here.
pub(crate) async fn wipe(client: &Client) -> Result<()> {
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
