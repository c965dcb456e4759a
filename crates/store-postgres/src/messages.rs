//! Messages in mailboxes: delivery, reading, flags, expunge, copy and move, search.

use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use store::rules::{UidSet, apply_flags, parse_keywords, sha256_hex};
use store::{
    AccountId, Change, Delivered, Delivery, FlagMode, FlagsUpdated, MailboxId, Message,
    MessageFlags, MessageSummary, Result, StoreError, TextScope,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::indexer::Activity;
use crate::mailboxes::{allocate_uid, bump_modseq, mailbox_account};
use crate::notes::{Note, notify};
use crate::pool::{PoolHandle, Tx, backend, execute, query, query_opt, transaction};
use crate::rows::{message_flags_row, message_row};
use crate::{PostgresStore, search};

#[async_trait]
impl store::MessageStore for PostgresStore {
    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<Message>> {
        self.messages_after(mailbox, 0).await
    }

    async fn messages_after(&self, mailbox: MailboxId, after: u32) -> Result<Vec<Message>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT uid, modseq, flags, keywords, internal_date, size, blob_id, crlf_size \
             FROM messages WHERE mailbox_id = $1 AND uid > $2 ORDER BY uid",
            &[&mailbox, &(after as i64)],
        )
        .await?;
        Ok(rows.iter().map(|r| message_row(mailbox, r)).collect())
    }

    async fn message_flags(&self, mailbox: MailboxId, after: u32) -> Result<Vec<MessageFlags>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT uid, modseq, flags, keywords, internal_date, size \
             FROM messages WHERE mailbox_id = $1 AND uid > $2 ORDER BY uid",
            &[&mailbox, &(after as i64)],
        )
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        out.extend(rows.iter().map(message_flags_row));
        Ok(out)
    }

    async fn message_meta_normalised(
        &self,
        mailbox: MailboxId,
        uids: UidSet,
    ) -> Result<Vec<MessageFlags>> {
        let client = self.client().await?;
        let uid_list: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
        let rows = query(
            &client,
            "SELECT uid, modseq, flags, keywords, internal_date, size FROM messages \
             WHERE mailbox_id = $1 AND uid = ANY($2) ORDER BY uid",
            &[&mailbox, &uid_list],
        )
        .await?;
        Ok(rows.iter().map(message_flags_row).collect())
    }

    async fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<u8>> {
        let client = self.client().await?;
        query_opt(
            &client,
            "SELECT b.data FROM messages m JOIN blobs b ON b.id = m.blob_id \
             WHERE m.mailbox_id = $1 AND m.uid = $2",
            &[&mailbox, &(uid as i64)],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NotFound(format!("message {uid}")))
    }

    async fn deliver_normalised(&self, delivery: Delivery) -> Result<Vec<Delivered>> {
        let Delivery {
            data,
            recipients,
            internal_date,
            summary,
        } = delivery;
        let blob = tokio::task::spawn_blocking(move || Blob::new(data))
            .await
            .map_err(backend)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let writer = recipients.first().copied().unwrap_or(0) as usize % DELIVERY_WRITERS;
        self.deliveries[writer]
            .send(DeliverJob {
                blob,
                summary,
                recipients,
                internal_date,
                reply,
            })
            .map_err(|_| StoreError::Backend("the delivery writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the delivery writer dropped a delivery".into()))?
    }

    async fn expunge_normalised(&self, mailbox: MailboxId, uids: UidSet) -> Result<Vec<u32>> {
        transaction!(self, |tx| expunge_tx(tx, mailbox, &uids))
    }

    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
            &[&mailbox, &(modseq as i64)],
        )
        .await?;
        Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u32).collect())
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
        transaction!(self, |tx| store_flags_tx(
            tx,
            mailbox,
            &uids,
            mode,
            flags,
            keywords,
            unchanged_since
        ))
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
        let blob = tokio::task::spawn_blocking(move || Blob::new(data))
            .await
            .map_err(backend)?;
        let keywords = keywords.join(" ");
        transaction!(self, |tx| append_tx(
            tx,
            mailbox,
            &blob,
            flags,
            &keywords,
            internal_date,
            summary.as_ref()
        ))
    }

    async fn summaries(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<Vec<(u32, MessageSummary)>> {
        let client = self.client().await?;
        let uid_list: Vec<i64> = uids.iter().map(|&u| u as i64).collect();
        let rows = query(
            &client,
            "SELECT m.uid, s.envelope, s.body_structure, s.body, s.header FROM messages m \
             JOIN summaries s ON s.blob_id = m.blob_id WHERE m.mailbox_id = $1 AND m.uid = ANY($2)",
            &[&mailbox, &uid_list],
        )
        .await?;
        let mut found: Vec<(u32, MessageSummary)> = rows
            .into_iter()
            .map(|r| {
                (
                    r.get::<_, i64>(0) as u32,
                    MessageSummary {
                        envelope: r.get(1),
                        body_structure: r.get(2),
                        body: r.get(3),
                        header: r.get(4),
                    },
                )
            })
            .collect();
        // In the order asked for.
        let position = |uid: u32| uids.iter().position(|&u| u == uid).unwrap_or(usize::MAX);
        found.sort_by_key(|f| position(f.0));
        Ok(found)
    }

    async fn search_text(
        &self,
        mailbox: MailboxId,
        needle: &str,
        scope: TextScope,
    ) -> Result<Vec<u32>> {
        search::search_text(self.client().await?, mailbox, needle, scope).await
    }

    async fn copy_normalised(
        &self,
        from: MailboxId,
        uids: UidSet,
        to: MailboxId,
        move_them: bool,
    ) -> Result<Vec<(u32, u32)>> {
        transaction!(self, |tx| copy_tx(tx, from, &uids, to, move_them))
    }
}

