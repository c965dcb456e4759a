//! The outbound queue's values: one [`Envelope`] and one [`Recipient`] for every view of a
//! queued message (being queued, claimed for an attempt, listed, migrated).

/// What a queued message carries besides its bytes and recipients: the sender and the
/// message's delivery and DSN options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Envelope sender; empty for the null reverse-path (bounces).
    pub sender: String,
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

/// A message waiting to go out to other servers, as [`QueueStore::enqueue`] takes it.
///
/// [`QueueStore::enqueue`]: crate::QueueStore::enqueue
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    pub envelope: Envelope,
    /// The recipients' addresses and DSN options; each starts pending, due at
    /// `envelope.created` (their state fields are not read).
    pub recipients: Vec<Recipient>,
    pub data: Vec<u8>,
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

/// One remote recipient of a queued message: its DSN options and its delivery state. A new
/// one (`Recipient::from("a@b.test")`, or with `..Default::default()`) is pending and has not
/// been tried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// [`dsn_notify`] bits.
    pub notify: u8,
    /// ORCPT as given ("rfc822;addr").
    pub orcpt: Option<String>,
    pub status: RecipientStatus,
    /// Attempts made so far (before the one a claim is for).
    pub attempts: u32,
    /// Unix seconds of the next attempt.
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

impl From<&str> for Recipient {
    fn from(address: &str) -> Self {
        Recipient {
            address: address.to_owned(),
            ..Default::default()
        }
    }
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecipientStatus {
    #[default]
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

/// A queued message with recipients: all of them (a queue listing, a migration), or those
/// claimed for one delivery attempt ([`QueueStore::claim_queue`]).
///
/// [`QueueStore::claim_queue`]: crate::QueueStore::claim_queue
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueEntry {
    pub id: i64,
    pub envelope: Envelope,
    /// Octets of the message.
    pub size: u64,
    pub recipients: Vec<Recipient>,
}

impl QueueEntry {
    /// Adds one row of a queue listing ordered by message id: the recipient joins the last
    /// entry if it is the same message, else a new entry starts from what `entry` reads from
    /// the row (only then, so each envelope is read once).
    pub fn push_row<E>(
        entries: &mut Vec<QueueEntry>,
        id: i64,
        recipient: Recipient,
        entry: impl FnOnce() -> Result<QueueEntry, E>,
    ) -> Result<(), E> {
        match entries.last_mut() {
            Some(last) if last.id == id => last.recipients.push(recipient),
            _ => {
                let mut entry = entry()?;
                entry.recipients.push(recipient);
                entries.push(entry);
            }
        }
        Ok(())
    }
}
