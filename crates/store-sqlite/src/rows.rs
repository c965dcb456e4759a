//! Rows to values: the column lists and row conversions the concern files share.

use super::*;

pub(crate) fn special_use_name(usage: Option<SpecialUse>) -> Option<&'static str> {
    usage.map(|u| u.attribute())
}

pub(crate) fn mailbox_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Mailbox> {
    let special: Option<String> = row.get(3)?;
    Ok(Mailbox {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        special_use: special.as_deref().and_then(SpecialUse::from_attribute),
        uid_validity: row.get(4)?,
        uid_next: row.get(5)?,
        highest_modseq: row.get::<_, i64>(6)? as u64,
        subscribed: row.get(7)?,
        messages: row.get(8)?,
        unseen: row.get(9)?,
        deleted: row.get(10)?,
        size: row.get::<_, i64>(11)? as u64,
    })
}

/// A [`MessageFlags`] from `uid, modseq, flags, keywords, internal_date, size`.
pub(crate) fn message_flags_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageFlags> {
    // Borrowed: an empty keyword list (the common case) costs no allocation.
    let keywords = r.get_ref(3)?.as_str().unwrap_or("");
    Ok(MessageFlags {
        uid: r.get(0)?,
        modseq: r.get::<_, i64>(1)? as u64,
        flags: r.get(2)?,
        keywords: parse_keywords(keywords),
        internal_date: r.get(4)?,
        size: r.get::<_, i64>(5)? as u64,
    })
}

pub(crate) const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.name, m.special_use, m.uidvalidity, \
     m.uidnext, m.highestmodseq, m.subscribed, m.total, m.unseen, m.deleted, m.total_size";

/// A queued message's envelope from a row whose first columns are `q.id, q.sender, q.size,
/// q.created, q.expires, q.envid, q.ret, q.smtputf8`.
pub(crate) fn queue_job(
    row: &rusqlite::Row<'_>,
    recipients: Vec<JobRecipient>,
) -> Result<QueueJob> {
    let ret: Option<String> = row.get(6).map_err(backend)?;
    Ok(QueueJob {
        id: row.get(0).map_err(backend)?,
        sender: row.get(1).map_err(backend)?,
        size: row.get::<_, i64>(2).map_err(backend)? as u64,
        created: row.get(3).map_err(backend)?,
        expires: row.get(4).map_err(backend)?,
        envid: row.get(5).map_err(backend)?,
        ret: ret.as_deref().and_then(Ret::parse),
        smtputf8: row.get(7).map_err(backend)?,
        recipients,
    })
}
