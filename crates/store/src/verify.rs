//! What `verify` reports.

/// The result of [`IntegrityStore::verify`](crate::IntegrityStore::verify).
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
