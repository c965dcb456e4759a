//! Messages in mailboxes: delivery, reading, flags, expunge, copy and move, search.

use super::*;

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
        Ok(rows
            .iter()
            .map(|r| Message {
                mailbox_id: mailbox,
                uid: r.get::<_, i64>(0) as u32,
                modseq: r.get::<_, i64>(1) as u64,
                flags: r.get::<_, i32>(2) as u32,
                keywords: parse_keywords(r.get(3)),
                internal_date: r.get(4),
                size: r.get::<_, i64>(5) as u64,
                blob_id: r.get(6),
                crlf_size: r.get::<_, i64>(7) as u64,
            })
            .collect())
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

    async fn message_meta(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<MessageFlags>> {
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

    async fn deliver(&self, delivery: Delivery) -> Result<Vec<Delivered>> {
        let Delivery {
            data,
            mut recipients,
            internal_date,
            summary,
        } = delivery;
        recipients.sort_unstable();
        recipients.dedup();
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

    async fn expunge(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>> {
        transaction!(self, |tx| expunge_tx(tx, mailbox, uids))
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

    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        mode: FlagMode,
        flags: u32,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<FlagsUpdated>, Vec<u32>)> {
        transaction!(self, |tx| store_flags_tx(
            tx,
            mailbox,
            uids,
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
        let pattern = format!(
            "%{}%",
            without_nul(needle.to_owned())
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        // ILIKE on a trigram-indexed column: the index finds candidates for needles of three
        // characters or more; shorter needles scan.
        let condition = match scope {
            TextScope::Headers => "s.headers ILIKE $2",
            TextScope::Body => "s.body ILIKE $2",
            TextScope::All => "(s.headers ILIKE $2 OR s.body ILIKE $2)",
        };
        let mut client = self.client().await?;
        // One snapshot for both reads: a text an indexer moves from the queue to the index in
        // between would otherwise be in neither.
        let snapshot = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend)?;
        let rows = query(
            &snapshot,
            &format!(
                "SELECT m.uid FROM messages m JOIN search s ON s.blob_id = m.blob_id \
                 WHERE m.mailbox_id = $1 AND {condition} ORDER BY m.uid"
            ),
            &[&mailbox, &pattern],
        )
        .await?;
        let mut uids: Vec<u32> = rows.iter().map(|r| r.get::<_, i64>(0) as u32).collect();
        // Texts not indexed yet (indexers run when their node is idle) are matched here, so a
        // search never misses fresh mail.
        // They are read only as far as the index will read them, so a result does not change
        // when the message is indexed.
        let pending = query(
            &snapshot,
            "SELECT m.uid, substring(b.data FROM 1 FOR $2) FROM index_queue q \
             JOIN messages m ON m.blob_id = q.blob_id \
             JOIN blobs b ON b.id = q.blob_id WHERE m.mailbox_id = $1",
            &[&mailbox, &(store::index::READ_LIMIT as i32)],
        )
        .await?;
        snapshot.commit().await.map_err(backend)?;
        if !pending.is_empty() {
            let needle = needle.to_lowercase();
            let found = tokio::task::spawn_blocking(move || {
                pending
                    .iter()
                    .filter(|row| {
                        // One the indexer will give up on is not found once it has.
                        let Ok((headers, body)) = store::index::texts(row.get::<_, &[u8]>(1))
                        else {
                            return false;
                        };
                        let hit = |text: &str| store::index::matches(text, &needle);
                        match scope {
                            TextScope::Headers => hit(&headers),
                            TextScope::Body => hit(&body),
                            TextScope::All => hit(&headers) || hit(&body),
                        }
                    })
                    .map(|row| row.get::<_, i64>(0) as u32)
                    .collect::<Vec<u32>>()
            })
            .await
            .map_err(backend)?;
            uids.extend(found);
            uids.sort_unstable();
            uids.dedup();
        }
        Ok(uids)
    }

    async fn copy(
        &self,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
        move_them: bool,
    ) -> Result<Vec<(u32, u32)>> {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        transaction!(self, |tx| copy_tx(tx, from, &uids, to, move_them))
    }
}
