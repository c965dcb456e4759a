//! Mailboxes of an account, and the POP3 maildrop lock.

use async_trait::async_trait;
use store::rules::{now, uid_validity_after};
use store::{AccountId, Change, Mailbox, MailboxId, Result, SpecialUse, StoreError};

use crate::PostgresStore;
use crate::messages::{drop_blobs_if_unreferenced, record_expunged};
use crate::notes::{Note, notify};
use crate::pool::{Tx, execute, query, query_one, query_opt, transaction};
use crate::rows::{MAILBOX_COLUMNS, mailbox_from_row};

#[async_trait]
impl store::MailboxStore for PostgresStore {
    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = $1 ORDER BY m.id"
            ),
            &[&account],
        )
        .await?;
        Ok(rows.iter().map(mailbox_from_row).collect())
    }

    async fn mailbox_normalised(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            &format!(
                "SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.account_id = $1 AND m.name = $2"
            ),
            &[&account, &name],
        )
        .await?;
        Ok(row.as_ref().map(mailbox_from_row))
    }

    async fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<Option<Mailbox>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            &format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes m WHERE m.id = $1"),
            &[&mailbox],
        )
        .await?;
        Ok(row.as_ref().map(mailbox_from_row))
    }

    async fn create_mailbox_normalised(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId> {
        transaction!(self, |tx| async {
            let uid_validity = next_uid_validity(tx).await?;
            let row = query_opt(
                tx,
                "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, subscribed) \
                 VALUES ($1, $2, $3, $4, FALSE) ON CONFLICT DO NOTHING RETURNING id",
                &[
                    &account,
                    &name,
                    &special_use.map(|u| u.attribute()),
                    &uid_validity,
                ],
            )
            .await?;
            let Some(row) = row else {
                return Err(StoreError::AlreadyExists(format!("mailbox {name}")));
            };
            notify(tx, &[Note::Change(account, Change::MailboxesChanged)]).await?;
            Ok(row.get(0))
        })
    }

    async fn delete_mailbox(&self, mailbox: MailboxId) -> Result<()> {
        transaction!(self, |tx| async {
            let row = query_opt(
                tx,
                "SELECT account_id, name FROM mailboxes WHERE id = $1 FOR UPDATE",
                &[&mailbox],
            )
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
            let (account, name): (AccountId, String) = (row.get(0), row.get(1));
            if name == "INBOX" {
                return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
            }
            let blobs: Vec<String> = query(
                tx,
                "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = $1",
                &[&mailbox],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
            execute(tx, "DELETE FROM mailboxes WHERE id = $1", &[&mailbox]).await?;
            drop_blobs_if_unreferenced(tx, &blobs).await?;
            notify(tx, &[Note::Change(account, Change::MailboxesChanged)]).await
        })
    }

    async fn rename_mailbox_normalised(&self, mailbox: MailboxId, new_name: &str) -> Result<()> {
        transaction!(self, |tx| rename_tx(tx, mailbox, new_name))?;
        Ok(())
    }

    async fn set_subscribed(&self, mailbox: MailboxId, subscribed: bool) -> Result<()> {
        let client = self.client().await?;
        let n = execute(
            &client,
            "UPDATE mailboxes SET subscribed = $1 WHERE id = $2",
            &[&subscribed, &mailbox],
        )
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("mailbox {mailbox}")));
        }
        Ok(())
    }

    async fn lock_maildrop(&self, account: AccountId, holder: &str, until: i64) -> Result<bool> {
        let client = self.client().await?;
        let taken = query_opt(
            &client,
            "INSERT INTO maildrop_locks (account_id, holder, until) VALUES ($1, $2, $3) \
             ON CONFLICT (account_id) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until \
             WHERE maildrop_locks.holder = EXCLUDED.holder OR maildrop_locks.until < $4 \
             RETURNING 1",
            &[&account, &holder, &until, &now()],
        )
        .await?;
        Ok(taken.is_some())
    }

    async fn unlock_maildrop(&self, account: AccountId, holder: &str) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            "DELETE FROM maildrop_locks WHERE account_id = $1 AND holder = $2",
            &[&account, &holder],
        )
        .await?;
        Ok(())
    }
}

/// Renames a mailbox and its children; INBOX's messages move to a new mailbox instead.
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

/// The account of a mailbox, locking the mailbox row: every change to a mailbox's messages
/// takes that row (the counters' trigger does), so taking it first keeps one lock order.
pub(crate) async fn mailbox_account(tx: &Tx<'_>, mailbox: MailboxId) -> Result<AccountId> {
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
pub(crate) async fn allocate_uid(tx: &Tx<'_>, mailbox: MailboxId) -> Result<(u32, i64)> {
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

/// Takes the next MODSEQ of a mailbox (locking it until commit).
pub(crate) async fn bump_modseq(tx: &Tx<'_>, mailbox: MailboxId) -> Result<i64> {
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
pub(crate) async fn next_uid_validity(tx: &Tx<'_>) -> Result<i64> {
    let last: i64 = query_one(
        tx,
        "SELECT COALESCE(MAX(uidvalidity), 0) FROM mailboxes",
        &[],
    )
    .await?
    .get(0);
    Ok(uid_validity_after(last) as i64)
}
