//! Rows into values: the conversions and column lists the read paths share.

use store::rules::parse_keywords;
use store::{
    Account, DkimKey, Envelope, Mailbox, MailboxId, Message, MessageFlags, QueueEntry, Recipient,
    RecipientStatus, Ret, SpecialUse,
};
use tokio_postgres::Row;

/// The columns [`mailbox_from_row`] reads, of `mailboxes m`.
pub(crate) const MAILBOX_COLUMNS: &str = "m.id, m.account_id, m.name, m.special_use, \
     m.uidvalidity, m.uidnext, m.highestmodseq, m.subscribed, m.total, m.unseen, m.deleted, \
     m.total_size";

/// A [`Mailbox`] from [`MAILBOX_COLUMNS`].
pub(crate) fn mailbox_from_row(row: &Row) -> Mailbox {
    let special: Option<String> = row.get(3);
    Mailbox {
        id: row.get(0),
        account_id: row.get(1),
        name: row.get(2),
        special_use: special.as_deref().and_then(SpecialUse::from_attribute),
        uid_validity: row.get::<_, i64>(4) as u32,
        uid_next: row.get::<_, i64>(5) as u32,
        highest_modseq: row.get::<_, i64>(6) as u64,
        subscribed: row.get(7),
        messages: row.get::<_, i64>(8) as u32,
        unseen: row.get::<_, i64>(9) as u32,
        deleted: row.get::<_, i64>(10) as u32,
        size: row.get::<_, i64>(11) as u64,
    }
}

/// An [`Account`] from `id, address, created`.
pub(crate) fn account_row(r: &Row) -> Account {
    Account {
        id: r.get(0),
        address: r.get(1),
        created: r.get(2),
    }
}

/// A [`DkimKey`] from `domain, selector, algorithm, private_key, public_key, created`.
pub(crate) fn dkim_key_row(r: &Row) -> DkimKey {
    DkimKey {
        domain: r.get(0),
        selector: r.get(1),
        algorithm: r.get(2),
        private_key: r.get(3),
        public_key: r.get(4),
        created: r.get(5),
    }
}

/// A [`Message`] of `mailbox` from `uid, modseq, flags, keywords, internal_date, size, blob_id,
/// crlf_size`.
pub(crate) fn message_row(mailbox: MailboxId, r: &Row) -> Message {
    Message {
        mailbox_id: mailbox,
        uid: r.get::<_, i64>(0) as u32,
        modseq: r.get::<_, i64>(1) as u64,
        flags: r.get::<_, i32>(2) as u32,
        keywords: parse_keywords(r.get(3)),
        internal_date: r.get(4),
        size: r.get::<_, i64>(5) as u64,
        blob_id: r.get(6),
        crlf_size: r.get::<_, i64>(7) as u64,
    }
}

/// A [`MessageFlags`] from `uid, modseq, flags, keywords, internal_date, size`.
pub(crate) fn message_flags_row(r: &Row) -> MessageFlags {
    MessageFlags {
        uid: r.get::<_, i64>(0) as u32,
        modseq: r.get::<_, i64>(1) as u64,
        flags: r.get::<_, i32>(2) as u32,
        keywords: parse_keywords(r.get(3)),
        internal_date: r.get(4),
        size: r.get::<_, i64>(5) as u64,
    }
}

/// A [`QueueEntry`] from a queue row's `id, sender, size, created, expires, envid, ret,
/// smtputf8`, with `recipients`.
pub(crate) fn queue_entry(row: &Row, recipients: Vec<Recipient>) -> QueueEntry {
    let ret: Option<String> = row.get(6);
    QueueEntry {
        id: row.get(0),
        envelope: Envelope {
            sender: row.get(1),
            created: row.get(3),
            expires: row.get(4),
            envid: row.get(5),
            ret: ret.as_deref().and_then(Ret::parse),
            smtputf8: row.get(7),
        },
        size: row.get::<_, i64>(2) as u64,
        recipients,
    }
}

/// The columns [`queue_recipient`] reads, of `queue_recipients r`, from column `first`.
pub(crate) const RECIPIENT_COLUMNS: &str =
    "r.address, r.notify, r.orcpt, r.status, r.attempts, r.next_attempt, r.last_error";

/// A queued recipient from [`RECIPIENT_COLUMNS`], starting at column `first`.
pub(crate) fn queue_recipient(row: &Row, first: usize) -> Recipient {
    let status: &str = row.get(first + 3);
    Recipient {
        address: row.get(first),
        notify: row.get::<_, i16>(first + 1) as u8,
        orcpt: row.get(first + 2),
        status: RecipientStatus::parse(status).unwrap_or(RecipientStatus::Pending),
        attempts: row.get::<_, i32>(first + 4) as u32,
        next_attempt: row.get(first + 5),
        last_error: row.get(first + 6),
    }
}
