//! Mailboxes of an account, and the POP3 maildrop lock.

use super::*;

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

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        // RFC 9051 §5.1: INBOX is case-insensitive; other names are exact.
        let name = if name.eq_ignore_ascii_case("INBOX") {
            "INBOX"
        } else {
            name
        };
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

    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId> {
        valid_mailbox_name(name)?;
        if name.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::AlreadyExists("mailbox INBOX".into()));
        }
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

    async fn rename_mailbox(&self, mailbox: MailboxId, new_name: &str) -> Result<()> {
        valid_mailbox_name(new_name)?;
        if new_name.eq_ignore_ascii_case("INBOX") {
            return Err(StoreError::AlreadyExists("mailbox INBOX".into()));
        }
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
