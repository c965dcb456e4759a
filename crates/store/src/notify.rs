//! Per-account change notifications ([`Change`]), shared by backends.
//!
//! Each account with at least one subscriber has a broadcast channel; a slow subscriber that
//! falls behind gets `RecvError::Lagged` and must resynchronise from the store, so a stuck
//! session can never hold up delivery.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::broadcast;

use crate::{AccountId, MailboxId};

const CHANNEL_CAPACITY: usize = 256;

#[derive(Debug, Default)]
pub struct Notifier {
    channels: Mutex<HashMap<AccountId, broadcast::Sender<Change>>>,
}

impl Notifier {
    pub fn subscribe(&self, account: AccountId) -> broadcast::Receiver<Change> {
        let mut channels = self.channels.lock().expect("notifier lock poisoned");
        channels
            .entry(account)
            .or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Publishes a change to every subscriber of every account.
    pub fn publish_all(&self, change: Change) {
        let channels = self.channels.lock().expect("notifier lock poisoned");
        for sender in channels.values() {
            let _ = sender.send(change.clone());
        }
    }

    /// Publishes a change to the account's subscribers, if any.
    pub fn publish(&self, account: AccountId, change: Change) {
        let mut channels = self.channels.lock().expect("notifier lock poisoned");
        if let Some(sender) = channels.get(&account)
            && sender.send(change).is_err()
        {
            // Every receiver is gone: drop the channel so the map does not grow forever.
            channels.remove(&account);
        }
    }
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
