//! Moving an installation between stores (`pigeon migrate`).

use super::*;
use crate::mailboxes::mailbox_account;
use crate::messages::put_summary;
use crate::queue::insert_queued;
use crate::rows::special_use_name;

#[async_trait]
impl store::MigrationStore for SqliteStore {
    async fn expunged_records(&self, mailbox: MailboxId) -> Result<Vec<(u32, u64)>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq FROM expunged WHERE mailbox_id = ?1 ORDER BY uid",
                )
                .map_err(backend)?;
            stmt.query_map([mailbox], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
                .and_then(|rows| rows.collect())
                .map_err(backend)
        })
        .await
    }

    async fn import_mailbox_normalised(
        &self,
        account: AccountId,
        mailbox: &Mailbox,
    ) -> Result<MailboxId> {
        let m = mailbox.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, uidnext, \
                 highestmodseq, subscribed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (account_id, name) DO UPDATE SET special_use = excluded.special_use, \
                 uidvalidity = excluded.uidvalidity, uidnext = excluded.uidnext, \
                 highestmodseq = excluded.highestmodseq, subscribed = excluded.subscribed",
                params![
                    account,
                    m.name,
                    special_use_name(m.special_use),
                    m.uid_validity,
                    m.uid_next,
                    m.highest_modseq as i64,
                    m.subscribed
                ],
            )
            .map_err(backend)?;
            conn.query_row(
                "SELECT id FROM mailboxes WHERE account_id = ?1 AND name = ?2",
                params![account, m.name],
                |r| r.get(0),
            )
            .map_err(backend)
        })
        .await
    }

    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<store::ImportedMessage>,
        expunged: Vec<(u32, u64)>,
    ) -> Result<()> {
        let rows: Vec<(String, i64, i64, store::ImportedMessage)> = messages
            .into_iter()
            .map(|mut m| {
                // The full-text index is built from summarised messages only.
                if m.summary.is_none() {
                    m.summary = Some(message::summary::summarize(&m.data));
                }
                (
                    sha256_hex(&m.data),
                    m.data.len() as i64,
                    store::crlf_size(&m.data) as i64,
                    m,
                )
            })
            .collect();
        let grows = rows.iter().map(|row| row.1 as u64).sum();
        self.write_growing(grows, move |conn| {
            mailbox_account(conn, mailbox)?;
            for (blob_id, size, crlf_size, m) in &rows {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![blob_id, m.data, size]))
                .map_err(backend)?;
                if let Some(summary) = &m.summary {
                    put_summary(conn, blob_id, summary)?;
                }
                let msg = &m.message;
                conn.prepare_cached(
                    "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, \
                     internal_date, size, crlf_size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        mailbox,
                        msg.uid,
                        blob_id,
                        msg.flags,
                        msg.keywords.join(" "),
                        msg.modseq as i64,
                        msg.internal_date,
                        size,
                        crlf_size
                    ])
                })
                .map_err(backend)?;
            }
            for (uid, modseq) in &expunged {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![mailbox, uid, *modseq as i64]))
                .map_err(backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn import_queued(&self, entry: QueueEntry, data: Vec<u8>) -> Result<i64> {
        let blob_id = sha256_hex(&data);
        self.write_growing(data.len() as u64, move |conn| {
            let id = insert_queued(conn, &blob_id, &data, &entry.envelope)?;
            for r in &entry.recipients {
                conn.execute(
                    "INSERT OR IGNORE INTO queue_recipients (queue_id, address, status, attempts, \
                     next_attempt, last_error, notify, orcpt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        id,
                        r.address,
                        r.status.as_str(),
                        r.attempts,
                        r.next_attempt,
                        r.last_error,
                        r.notify,
                        r.orcpt
                    ],
                )
                .map_err(backend)?;
            }
            Ok(id)
        })
        .await
    }
}
