//! The mail domain model and the [`Store`] trait every backend implements.
//!
//! **API boundary:** sessions (`smtp-server`, later IMAP/POP3/webmail) see only `dyn Store`;
//! only the `pigeon` binary names a backend. The [`conformance`] suite is the contract: every
//! backend runs it from its own tests.
//!
//! Durability contract: a write method returns `Ok` only once its effect is on stable storage.
//! Change notifications ([`Store::subscribe`]) are published after the commit.

pub mod address;
pub mod conformance;
pub mod index;
mod notify;
mod resolve;
pub mod rules;
mod traits;

pub use address::Address;
pub use notify::Notifier;
pub use resolve::{Resolution, Target, resolve};

pub type AccountId = i64;
pub type MailboxId = i64;

/// Errors a caller can act on; `Backend` is everything else (logged, reported as temporary).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// Creating something that exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Deleting something still in use (a domain with users, say).
    #[error("{0}")]
    InUse(String),
    /// Input the store refuses (a malformed address, an unknown domain for a new user).
    #[error("{0}")]
    Invalid(String),
    /// The backend failed; the operation may be retried.
    #[error("storage backend error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A mail account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// The login and primary address, lowercased: `local@domain`.
    pub address: String,
    /// Unix seconds.
    pub created: i64,
}

/// What the store keeps to check a password: an Argon2id PHC string, and SCRAM-SHA-256 keys
/// (in `sasl::ScramKeys::to_stored` form) derived from the same password.
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    pub password_hash: String,
    pub scram: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// An account's login data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub account_id: AccountId,
    /// The account's address (its canonical login name).
    pub address: String,
    pub secrets: Secrets,
}

/// An alias: mail to `address` goes to each target. `address` may be `@domain` (catch-all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    pub targets: Vec<String>,
}

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

/// How [`Store::store_flags`] changes flags (IMAP STORE's `FLAGS`, `+FLAGS`, `-FLAGS`).
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

/// Where [`Store::search_text`] looks.
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

/// A message waiting to go out to other servers.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    /// Envelope sender; empty for the null reverse-path (bounces).
    pub sender: String,
    pub recipients: Vec<OutboundRecipient>,
    pub data: Vec<u8>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds after which undelivered recipients fail (0: never).
    pub expires: i64,
    /// DSN options of the message (RFC 3461 ENVID, RET).
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    /// The client asked for SMTPUTF8: the next hop must offer it (RFC 6531).
    pub smtputf8: bool,
}

/// RFC 3461 RET: what a DSN carries of the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Headers,
}

impl Ret {
    pub fn as_str(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Headers => "HDRS",
        }
    }
    pub fn parse(s: &str) -> Option<Ret> {
        match s {
            "FULL" => Some(Ret::Full),
            "HDRS" => Some(Ret::Headers),
            _ => None,
        }
    }
}

/// RFC 3461 NOTIFY bits; none set means the default (failures only).
pub mod dsn_notify {
    pub const SUCCESS: u8 = 1;
    pub const FAILURE: u8 = 2;
    pub const DELAY: u8 = 4;
    pub const NEVER: u8 = 8;
}

/// One remote recipient of a queued message, with its DSN options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundRecipient {
    pub address: String,
    /// [`dsn_notify`] bits.
    pub notify: u8,
    /// ORCPT as given ("rfc822;addr").
    pub orcpt: Option<String>,
}

impl From<&str> for OutboundRecipient {
    fn from(address: &str) -> Self {
        OutboundRecipient {
            address: address.to_owned(),
            ..Default::default()
        }
    }
}

/// Queued recipients claimed for one delivery attempt, with their message's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueJob {
    pub id: i64,
    pub sender: String,
    pub size: u64,
    pub created: i64,
    pub expires: i64,
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    pub smtputf8: bool,
    pub recipients: Vec<JobRecipient>,
}

/// A claimed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecipient {
    pub address: String,
    pub notify: u8,
    pub orcpt: Option<String>,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// The result of an attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub address: String,
    /// `Delivered`, `Failed` (final) or `Deferred` (tried again at `next_attempt`).
    pub status: RecipientStatus,
    pub error: Option<String>,
    pub next_attempt: i64,
}

/// Delivery state of one queued recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientStatus {
    Pending,
    Deferred,
    Delivered,
    Failed,
}

impl RecipientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Deferred => "deferred",
            RecipientStatus::Delivered => "delivered",
            RecipientStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<RecipientStatus> {
        Some(match s {
            "pending" => RecipientStatus::Pending,
            "deferred" => RecipientStatus::Deferred,
            "delivered" => RecipientStatus::Delivered,
            "failed" => RecipientStatus::Failed,
            _ => return None,
        })
    }
}

