//! The schema and its forward migrations, tracked in `PRAGMA user_version`.
//!
//! Migrations only ever append: a database at version N runs migrations N+1.. at open, each in
//! its own transaction, so an interrupted upgrade resumes where it stopped.

use rusqlite::Connection;
use store::{Result, StoreError};

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: domains, accounts, aliases, mailboxes, messages, blobs, the outbound queue.
    "CREATE TABLE domains (
        name TEXT PRIMARY KEY,
        created INTEGER NOT NULL
    );
    CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        address TEXT NOT NULL UNIQUE,
        domain TEXT NOT NULL REFERENCES domains(name),
        password_hash TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE INDEX accounts_domain ON accounts(domain);
    CREATE TABLE aliases (
        address TEXT NOT NULL,
        target TEXT NOT NULL,
        domain TEXT NOT NULL REFERENCES domains(name),
        PRIMARY KEY (address, target)
    );
    CREATE INDEX aliases_domain ON aliases(domain);
    CREATE TABLE mailboxes (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        special_use TEXT,
        uidvalidity INTEGER NOT NULL,
        uidnext INTEGER NOT NULL DEFAULT 1,
        highestmodseq INTEGER NOT NULL DEFAULT 1,
        subscribed INTEGER NOT NULL DEFAULT 1,
        UNIQUE (account_id, name)
    );
    CREATE TABLE blobs (
        id TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE messages (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        blob_id TEXT NOT NULL REFERENCES blobs(id),
        flags INTEGER NOT NULL DEFAULT 0,
        keywords TEXT NOT NULL DEFAULT '',
        modseq INTEGER NOT NULL,
        internal_date INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE INDEX messages_blob ON messages(blob_id);
    CREATE TABLE expunged (
        mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
        uid INTEGER NOT NULL,
        modseq INTEGER NOT NULL,
        PRIMARY KEY (mailbox_id, uid)
    ) WITHOUT ROWID;
    CREATE TABLE queue (
        id INTEGER PRIMARY KEY,
        blob_id TEXT NOT NULL REFERENCES blobs(id),
        sender TEXT NOT NULL,
        size INTEGER NOT NULL,
        created INTEGER NOT NULL
    );
    CREATE INDEX queue_blob ON queue(blob_id);
    CREATE TABLE queue_recipients (
        queue_id INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
        address TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt INTEGER NOT NULL,
        last_error TEXT
    );
    CREATE INDEX queue_recipients_due ON queue_recipients(status, next_attempt);",
    // 2: SCRAM-SHA-256 keys beside the Argon2 hash; aliases looked up by target.
    "ALTER TABLE accounts ADD COLUMN scram TEXT;
    CREATE INDEX aliases_target ON aliases(target);",
    // 3: the CRLF-normalised size POP3 reports.
    "ALTER TABLE messages ADD COLUMN crlf_size INTEGER NOT NULL DEFAULT 0;
    UPDATE messages SET crlf_size = size;",
    // 4: per-blob summaries (ENVELOPE, BODYSTRUCTURE, header block) and the full-text index
    // (trigram: IMAP SEARCH is a case-insensitive substring match). `search_rowid` finds a
    // blob's index row without scanning the index. Text waits in `index_queue` until the
    // writer is idle: indexing costs more than the delivery it must not slow down.
    "CREATE TABLE summaries (
        blob_id TEXT PRIMARY KEY,
        envelope BLOB NOT NULL,
        body_structure BLOB NOT NULL,
        body BLOB NOT NULL,
        header BLOB NOT NULL,
        search_rowid INTEGER
    ) WITHOUT ROWID;
    CREATE VIRTUAL TABLE search USING fts5(blob_id UNINDEXED, headers, body, tokenize = 'trigram');
    CREATE TABLE index_queue (
        blob_id TEXT PRIMARY KEY
    ) WITHOUT ROWID;",
    // 5: per-mailbox counters kept by triggers, so SELECT and STATUS never count rows.
    "ALTER TABLE mailboxes ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN unseen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE mailboxes ADD COLUMN total_size INTEGER NOT NULL DEFAULT 0;
    UPDATE mailboxes SET
        total = (SELECT COUNT(*) FROM messages WHERE mailbox_id = mailboxes.id),
        unseen = (SELECT COUNT(*) FROM messages WHERE mailbox_id = mailboxes.id AND (flags & 1) = 0),
        deleted = (SELECT COUNT(*) FROM messages WHERE mailbox_id = mailboxes.id AND (flags & 8) != 0),
        total_size = (SELECT COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = mailboxes.id);
    CREATE TRIGGER messages_counters_insert AFTER INSERT ON messages BEGIN
        UPDATE mailboxes SET total = total + 1, unseen = unseen + ((NEW.flags & 1) = 0),
            deleted = deleted + ((NEW.flags & 8) != 0), total_size = total_size + NEW.size
        WHERE id = NEW.mailbox_id;
    END;
    CREATE TRIGGER messages_counters_delete AFTER DELETE ON messages BEGIN
        UPDATE mailboxes SET total = total - 1, unseen = unseen - ((OLD.flags & 1) = 0),
            deleted = deleted - ((OLD.flags & 8) != 0), total_size = total_size - OLD.size
        WHERE id = OLD.mailbox_id;
    END;
    CREATE TRIGGER messages_counters_update AFTER UPDATE OF flags, mailbox_id, size ON messages BEGIN
        UPDATE mailboxes SET total = total - 1, unseen = unseen - ((OLD.flags & 1) = 0),
            deleted = deleted - ((OLD.flags & 8) != 0), total_size = total_size - OLD.size
        WHERE id = OLD.mailbox_id;
        UPDATE mailboxes SET total = total + 1, unseen = unseen + ((NEW.flags & 1) = 0),
            deleted = deleted + ((NEW.flags & 8) != 0), total_size = total_size + NEW.size
        WHERE id = NEW.mailbox_id;
    END;",
    // 6: the delivery queue's DSN options, expiry and leases; DKIM signing keys.
    "ALTER TABLE queue ADD COLUMN expires INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE queue ADD COLUMN envid TEXT;
    ALTER TABLE queue ADD COLUMN ret TEXT;
    ALTER TABLE queue ADD COLUMN smtputf8 INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE queue_recipients ADD COLUMN notify INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE queue_recipients ADD COLUMN orcpt TEXT;
    ALTER TABLE queue_recipients ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX queue_recipients_address ON queue_recipients(queue_id, address);
    CREATE TABLE dkim_keys (
        domain TEXT NOT NULL REFERENCES domains(name) ON DELETE CASCADE,
        selector TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        private_key BLOB NOT NULL,
        public_key TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (domain, selector)
    ) WITHOUT ROWID;",
    // 7: uploads, big messages arriving in pieces (IMAP APPEND literals).
    "CREATE TABLE uploads (
        id INTEGER PRIMARY KEY,
        created INTEGER NOT NULL
    );
    CREATE TABLE upload_chunks (
        upload_id INTEGER NOT NULL REFERENCES uploads(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (upload_id, seq)
    ) WITHOUT ROWID;",
    // 8: messages the indexer gave up on (skipped, never retried in a loop); index entries of
    // deleted messages, which the indexer deletes when idle; when an upload last grew, so one
    // idle for an hour counts as abandoned.
    "CREATE TABLE index_failures (
        blob_id TEXT PRIMARY KEY,
        failed INTEGER NOT NULL,
        error TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE search_trash (
        search_rowid INTEGER PRIMARY KEY
    );
    ALTER TABLE uploads ADD COLUMN touched INTEGER NOT NULL DEFAULT 0;
    UPDATE uploads SET touched = created;",
    // 9: the highest upload id ever given out. `INTEGER PRIMARY KEY` alone reuses the id of
    // the newest upload once it is freed, and a session still holding that id would then add
    // to (or take) another account's upload; ids now only grow (no table rebuild needed).
    "CREATE TABLE upload_ids (last INTEGER NOT NULL);
    INSERT INTO upload_ids SELECT COALESCE(MAX(id), 0) FROM uploads;",
];

/// Brings the database up to the newest schema.
pub(crate) fn migrate(conn: &Connection) -> Result<()> {
    let backend = |e: rusqlite::Error| StoreError::Backend(Box::new(e));
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::Invalid(format!(
            "the database has schema version {version}, newer than this pigeon knows ({}); \
             upgrade pigeon",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let batch = format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {}; COMMIT;",
            i + 1
        );
        conn.execute_batch(&batch).map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            backend(e)
        })?;
    }
    Ok(())
}
