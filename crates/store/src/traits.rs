//! The storage API, by concern: one sub-trait each, and [`Store`] as their sum, so
//! `dyn Store` callers see every method and each backend implements one concern per file.

use async_trait::async_trait;

use crate::address::normalise_domain;
use crate::rules::{
    UidSet, alias_entry, domain_key, mailbox_key, new_mailbox_name, normalise_alias_source,
    valid_mailbox_name,
};
use crate::*;

/// The storage API: everything that reads or writes mail goes through it. It is the sum of
/// the concerns below; every type that implements them all is a `Store`.
///
/// Arguments are normalised once, here: a method whose arguments have a rule (UIDs sorted
/// and without duplicates, domains and addresses lowercased, mailbox names validated) is a
/// provided method that applies it and calls the required `*_normalised` method a backend
/// implements. Callers use the provided one.
pub trait Store:
    DirectoryStore
    + MailboxStore
    + MessageStore
    + UploadStore
    + QueueStore
    + MigrationStore
    + IntegrityStore
{
}

impl<T> Store for T where
    T: DirectoryStore
        + MailboxStore
        + MessageStore
        + UploadStore
        + QueueStore
        + MigrationStore
        + IntegrityStore
{
}

/// The storage API: the directory: domains, accounts, aliases and DKIM keys.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// Adds a domain we receive mail for.
    async fn add_domain(&self, name: &str) -> Result<()> {
        self.add_domain_normalised(&normalise_domain(name)?).await
    }
    /// [`DirectoryStore::add_domain`] with a valid, normalised name ([`normalise_domain`]).
    async fn add_domain_normalised(&self, name: &str) -> Result<()>;
    async fn list_domains(&self) -> Result<Vec<String>>;
    async fn has_domain(&self, name: &str) -> Result<bool> {
        self.has_domain_normalised(&domain_key(name)).await
    }
    /// [`DirectoryStore::has_domain`] with the name as looked up ([`domain_key`]).
    async fn has_domain_normalised(&self, name: &str) -> Result<bool>;
    /// Removes a domain; fails with [`StoreError::InUse`] while it has users or aliases.
    async fn delete_domain(&self, name: &str) -> Result<()> {
        self.delete_domain_normalised(&domain_key(name)).await
    }
    /// [`DirectoryStore::delete_domain`] with the name as looked up ([`domain_key`]).
    async fn delete_domain_normalised(&self, name: &str) -> Result<()>;
    /// Creates an account with its default mailboxes (INBOX and the special-use ones).
    async fn create_account(&self, address: &Address, secrets: &Secrets) -> Result<AccountId>;
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    async fn account(&self, address: &Address) -> Result<Option<Account>>;
    /// The login data of an account.
    async fn credentials(&self, address: &Address) -> Result<Option<Credentials>>;
    async fn set_password(&self, address: &Address, secrets: &Secrets) -> Result<()>;
    /// Deletes the account, its mailboxes and messages.
    async fn delete_account(&self, address: &Address) -> Result<()>;
    /// Adds targets to an alias (creating it). `address` may be `@domain` for a catch-all.
    async fn add_alias(&self, address: &str, targets: &[String]) -> Result<()> {
        let (source, domain, targets) = alias_entry(address, targets)?;
        self.add_alias_normalised(&source, &domain, &targets).await
    }
    /// [`DirectoryStore::add_alias`] with the source, its domain and at least one target
    /// normalised ([`alias_entry`]).
    async fn add_alias_normalised(
        &self,
        source: &str,
        domain: &str,
        targets: &[String],
    ) -> Result<()>;
    async fn list_aliases(&self) -> Result<Vec<Alias>>;
    /// The targets of an alias, empty if there is none.
    async fn alias_targets(&self, address: &str) -> Result<Vec<String>> {
        self.alias_targets_normalised(&address.to_lowercase()).await
    }
    /// [`DirectoryStore::alias_targets`] with `address` lowercased.
    async fn alias_targets_normalised(&self, address: &str) -> Result<Vec<String>>;
    /// The aliases that list `target` among their targets (addresses a user may send as).
    async fn alias_sources(&self, target: &str) -> Result<Vec<String>> {
        self.alias_sources_normalised(&target.to_lowercase()).await
    }
    /// [`DirectoryStore::alias_sources`] with `target` lowercased.
    async fn alias_sources_normalised(&self, target: &str) -> Result<Vec<String>>;
    async fn delete_alias(&self, address: &str) -> Result<()> {
        let (source, _) = normalise_alias_source(address)?;
        self.delete_alias_normalised(&source).await
    }
    /// [`DirectoryStore::delete_alias`] with the source normalised ([`normalise_alias_source`]).
    async fn delete_alias_normalised(&self, source: &str) -> Result<()>;
    /// Stores a signing key for a local domain.
    async fn add_dkim_key(&self, mut key: DkimKey) -> Result<()> {
        key.domain = domain_key(&key.domain);
        self.add_dkim_key_normalised(key).await
    }
    /// [`DirectoryStore::add_dkim_key`] with the key's domain as [`domain_key`] makes it.
    async fn add_dkim_key_normalised(&self, key: DkimKey) -> Result<()>;
    async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKey>> {
        self.dkim_keys_normalised(&domain_key(domain)).await
    }
    /// [`DirectoryStore::dkim_keys`] with `domain` as [`domain_key`] makes it.
    async fn dkim_keys_normalised(&self, domain: &str) -> Result<Vec<DkimKey>>;
}

