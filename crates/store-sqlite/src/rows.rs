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

/// The columns [`queue_entry`] reads, first in a row.
pub(crate) const QUEUE_COLUMNS: &str =
    "q.id, q.sender, q.size, q.created, q.expires, q.envid, q.ret, q.smtputf8";

/// The columns [`queue_recipient`] reads, right after [`QUEUE_COLUMNS`].
pub(crate) const RECIPIENT_COLUMNS: &str =
    "r.address, r.notify, r.orcpt, r.status, r.attempts, r.next_attempt, r.last_error";

/// A queued message's envelope and size from a row that starts with [`QUEUE_COLUMNS`], with
/// `recipients`.
pub(crate) fn queue_entry(
    row: &rusqlite::Row<'_>,
    recipients: Vec<Recipient>,
) -> Result<QueueEntry> {
    let ret: Option<String> = row.get(6).map_err(backend)?;
    Ok(QueueEntry {
        id: row.get(0).map_err(backend)?,
        envelope: Envelope {
            sender: row.get(1).map_err(backend)?,
            created: row.get(3).map_err(backend)?,
            expires: row.get(4).map_err(backend)?,
            envid: row.get(5).map_err(backend)?,
            ret: ret.as_deref().and_then(Ret::parse),
            smtputf8: row.get(7).map_err(backend)?,
        },
        size: row.get::<_, i64>(2).map_err(backend)? as u64,
        recipients,
    })
}

/// A queued recipient from a row with [`RECIPIENT_COLUMNS`] after [`QUEUE_COLUMNS`].
pub(crate) fn queue_recipient(row: &rusqlite::Row<'_>) -> Result<Recipient> {
    let status: String = row.get(11).map_err(backend)?;
    Ok(Recipient {
        address: row.get(8).map_err(backend)?,
        notify: row.get(9).map_err(backend)?,
        orcpt: row.get(10).map_err(backend)?,
        status: RecipientStatus::parse(&status).unwrap_or(RecipientStatus::Pending),
        attempts: row.get(12).map_err(backend)?,
        next_attempt: row.get(13).map_err(backend)?,
        last_error: row.get(14).map_err(backend)?,
    })
}
