//! Mailboxes of an account, and the POP3 maildrop lock.

use super::*;
use crate::messages::collect_garbage;
use crate::rows::{MAILBOX_COLUMNS, mailbox_from_row, special_use_name};

#[async_trait]
impl store::MailboxStore for SqliteStore {
    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = ?1 ORDER BY m.id"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map([account], mailbox_from_row)
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn mailbox_normalised(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let name = name.to_owned();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = ?1 AND m.name = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![account, name], mailbox_from_row)
                    .optional()
            })
            .map_err(backend)
        })
        .await
    }

    async fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<Option<Mailbox>> {
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.id = ?1"
            ))
            .and_then(|mut s| s.query_row([mailbox], mailbox_from_row).optional())
            .map_err(backend)
        })
        .await
    }

    async fn create_mailbox_normalised(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId> {
        let name = name.to_owned();
        let id = self
            .write(move |conn| {
                let uid_validity = next_uid_validity(conn).map_err(backend)?;
                let n = conn
                    .execute(
                        "INSERT OR IGNORE INTO mailboxes (account_id, name, special_use, uidvalidity, subscribed) \
                         VALUES (?1, ?2, ?3, ?4, 0)",
                        params![account, name, special_use_name(special_use), uid_validity],
                    )
                    .map_err(backend)?;
                if n == 0 {
                    return Err(StoreError::AlreadyExists(format!("mailbox {name}")));
                }
                Ok(conn.last_insert_rowid())
            })
            .await?;
        self.notifier.publish(account, Change::MailboxesChanged);
        Ok(id)
    }

    async fn delete_mailbox(&self, mailbox: MailboxId) -> Result<()> {
        let account = self
            .write(move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                let name: String = conn
                    .query_row("SELECT name FROM mailboxes WHERE id = ?1", [mailbox], |r| {
                        r.get(0)
                    })
                    .map_err(backend)?;
                if name == "INBOX" {
                    return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
                }
                conn.execute("DELETE FROM mailboxes WHERE id = ?1", [mailbox])
                    .map_err(backend)?;
                collect_garbage(conn).map_err(backend)?;
                Ok(account)
            })
            .await?;
        self.notifier.publish(account, Change::MailboxesChanged);
        Ok(())
    }

    async fn rename_mailbox_normalised(&self, mailbox: MailboxId, new_name: &str) -> Result<()> {
        let new_name = new_name.to_owned();
        let account = self
            .write(move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                let old: String = conn
                    .query_row("SELECT name FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))
                    .map_err(backend)?;
                let exists = conn
                    .prepare_cached("SELECT 1 FROM mailboxes WHERE account_id = ?1 AND name = ?2")
                    .and_then(|mut s| s.exists(params![account, new_name]))
                    .map_err(backend)?;
                if exists {
                    return Err(StoreError::AlreadyExists(format!("mailbox {new_name}")));
                }
                if old == "INBOX" {
                    // RFC 9051 §6.3.6: the messages move to a new mailbox; INBOX stays, empty.
                    let uid_validity = next_uid_validity(conn).map_err(backend)?;
                    conn.execute(
                        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (?1, ?2, ?3, 0)",
                        params![account, new_name, uid_validity],
                    )
                    .map_err(backend)?;
                    let target = conn.last_insert_rowid();
                    let uids: Vec<u32> = conn
                        .prepare("SELECT uid FROM messages WHERE mailbox_id = ?1 ORDER BY uid")
                        .and_then(|mut s| s.query_map([mailbox], |r| r.get(0))?.collect())
                        .map_err(backend)?;
                    let modseq = bump_modseq(conn, mailbox)?;
                    for uid in uids {
                        let (new_uid, new_modseq) = allocate_uid(conn, target)?;
                        conn.execute(
                            "UPDATE messages SET mailbox_id = ?1, uid = ?2, modseq = ?3 WHERE mailbox_id = ?4 AND uid = ?5",
                            params![target, new_uid, new_modseq, mailbox, uid],
                        )
                        .map_err(backend)?;
                        conn.execute(
                            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
                            params![mailbox, uid, modseq],
                        )
                        .map_err(backend)?;
                    }
                } else {
                    // Children move along: "a" -> "b" renames "a/x" to "b/x".
                    let mut stmt = conn
                        .prepare("SELECT id, name FROM mailboxes WHERE account_id = ?1")
                        .map_err(backend)?;
                    let children: Vec<(i64, String)> = stmt
                        .query_map([account], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect())
                        .map_err(backend)?;
                    let prefix = format!("{old}/");
                    for (id, name) in children {
                        if let Some(rest) = name.strip_prefix(&prefix) {
                            conn.execute("UPDATE mailboxes SET name = ?1 WHERE id = ?2", params![format!("{new_name}/{rest}"), id])
                                .map_err(backend)?;
                        }
                    }
                    conn.execute("UPDATE mailboxes SET name = ?1 WHERE id = ?2", params![new_name, mailbox])
                        .map_err(backend)?;
                }
                Ok(account)
            })
            .await?;
        self.notifier.publish(account, Change::MailboxesChanged);
        Ok(())
    }

    async fn set_subscribed(&self, mailbox: MailboxId, subscribed: bool) -> Result<()> {
        self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE mailboxes SET subscribed = ?1 WHERE id = ?2",
                    params![subscribed, mailbox],
                )
                .map_err(backend)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("mailbox {mailbox}")));
            }
            Ok(())
        })
        .await
    }
}

/// The account a mailbox belongs to, or NotFound.
pub(crate) fn mailbox_account(conn: &Connection, mailbox: MailboxId) -> Result<AccountId> {
    conn.prepare_cached("SELECT account_id FROM mailboxes WHERE id = ?1")
        .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)).optional())
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

/// Takes the next UID and MODSEQ of a mailbox.
pub(crate) fn allocate_uid(conn: &Connection, mailbox: MailboxId) -> Result<(u32, i64)> {
    conn.prepare_cached(
        "UPDATE mailboxes SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1 \
         WHERE id = ?1 RETURNING uidnext - 1, highestmodseq",
    )
    .and_then(|mut s| {
        s.query_row([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    })
    .map_err(backend)?
    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
}

pub(crate) fn bump_modseq(conn: &Connection, mailbox: MailboxId) -> Result<i64> {
    conn.prepare_cached("UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1 RETURNING highestmodseq")
        .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)))
        .map_err(backend)
}

/// A UIDVALIDITY larger than any given before, so a re-created mailbox never reuses one.
pub(crate) fn next_uid_validity(conn: &Connection) -> rusqlite::Result<u32> {
    let last: i64 = conn.query_row(
        "SELECT COALESCE(MAX(uidvalidity), 0) FROM mailboxes",
        [],
        |r| r.get(0),
    )?;
    Ok(uid_validity_after(last))
}
