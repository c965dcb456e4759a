//! Full-text search: the FTS5 trigram index, plus the texts still waiting for the indexer.

use super::*;

/// UIDs of `mailbox`'s messages whose decoded text in `scope` contains `needle`,
/// case-insensitively, ascending ([`store::MessageStore::search_text`]).
pub(crate) fn search_text(
    conn: &Connection,
    mailbox: MailboxId,
    needle: &str,
    scope: TextScope,
) -> Result<Vec<u32>> {
    // The trigram index answers MATCH for needles of three characters or more; shorter
    // ones use LIKE, which the trigram table also serves (by scanning).
    let (condition, pattern) = if needle.chars().count() >= 3 {
        let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
        let query = match scope {
            TextScope::Headers => format!("headers : {phrase}"),
            TextScope::Body => format!("body : {phrase}"),
            TextScope::All => format!("{{headers body}} : {phrase}"),
        };
        ("search MATCH ?2", query)
    } else {
        let like = format!(
            "%{}%",
            needle
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let condition = match scope {
            TextScope::Headers => "s.headers LIKE ?2 ESCAPE '\\'",
            TextScope::Body => "s.body LIKE ?2 ESCAPE '\\'",
            TextScope::All => "(s.headers LIKE ?2 ESCAPE '\\' OR s.body LIKE ?2 ESCAPE '\\')",
        };
        (condition, like)
    };
    let sql = format!(
        "SELECT m.uid FROM search s JOIN messages m ON m.blob_id = s.blob_id \
         WHERE m.mailbox_id = ?1 AND {condition} ORDER BY m.uid"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(params![mailbox, pattern], |r| r.get(0))
        .map_err(backend)?;
    let mut uids: Vec<u32> = rows.collect::<rusqlite::Result<_>>().map_err(backend)?;
    // Texts not indexed yet (the indexer runs when the writer is idle) are matched
    // here, so a search never misses fresh mail.
    // They are read only as far as the index will read them, so a result does not
    // change when the message is indexed.
    let lower = needle.to_lowercase();
    let mut pending = conn
        .prepare_cached(
            "SELECT m.uid, b.rowid FROM index_queue q CROSS JOIN messages m ON m.blob_id = q.blob_id \
             CROSS JOIN blobs b ON b.id = q.blob_id WHERE m.mailbox_id = ?1",
        )
        .map_err(backend)?;
    let rows: Vec<(u32, i64)> = pending
        .query_map([mailbox], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(backend)?;
    for (uid, rowid) in rows {
        let prefix = indexer::read_prefix(conn, rowid).map_err(backend)?;
        // One the indexer will give up on is not found once it has.
        let Ok((headers, body)) = store::index::texts(&prefix) else {
            continue;
        };
        let hit = |text: &str| store::index::matches(text, &lower);
        let matched = match scope {
            TextScope::Headers => hit(&headers),
            TextScope::Body => hit(&body),
            TextScope::All => hit(&headers) || hit(&body),
        };
        if matched {
            uids.push(uid);
        }
    }
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}
