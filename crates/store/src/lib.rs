//! The mail domain model and the [`Store`] trait every backend implements.
//!
//! **API boundary:** sessions (`smtp-server`, `imap-server`, `pop3-server`, `webmail`) see only
//! `dyn Store`; only the `pigeon` binary names a backend. The `conformance` suite is the
//! contract: every backend runs it from its own tests (cargo feature `conformance`, which only
//! the backends' dev-dependencies enable, so it is not in the binary).
//!
//! Durability contract: a write method returns `Ok` only once its effect is on stable storage.
//! Change notifications ([`IntegrityStore::subscribe`]) are published after the commit.
//!
//! # Layout
//! `traits.rs`: [`Store`] as the sum of seven concern traits; argument rules (UIDs sorted and
//! without duplicates, lowercased names, valid mailbox names) are applied once there, by
//! provided methods that call the backends' `*_normalised` methods. The values, by concern:
//! `directory.rs`, `mailboxes.rs`, `messages.rs`, `queue.rs` (one [`Envelope`] and one
//! [`Recipient`] for every view of a queued message), `verify.rs`, `notify.rs` ([`Change`] and
//! the [`Notifier`]); `rules.rs` holds what every backend computes the same way.

pub mod address;
#[cfg(feature = "conformance")]
pub mod conformance;
mod directory;
pub mod index;
mod mailboxes;
mod messages;
mod notify;
mod queue;
mod resolve;
pub mod rules;
mod traits;
mod verify;

pub use address::Address;
pub use directory::{Account, Alias, Credentials, DkimKey, Secrets};
pub use mailboxes::{Mailbox, SpecialUse};
pub use messages::{
    Delivered, Delivery, FlagMode, FlagsUpdated, ImportedMessage, Message, MessageFlags,
    MessageSummary, TextScope, crlf_size, flags,
};
pub use notify::{Change, Notifier};
pub use queue::{
    AttemptResult, Envelope, Outbound, QueueEntry, Recipient, RecipientStatus, Ret, dsn_notify,
};
pub use resolve::{Resolution, Target, resolve};
pub use rules::UidSet;
pub use verify::VerifyReport;

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
