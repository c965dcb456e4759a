//! The outbound queue's values.

use crate::Result;

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