/// One queued recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecipient {
    pub address: String,
    pub status: RecipientStatus,
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// [`dsn_notify`] bits.
    pub notify: u8,
    /// ORCPT as given.
    pub orcpt: Option<String>,
}

/// A queued message with its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: i64,
    pub sender: String,
    pub size: u64,
    pub created: i64,
    pub expires: i64,
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    pub smtputf8: bool,
    pub recipients: Vec<QueueRecipient>,
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

impl QueueEntry {
    /// Adds one row of a queue listing ordered by message id: the recipient joins the last
    /// entry if it is the same message, else a new entry starts with the envelope `job` reads
    /// from the row (only then, so each envelope is read once).
    pub fn push_row<E>(
        entries: &mut Vec<QueueEntry>,
        id: i64,
        recipient: QueueRecipient,
        job: impl FnOnce() -> Result<QueueJob, E>,
    ) -> Result<(), E> {
        match entries.last_mut() {
            Some(last) if last.id == id => last.recipients.push(recipient),
            _ => {
                let job = job()?;
                entries.push(QueueEntry {
                    id,
                    sender: job.sender,
                    size: job.size,
                    created: job.created,
                    expires: job.expires,
                    envid: job.envid,
                    ret: job.ret,
                    smtputf8: job.smtputf8,
                    recipients: vec![recipient],
                })
            }
        }
        Ok(())
    }
}

/// A DKIM signing key of a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// `ed25519` or `rsa`.
    pub algorithm: String,
    /// PKCS#8 DER.
    pub private_key: Vec<u8>,
    /// The `p=` value of the DNS record: base64 of the public key.
    pub public_key: String,
    pub created: i64,
}

/// What changed in an account, published after the change is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message was added to a mailbox.
    MessageAdded {
        mailbox_id: MailboxId,
        uid: u32,
        modseq: u64,
    },
    /// A message's flags changed.
    FlagsChanged {
        mailbox_id: MailboxId,
        uid: u32,
        modseq: u64,
        flags: u32,
        keywords: Vec<String>,
    },
    /// Mailboxes were created, deleted or renamed.
    MailboxesChanged,
    /// Messages were removed from a mailbox.
    Expunged {
        mailbox_id: MailboxId,
        uids: Vec<u32>,
        modseq: u64,
    },
    /// Notifications may have been lost (a backend lost its connection to other nodes):
    /// reload from the store.
    Resync,
}

/// The size of `data` once every bare LF is a CRLF and it ends with CRLF (see
/// [`Message::crlf_size`]).
pub fn crlf_size(data: &[u8]) -> u64 {
    let mut size = data.len() as u64;
    let mut previous = 0u8;
    for &b in data {
        if b == b'\n' && previous != b'\r' {
            size += 1;
        }
        previous = b;
    }
    if !data.is_empty() && !data.ends_with(b"\n") {
        size += 2;
    }
    size
}

/// The result of [`Store::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub accounts: u64,
    pub mailboxes: u64,
    pub messages: u64,
    pub blobs: u64,
    /// Messages whose text is not in the full-text index yet (it catches up when idle).
    pub index_backlog: u64,
    /// Messages the indexer gave up on (their text cannot be derived or stored): they are not
    /// found by text searches. Not a fault of the store, so not among `problems`.
    pub index_failures: u64,
    /// Uploads not taken yet: big IMAP APPENDs in progress, or left by an interrupted one (a
    /// server frees those of its previous run when it starts).
    pub uploads: u64,
    /// Bytes those uploads hold.
    pub upload_bytes: u64,
    /// Everything found wrong; empty means the store is consistent.
    pub problems: Vec<String>,
}

/// What a process opening a store does besides answering calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server (also tests and `pigeon migrate`): indexes text in the background and, when it
    /// opens the store, frees what a previous run of it left behind (uploads of APPENDs a
    /// crash interrupted).
    Server,
    /// A short-lived admin command, maybe beside a running server: no background work, and
    /// it leaves the server's things alone (`verify` reports leftovers rather than freeing).
    Admin,
}

pub use traits::*;

/// The storage traits, for code that calls store methods on a concrete backend type (on
/// `dyn Store` every method is callable without this).
pub mod prelude {
    pub use crate::traits::{
        DirectoryStore, IntegrityStore, MailboxStore, MessageStore, MigrationStore, QueueStore,
        Store, UploadStore,
    };
}