/// A delivery waiting for its node's delivery writer.
pub(crate) struct DeliverJob {
    blob: Blob,
    summary: Option<MessageSummary>,
    /// Sorted, without duplicates.
    recipients: Vec<AccountId>,
    internal_date: i64,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Delivered>>>,
}

/// Delivery writers per node. Deliveries are spread by first recipient, so single-recipient
/// mail to one account always meets the same writer and rarely waits on its INBOX lock.
pub(crate) const DELIVERY_WRITERS: usize = 4;
/// Most deliveries committed together.
const MAX_DELIVERY_BATCH: usize = 64;

/// Group commit: takes every delivery waiting and commits them in one transaction (one WAL
/// flush, and the INBOX locks held for one commit instead of one each). If a batch fails, its
/// deliveries run again one by one, so one bad message cannot fail the others.
pub(crate) async fn delivery_writer(
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

/// Takes a UID in the recipient's INBOX and adds the message there, in one round trip.
const DELIVER_ONE: &str = "WITH m AS (UPDATE mailboxes SET uidnext = uidnext + 1, \
     highestmodseq = highestmodseq + 1 WHERE account_id = $1 AND name = 'INBOX' \
     RETURNING id, uidnext - 1 AS uid, highestmodseq) \
     INSERT INTO messages (mailbox_id, uid, blob_id, modseq, internal_date, size, crlf_size) \
     SELECT id, uid, $2, highestmodseq, $3, $4, $5 FROM m RETURNING mailbox_id, uid, modseq";

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

/// What a message's bytes become in the store, computed before the transaction.
pub(crate) struct Blob {
    pub(crate) id: String,
    data: Vec<u8>,
    pub(crate) size: i64,
    pub(crate) crlf_size: i64,
}

impl Blob {
    pub(crate) fn new(data: Vec<u8>) -> Blob {
        Blob {
            id: sha256_hex(&data),
            size: data.len() as i64,
            crlf_size: store::crlf_size(&data) as i64,
            data,
        }
    }
}

/// Stores a blob (once), its summary and its text.
pub(crate) async fn put_blob(
    tx: &Tx<'_>,
    blob: &Blob,
    summary: Option<&MessageSummary>,
) -> Result<()> {
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

/// A message row, as [`insert_message`] writes it.
pub(crate) struct NewMessage<'a> {
    pub(crate) uid: u32,
    pub(crate) blob: &'a str,
    pub(crate) flags: u32,
    pub(crate) keywords: &'a str,
    pub(crate) modseq: i64,
    pub(crate) date: i64,
    pub(crate) size: i64,
    pub(crate) crlf_size: i64,
}

pub(crate) async fn insert_message(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    m: NewMessage<'_>,
) -> Result<()> {
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
pub(crate) async fn record_expunged(
    tx: &Tx<'_>,
    mailbox: MailboxId,
    removed: &[(u32, i64)],
) -> Result<()> {
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

/// Deletes the blobs `ids` that no message or queue entry references any more (their
/// summaries and texts go with them).
pub(crate) async fn drop_blobs_if_unreferenced(tx: &Tx<'_>, ids: &[String]) -> Result<()> {
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
pub(crate) async fn collect_garbage(tx: &Tx<'_>) -> Result<()> {
    execute(
        tx,
        "DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = blobs.id) \
         AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = blobs.id)",
        &[],
    )
    .await?;
    Ok(())
}