/// The storage API: mailboxes of an account, and the POP3 maildrop lock.
#[async_trait]
pub trait MailboxStore: Send + Sync + 'static {
    async fn list_mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>>;
    /// The account's mailbox called `name` (INBOX in any case).
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>> {
        self.mailbox_normalised(account, mailbox_key(name)).await
    }
    /// [`MailboxStore::mailbox`] with the name as looked up ([`mailbox_key`]).
    async fn mailbox_normalised(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>>;
    async fn mailbox_by_id(&self, mailbox: MailboxId) -> Result<Option<Mailbox>>;
    /// Creates a mailbox; its UIDVALIDITY is new.
    async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId> {
        new_mailbox_name(name)?;
        self.create_mailbox_normalised(account, name, special_use)
            .await
    }
    /// [`MailboxStore::create_mailbox`] with a valid name that is not INBOX
    /// ([`new_mailbox_name`]).
    async fn create_mailbox_normalised(
        &self,
        account: AccountId,
        name: &str,
        special_use: Option<SpecialUse>,
    ) -> Result<MailboxId>;
    /// Deletes a mailbox and its messages. INBOX cannot be deleted.
    async fn delete_mailbox(&self, mailbox: MailboxId) -> Result<()>;
    /// Renames a mailbox. Renaming INBOX moves its messages to a new mailbox with the new name
    /// and leaves INBOX empty (RFC 9051 §6.3.6).
    async fn rename_mailbox(&self, mailbox: MailboxId, new_name: &str) -> Result<()> {
        new_mailbox_name(new_name)?;
        self.rename_mailbox_normalised(mailbox, new_name).await
    }
    /// [`MailboxStore::rename_mailbox`] with a valid new name that is not INBOX
    /// ([`new_mailbox_name`]).
    async fn rename_mailbox_normalised(&self, mailbox: MailboxId, new_name: &str) -> Result<()>;
    async fn set_subscribed(&self, mailbox: MailboxId, subscribed: bool) -> Result<()>;
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
}

