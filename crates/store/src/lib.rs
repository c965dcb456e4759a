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

use async_trait::async_trait;

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

/// The storage API: everything that reads or writes mail goes through it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- domains ---
    /// Adds a domain we receive mail for.
    async fn add_domain(&self, name: &str) -> Result<()>;
    async fn list_domains(&self) -> Result<Vec<String>>;
    async fn has_domain(&self, name: &str) -> Result<bool>;
    /// Removes a domain; fails with [`StoreError::InUse`] while it has users or aliases.
    async fn delete_domain(&self, name: &str) -> Result<()>;

    // --- accounts ---
    /// Creates an account with its default mailboxes (INBOX and the special-use ones).
    async fn create_account(&self, address: &Address, secrets: &Secrets) -> Result<AccountId>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    async fn account(&self, address: &Address) -> Result<Option<Account>>;
    /// The login data of an account.
    async fn credentials(&self, address: &Address) -> Result<Option<Credentials>>;
    async fn set_password(&self, address: &Address, secrets: &Secrets) -> Result<()>;
    /// Deletes the account, its mailboxes and messages.
    async fn delete_account(&self, address: &Address) -> Result<()>;

    // --- aliases ---
    /// Adds targets to an alias (creating it). `address` may be `@domain` for a catch-all.
    async fn add_alias(&self, address: &str, targets: &[String]) -> Result<()>;
    async fn list_aliases(&self) -> Result<Vec<Alias>>;
    /// The targets of an alias, empty if there is none.
    async fn alias_targets(&self, address: &str) -> Result<Vec<String>>;
    /// The aliases that list `target` among their targets (addresses a user may send as).
    async fn alias_sources(&self, target: &str) -> Result<Vec<String>>;
    async fn delete_alias(&self, address: &str) -> Result<()>;

    // --- mailboxes and messages ---
    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>>;
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>>;
    /// Messages of a mailbox in UID order.
    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<Message>>;
    /// Messages with a UID above `uid`, in UID order (new mail for an open session).
    async fn messages_after(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<Message>>;
    /// Like [`Store::messages_after`] without blob ids: what an IMAP view needs, fast.
    async fn message_flags(&self, mailbox: MailboxId, after_uid: u32) -> Result<Vec<MessageFlags>>;
    /// The [`MessageFlags`] of the given UIDs (those that exist), in UID order: what a client
    /// showing a few messages of a big mailbox needs, without loading the rest.
    async fn message_meta(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<MessageFlags>>;
    /// The stored bytes of a message.
    async fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<u8>>;
    /// Stores a message once and adds it to each recipient's INBOX, durably.
    async fn deliver(&self, delivery: Delivery) -> Result<Vec<Delivered>>;
    /// Adds and removes [`flags`] bits on messages; returns each changed message's UID, new
    /// MODSEQ and flags. Unknown UIDs are skipped.
    async fn set_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        add: u32,
        remove: u32,
    ) -> Result<Vec<(u32, u64, u32)>> {
        let mut changed = Vec::new();
        if add != 0 {
            changed.extend(
                self.store_flags(mailbox, uids, FlagMode::Add, add, &[], None)
                    .await?
                    .0,
            );
        }
        if remove != 0 {
            changed.extend(
                self.store_flags(mailbox, uids, FlagMode::Remove, remove, &[], None)
                    .await?
                    .0,
            );
        }
        Ok(changed
            .into_iter()
            .map(|u| (u.uid, u.modseq, u.flags))
            .collect())
    }
    /// Removes messages from a mailbox, remembering them for QRESYNC; returns the UIDs removed.
    async fn expunge(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>>;
    /// UIDs expunged (or moved away) with a MODSEQ above `modseq`, ascending (RFC 7162 VANISHED).
    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>>;
    /// Changes system flags and keywords (IMAP STORE). Messages whose MODSEQ is above
    /// `unchanged_since` are left alone and returned in the second list (RFC 7162
    /// UNCHANGEDSINCE). Messages whose flags do not change keep their MODSEQ.
    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        mode: FlagMode,
        flags: u32,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<FlagsUpdated>, Vec<u32>)>;
    /// Adds a message to a mailbox (IMAP APPEND); returns its UID.
    async fn append(
        &self,
        mailbox: MailboxId,
        data: Vec<u8>,
        flags: u32,
        keywords: Vec<String>,
        internal_date: i64,
        summary: Option<MessageSummary>,
    ) -> Result<u32>;
    /// Starts an upload: a message arriving in pieces (a big IMAP APPEND literal) goes to the
    /// store as it comes instead of waiting in the session's memory.
    async fn begin_upload(&self) -> Result<i64>;
    /// Adds the next piece of an upload.
    async fn upload_chunk(&self, upload: i64, data: Vec<u8>) -> Result<()>;
    /// The whole upload, which ends (is deleted) here.
    async fn take_upload(&self, upload: i64) -> Result<Vec<u8>>;
    /// Ends an upload without using it.
    async fn discard_upload(&self, upload: i64) -> Result<()>;
    /// The stored summaries of messages (those that have one).
    async fn summaries(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<Vec<(u32, MessageSummary)>>;
    /// UIDs of messages whose decoded text contains `needle`, case-insensitively (the
    /// full-text index; IMAP SEARCH BODY/TEXT).
    async fn search_text(
        &self,
        mailbox: MailboxId,
        needle: &str,
        scope: TextScope,
    ) -> Result<Vec<u32>>;
    /// Copies messages (their bytes are shared, not duplicated) to another mailbox of the same
    /// account, in UID order; with `move_them` they leave the source (RFC 6851, atomically).
    /// Returns (source UID, new UID) pairs.
    async fn copy(
        &self,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
        move_them: bool,
    ) -> Result<Vec<(u32, u32)>>;
    async fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<Option<Mailbox>>;
    /// Creates a mailbox; its UIDVALIDITY is new.
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId>;
    /// Deletes a mailbox and its messages. INBOX cannot be deleted.
    async fn delete_mailbox(&self, mailbox: MailboxId) -> Result<()>;
    /// Renames a mailbox. Renaming INBOX moves its messages to a new mailbox with the new name
    /// and leaves INBOX empty (RFC 9051 §6.3.6).
    async fn rename_mailbox(&self, mailbox: MailboxId, new_name: &str) -> Result<()>;
    async fn set_subscribed(&self, mailbox: MailboxId, subscribed: bool) -> Result<()>;

    // --- moving an installation between stores (`pigeon migrate`) ---
    /// Every expunge record of a mailbox: (UID, MODSEQ), ascending by UID.
    async fn expunged_records(&self, mailbox: MailboxId) -> Result<Vec<(u32, u64)>>;
    /// Makes the account's mailbox named `mailbox.name` exactly `mailbox` (creating it if
    /// needed): UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, special use and subscription. Its message
    /// counts follow the messages imported into it.
    async fn import_mailbox(&self, account: AccountId, mailbox: &Mailbox) -> Result<MailboxId>;
    /// Adds messages and expunge records exactly as they were, leaving the mailbox's UIDNEXT
    /// and HIGHESTMODSEQ alone. Notifies nobody: the store is not in service yet.
    async fn import_messages(
        &self,
        mailbox: MailboxId,
        messages: Vec<ImportedMessage>,
        expunged: Vec<(u32, u64)>,
    ) -> Result<()>;
    /// Adds a queued message with each recipient's state (status, attempts, next attempt,
    /// last error, DSN options); returns its new id.
    async fn import_queued(&self, entry: QueueEntry, data: Vec<u8>) -> Result<i64>;

    // --- outbound queue ---
    /// Queues a message for remote recipients, durably, and wakes [`Store::queue_signal`].
    async fn enqueue(&self, message: Outbound) -> Result<i64>;
    async fn list_queue(&self) -> Result<Vec<QueueEntry>>;
    async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>>;
    /// The queued message's bytes.
    async fn queue_data(&self, id: i64) -> Result<Vec<u8>>;
    /// Claims up to `limit` messages' due recipients (pending or deferred, `next_attempt <=
    /// now`, not leased) by leasing them until `lease_until`; a worker that dies loses its
    /// lease and the recipients come due again.
    async fn claim_queue(&self, now: i64, lease_until: i64, limit: usize) -> Result<Vec<QueueJob>>;
    /// Records an attempt's results and ends their lease. A message whose recipients are all
    /// delivered or failed leaves the queue.
    async fn record_attempt(&self, id: i64, results: Vec<AttemptResult>) -> Result<()>;
    /// When the next recipient comes due (its lease included), if any.
    async fn next_queue_due(&self) -> Result<Option<i64>>;
    /// Makes undelivered recipients due now (one message, or all); returns how many.
    async fn retry_queue(&self, id: Option<i64>, now: i64) -> Result<u64>;
    /// Removes a message from the queue; false if it was not there.
    async fn drop_queue(&self, id: i64) -> Result<bool>;
    /// Ends every claim: a single node calls it at start, when claims of its previous life
    /// (killed mid-delivery) would otherwise wait for their leases to lapse.
    async fn release_queue_leases(&self) -> Result<()>;
    /// Woken whenever queued work becomes due sooner (enqueue, retry).
    fn queue_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;

    // --- POP3 maildrop locks across nodes ---
    /// Takes (or renews) the exclusive POP3 lock of an account's maildrop for `holder` until
    /// `until` (Unix seconds); false while another holder has it. A lock whose holder died
    /// lapses at its `until`. A single-node backend leaves exclusivity to the server's own
    /// in-process lock and always grants it.
    async fn lock_maildrop(&self, _account: AccountId, _holder: &str, _until: i64) -> Result<bool> {
        Ok(true)
    }
    /// Gives the lock up, if `holder` has it.
    async fn unlock_maildrop(&self, _account: AccountId, _holder: &str) -> Result<()> {
        Ok(())
    }

    // --- DKIM keys ---
    /// Stores a signing key for a local domain.
    async fn add_dkim_key(&self, key: DkimKey) -> Result<()>;
    async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKey>>;

    // --- integrity and notifications ---
    /// Checks the store's integrity without changing it.
    async fn verify(&self) -> Result<VerifyReport>;
    /// Messages whose text is not in the full-text index yet (cheap; for status displays).
    async fn index_backlog(&self) -> Result<u64>;
    /// Messages the indexer gave up on (see [`VerifyReport::index_failures`]; cheap).
    async fn index_failures(&self) -> Result<u64>;
    /// Changes to one account, from any session (IDLE, webmail push).
    fn subscribe(&self, account: AccountId) -> tokio::sync::broadcast::Receiver<Change>;
}
