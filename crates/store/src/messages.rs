//! Messages in mailboxes: flags, summaries, deliveries, imports.

use crate::{AccountId, MailboxId};

/// System flags as bits; keywords are kept separately.
pub mod flags {
    pub const SEEN: u32 = 1 << 0;
    pub const ANSWERED: u32 = 1 << 1;
    pub const FLAGGED: u32 = 1 << 2;
    pub const DELETED: u32 = 1 << 3;
    pub const DRAFT: u32 = 1 << 4;
}

/// A message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub mailbox_id: MailboxId,
    pub uid: u32,
    pub modseq: u64,
    /// [`flags`] bits.
    pub flags: u32,
    pub keywords: Vec<String>,
    /// Unix seconds when it arrived.
    pub internal_date: i64,
    /// Exact size in octets of the stored bytes.
    pub size: u64,
    /// Size when sent with CRLF line ends and a final CRLF (every bare LF becomes CRLF), the
    /// octets POP3 counts (RFC 1939 §11). Equal to `size` for well-formed mail.
    pub crlf_size: u64,
    /// Content address (SHA-256, hex) of the bytes; one copy however many mailboxes hold it.
    pub blob_id: String,
}

/// How [`MessageStore::store_flags`](crate::MessageStore::store_flags) changes flags (IMAP STORE's `FLAGS`, `+FLAGS`, `-FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMode {
    Replace,
    Add,
    Remove,
}

/// The new state of a message after a flag change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagsUpdated {
    pub uid: u32,
    pub modseq: u64,
    pub flags: u32,
    pub keywords: Vec<String>,
}

/// Views of a message computed once when it is stored (IMAP ENVELOPE/BODYSTRUCTURE/BODY, the
/// header block, the decoded text the full-text index is built from), so readers never
/// re-parse it. Computed by `message::summary::summarize`.
pub use message::summary::Summary as MessageSummary;

/// Where [`MessageStore::search_text`](crate::MessageStore::search_text) looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextScope {
    /// Decoded header values.
    Headers,
    /// Decoded text parts (IMAP BODY).
    Body,
    /// Both (IMAP TEXT).
    All,
}

/// What an IMAP session keeps of each message of its selected mailbox: [`Message`] without
/// the blob id (cheaper to load for big mailboxes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFlags {
    pub uid: u32,
    pub modseq: u64,
    pub flags: u32,
    pub keywords: Vec<String>,
    pub internal_date: i64,
    pub size: u64,
}

/// A message to put into local INBOXes.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The complete message as stored (trace headers included).
    pub data: Vec<u8>,
    /// Accounts whose INBOX gets a copy; duplicates are delivered once.
    pub recipients: Vec<AccountId>,
    /// Unix seconds.
    pub internal_date: i64,
    /// Precomputed views; without them FETCH and SEARCH fall back to parsing.
    pub summary: Option<MessageSummary>,
}

/// Where one copy of a delivery landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub account_id: AccountId,
    pub mailbox_id: MailboxId,
    pub uid: u32,
}

/// A message copied exactly from another store (`pigeon migrate`).
#[derive(Debug, Clone)]
pub struct ImportedMessage {
    /// UID, MODSEQ, flags, keywords and internal date are kept; the sizes and blob id are
    /// computed again from `data`.
    pub message: Message,
    pub data: Vec<u8>,
    pub summary: Option<MessageSummary>,
}

/// The size of `data` once every bare LF is a CRLF and it ends with CRLF (see
/// [`Message::crlf_size`]): the one function POP3's RETR announces too.
pub use message::lines::crlf_size;
