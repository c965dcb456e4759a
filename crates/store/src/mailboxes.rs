//! Mailboxes and their special uses.

use crate::{AccountId, MailboxId};

/// RFC 6154 special-use attributes of the default mailboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 5] = [
        SpecialUse::Sent,
        SpecialUse::Drafts,
        SpecialUse::Trash,
        SpecialUse::Junk,
        SpecialUse::Archive,
    ];

    /// The IMAP attribute, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Archive => "\\Archive",
        }
    }

    /// The name of the mailbox created for it with every account.
    pub fn default_name(self) -> &'static str {
        match self {
            SpecialUse::Sent => "Sent",
            SpecialUse::Drafts => "Drafts",
            SpecialUse::Trash => "Trash",
            SpecialUse::Junk => "Junk",
            SpecialUse::Archive => "Archive",
        }
    }

    pub fn from_attribute(s: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|u| u.attribute().eq_ignore_ascii_case(s))
    }
}

/// A mailbox (folder) and its IMAP counters (RFC 9051 §2.3.1.1, RFC 7162).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub id: MailboxId,
    pub account_id: AccountId,
    pub name: String,
    pub special_use: Option<SpecialUse>,
    pub uid_validity: u32,
    /// The UID the next message will get; UIDs are never reused within a UIDVALIDITY.
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub subscribed: bool,
    /// Number of messages now in the mailbox.
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Messages with `\Deleted`.
    pub deleted: u32,
    /// Total octets of its messages (STATUS SIZE, RFC 8438).
    pub size: u64,
}
