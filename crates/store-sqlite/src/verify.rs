//! Integrity and notifications.

use super::*;
use crate::uploads::upload_usage;

#[async_trait]
impl store::IntegrityStore for SqliteStore {
    async fn verify(&self) -> Result<VerifyReport> {
        self.read(|conn| verify(conn).map_err(backend)).await
    }

    async fn index_backlog(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM index_queue", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    async fn index_failures(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT COUNT(*) FROM index_failures", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(backend)
        })
        .await
    }

    fn subscribe(&self, account: AccountId) -> tokio::sync::broadcast::Receiver<Change> {
        self.notifier.subscribe(account)
    }
}

pub(crate) fn verify(conn: &Connection) -> rusqlite::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    report.accounts = count("SELECT COUNT(*) FROM accounts")? as u64;
    report.mailboxes = count("SELECT COUNT(*) FROM mailboxes")? as u64;
    report.messages = count("SELECT COUNT(*) FROM messages")? as u64;
    report.blobs = count("SELECT COUNT(*) FROM blobs")? as u64;
    report.index_backlog = count("SELECT COUNT(*) FROM index_queue")? as u64;
    report.index_failures = count("SELECT COUNT(*) FROM index_failures")? as u64;
    (report.uploads, report.upload_bytes) = upload_usage(conn)?;

    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if integrity != "ok" {
        report
            .problems
            .push(format!("sqlite integrity_check: {integrity}"));
    }
    let mut fk = conn.prepare("PRAGMA foreign_key_check")?;
    let fk_problems = fk.query_map([], |r| r.get::<_, String>(0))?.count();
    if fk_problems > 0 {
        report
            .problems
            .push(format!("{fk_problems} rows break foreign keys"));
    }
    let dangling = count(
        "SELECT COUNT(*) FROM messages m WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.id = m.blob_id)",
    )?;
    if dangling > 0 {
        report
            .problems
            .push(format!("{dangling} messages have no stored bytes"));
    }
    let bad_uids = count(
        "SELECT COUNT(*) FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id \
         WHERE m.uid >= x.uidnext OR m.modseq > x.highestmodseq",
    )?;
    if bad_uids > 0 {
        report.problems.push(format!(
            "{bad_uids} messages have a UID or MODSEQ beyond their mailbox's counters"
        ));
    }
    let bad_counters = count(
        "SELECT COUNT(*) FROM mailboxes x WHERE \
         x.total != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id) \
         OR x.unseen != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id AND (flags & 1) = 0) \
         OR x.deleted != (SELECT COUNT(*) FROM messages WHERE mailbox_id = x.id AND (flags & 8) != 0) \
         OR x.total_size != (SELECT COALESCE(SUM(size), 0) FROM messages WHERE mailbox_id = x.id)",
    )?;
    if bad_counters > 0 {
        report.problems.push(format!(
            "{bad_counters} mailboxes have wrong message counters"
        ));
    }
    let bad_sizes = count(
        "SELECT COUNT(*) FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.size != b.size \
         OR length(b.data) != b.size",
    )?;
    if bad_sizes > 0 {
        report
            .problems
            .push(format!("{bad_sizes} messages have a wrong size"));
    }
    let mut stmt = conn.prepare("SELECT id, data FROM blobs")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let id: String = row.get(0)?;
        let data: Vec<u8> = row.get(1)?;
        if sha256_hex(&data) != id {
            report
                .problems
                .push(format!("blob {id} does not match its hash"));
        }
    }
    Ok(report)
}
