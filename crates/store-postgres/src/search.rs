//! Full-text search (IMAP SEARCH BODY/TEXT): the trigram-indexed `search` table and `index_queue`.

use store::{MailboxId, Result, TextScope};

use crate::pool::{backend, query};

/// UIDs of the messages of `mailbox` whose text contains `needle` (see
/// `MessageStore::search_text`): the indexed texts, and those still queued for the indexer.
pub(crate) async fn search_text(
    mut client: deadpool_postgres::Client,
    mailbox: MailboxId,
    needle: &str,
    scope: TextScope,
) -> Result<Vec<u32>> {
    let pattern = like_pattern(needle);
    // ILIKE on a trigram-indexed column: the index finds candidates for needles of three
    // characters or more; shorter needles scan.
    let condition = match scope {
        TextScope::Headers => "s.headers ILIKE $2",
        TextScope::Body => "s.body ILIKE $2",
        TextScope::All => "(s.headers ILIKE $2 OR s.body ILIKE $2)",
    };
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
                    let Ok((headers, body)) = store::index::texts(row.get::<_, &[u8]>(1)) else {
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

/// An ILIKE pattern that matches `needle` anywhere, its wildcards and escapes taken literally.
fn like_pattern(needle: &str) -> String {
    format!(
        "%{}%",
        without_nul(needle.to_owned())
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// PostgreSQL text cannot hold NUL.
pub(crate) fn without_nul(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_needle_is_matched_literally() {
        assert_eq!(like_pattern("needle"), "%needle%");
        assert_eq!(like_pattern("50%_off"), "%50\\%\\_off%");
        assert_eq!(like_pattern("a\\b"), "%a\\\\b%");
        assert_eq!(
            like_pattern("nul\0here"),
            "%nulhere%",
            "PostgreSQL text holds no NUL"
        );
    }
}