/// The storage API: messages in mailboxes: delivery, reading, flags, expunge, copy and move, search.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Messages of a mailbox in UID order.
    async fn list_messages(&self, mailbox: MailboxId) -> Result<Vec<Message>>;
    /// Messages with a UID above `uid`, in UID order (new mail for an open session).
    async fn messages_after(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<Message>>;
    /// Like [`MessageStore::messages_after`] without blob ids: what an IMAP view needs, fast.
    async fn message_flags(&self, mailbox: MailboxId, after_uid: u32) -> Result<Vec<MessageFlags>>;
    /// The [`MessageFlags`] of the given UIDs (those that exist), in UID order: what a client
    /// showing a few messages of a big mailbox needs, without loading the rest.
    async fn message_meta(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<MessageFlags>> {
        self.message_meta_normalised(mailbox, UidSet::new(uids))
            .await
    }
    /// [`MessageStore::message_meta`] for a [`UidSet`].
    async fn message_meta_normalised(
        &self,
        mailbox: MailboxId,
        uids: UidSet,
    ) -> Result<Vec<MessageFlags>>;
    /// The stored bytes of a message.
    async fn read_message(&self, mailbox: MailboxId, uid: u32) -> Result<Vec<u8>>;
    /// Stores a message once and adds it to each recipient's INBOX, durably.
    async fn deliver(&self, mut delivery: Delivery) -> Result<Vec<Delivered>> {
        delivery.recipients.sort_unstable();
        delivery.recipients.dedup();
        self.deliver_normalised(delivery).await
    }
    /// [`MessageStore::deliver`] with the recipients sorted and without duplicates.
    async fn deliver_normalised(&self, delivery: Delivery) -> Result<Vec<Delivered>>;
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
    /// Removes messages from a mailbox, remembering them for QRESYNC; returns the UIDs
    /// removed, ascending.
    async fn expunge(&self, mailbox: MailboxId, uids: &[u32]) -> Result<Vec<u32>> {
        self.expunge_normalised(mailbox, UidSet::new(uids)).await
    }
    /// [`MessageStore::expunge`] for a [`UidSet`].
    async fn expunge_normalised(&self, mailbox: MailboxId, uids: UidSet) -> Result<Vec<u32>>;
    /// UIDs expunged (or moved away) with a MODSEQ above `modseq`, ascending (RFC 7162 VANISHED).
    async fn expunged_since(&self, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>>;
    /// Changes system flags and keywords (IMAP STORE). Messages whose MODSEQ is above
    /// `unchanged_since` are left alone and returned in the second list (RFC 7162
    /// UNCHANGEDSINCE). Messages whose flags do not change keep their MODSEQ. Both lists
    /// are in UID order.
    async fn store_flags(
        &self,
        mailbox: MailboxId,
        uids: &[u32],
        mode: FlagMode,
        flags: u32,
        keywords: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<(Vec<FlagsUpdated>, Vec<u32>)> {
        self.store_flags_normalised(
            mailbox,
            UidSet::new(uids),
            mode,
            flags,
            keywords,
            unchanged_since,
        )
        .await
    }
    /// [`MessageStore::store_flags`] for a [`UidSet`].
    async fn store_flags_normalised(
        &self,
        mailbox: MailboxId,
        uids: UidSet,
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
    ) -> Result<Vec<(u32, u32)>> {
        self.copy_normalised(from, UidSet::new(uids), to, move_them)
            .await
    }
    /// [`MessageStore::copy`] for a [`UidSet`].
    async fn copy_normalised(
        &self,
        from: MailboxId,
        uids: UidSet,
        to: MailboxId,
        move_them: bool,
    ) -> Result<Vec<(u32, u32)>>;
}

/// The storage API: uploads: a message arriving in pieces goes to the store as it comes.
#[async_trait]
pub trait UploadStore: Send + Sync + 'static {
    /// Starts an upload: a message arriving in pieces (a big IMAP APPEND literal) goes to the
    /// store as it comes instead of waiting in the session's memory.
    async fn begin_upload(&self) -> Result<i64>;
    /// Adds the next piece of an upload.
    async fn upload_chunk(&self, upload: i64, data: Vec<u8>) -> Result<()>;
    /// The whole upload, which ends (is deleted) here.
    async fn take_upload(&self, upload: i64) -> Result<Vec<u8>>;
    /// Ends an upload without using it.
    async fn discard_upload(&self, upload: i64) -> Result<()>;
}

/// The storage API: the outbound queue.
#[async_trait]
pub trait QueueStore: Send + Sync + 'static {
    /// Queues a message for remote recipients, durably, and wakes [`QueueStore::queue_signal`].
    async fn enqueue(&self, message: Outbound) -> Result<i64>;
    async fn list_queue(&self) -> Result<Vec<QueueEntry>>;
    async fn queue_entry(&self, id: i64) -> Result<Option<QueueEntry>>;
    /// The queued message's bytes.
    async fn queue_data(&self, id: i64) -> Result<Vec<u8>>;
    /// Claims up to `limit` messages' due recipients (pending or deferred, `next_attempt <=
    /// now`, not leased) by leasing them until `lease_until`; a worker that dies loses its
    /// lease and the recipients come due again. Each entry holds only its claimed recipients.
    async fn claim_queue(
        &self,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<QueueEntry>>;
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
}

/// The storage API: moving an installation between stores (`pigeon migrate`).
#[async_trait]
pub trait MigrationStore: Send + Sync + 'static {
    /// Every expunge record of a mailbox: (UID, MODSEQ), ascending by UID.
    async fn expunged_records(&self, mailbox: MailboxId) -> Result<Vec<(u32, u64)>>;
    /// Makes the account's mailbox named `mailbox.name` exactly `mailbox` (creating it if
    /// needed): UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, special use and subscription. Its message
    /// counts follow the messages imported into it.
    async fn import_mailbox(&self, account: AccountId, mailbox: &Mailbox) -> Result<MailboxId> {
        valid_mailbox_name(&mailbox.name)?;
        self.import_mailbox_normalised(account, mailbox).await
    }
    /// [`MigrationStore::import_mailbox`] with a valid mailbox name ([`valid_mailbox_name`]).
    async fn import_mailbox_normalised(
        &self,
        account: AccountId,
        mailbox: &Mailbox,
    ) -> Result<MailboxId>;
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
}

/// The storage API: integrity and notifications.
#[async_trait]
pub trait IntegrityStore: Send + Sync + 'static {
    /// Checks the store's integrity without changing it.
    async fn verify(&self) -> Result<VerifyReport>;
    /// Messages whose text is not in the full-text index yet (cheap; for status displays).
    async fn index_backlog(&self) -> Result<u64>;
    /// Messages the indexer gave up on (see [`VerifyReport::index_failures`]; cheap).
    async fn index_failures(&self) -> Result<u64>;
    /// Changes to one account, from any session (IDLE, webmail push).
    fn subscribe(&self, account: AccountId) -> tokio::sync::broadcast::Receiver<Change>;
}
