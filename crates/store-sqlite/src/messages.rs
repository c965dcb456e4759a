//! Messages in mailboxes: delivery, reading, flags, expunge, copy and move, search.

use super::*;
use crate::mailboxes::{allocate_uid, bump_modseq, mailbox_account};
use crate::rows::message_flags_row;

#[async_trait]
impl store::MessageStore for SqliteStore {
    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<Message>> {
        self.messages_after(mailbox, 0).await
    }

    async fn messages_after(&self, mailbox: MailboxId, after: u32) -> Result<Vec<Message>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq, flags, keywords, internal_date, size, blob_id, crlf_size \
                     FROM messages WHERE mailbox_id = ?1 AND uid > ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, after], |r| {
                    let keywords: String = r.get(3)?;
                    Ok(Message {
                        mailbox_id: mailbox,
                        uid: r.get(0)?,
                        modseq: r.get::<_, i64>(1)? as u64,
                        flags: r.get(2)?,
                        keywords: parse_keywords(&keywords),
                        internal_date: r.get(4)?,
                        size: r.get::<_, i64>(5)? as u64,
                        blob_id: r.get(6)?,
                        crlf_size: r.get::<_, i64>(7)? as u64,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }

    async fn message_flags(&self, mailbox: MailboxId, after: u32) -> Result<Vec<MessageFlags>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq, flags, keywords, internal_date, size \
                     FROM messages WHERE mailbox_id = ?1 AND uid > ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, after], message_flags_row)
                .map_err(backend)?;
            let mut rows = rows
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(backend)?;
            // An IMAP session keeps this list while the mailbox is selected; drop the
            // doubling slack (up to half of it) rather than hold it for hours.
            rows.shrink_to_fit();
            Ok(rows)
        })
        .await
    }

    async fn message_meta_normalised(
        &self,
        mailbox: MailboxId,
        uids: UidSet,
    ) -> Result<Vec<MessageFlags>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid, modseq, flags, keywords, internal_date, size \
                     FROM messages WHERE mailbox_id = ?1 AND uid = ?2",
                )
                .map_err(backend)?;
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                let row = stmt
                    .query_row(params![mailbox, uid], message_flags_row)
                    .optional()
                    .map_err(backend)?;
                out.extend(row);
            }
            Ok(out)
        })
        .await
    }

    async fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<u8>> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id \
                 WHERE m.mailbox_id = ?1 AND m.uid = ?2",
            )
            .and_then(|mut s| s.query_row(params![mailbox, uid], |r| r.get(0)).optional())
            .map_err(backend)?
            .ok_or_else(|| StoreError::NotFound(format!("message {uid}")))
        })
        .await
    }

    async fn deliver_normalised(&self, delivery: Delivery) -> Result<Vec<Delivered>> {
        let Delivery {
            data,
            recipients,
            internal_date,
            summary,
        } = delivery;
        // Hashing happens here, on the caller's task, so the writer thread only writes.
        let blob_id = sha256_hex(&data);
        let size = data.len() as i64;
        let crlf_size = store::crlf_size(&data) as i64;
        let delivered = self
            .write_growing(size as u64, move |conn| {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![blob_id, data, size]))
                .map_err(backend)?;
                if let Some(summary) = &summary {
                    put_summary(conn, &blob_id, summary)?;
                }
                let mut delivered = Vec::with_capacity(recipients.len());
                for account in recipients {
                    let (mailbox, uid, modseq): (i64, u32, i64) = conn
                        .prepare_cached(
                            "UPDATE mailboxes SET uidnext = uidnext + 1, \
                             highestmodseq = highestmodseq + 1 \
                             WHERE account_id = ?1 AND name = 'INBOX' \
                             RETURNING id, uidnext - 1, highestmodseq",
                        )
                        .and_then(|mut s| {
                            s.query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        })
                        .optional()
                        .map_err(backend)?
                        .ok_or_else(|| StoreError::NotFound(format!("INBOX of account {account}")))?;
                    conn.prepare_cached(
                        "INSERT INTO messages (mailbox_id, uid, blob_id, modseq, internal_date, size, crlf_size) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![mailbox, uid, blob_id, modseq, internal_date, size, crlf_size])
                    })
                    .map_err(backend)?;
                    delivered.push((account, mailbox, uid, modseq));
                }
                Ok(delivered)
            })
            .await?;
        Ok(delivered
            .into_iter()
            .map(|(account_id, mailbox_id, uid, modseq)| {
                self.notifier.publish(
                    account_id,
                    Change::MessageAdded {
                        mailbox_id,
                        uid,
                        modseq: modseq as u64,
                    },
                );
                Delivered {
                    account_id,
                    mailbox_id,
                    uid,
                }
            })
            .collect())
    }

    async fn expunge_normalised(&self, mailbox: MailboxId, uids: UidSet) -> Result<Vec<u32>> {
        let (account, removed, modseq) = self
            .write(move |conn| {
                let account: AccountId = conn
                    .query_row("SELECT account_id FROM mailboxes WHERE id = ?1", [mailbox], |r| r.get(0))
                    .optional()
                    .map_err(backend)?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let modseq: i64 = conn
                    .prepare_cached(
                        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?1 \
                         RETURNING highestmodseq",
                    )
                    .and_then(|mut s| s.query_row([mailbox], |r| r.get(0)))
                    .map_err(backend)?;
                let mut removed = Vec::new();
                let mut blobs = Vec::new();
                for uid in uids {
                    let blob: Option<String> = conn
                        .prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2 RETURNING blob_id")
                        .and_then(|mut s| s.query_row(params![mailbox, uid], |r| r.get(0)).optional())
                        .map_err(backend)?;
                    if let Some(blob) = blob {
                        blobs.push(blob);
                        conn.prepare_cached(
                            "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)",
                        )
                        .and_then(|mut s| s.execute(params![mailbox, uid, modseq]))
                        .map_err(backend)?;
                        removed.push(uid);
                    }
                }
                if removed.is_empty() {
                    // Nothing changed: give the MODSEQ back so it does not move for nothing.
                    conn.execute("UPDATE mailboxes SET highestmodseq = highestmodseq - 1 WHERE id = ?1", [mailbox])
                        .map_err(backend)?;
                }
                blobs.sort_unstable();
                blobs.dedup();
                for blob in blobs {
                    drop_blob_if_unreferenced(conn, &blob).map_err(backend)?;
                }
                Ok((account, removed, modseq as u64))
            })
            .await?;
        if !removed.is_empty() {
            self.notifier.publish(
                account,
                Change::Expunged {
                    mailbox_id: mailbox,
                    uids: removed.clone(),
                    modseq,
                },
            );
        }
        Ok(removed)
    }

    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>> {
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT uid FROM expunged WHERE mailbox_id = ?1 AND modseq > ?2 ORDER BY uid",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![mailbox, modseq as i64], |r| r.get(0))
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<u32>>>()
                .map_err(backend)
        })
        .await
    }

    async fn store_flags_normalised(
        &self,
        mailbox: MailboxId,
        uids: UidSet,
        mode: FlagMode,
        flags: u32,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<FlagsUpdated>, Vec<u32>)> {
        let keywords = keywords.to_vec();
        let (account, updated, failed) = self
            .write(move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                let mut updated = Vec::new();
                let mut failed = Vec::new();
                for uid in uids {
                    let row: Option<(u32, String, i64)> = conn
                        .prepare_cached("SELECT flags, keywords, modseq FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                        .and_then(|mut s| s.query_row(params![mailbox, uid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                        .map_err(backend)?;
                    let Some((old_flags, old_keywords, modseq)) = row else { continue };
                    if unchanged_since.is_some_and(|since| modseq as u64 > since) {
                        failed.push(uid);
                        continue;
                    }
                    let old_keywords = parse_keywords(&old_keywords);
                    let (new_flags, new_keywords) =
                        apply_flags(old_flags, &old_keywords, mode, flags, &keywords);
                    if new_flags == old_flags && new_keywords == old_keywords {
                        continue;
                    }
                    let modseq = bump_modseq(conn, mailbox)?;
                    conn.prepare_cached("UPDATE messages SET flags = ?1, keywords = ?2, modseq = ?3 WHERE mailbox_id = ?4 AND uid = ?5")
                        .and_then(|mut s| s.execute(params![new_flags, new_keywords.join(" "), modseq, mailbox, uid]))
                        .map_err(backend)?;
                    updated.push(FlagsUpdated {
                        uid,
                        modseq: modseq as u64,
                        flags: new_flags,
                        keywords: new_keywords,
                    });
                }
                Ok((account, updated, failed))
            })
            .await?;
        for u in &updated {
            self.notifier.publish(
                account,
                Change::FlagsChanged {
                    mailbox_id: mailbox,
                    uid: u.uid,
                    modseq: u.modseq,
                    flags: u.flags,
                    keywords: u.keywords.clone(),
                },
            );
        }
        Ok((updated, failed))
    }

    async fn append(
        &self,
        mailbox: MailboxId,
        data: Vec<u8>,
        flags: u32,
        keywords: Vec<String>,
        internal_date: i64,
        summary: Option<MessageSummary>,
    ) -> Result<u32> {
        let blob_id = sha256_hex(&data);
        let size = data.len() as i64;
        let crlf_size = store::crlf_size(&data) as i64;
        let (account, uid, modseq) = self
            .write_growing(size as u64, move |conn| {
                let account = mailbox_account(conn, mailbox)?;
                conn.prepare_cached("INSERT OR IGNORE INTO blobs (id, data, size) VALUES (?1, ?2, ?3)")
                    .and_then(|mut s| s.execute(params![blob_id, data, size]))
                    .map_err(backend)?;
                if let Some(summary) = &summary {
                    put_summary(conn, &blob_id, summary)?;
                }
                let (uid, modseq) = allocate_uid(conn, mailbox)?;
                conn.prepare_cached(
                    "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, internal_date, size, crlf_size) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| s.execute(params![mailbox, uid, blob_id, flags, keywords.join(" "), modseq, internal_date, size, crlf_size]))
                .map_err(backend)?;
                Ok((account, uid, modseq))
            })
            .await?;
        self.notifier.publish(
            account,
            Change::MessageAdded {
                mailbox_id: mailbox,
                uid,
                modseq: modseq as u64,
            },
        );
        Ok(uid)
    }

    async fn summaries(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<Vec<(u32, MessageSummary)>> {
        let uids = uids.to_vec();
        self.read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT s.envelope, s.body_structure, s.body, s.header FROM messages m \
                     JOIN summaries s ON s.blob_id = m.blob_id WHERE m.mailbox_id = ?1 AND m.uid = ?2",
                )
                .map_err(backend)?;
            let mut out = Vec::with_capacity(uids.len());
            for uid in uids {
                let row = stmt
                    .query_row(params![mailbox, uid], |r| {
                        Ok(MessageSummary {
                            envelope: r.get(0)?,
                            body_structure: r.get(1)?,
                            body: r.get(2)?,
                            header: r.get(3)?,
                        })
                    })
                    .optional()
                    .map_err(backend)?;
                if let Some(summary) = row {
                    out.push((uid, summary));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn search_text(
        &self,
        mailbox: MailboxId,
        needle: &str,
        scope: TextScope,
    ) -> Result<Vec<u32>> {
        let needle = needle.to_owned();
        self.read(move |conn| search::search_text(conn, mailbox, &needle, scope))
            .await
    }

    async fn copy_normalised(
        &self,
        from: MailboxId,
        uids: UidSet,
        to: MailboxId,
        move_them: bool,
    ) -> Result<Vec<(u32, u32)>> {
        let (account, pairs, added, expunge_modseq) = self
            .write(move |conn| {
                let account = mailbox_account(conn, from)?;
                if mailbox_account(conn, to)? != account {
                    return Err(StoreError::Invalid("copy across accounts".into()));
                }
                let mut pairs = Vec::new();
                let mut added = Vec::new();
                for uid in uids {
                    let row: Option<(String, u32, String, i64, i64, i64)> = conn
                        .prepare_cached(
                            "SELECT blob_id, flags, keywords, internal_date, size, crlf_size FROM messages \
                             WHERE mailbox_id = ?1 AND uid = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![from, uid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                                .optional()
                        })
                        .map_err(backend)?;
                    let Some((blob, flags, keywords, date, size, crlf_size)) = row else { continue };
                    let (new_uid, modseq) = allocate_uid(conn, to)?;
                    conn.prepare_cached(
                        "INSERT INTO messages (mailbox_id, uid, blob_id, flags, keywords, modseq, internal_date, size, crlf_size) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )
                    .and_then(|mut s| s.execute(params![to, new_uid, blob, flags, keywords, modseq, date, size, crlf_size]))
                    .map_err(backend)?;
                    pairs.push((uid, new_uid));
                    added.push((new_uid, modseq as u64));
                }
                let mut expunge_modseq = None;
                if move_them && !pairs.is_empty() {
                    let modseq = bump_modseq(conn, from)?;
                    for (uid, _) in &pairs {
                        conn.prepare_cached("DELETE FROM messages WHERE mailbox_id = ?1 AND uid = ?2")
                            .and_then(|mut s| s.execute(params![from, uid]))
                            .map_err(backend)?;
                        conn.prepare_cached("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?1, ?2, ?3)")
                            .and_then(|mut s| s.execute(params![from, uid, modseq]))
                            .map_err(backend)?;
                    }
                    expunge_modseq = Some(modseq as u64);
                }
                Ok((account, pairs, added, expunge_modseq))
            })
            .await?;
        for (uid, modseq) in added {
            self.notifier.publish(
                account,
                Change::MessageAdded {
                    mailbox_id: to,
                    uid,
                    modseq,
                },
            );
        }
        if let Some(modseq) = expunge_modseq {
            self.notifier.publish(
                account,
                Change::Expunged {
                    mailbox_id: from,
                    uids: pairs.iter().map(|p| p.0).collect(),
                    modseq,
                },
            );
        }
        Ok(pairs)
    }
}

/// Stores a blob's summary and indexes its text, once per blob.
pub(crate) fn put_summary(
    conn: &Connection,
    blob_id: &str,
    summary: &MessageSummary,
) -> Result<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO summaries (blob_id, envelope, body_structure, body, header) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| {
            s.execute(params![
                blob_id,
                summary.envelope,
                summary.body_structure,
                summary.body,
                summary.header
            ])
        })
        .map_err(backend)?;
    if inserted > 0 {
        conn.prepare_cached("INSERT OR IGNORE INTO index_queue (blob_id) VALUES (?1)")
            .and_then(|mut s| s.execute([blob_id]))
            .map_err(backend)?;
    }
    Ok(())
}

/// Removes the summary of a blob that is gone; its index entry goes to `search_trash`, for
/// the indexer to delete when the writer is idle (deleting a text from the index writes much
/// more than the delete itself, so EXPUNGE stays quick and works on a full disk). Searches
/// never see it: they join the index with the messages.
pub(crate) fn drop_summary(conn: &Connection, blob_id: &str) -> rusqlite::Result<()> {
    let rowid: Option<Option<i64>> = conn
        .prepare_cached("DELETE FROM summaries WHERE blob_id = ?1 RETURNING search_rowid")?
        .query_row([blob_id], |r| r.get(0))
        .optional()?;
    if let Some(Some(rowid)) = rowid {
        conn.prepare_cached("INSERT OR IGNORE INTO search_trash (search_rowid) VALUES (?1)")?
            .execute([rowid])?;
    }
    conn.prepare_cached("DELETE FROM index_queue WHERE blob_id = ?1")?
        .execute([blob_id])?;
    conn.prepare_cached("DELETE FROM index_failures WHERE blob_id = ?1")?
        .execute([blob_id])?;
    Ok(())
}

/// Deletes the blob `id` if no message or queue entry references it any more. Used on the
/// hot path (expunge), where scanning every blob would stall the writer.
pub(crate) fn drop_blob_if_unreferenced(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    let deleted = conn
        .prepare_cached(
            "DELETE FROM blobs WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?1) \
             AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = ?1)",
        )?
        .execute([id])?;
    if deleted > 0 {
        drop_summary(conn, id)?;
    }
    Ok(())
}

/// Deletes every blob that no message or queue entry references any more (after deleting a
/// whole account or mailbox; a full scan).
pub(crate) fn collect_garbage(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = blobs.id) \
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = blobs.id)",
        [],
    )?;
    conn.execute(
        "DELETE FROM summaries WHERE blob_id NOT IN (SELECT id FROM blobs)",
        [],
    )?;
    conn.execute(
        "DELETE FROM index_failures WHERE blob_id NOT IN (SELECT id FROM blobs)",
        [],
    )?;
    conn.execute(
        "INSERT OR IGNORE INTO search_trash (search_rowid) SELECT rowid FROM search \
         WHERE rowid NOT IN (SELECT search_rowid FROM summaries WHERE search_rowid IS NOT NULL)",
        [],
    )?;
    Ok(())
}
