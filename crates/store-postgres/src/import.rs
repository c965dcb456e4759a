//! Moving an installation between stores (`pigeon migrate`).

use async_trait::async_trait;
use store::rules::sha256_hex;
use store::{AccountId, Mailbox, MailboxId, QueueEntry, Result};

use crate::PostgresStore;
use crate::mailboxes::mailbox_account;
use crate::messages::{Blob, NewMessage, insert_message, put_blob, record_expunged};
use crate::notes::{Note, notify};
use crate::pool::{backend, execute, query, query_one, transaction};
use crate::queue::insert_queued;

#[async_trait]
impl store::MigrationStore for PostgresStore {
    async fn expunged_records(&self, mailbox: MailboxId) -> Result<Vec<(u32, u64)>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT uid, modseq FROM expunged WHERE mailbox_id = $1 ORDER BY uid",
            &[&mailbox],
        )
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as u32, r.get::<_, i64>(1) as u64))
            .collect())
    }

    async fn import_mailbox_normalised(
        &self,
        account: AccountId,
        mailbox: &Mailbox,
    ) -> Result<MailboxId> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, uidnext, \
             highestmodseq, subscribed) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (account_id, name) DO UPDATE SET special_use = EXCLUDED.special_use, \
             uidvalidity = EXCLUDED.uidvalidity, uidnext = EXCLUDED.uidnext, \
             highestmodseq = EXCLUDED.highestmodseq, subscribed = EXCLUDED.subscribed \
             RETURNING id",
            &[
                &account,
                &mailbox.name,
                &mailbox.special_use.map(|u| u.attribute()),
                &(mailbox.uid_validity as i64),
                &(mailbox.uid_next as i64),
                &(mailbox.highest_modseq as i64),
                &mailbox.subscribed,
            ],
        )
        .await?;
        Ok(row.get(0))
    }

    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<store::ImportedMessage>,
        expunged: Vec<(u32, u64)>,
    ) -> Result<()> {
        let prepared = tokio::task::spawn_blocking(move || {
            messages
                .into_iter()
                .map(|m| {
                    // As SQLite does: imported mail gets its summary, so FETCH never parses it.
                    let summary = m
                        .summary
                        .or_else(|| Some(message::summary::summarize(&m.data)));
                    (Blob::new(m.data), m.message, summary)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(backend)?;
        transaction!(self, |tx| async {
            mailbox_account(tx, mailbox).await?;
            for (blob, message, summary) in &prepared {
                put_blob(tx, blob, summary.as_ref()).await?;
                insert_message(
                    tx,
                    mailbox,
                    NewMessage {
                        uid: message.uid,
                        blob: &blob.id,
                        flags: message.flags,
                        keywords: &message.keywords.join(" "),
                        modseq: message.modseq as i64,
                        date: message.internal_date,
                        size: blob.size,
                        crlf_size: blob.crlf_size,
                    },
                )
                .await?;
            }
            let records: Vec<(u32, i64)> = expunged.iter().map(|&(u, m)| (u, m as i64)).collect();
            record_expunged(tx, mailbox, &records).await?;
            Ok(())
        })
    }

    async fn import_queued(&self, entry: QueueEntry, data: Vec<u8>) -> Result<i64> {
        let blob_id = sha256_hex(&data);
        transaction!(self, |tx| async {
            let id = insert_queued(tx, &blob_id, &data, &entry.envelope).await?;
            for r in &entry.recipients {
                execute(
                    tx,
                    "INSERT INTO queue_recipients (queue_id, address, status, attempts, \
                     next_attempt, last_error, notify, orcpt) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                    &[
                        &id,
                        &r.address,
                        &r.status.as_str(),
                        &(r.attempts as i32),
                        &r.next_attempt,
                        &r.last_error,
                        &(r.notify as i16),
                        &r.orcpt,
                    ],
                )
                .await?;
            }
            notify(tx, &[Note::Queue]).await?;
            Ok(id)
        })
    }
}
